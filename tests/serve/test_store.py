"""The service's database on SQLite and on a real PostgreSQL server: keys stored as hashes, revocation, model
versions, the audit trail, no audit row lost when the service process is killed mid-load, and two worker
processes writing one trail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from medflow.errors import ConfigError
from medflow.runs import load_run
from medflow.serve.store import Store
from tests.serve.conftest import _free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "audit.db")
    url = request.getfixturevalue("postgres_url")
    store = Store(url)  # a clean slate per test on the shared server
    with store.engine.begin() as c:
        for table in ("api_keys", "audit", "model_versions"):
            c.exec_driver_sql(f"DELETE FROM {table}")
    return url


def test_keys_are_hashed_and_revocable(db_url):
    store = Store(db_url)
    key = store.create_key("ward7")
    assert key.startswith("mf_") and len(key) > 40
    assert store.key_name(key) == "ward7" and store.key_name(key + "x") is None
    with store.engine.connect() as c:
        stored = [tuple(r) for r in c.exec_driver_sql("SELECT * FROM api_keys")]
    assert key not in repr(stored)  # only the hash
    with pytest.raises(ConfigError, match="exists and is active"):
        store.create_key("ward7")
    store.revoke_key("ward7")
    assert store.key_name(key) is None
    assert store.list_keys()[0]["revoked"] is not None
    with pytest.raises(ConfigError, match="no active key"):
        store.revoke_key("ward7")
    fresh = store.create_key("ward7")  # a revoked name can be reissued
    assert store.key_name(fresh) == "ward7" and store.key_name(key) is None


def test_versions_promote_and_roll_back(db_url):
    store = Store(db_url)
    with pytest.raises(ConfigError, match="registry add"):
        store.promote("risk")
    assert store.add_version("risk", "/runs/a") == 1 and store.add_version("risk", "/runs/b") == 2
    assert store.live_versions() == {}  # added is not served until promoted
    store.promote("risk", 1)
    assert store.live_versions()["risk"] == {"version": 1, "run_dir": "/runs/a"}
    store.promote("risk")  # the newest
    assert store.live_versions()["risk"]["version"] == 2
    assert store.rollback("risk") == 1 and store.live_versions()["risk"]["run_dir"] == "/runs/a"
    with pytest.raises(ConfigError, match="versions"):
        store.promote("risk", 7)


def test_audit_rows_and_since(db_url):
    store = Store(db_url)
    now = datetime.now(UTC)
    base = {"key_name": "k", "endpoint": "predict", "model": "risk", "version": 1, "run_dir": "/r",
            "input_hash": "0" * 64, "n_records": 1, "output": "[]", "latency_ms": 1.0, "input": None}
    store.audit([{**base, "request_id": "old", "time": now - timedelta(days=3)},
                 {**base, "request_id": "new", "time": now, "model": "surv"}])
    assert [r["request_id"] for r in store.audit_rows()] == ["old", "new"]
    assert [r["request_id"] for r in store.audit_rows(since=now - timedelta(days=1))] == ["new"]
    assert [r["request_id"] for r in store.audit_rows(model="risk")] == ["old"]


def test_sqlite_audit_rows_are_stored_as_sqlalchemy_stores_them(tmp_path):
    """SQLite audit rows go through the driver directly (compiled once): the stored values, datetimes included,
    are byte for byte what SQLAlchemy's own insert stores, and a failed batch leaves nothing behind."""
    from medflow.serve.store import audit_table

    store = Store(str(tmp_path / "a.db"))
    row = {"request_id": "r", "time": datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC), "key_name": "k",
           "endpoint": "predict", "model": "risk", "version": 2, "run_dir": "/r", "input_hash": "0" * 64,
           "n_records": 3, "output": '[{"p":0.5}]', "latency_ms": 1.25, "input": '{"records":[]}'}
    store.audit([{**row, "request_id": "fast"}])
    with store.engine.begin() as c:
        c.execute(audit_table.insert(), [{**row, "request_id": "sqlalchemy"}])
    with store.engine.connect() as c:
        stored = {r[1]: r[2:] for r in c.exec_driver_sql("SELECT * FROM audit").fetchall()}
    assert stored["fast"] == stored["sqlalchemy"] and stored["fast"][0] == "2026-11-27 01:02:03.456789"
    with pytest.raises(Exception):  # noqa: B017 - the driver's IntegrityError: a NOT NULL column missing
        store.audit([{**row, "request_id": "ok"}, {**row, "request_id": None}])
    assert [r["request_id"] for r in store.audit_rows()] == ["fast", "sqlalchemy"]  # the batch rolled back whole


def test_bad_database_urls_are_named():
    with pytest.raises(ConfigError, match="not a database URL"):
        Store("nosuchdb://x")
    with pytest.raises(ConfigError, match="cannot open"):
        Store(f"postgresql://nobody@127.0.0.1:{_free_port()}/x")


def test_no_audit_row_lost_when_killed_mid_load(db_url, runs_root, tmp_path, record):
    """Clients hammer a real uvicorn process; it is killed with SIGKILL mid-load. Every request that got a 200
    has its audit row (rows are committed before the response is sent)."""
    store = Store(db_url)
    key = store.create_key("load")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medflow", "serve", str(runs_root["risk"]), "--db", db_url,
                             "--port", str(port), "--rate", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"service did not start: {proc.stderr.read().decode()[-2000:]}")
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=5) as c:
            while not stop.is_set():
                try:
                    r = c.post("/models/risk/predict", json={"records": [record]})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    answered.append(r.json()["request_id"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    while len(answered) < 40:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    audited = {r["request_id"] for r in Store(db_url).audit_rows()}
    assert len(answered) >= 40
    assert set(answered) <= audited, f"{len(set(answered) - audited)} answered requests have no audit row"


def test_two_worker_processes_share_one_audit_trail(runs_root, tmp_path, record):
    """`--workers 2`: two processes answer (each its own pid in /health), each runs one OpenMP thread (its
    environment says so), and their audit rows land in one SQLite file without loss or duplicates."""
    db = str(tmp_path / "w.db")
    key = Store(db).create_key("two")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    proc = subprocess.Popen([sys.executable, "-m", "medflow", "serve", str(runs_root["risk"]), "--db", db,
                             "--port", str(port), "--rate", "0", "--workers", "2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**env, "PYTHONPATH": os.pathsep.join(sys.path)})
    base = f"http://127.0.0.1:{port}"
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline:
            try:
                workers.add(httpx.get(base + "/health", timeout=2).json()["worker"])  # a new connection each
            except httpx.HTTPError:
                time.sleep(0.2)
        assert len(workers) == 2, f"saw workers {workers}: {proc.stderr.read1().decode()[-2000:]}"
        for pid in workers:
            assert b"OMP_NUM_THREADS=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        answered: list[tuple[str, float, float]] = []

        def client(i: int) -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
                for j in range(25):
                    x = -2 + (i * 25 + j) / 50
                    r = c.post("/models/risk/predict", json={"records": [{**record, "x1": x}]})
                    assert r.status_code == 200, r.text
                    answered.append((r.json()["request_id"], x, r.json()["predictions"][0]["probability"]))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert len(answered) == 100 and len({a[0] for a in answered}) == 100
    rows = Store(db).audit_rows()
    assert sorted(r["request_id"] for r in rows) == sorted(a[0] for a in answered)
    want = load_run(runs_root["risk"]).predict(pd.DataFrame([{**record, "x1": a[1]} for a in answered]))
    np.testing.assert_allclose([a[2] for a in answered], want["probability"], atol=1e-5)
