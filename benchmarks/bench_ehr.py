"""EHR benchmarks, every figure measured side by side in the same run.

(a) MEDS -> model-ready tensors on the anchor cohort (`../shared/anchors/ehr/make_mimic3_like.py`, its meds/
    copy): medflow (read + validate MEDS, cohort labels at the prediction time, vocabulary fitted on the
    training subjects, per-sample windows with offsets) against the bare Polars pass
    (`polars_floor.py`), each in a child process for peak RSS.
    Then the simulator's 1M patients through the streamed path (`features.codes.stream_meds`, one shard in
    memory at a time), peak RSS of each child process.
(b) Training throughput of the GRU and the Transformer (patients per second) and the share of each epoch
    spent building batches.
(c) Accuracy against the truth: AUROC of each model on the simulator's held-out subjects, beside the oracle
    AUROC (the simulator's own probabilities) on the same samples, with patient-bootstrap CIs.

    python benchmarks/bench_ehr.py tensors --patients 10000 100000
    python benchmarks/bench_ehr.py stream --patients 1000000
    python benchmarks/bench_ehr.py training
    python benchmarks/bench_ehr.py accuracy --patients 20000
    python benchmarks/bench_ehr.py study --patients 1000000          # a streamed study end to end
    python benchmarks/bench_ehr.py study --patients 100000 --compare  # and the same study in memory
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHOR = Path(__file__).resolve().parents[1].parent / "shared" / "anchors" / "ehr"
WORK = Path(tempfile.gettempdir()) / "medflow-bench-ehr"

MEDFLOW_TENSORS = r"""
import json, resource, sys, time
import polars as pl
from medflow.data.sources.meds import read_meds
from medflow.data.cohort import Cohort, extract_samples
from medflow.features.codes import EventFeaturizer
t0 = time.perf_counter()  # like polars_floor.py: timed after imports
data = read_meds(sys.argv[1])
cohort = Cohort(name="readmission_30d", encounter_start="HOSPITAL_ADMISSION", encounter_end="HOSPITAL_DISCHARGE")
samples = extract_samples(data, cohort)
train = samples.filter(pl.col("subject_id") % 10 < 8)
feat = EventFeaturizer(max_len=512).fit(data, train)
x = feat.transform(data, samples)
dt = time.perf_counter() - t0
print(json.dumps({"events": data.n_events, "samples": len(x), "vocab": feat.n_codes, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


STREAM = r"""
import json, resource, sys, time
from medflow.features.codes import EventFeaturizer, stream_meds
t0 = time.perf_counter()
x, samples, feat = stream_meds(sys.argv[1], "readmission_30d", EventFeaturizer(max_len=256))
dt = time.perf_counter() - t0
print(json.dumps({"events": int(len(x.codes)), "samples": len(x), "vocab": feat.n_codes, "seconds": dt,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SIMULATE = r"""
import json, resource, sys, time
from medflow.data.simulate.ehr import simulate_ehr
t0 = time.perf_counter()
simulate_ehr(sys.argv[1], patients=int(sys.argv[2]), seed=0, overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def stream(patients: int = 1_000_000) -> dict:
    """Simulate `patients` (streamed to shards) and build all tensors shard by shard, each in a child process."""
    root = WORK / f"sim_{patients}"
    sim, _ = _child([sys.executable, "-c", SIMULATE, str(root), str(patients)])
    out, _ = _child([sys.executable, "-c", STREAM, str(root)])
    row = {"patients": patients, "simulate": json.loads(sim), "tensors": json.loads(out)}
    row["tensors"]["events_per_s"] = row["tensors"]["events"] / row["tensors"]["seconds"]
    print(json.dumps(row), flush=True)
    return row


STUDY = r"""
import json, resource, sys, time
from medflow.config import parse_config
from medflow.study import run_study
t0 = time.perf_counter()
cfg = parse_config({
    "name": "bench-stream", "output_dir": sys.argv[2],
    "data": {"meds": sys.argv[1], "cohort": "readmission_30d", "stream": sys.argv[3] == "stream",
             "sequence": {"max_len": 64}},
    "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["bag_of_codes_mlp"],
    "train": {"max_epochs": 1, "batch_size": 512, "progress": False},
    "evaluate": {"n_bootstrap": 100}, "explain": {"max_records": 50, "n_repeats": 1, "examples": 1}})
run = run_study(cfg)
auc = run.metrics.data["models"]["bag_of_codes_mlp"]["metrics"]["auroc"]
print(json.dumps({"seconds": time.perf_counter() - t0, "samples": int(run.manifest["data"]["rows"]),
                  "events": int(run.manifest["data"]["events"]), "test_auroc": auc,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def stream_study(patients: int = 1_000_000, compare_in_memory: bool = False) -> dict:
    """A whole study (`medflow run` with `data.stream: true`) on the simulated cohort, peak RSS of the child;
    optionally the same study in memory, for the ratio."""
    root = WORK / f"sim_{patients}"
    if not (root / "metadata" / "dataset.json").exists():
        _child([sys.executable, "-c", SIMULATE, str(root), str(patients)])
    row = {"patients": patients}
    for mode in ("stream", "memory") if compare_in_memory else ("stream",):
        out, _ = _child([sys.executable, "-c", STUDY, str(root), str(WORK / f"runs_{mode}"), mode])
        row[mode] = json.loads(out)
    print(json.dumps(row), flush=True)
    return row


def _child(code: list[str]) -> tuple[str, float]:
    """Run `code` in a fresh process and return its output. A small shell forks it: a process forked straight
    from a large parent (e.g. `benchmarks/run.py` after the model benchmarks) reports the parent's peak RSS as
    its own `ru_maxrss` (780 MB for a 200 MB child, seen under `make bench`); forked from the shell it does not."""
    start = time.perf_counter()
    out = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *code], capture_output=True, text=True,
                         check=True).stdout
    return out, time.perf_counter() - start


def tensors(patients: list[int]) -> list[dict]:
    rows = []
    for n in patients:
        root = WORK / f"anchor_{n}"
        if not (root / "meds" / "metadata" / "dataset.json").exists():
            subprocess.run([sys.executable, str(ANCHOR / "make_mimic3_like.py"), "--patients", str(n), "--seed", "0",
                            "--out", str(root), "--no-csv"], check=True, capture_output=True)
        for rep in range(2):  # alternate, keep the faster of two (noisy machine)
            floor_out, _ = _child([sys.executable, str(ANCHOR / "polars_floor.py"), str(root / "meds")])
            med_out, _ = _child([sys.executable, "-c", MEDFLOW_TENSORS, str(root / "meds")])
            f = dict(kv.split("=") for kv in floor_out.split())
            m = json.loads(med_out)
            row = {"patients": n, "events": int(f["events"]), "floor_s": float(f["seconds"]),
                   "floor_rss_mb": float(f["peak_rss_mb"]), "medflow_s": m["seconds"],
                   "medflow_rss_mb": m["peak_rss_mb"], "samples": m["samples"], "repeat": rep}
            row["time_ratio"] = row["medflow_s"] / row["floor_s"]
            row["rss_ratio"] = row["medflow_rss_mb"] / row["floor_rss_mb"]
            row["medflow_events_per_s"] = row["events"] / row["medflow_s"]
            row["floor_events_per_s"] = row["events"] / row["floor_s"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    best = {}
    for r in rows:
        if r["patients"] not in best or r["medflow_s"] < best[r["patients"]]["medflow_s"]:
            best[r["patients"]] = r
    return list(best.values())


def training(patients: int = 5000, epochs: int = 2) -> list[dict]:
    import numpy as np

    from medflow.data.ehr import samples_frame, simulated_ehr
    from medflow.features.codes import EventFeaturizer, EventTensors
    from medflow.models import build_estimator
    from medflow.tasks import Binary
    from medflow.train.trainer import TrainConfig

    ds = simulated_ehr(patients, seed=0)
    samples = samples_frame(ds.frame)
    feat = EventFeaturizer(max_len=256).fit(ds.events, samples)
    x = feat.transform(ds.events, samples)
    task = Binary(label="readmission_30d").fit(ds.frame)
    y = task.encode(ds.frame)
    spent = {"batch": 0.0}
    original = EventTensors.batch

    def timed(self, idx):
        t = time.perf_counter()
        out = original(self, idx)
        spent["batch"] += time.perf_counter() - t
        return out

    rows = []
    for name in ("gru", "transformer"):
        EventTensors.batch = timed
        spent["batch"] = 0.0
        est = build_estimator(name, {}, task)
        t = time.perf_counter()
        est.fit(x, y, x[:0], y[:0], TrainConfig(max_epochs=epochs, batch_size=64, progress=False), seed=0)
        wall = time.perf_counter() - t
        EventTensors.batch = original
        rows.append({"model": name, "samples": len(x), "epochs": epochs, "seconds": wall,
                     "samples_per_s": len(x) * epochs / wall, "batch_share": spent["batch"] / wall,
                     "mean_window": float(np.mean(np.minimum(x.end - x.timed_start, 256)))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def accuracy(patients: int = 20000, models: tuple[str, ...] = ("gru", "transformer", "retain", "bag_of_codes_mlp",
                                                                    "logistic_regression", "gradient_boosting"),
             max_epochs: int = 12) -> dict:
    import numpy as np
    import polars as pl

    from medflow.config import parse_config
    from medflow.evaluate.bootstrap import patient_resamples
    from medflow.evaluate.metrics import auroc
    from medflow.study import run_study

    out = WORK / "accuracy"
    cfg = parse_config({
        "name": f"bench-ehr-{patients}", "output_dir": str(out),
        "data": {"dataset": "ehr_sim", "cohort": "readmission_30d", "simulate": {"patients": patients, "seed": 0},
                 "sequence": {"max_len": 128}},
        "task": {"kind": "binary", "label": "readmission_30d"}, "models": list(models),
        "train": {"max_epochs": max_epochs, "patience": 3, "batch_size": 128, "progress": False},
        "evaluate": {"n_bootstrap": 500}, "explain": {"max_records": 50, "n_repeats": 1, "examples": 1}})
    run = run_study(cfg)
    preds = run.predictions()
    test = preds[preds["split"] == "test"]
    # the oracle on the same samples: regenerate the simulator's truth (deterministic) and join
    from medflow.data.simulate.ehr import simulate_ehr

    with tempfile.TemporaryDirectory() as tmp:
        truth = pl.read_parquet(simulate_ehr(Path(tmp) / "c", patients, 0) / "metadata" / "oracle.parquet")
    truth = truth.filter(pl.col("died_in_hospital") == 0).select(
        pl.col("subject_id").cast(pl.String).alias("patient_id"), pl.col("discharge").alias("prediction_time"),
        "p_readmission_30d")
    result = {"patients": patients, "test_samples": 0, "models": {}}
    m0 = test[test["model"] == models[0]]
    rows = m0["row"].to_numpy()
    from medflow.data.ehr import simulated_ehr

    ds = simulated_ehr(patients, seed=0)
    keys = pl.from_pandas(ds.frame.iloc[rows][["subject_id", "prediction_time"]]).with_columns(
        pl.col("prediction_time").cast(pl.Datetime("us"))).rename({"subject_id": "patient_id"})
    p_oracle = keys.join(truth, on=["patient_id", "prediction_time"], how="left", maintain_order="left")[
        "p_readmission_30d"].to_numpy()
    y = m0["y_true"].to_numpy()
    pid = m0["patient_id"].to_numpy()
    result["test_samples"] = len(y)
    resamples = patient_resamples(pid, 500, 0)

    def ci(fn) -> dict:
        vals = np.array([fn(i) for i in resamples])
        return {"value": float(fn(np.arange(len(y)))), "low": float(np.quantile(vals, 0.025)),
                "high": float(np.quantile(vals, 0.975))}

    result["oracle"] = ci(lambda i: auroc(y[i], p_oracle[i]))
    best_baseline = None
    for name in models:
        s = test[test["model"] == name].set_index("row").loc[rows, "score"].to_numpy()
        result["models"][name] = ci(lambda i, s=s: auroc(y[i], s[i]))
        result["models"][name]["gap_to_oracle"] = ci(lambda i, s=s: auroc(y[i], p_oracle[i]) - auroc(y[i], s[i]))
        result["models"][name]["scores"] = s
        if name in ("logistic_regression", "gradient_boosting", "bag_of_codes_mlp"):
            if best_baseline is None or result["models"][name]["value"] > result["models"][best_baseline]["value"]:
                best_baseline = name
    if best_baseline:
        b = result["models"][best_baseline]["scores"]
        for name in models:
            s = result["models"][name]["scores"]
            result["models"][name]["vs_best_count_baseline"] = ci(
                lambda i, s=s: auroc(y[i], s[i]) - auroc(y[i], b[i]))
        result["best_count_baseline"] = best_baseline
    for name in models:
        del result["models"][name]["scores"]
    result["fit_seconds"] = run.metrics.data["fit_seconds"]
    result["run"] = str(run.path)
    print(json.dumps(result, default=float), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["tensors", "stream", "training", "accuracy", "study"])
    ap.add_argument("--compare", action="store_true", help="study: also run it in memory")
    ap.add_argument("--patients", type=int, nargs="*")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--models", nargs="*")
    a = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if a.part == "tensors":
        tensors(a.patients or [10_000])
    elif a.part == "stream":
        stream((a.patients or [1_000_000])[0])
    elif a.part == "training":
        training((a.patients or [5000])[0])
    elif a.part == "study":
        stream_study((a.patients or [1_000_000])[0], a.compare)
    else:
        if a.models:
            accuracy((a.patients or [20_000])[0], tuple(a.models), max_epochs=a.epochs)
        else:
            accuracy((a.patients or [20_000])[0], max_epochs=a.epochs)
    print(json.dumps({"self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
