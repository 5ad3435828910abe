"""Model versions under load: a promotion (and a rollback) reaches a running service within a second, and no
in-flight request is dropped or answered by a half-loaded model."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pandas as pd

from medflow.runs import load_run
from medflow.serve import ServiceConfig, Store, create_app
from tests.serve.conftest import live_server


def test_promotion_and_rollback_under_load(runs_root, tmp_path, record):
    cfg = ServiceConfig(db=str(tmp_path / "v.db"), rate_per_minute=0, poll_seconds=0.2)
    store = Store(cfg.db)
    key = store.create_key("ward7")
    app = create_app([runs_root["risk"]], cfg)
    v2 = store.add_version("risk", str(runs_root["risk2"]))
    answers: list[tuple[int, int, float]] = []
    stop = threading.Event()

    def client(base: str) -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as c:
            while not stop.is_set():
                r = c.post("/models/risk/predict", json={"records": [record]})
                body = r.json()
                answers.append((r.status_code, body.get("version", -1),
                                body["predictions"][0]["probability"] if r.status_code == 200 else np.nan))

    def wait_for(version: int, more: int) -> None:
        start = len(answers)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 for a in answers[start:] if a[1] == version) >= more:
                return
            time.sleep(0.05)
        raise AssertionError(f"version {version} not served within 30 s")

    with live_server(app) as base:
        threads = [threading.Thread(target=client, args=(base,)) for _ in range(3)]
        for t in threads:
            t.start()
        wait_for(1, 20)
        store.promote("risk", v2)
        wait_for(v2, 20)
        store.rollback("risk")
        wait_for(1, 20)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert {a[0] for a in answers} == {200}, "a request failed during a promotion"
    # requests predicted together in one batch may differ from a lone prediction by float32 rounding (~1e-7)
    p = {v: {round(a[2], 5) for a in answers if a[1] == v} for v in (1, v2)}
    frame = pd.DataFrame([record])
    assert p[1] == {round(float(load_run(runs_root["risk"]).predict(frame)["probability"][0]), 5)}
    assert p[v2] == {round(float(load_run(runs_root["risk2"]).predict(frame)["probability"][0]), 5)}
    assert p[1] != p[v2]


def test_concurrent_requests_are_batched_and_answered_each_their_own(runs_root, tmp_path, record):
    """Requests arriving together are predicted in one call; every response still carries its own record's
    prediction (distinct records per request, so a mix-up would show), and one audit row each."""
    from concurrent.futures import ThreadPoolExecutor

    cfg = ServiceConfig(db=str(tmp_path / "b.db"), rate_per_minute=0)
    store = Store(cfg.db)
    key = store.create_key("ward7")
    app = create_app([runs_root["risk"]], cfg)
    xs = np.linspace(-2.5, 2.5, 400)
    with live_server(app) as base:
        def ask(x: float) -> tuple[float, float, str]:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                r = c.post("/models/risk/predict", json={"records": [{**record, "x1": float(x)}]})
                assert r.status_code == 200, r.text
                return x, r.json()["predictions"][0]["probability"], r.json()["request_id"]

        with ThreadPoolExecutor(16) as pool:
            got = list(pool.map(ask, xs))
    sizes = app.state.service.models["risk"].batcher.sizes
    assert max(sizes) > 1 and sum(sizes) == len(xs)
    want = load_run(runs_root["risk"]).predict(pd.DataFrame([{**record, "x1": x} for x in xs]))["probability"]
    np.testing.assert_allclose([g[1] for g in got], want, atol=1e-5)
    assert {r["request_id"] for r in store.audit_rows()} == {g[2] for g in got}
    assert len({g[2] for g in got}) == len(xs) and all(len(g[2]) == 32 for g in got)  # ids unique
    registry = app.state.service.metrics.registry  # the batch histogram operators see in /metrics
    assert registry.get_sample_value("medflow_batch_requests_count", {"model": "risk"}) == len(sizes)
    assert registry.get_sample_value("medflow_batch_requests_sum", {"model": "risk"}) == len(xs)


def test_serve_from_python_in_the_background(runs_root, tmp_path, record):
    import medflow as mf
    from tests.serve.conftest import _free_port

    db = str(tmp_path / "py.db")
    key = Store(db).create_key("nb")
    handle = mf.start_service(load_run(runs_root["risk"]), port=_free_port(), background=True, db=db)
    try:
        r = httpx.post(f"{handle.url}/models/risk/predict", headers={"Authorization": f"Bearer {key}"},
                       json={"records": [record]})
        assert r.status_code == 200 and 0 <= r.json()["predictions"][0]["probability"] <= 1
    finally:
        handle.stop()
    assert not handle.thread.is_alive()
