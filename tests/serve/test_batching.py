"""Micro-batching on the event loop (serve/batching.py): which work runs where, how batches are gathered, and the
rows the service answers from (`Run.predict_rows`) against `Run.predict`."""

from __future__ import annotations

import asyncio
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from medflow.runs import load_run
from medflow.serve import ServiceConfig, Store, create_app
from medflow.serve.batching import Batcher
from medflow.serve.errors import RequestError
from tests.conftest import make_frame
from tests.serve.conftest import live_server


class _Schema:
    def frame(self, records):
        return records


class _Served:
    schema = _Schema()


def _batcher(executor, **kw):
    """A Batcher over a fake model that records where each step ran; a record {"bad": True} fails prediction."""
    log: list[tuple[str, str, int]] = []

    def predict(served, records, explain):
        log.append(("predict", threading.current_thread().name, len(records)))
        if any(r.get("bad") for r in records):
            from medflow.errors import DataError

            raise DataError("request: column 'x' holds 'bad'")
        return [{"echo": r["v"]} for r in records]

    def finish(served, parts):
        log.append(("finish", threading.current_thread().name, len(parts)))
        return [[row["echo"] for row in results] for _, results in parts]

    return Batcher(_Served(), predict, finish, executor, **kw), log


def _run(coro):
    return asyncio.run(coro)


def test_requests_arriving_together_form_one_batch_predicted_on_the_loop():
    with ThreadPoolExecutor(1, thread_name_prefix="pred") as pool:
        b, log = _batcher(pool)

        async def main():
            loop_thread = threading.current_thread().name
            answers = await asyncio.gather(*[b.submit([{"v": i}], False, {}) for i in range(5)])
            alone = await b.submit([{"v": 9}], False, {})
            return loop_thread, answers, alone

        loop_thread, answers, alone = _run(main())
    assert answers == [[i] for i in range(5)] and alone == [9]  # each request gets its own rows back
    assert b.sizes == [5, 1]
    assert [entry[1] for entry in log] == [loop_thread] * 4  # no thread hand-off for cheap batches


def test_explanations_large_batches_and_remote_commits_leave_the_loop():
    with ThreadPoolExecutor(1, thread_name_prefix="pred") as pool:
        b, log = _batcher(pool, inline_records=10)
        remote, remote_log = _batcher(pool, offload_finish=True)

        async def main():
            await asyncio.gather(b.submit([{"v": 1}], True, {}), b.submit([{"v": 2}], False, {}))
            await b.submit([{"v": i} for i in range(11)], False, {})
            await remote.submit([{"v": 3}], False, {})
            return threading.current_thread().name

        loop_thread = _run(main())
    assert b.sizes == [2, 1]  # one batch gathered, split into its explained and plain parts
    singles = sorted(t == loop_thread for step, t, n in log if step == "predict" and n == 1)
    assert singles == [False, True]  # the explained request off the loop, the plain one on it
    assert [t.startswith("pred") for step, t, n in log if n == 11] == [True]  # over inline_records: off the loop
    assert [(s, t == loop_thread) for s, t, _ in remote_log] == [("predict", True), ("finish", False)]


def test_a_bad_record_fails_only_its_own_request():
    with ThreadPoolExecutor(1) as pool:
        b, _ = _batcher(pool)

        async def main():
            return await asyncio.gather(*[b.submit([{"v": i, "bad": i == 2}], False, {}) for i in range(4)],
                                        return_exceptions=True)

        got = _run(main())
    assert got[0] == [0] and got[1] == [1] and got[3] == [3]
    assert isinstance(got[2], RequestError) and got[2].status == 422 and "column 'x'" in str(got[2])


def test_requests_from_several_event_loops_are_all_answered():
    """An app driven from several threads, each with its own event loop (e.g. TestClients without `with`):
    each request is answered on its own loop with its own rows."""
    with ThreadPoolExecutor(1) as pool:
        b, _ = _batcher(pool)

        def one_loop(k: int) -> list:
            async def main():
                return await asyncio.gather(*[b.submit([{"v": 100 * k + i}], False, {}) for i in range(20)])

            return asyncio.run(main())

        with ThreadPoolExecutor(4) as loops:
            got = list(loops.map(one_loop, range(4)))
    assert got == [[[100 * k + i] for i in range(20)] for k in range(4)]


def test_an_audit_failure_answers_no_request_of_the_batch():
    with ThreadPoolExecutor(1) as pool:
        b, _ = _batcher(pool)
        b.finish = lambda served, parts: (_ for _ in ()).throw(OSError("disk full"))

        async def main():
            return await asyncio.gather(*[b.submit([{"v": i}], False, {}) for i in range(3)], return_exceptions=True)

        got = _run(main())
    assert all(isinstance(g, OSError) for g in got)


def test_prediction_threads_use_the_starting_threads_torch_setting(runs_root, tmp_path):
    """OpenMP's thread count is per thread: the service's prediction threads take the setting of the thread that
    created the service (a new thread would otherwise run a spinning OpenMP team of the machine's default)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        app = create_app([runs_root["risk"]], ServiceConfig(db=str(tmp_path / "t.db")))
        assert app.state.service.executor.submit(torch.get_num_threads).result() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("run_name, kind", [("risk", "binary"), ("surv", "survival")])
def test_predict_rows_are_predicts_rows_as_plain_values(runs_root, run_name, kind):
    run = load_run(runs_root[run_name])
    frame = make_frame(n=12, seed=5, kind=kind)
    frame.loc[3, "x1"] = np.nan  # a missing value is imputed, not passed through as NaN
    table = run.predict(frame, explain=kind == "binary")
    rows = run.predict_rows(frame, explain=kind == "binary")
    assert len(rows) == len(table) and list(rows[0]) == list(table.columns)
    for i, row in enumerate(rows):
        for col, value in row.items():
            want = table[col].iloc[i]
            if isinstance(value, float):
                assert type(value) is float and math.isclose(value, float(want), rel_tol=1e-12)
            elif col == "explanation":
                assert [e["feature"] for e in value] == [e["feature"] for e in want]
            else:
                assert value == (want.tolist() if hasattr(want, "tolist") else want), col
            assert not isinstance(value, np.generic)  # plain Python: JSON-ready


def test_mixed_concurrent_requests_each_get_their_own_answer(runs_root, tmp_path, record):
    """Plain, explained and refused requests at once, through the real server: each answer is its own record's
    `Run.predict`, explanations only where asked, the refusal names its field, one audit row per answer."""
    cfg = ServiceConfig(db=str(tmp_path / "m.db"), rate_per_minute=0)
    store = Store(cfg.db)
    key = store.create_key("ward7")
    app = create_app([runs_root["risk"]], cfg)
    xs = np.linspace(-2, 2, 60)

    def ask(i: int) -> tuple[int, dict]:
        rec = {**record, "x1": float(xs[i])}
        if i == 17:
            rec["x2"] = "high"  # not a number
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            r = c.post("/models/risk/predict", json={"records": [rec], "explain": i % 5 == 0})
            return r.status_code, r.json()

    with live_server(app) as base, ThreadPoolExecutor(12) as pool:
        got = list(pool.map(ask, range(len(xs))))
    assert got[17][0] == 422 and "x2" in got[17][1]["error"]
    ok = [i for i in range(len(xs)) if i != 17]
    assert all(got[i][0] == 200 for i in ok)
    want = load_run(runs_root["risk"]).predict(pd.DataFrame([{**record, "x1": float(xs[i])} for i in ok]))
    np.testing.assert_allclose([got[i][1]["predictions"][0]["probability"] for i in ok], want["probability"],
                               atol=1e-6)
    assert all(("explanation" in got[i][1]["predictions"][0]) == (i % 5 == 0) for i in ok)
    assert len(store.audit_rows()) == len(ok)
