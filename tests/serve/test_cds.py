"""Event-data runs over REST (MEDS rows or a FHIR Bundle) and CDS Hooks 2.0 `patient-view` for event and table
runs: discovery, prefetch mapped to the model input, one card naming model and version; bad hooks refused."""

from __future__ import annotations

import polars as pl
import pytest
from fastapi.testclient import TestClient

from medflow.runs import load_run
from medflow.serve import ServiceConfig, Store, create_app
from tests.ehr.fhir_export import resources


@pytest.fixture(scope="module")
def client(runs_root, event_run, tmp_path_factory):
    cfg = ServiceConfig(db=str(tmp_path_factory.mktemp("cds") / "cds.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("ehr")
    with TestClient(create_app([runs_root["risk"], event_run], cfg)) as c:
        yield c, {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def patient(event_run):
    """One simulated patient with a discharge: their events, and the same as FHIR resources."""
    from medflow.data.ehr import simulated_ehr

    assert load_run(event_run).config["data"]["simulate"]["patients"] == 400
    events = simulated_ehr(patients=400, seed=0).events.events  # the run's own patients
    ends = events.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END")
    sid = ends["subject_id"][0]
    mine = events.filter(pl.col("subject_id") == sid)
    return mine, resources(mine)[sid]


def test_event_run_over_rest_from_meds_and_fhir(client, patient, event_run, tmp_path):
    """The service predicts exactly what `medflow predict` gives on the same events (MEDS) or file (FHIR)."""
    import json

    from medflow.cli.predict_io import event_input
    from medflow.data.ehr import event_dataset
    from medflow.data.sources.meds import EventData

    c, auth = client
    events, res = patient
    meds = [{"subject_id": "pt-1", "time": None if t is None else t.isoformat(), "code": code,
             "numeric_value": None if v is None else float(v)} for _, t, code, v in events.iter_rows()]
    a = c.post("/models/readmit/predict", headers=auth, json={"meds": meds})
    b = c.post("/models/readmit/predict", headers=auth, json={"fhir": {
        "resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in res]}, "explain": True})
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    pa, pb = a.json()["predictions"], b.json()["predictions"]
    assert len(pa) == len(pb) >= 1 and a.json()["synthetic"] is True
    assert pa[0]["subject_id"] == "pt-1" and pb[0]["subject_id"].startswith("pt-")
    run = load_run(event_run)
    direct = run.predict(event_dataset(EventData(events=events), "readmission_30d", label_name="readmission_30d"))
    assert [p["probability"] for p in pa] == pytest.approx(direct["probability"].tolist(), abs=1e-6)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r}
                                                                                         for r in res]}))
    from_file = run.predict(event_input(run, path, None))
    assert [p["probability"] for p in pb] == pytest.approx(from_file["probability"].tolist(), abs=1e-6)
    assert pb[-1]["explanation"]


def test_event_input_errors_are_named(client, patient):
    c, auth = client
    r = c.post("/models/readmit/predict", headers=auth, json={"meds": [{"subject_id": 1, "time": "yesterday",
                                                                       "code": "X"}]})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "meds[0].time"
    r = c.post("/models/readmit/predict", headers=auth, json={"fhir": {"resourceType": "Patient", "id": "p"}})
    assert r.status_code == 422 and "readmission_30d" in r.json()["problems"][0]["problem"]
    r = c.post("/models/readmit/predict", headers=auth, json={"fhir": {}, "meds": []})
    assert r.status_code == 422


def _hook(prefetch: dict) -> dict:
    return {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"patientId": "p1", "userId": "Practitioner/1"}, "prefetch": prefetch}


def test_cds_discovery_and_event_card(client, patient):
    c, auth = client
    services = {s["id"]: s for s in c.get("/cds-services", headers=auth).json()["services"]}
    assert set(services) == {"risk", "readmit"} and services["readmit"]["hook"] == "patient-view"
    assert services["readmit"]["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    _, res = patient
    by_type = {t: [r for r in res if r["resourceType"] == t] for t in ("Patient", "Observation", "Condition",
                                                                     "MedicationRequest", "Encounter")}
    bundle = lambda rs: {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in rs]}  # noqa: E731
    r = c.post("/cds-services/readmit", headers=auth, json=_hook({
        "patient": by_type["Patient"][0], "observations": bundle(by_type["Observation"]),
        "conditions": bundle(by_type["Condition"]), "medications": bundle(by_type["MedicationRequest"]),
        "encounters": bundle(by_type["Encounter"])}))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["indicator"] in ("info", "warning", "critical") and len(card["summary"]) <= 140
    assert "SYNTHETIC" in card["summary"] and card["source"]["label"] == "medflow readmit v1"
    assert "Top factors" in card["detail"]
    rest = c.post("/models/readmit/predict", headers=auth, json={"fhir": bundle(res)}).json()["predictions"][-1]
    assert f"{100 * rest['probability']:.0f}% risk" in card["summary"]


def test_cds_table_run_maps_observations(client):
    c, auth = client
    obs = lambda code, v, t: {"resourceType": "Observation", "code": {"coding": [{"code": code}]},  # noqa: E731
                              "valueQuantity": {"value": v}, "effectiveDateTime": t}
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "gender": "male"},
                "observations": {"resourceType": "Bundle", "entry": [
                    {"resource": obs("x1", -3.0, "2026-01-01")}, {"resource": obs("x1", 2.5, "2026-06-01")}]}}
    r = c.post("/cds-services/risk", headers=auth, json=_hook(prefetch))
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    rest = c.post("/models/risk/predict", headers=auth, json={"records": [
        {"x1": 2.5, "x2": None, "cat": None, "sex": "M"}]}).json()["predictions"][0]  # the latest x1 is used
    assert f"{100 * rest['probability']:.0f}% risk" in card["summary"]
    assert "imputed as in training: x2, cat" in card["detail"]
    assert card["indicator"] == ("critical" if rest["probability"] >= (1 + rest["threshold"]) / 2 else
                                 "warning" if rest["probability"] >= rest["threshold"] else "info")


@pytest.mark.parametrize("change, field", [({"hook": "order-sign"}, "hook"), ({"prefetch": {}}, "prefetch.patient"),
                                           ({"context": {}}, "context.patientId"),
                                           ({"prefetch": {"patient": 5}}, "prefetch.patient")])
def test_bad_hooks_are_refused(client, change, field):
    c, auth = client
    body = {**_hook({"patient": {"resourceType": "Patient", "id": "p1"}}), **change}
    r = c.post("/cds-services/risk", headers=auth, json=body)
    assert r.status_code == 422 and field in {p["field"] for p in r.json()["problems"]}
