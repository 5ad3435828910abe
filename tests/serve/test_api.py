"""The REST service in process (FastAPI's TestClient): predictions equal Run.predict's, every bad input gets the
right status and names the field, keys, limits, audit rows, metrics and drift monitoring."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from medflow.runs import load_run
from medflow.serve import ServiceConfig, Store, create_app


@pytest.fixture
def service(runs_root, tmp_path):
    cfg = ServiceConfig(db=str(tmp_path / "svc.db"), rate_per_minute=0)
    store = Store(cfg.db)
    key = store.create_key("ward7")
    app = create_app([runs_root["risk"], runs_root["surv"]], cfg)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {key}"}, store


def test_prediction_is_run_predict_with_decision_and_explanation(service, runs_root, record):
    client, auth, store = service
    records = [record, {**record, "x1": -2.0, "cat": "c", "x2": None}]
    r = client.post("/models/risk/predict", headers=auth, json={"records": records, "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "risk" and body["version"] == 1 and body["task"] == "binary"
    expected = load_run(runs_root["risk"]).predict(pd.DataFrame(records))
    got = [p["probability"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected["probability"], rtol=1e-6)
    first = body["predictions"][0]
    assert first["decision"]["positive"] == (first["probability"] >= first["threshold"])
    assert {e["feature"] for e in first["explanation"]} == {"x1", "x2", "cat", "sex"}
    assert body["predictions"][1]["probability"] < body["predictions"][0]["probability"]  # x1 drives the risk
    rows = store.audit_rows()
    assert len(rows) == 1 and rows[0]["key_name"] == "ward7" and rows[0]["n_records"] == 2
    assert rows[0]["input"] is None and len(rows[0]["input_hash"]) == 64  # raw input kept only on request
    assert json.loads(rows[0]["output"])[0]["probability"] == pytest.approx(got[0])


def test_survival_gives_s_at_horizons(service):
    client, auth, _ = service
    r = client.post("/models/surv/predict", headers=auth, json={"records": [
        {"x1": 1.5, "x2": 0.0, "cat": "a", "sex": "M"}, {"x1": -1.5, "x2": 0.0, "cat": "b", "sex": "M"}]})
    assert r.status_code == 200, r.text
    hi, lo = r.json()["predictions"]
    assert 0 <= hi["survival_at_90"] <= hi["survival_at_30"] <= 1
    assert hi["survival_at_90"] < lo["survival_at_90"]  # higher x1, higher hazard in the simulator


def test_out_of_training_range_is_predicted_and_flagged(service, record):
    client, auth, _ = service
    r = client.post("/models/risk/predict", headers=auth, json={"records": [{**record, "x1": 40.0}]})
    assert r.status_code == 200 and r.json()["predictions"][0]["out_of_training_range"] == ["x1"]


@pytest.mark.parametrize("change, field, words", [
    ({"x1": "high"}, "records[0].x1", "number"),
    ({"x1": True}, "records[0].x1", "number"),
    ({"cat": 5}, "records[0].cat", "string"),
    ({"x9": 1.0}, "records[0].x9", "unknown field"),
    ({"x2": "2024-01-01"}, "records[0].x2", "number"),
])
def test_bad_fields_are_named(service, record, change, field, words):
    client, auth, _ = service
    r = client.post("/models/risk/predict", headers=auth, json={"records": [{**record, **change}]})
    assert r.status_code == 422
    problems = {p["field"]: p["problem"] for p in r.json()["problems"]}
    assert field in problems and words in problems[field]


def test_missing_field_malformed_json_and_unknown_model(service, record):
    client, auth, _ = service
    partial = {k: v for k, v in record.items() if k != "cat"}
    r = client.post("/models/risk/predict", headers=auth, json={"records": [record, partial]})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "records[1].cat"
    assert "missing" in r.json()["problems"][0]["problem"]
    r = client.post("/models/risk/predict", headers=auth, json={"records": [record], "explian": True})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "explian"
    r = client.post("/models/risk/predict", headers=auth, json={"records": []})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "records"
    r = client.post("/models/risk/predict", headers={**auth, "Content-Type": "application/json"}, content=b"{x1: 1")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = client.post("/models/riks/predict", headers=auth, json={"records": [record]})
    assert r.status_code == 404 and "risk" in r.json()["error"]


def test_keys_are_required_and_revocable(service, record):
    client, auth, store = service
    assert client.get("/health").status_code == 200  # the only open endpoint (with the page)
    for headers in ({}, {"Authorization": "Bearer mf_wrong"}, {"Authorization": "Basic abc"}):
        r = client.get("/models", headers=headers)
        assert r.status_code in (401, 403) and r.json()["error"]
    assert client.get("/models", headers=auth).status_code == 200
    store.revoke_key("ward7")  # as `medflow keys revoke` would, from another process: effective within 1 s
    time.sleep(1.1)
    r = client.post("/models/risk/predict", headers=auth, json={"records": [record]})
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    assert store.audit_rows() == []  # refused requests predict nothing and audit nothing


def test_body_limit_and_rate_limit(runs_root, tmp_path, record):
    cfg = ServiceConfig(db=str(tmp_path / "lim.db"), max_body_bytes=2_000, rate_per_minute=60, rate_burst=3)
    key = Store(cfg.db).create_key("ward7")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app([runs_root["risk"]], cfg)) as client:
        r = client.post("/models/risk/predict", headers=auth, json={"records": [record] * 100})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        codes = [client.post("/models/risk/predict", headers=auth, json={"records": [record]}).status_code
                 for _ in range(5)]
        assert codes[:2] == [200, 200] and codes[-1] == 429  # burst 3 (the 413 spent one), then 1 a second
        r = client.get("/models", headers=auth)
        assert r.status_code == 429 and r.headers["Retry-After"]


def test_cards_metrics_and_openapi(service, record):
    client, auth, _ = service
    cards = {c["name"]: c for c in client.get("/models", headers=auth).json()}
    assert set(cards) == {"risk", "surv"}
    risk = cards["risk"]
    assert risk["synthetic"] is False and "Not for clinical use" in risk["intended_use"]
    auroc = risk["metrics"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"]
    fields = {f["name"]: f for f in risk["input_schema"]["fields"]}
    assert fields["cat"]["categories"] == ["a", "b", "c"] and fields["x1"]["training_range"][0] < -1
    for _ in range(3):
        client.post("/models/risk/predict", headers=auth, json={"records": [record]})
    client.post("/models/risk/predict", headers=auth, json={"records": [{"x1": 1}]})
    text = client.get("/metrics", headers=auth).text
    assert 'medflow_requests_total{endpoint="predict",model="risk",status="200"} 3.0' in text
    assert 'medflow_errors_total{endpoint="predict",kind="422",model="risk"} 1.0' in text
    assert "medflow_request_latency_seconds_bucket" in text
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/models/risk/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    item = body["properties"]["records"]["items"]
    assert set(item["required"]) == {"x1", "x2", "cat", "sex"} and item["additionalProperties"] is False
    # every endpoint but /health documents the bearer key, whether FastAPI or the route itself checks it
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, ops in spec["paths"].items():
        for op in ops.values():
            assert (op.get("security") == [{"HTTPBearer": []}]) == (path != "/health"), path
    report = client.get("/models/risk/report", headers=auth)
    assert report.status_code == 200 and "<html" in report.text.lower()


def test_monitoring_flags_a_shift(service, record):
    client, auth, _ = service
    rng = np.random.default_rng(0)
    like = [{**record, "x1": float(v)} for v in rng.normal(size=60)]
    client.post("/models/risk/predict", headers=auth, json={"records": like})
    m = client.get("/models/risk/monitoring", headers=auth).json()
    x1 = next(f for f in m["features"] if f["feature"] == "x1")
    assert m["records_seen"] == 60 and x1["psi"] < 0.25 and not any(f.startswith("x1") for f in m["flagged"])
    shifted = [{**record, "x1": float(v)} for v in rng.normal(2.5, 1, size=300)]
    client.post("/models/risk/predict", headers=auth, json={"records": shifted})
    m = client.get("/models/risk/monitoring", headers=auth).json()
    x1 = next(f for f in m["features"] if f["feature"] == "x1")
    assert x1["psi"] > 0.5 and x1["stability"] == "shift" and any(f.startswith("x1: PSI") for f in m["flagged"])
    assert x1["outside_training_range_share"] > 0.05


def test_drift_counts_saved_and_reported(runs_root, tmp_path, record):
    """At shutdown the service saves its drift counts into the run; the report sums every process's counts."""
    import shutil

    import medflow as mf
    from medflow.artifacts import read_json, write_json
    from tests.serve.conftest import _free_port

    run_dir = tmp_path / "risk-run"
    shutil.copytree(runs_root["risk"], run_dir)
    db = str(tmp_path / "m.db")
    key = Store(db).create_key("m")
    handle = mf.start_service(run_dir, port=_free_port(), background=True, db=db, names=["risk"])
    rng = np.random.default_rng(1)
    import httpx

    httpx.post(f"{handle.url}/models/risk/predict", headers={"Authorization": f"Bearer {key}"}, timeout=30,
               json={"records": [{**record, "x1": float(v)} for v in rng.normal(3, 1, 200)]})
    handle.stop()
    (saved,) = list((run_dir / "monitoring").glob("*.json"))
    state = read_json(saved)
    assert state["n"] == 200 and state["model"] == "risk" and state["version"] == 1
    write_json(run_dir / "monitoring" / "other-worker.json", {**state, "n": 100, "counts": {
        c: {**v, "missing": 0, "outside": 0, "cats": {}, "bins": [0] * len(v["bins"]) if v["bins"] else None}
        for c, v in state["counts"].items()}})  # a second process that saw 100 records (zeros, for the sum)
    html = (mf.load_run(run_dir).report()).read_text()
    assert "Monitoring in service" in html and "300 record(s)" in html and "x1: PSI" in html
