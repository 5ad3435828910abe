"""(i) The decision-support service under load (issue #16), loopback only, wrk from Debian's packages.

Measured in one run, on the same machine and settings:
- the bare predictor: `Run.predict` on one record, called in a loop (p50/p99 latency, calls per second);
- a bare FastAPI endpoint returning a constant, under the same uvicorn (the ceiling for any endpoint here), in one
  process and in two, and under uvicorn's pure-Python loop and HTTP parser;
- `medflow serve` answering one-record predictions with a key, schema validation, an audit row committed per
  request in SQLite (micro-batched: one transaction per batch), and Prometheus metrics, in one process and with
  `--workers 2`,
at 1, 8 and 32 concurrent connections, for a deep tabular model (breast cancer MLP) and an event-data model
(GRU on SYNTHETIC EHR events). Reports requests/s, p50 and p99 latency, errors, and audit rows against requests;
then the table model's ratio to the constant endpoint with both servers up and 10-s wrk runs alternating between
them (3 rounds per connection count), the figure least moved by the machine's drift.

    python benchmarks/bench_service.py [--seconds 30]
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # as `medflow serve` runs it, so the bare predictor is comparable
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
LUA = """wrk.method = "POST"
wrk.body = io.open("{body}"):read("*a")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
CONSTANT_APP = """import os
from fastapi import FastAPI
app = FastAPI()
@app.post("/predict")
def predict() -> dict:
    return {"probability": 0.5}
@app.get("/health")
def health() -> dict:
    return {"worker": os.getpid()}
"""


def _runs(root: Path) -> dict[str, Path]:
    from medflow.config import parse_config
    from medflow.study import run_study

    common = {"output_dir": str(root / "runs"), "evaluate": {"n_bootstrap": 50}}
    table = run_study(parse_config({**common, "name": "bench-table", "data": {"dataset": "breast_cancer"},
                                    "task": {"kind": "binary", "label": "malignant"}, "models": ["mlp"],
                                    "split": {"kind": "holdout", "test": 0.2, "valid": 0.15},
                                    "train": {"max_epochs": 30, "progress": False}}, "bench"))
    events = run_study(parse_config({**common, "name": "bench-events", "data": {
        "dataset": "ehr_sim", "cohort": "readmission_30d", "simulate": {"patients": 600, "seed": 0},
        "sequence": {"max_len": 64}, "use_source_splits": False}, "task": {"kind": "binary", "label":
                                                                            "readmission_30d"},
        "models": ["gru"], "split": {"kind": "holdout", "test": 0.25, "valid": 0.2},
        "train": {"max_epochs": 3, "batch_size": 64, "progress": False}}, "bench"))
    return {"table": table.path, "events": events.path}


def _bodies(runs: dict[str, Path]) -> dict[str, dict]:
    from medflow.data.builtin import load
    from medflow.data.ehr import simulated_ehr

    ds = load("breast_cancer")
    record = ds.frame.drop(columns=["malignant", ds.patient_id]).iloc[7].to_dict()
    events = simulated_ehr(patients=600, seed=0).events.events
    import polars as pl

    sid = events.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END")["subject_id"][0]
    rows = [{"subject_id": "p1", "time": None if t is None else t.isoformat(), "code": c,
             "numeric_value": None if v is None else float(v)}
            for _, t, c, v in events.filter(pl.col("subject_id") == sid).iter_rows()]
    return {"table": {"records": [record]}, "events": {"meds": rows}}


def _bare(run_dir: Path, body: dict, n: int = 300) -> dict:
    """Run.predict alone, one request's worth of input per call (events: the patient's events read as the
    service reads them)."""
    import torch

    from medflow.runs import load_run
    from medflow.serve.schema import InputSchema

    torch.set_num_threads(1)
    run = load_run(run_dir)
    schema = InputSchema(run)
    if schema.kind == "events":
        from medflow.serve.events import events_dataset, events_from_body

        def call():
            return run.predict(events_dataset(run, events_from_body(body)[0]))
    else:
        import pandas as pd

        def call():
            return run.predict(pd.DataFrame(body["records"]))
    for _ in range(20):
        call()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    t = np.asarray(times) * 1000
    return {"p50_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "rps": 1000 / float(t.mean())}


def _wait(url: str, proc: subprocess.Popen, workers: int = 1) -> None:
    """Until the server answers, and with several workers until each has answered (`worker` in /health): a
    worker still importing while wrk runs would be measured as a slow server."""
    import httpx

    seen: set = set()
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            r = httpx.get(url, timeout=1)  # a new connection each time, so every worker gets to accept one
            seen.add(r.json().get("worker"))  # both servers' /health name the answering process
            if len(seen) >= workers:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer from {workers} worker(s)")


def _wrk(url: str, lua: Path, conns: int, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", f"{seconds}s", "--latency",
                          "-s", str(lua), url], capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"conns": conns, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "requests": total,
            "errors": (int(errors.group(1)) if errors else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def _serve(args: list[str], port: int, root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(root)])}
    return subprocess.Popen(args + ["--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, cwd=root)


def run(seconds: int = 30, conns: tuple[int, ...] = (1, 8, 32)) -> dict:
    from medflow.serve.store import Store

    root = Path(tempfile.mkdtemp(prefix="bench-service-"))
    runs = _runs(root)
    bodies = _bodies(runs)
    (root / "constant_app.py").write_text(CONSTANT_APP)
    result: dict = {"bare_predict": {}, "constant": [], "service": {}, "audit": {}}
    py = sys.executable
    port = 18700
    (root / "empty.json").write_text("{}")
    lua = root / "constant.lua"
    lua.write_text(LUA.format(body=root / "empty.json", key="none"))
    # the bare endpoint under the service's uvicorn (uvloop, httptools) in one process and in two, and under
    # uvicorn's pure-Python loop and parser (what a FastAPI install without uvicorn[standard] runs)
    for label, workers, extra in [("constant", 1, []), ("constant, 2 workers", 2, []),
                                  ("constant, pure-Python uvicorn", 1, ["--loop", "asyncio", "--http", "h11"])]:
        port += 1
        proc = _serve([py, "-m", "uvicorn", "constant_app:app", "--host", "127.0.0.1", "--log-level", "warning",
                       "--workers", str(workers), *extra], port, root)
        try:
            _wait(f"http://127.0.0.1:{port}/health", proc, workers)
            result[label] = [_wrk(f"http://127.0.0.1:{port}/predict", lua, c, seconds) for c in conns]
        finally:
            proc.terminate()
            proc.wait()
    for kind, run_dir, workers in [("table", runs["table"], 1), ("events", runs["events"], 1),
                                   ("table, 2 workers", runs["table"], 2)]:
        if kind in runs:
            result["bare_predict"][kind] = _bare(run_dir, bodies[kind])
        db = root / f"{kind}.db"
        key = Store(str(db)).create_key("bench")
        port += 1
        proc = _serve([py, "-m", "medflow", "serve", str(run_dir), "--db", str(db), "--rate", "0",
                       "--workers", str(workers)], port, root)
        try:
            _wait(f"http://127.0.0.1:{port}/health", proc, workers)
            body = root / f"{kind.split(',')[0]}.json"
            body.write_text(json.dumps(bodies[kind.split(",")[0]]))
            lua = root / f"{kind}.lua"
            lua.write_text(LUA.format(body=body, key=key))
            name = "bench-events" if kind == "events" else "bench-table"
            result["service"][kind] = [_wrk(f"http://127.0.0.1:{port}/models/{name}/predict", lua, c, seconds)
                                       for c in conns]
        finally:
            proc.terminate()
            proc.wait()
        rows = len(Store(str(db)).audit_rows())
        result["audit"][kind] = {"rows": rows, "requests": sum(r["requests"] for r in result["service"][kind])}
    result["paired"] = _paired(root, runs["table"], conns, port + 1)
    return result


def _paired(root: Path, run_dir: Path, conns: tuple[int, ...], port: int, rounds: int = 3, seconds: int = 10
            ) -> list[dict]:
    """The ratio to the constant endpoint with both servers up at once and wrk runs alternating between them
    (the order swapped each round): this shared machine's speed drifts by a third over minutes, which the
    blocks above, one server after the other, fold into their ratios."""
    from medflow.serve.store import Store

    py = sys.executable
    db = root / "paired.db"
    key = Store(str(db)).create_key("bench")
    (root / "paired.lua").write_text(LUA.format(body=root / "table.json", key=key))
    const = _serve([py, "-m", "uvicorn", "constant_app:app", "--host", "127.0.0.1", "--log-level", "warning"], port,
                   root)
    served = _serve([py, "-m", "medflow", "serve", str(run_dir), "--db", str(db), "--rate", "0"], port + 1, root)
    out = []
    try:
        _wait(f"http://127.0.0.1:{port}/health", const)
        _wait(f"http://127.0.0.1:{port + 1}/health", served)
        targets = {"constant": (f"http://127.0.0.1:{port}/predict", root / "constant.lua"),
                   "medflow": (f"http://127.0.0.1:{port + 1}/models/bench-table/predict", root / "paired.lua")}
        for name in targets:  # warm both up (first connections, caches, the model's first calls)
            _wrk(*targets[name], 8, 3)
        for c in conns:
            ratios, got = [], {"constant": [], "medflow": []}
            for r in range(rounds):
                order = ["constant", "medflow"] if r % 2 == 0 else ["medflow", "constant"]
                this = {name: _wrk(*targets[name], c, seconds) for name in order}
                for name in order:
                    got[name].append(this[name]["rps"])
                ratios.append(this["medflow"]["rps"] / this["constant"]["rps"])
            out.append({"conns": c, "constant_rps": got["constant"], "medflow_rps": got["medflow"],
                        "ratios": ratios, "median_ratio": float(np.median(ratios))})
    finally:
        for proc in (const, served):
            proc.terminate()
            proc.wait()
    return out


def markdown(r: dict) -> list[str]:
    lines = ["| endpoint | connections | requests/s | p50 ms | p99 ms | errors | vs constant endpoint |",
             "|---|---|---|---|---|---|---|"]
    const = {c["conns"]: c for c in r["constant"]}
    for c in r["constant"]:
        lines.append(f"| bare FastAPI constant | {c['conns']} | {c['rps']:.0f} | {c['p50_ms']:.2f} | "
                     f"{c['p99_ms']:.2f} | {c['errors']} | 1.00x |")
    for label in ("constant, 2 workers", "constant, pure-Python uvicorn"):
        for c in r.get(label, []):
            lines.append(f"| bare FastAPI {label} | {c['conns']} | {c['rps']:.0f} | {c['p50_ms']:.2f} | "
                         f"{c['p99_ms']:.2f} | {c['errors']} | {c['rps'] / const[c['conns']]['rps']:.2f}x |")
    for kind, rows in r["service"].items():
        for c in rows:
            lines.append(f"| medflow serve, {kind} | {c['conns']} | {c['rps']:.0f} | {c['p50_ms']:.2f} | "
                         f"{c['p99_ms']:.2f} | {c['errors']} | {c['rps'] / const[c['conns']]['rps']:.2f}x |")
    lines += ["", "| model | bare Run.predict p50 ms | p99 ms | calls/s (1 thread) | service p50 at 1 connection | "
              "overhead p50 ms |", "|---|---|---|---|---|---|"]
    for kind, b in r["bare_predict"].items():  # one worker process
        s1 = r["service"][kind][0]
        lines.append(f"| {kind} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} | {b['rps']:.0f} | {s1['p50_ms']:.2f} | "
                     f"**{s1['p50_ms'] - b['p50_ms']:.2f}** |")
    if r.get("paired"):
        lines += ["", "| connections | constant req/s (each round) | medflow req/s (each round) | ratio per round | "
                  "**median ratio** |", "|---|---|---|---|---|"]
        for p in r["paired"]:
            lines.append(f"| {p['conns']} | {' / '.join(f'{v:.0f}' for v in p['constant_rps'])} | "
                         f"{' / '.join(f'{v:.0f}' for v in p['medflow_rps'])} | "
                         f"{' / '.join(f'{v:.2f}' for v in p['ratios'])} | **{p['median_ratio']:.2f}x** |")
    lines += ["", "| service | audit rows | requests wrk counted | connections (in flight at each stop) |",
              "|---|---|---|---|"]
    for kind, a in r["audit"].items():
        lines.append(f"| {kind} | {a['rows']} | {a['requests']} | {sum(c['conns'] for c in r['service'][kind])} |")
    return lines


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=30)
    args = p.parse_args()
    res = run(args.seconds)
    print(json.dumps(res, indent=1))
    print("\n".join(markdown(res)))
