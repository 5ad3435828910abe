"""One-record `Run.predict` with a scikit-learn model: threadpoolctl's thread-pool scan on every call (as medflow
did before) against once per set of loaded modules (now), alternating in one process.

    python benchmarks/bench_predict_overhead.py [--calls 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(calls: int = 500, repeats: int = 3) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    import medflow as mf
    import medflow.models.base as base

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        run = mf.Study(dataset="breast_cancer", task=mf.tasks.Binary(label="malignant"), model="logistic_regression",
                       output_dir=tmp, evaluate={"n_bootstrap": 50}).fit()
        ds = mf.datasets.load("breast_cancer")
        rec = ds.frame.drop(columns=["malignant", ds.patient_id], errors="ignore").iloc[[0]].reset_index(drop=True)

        class PerCall:  # the former behaviour: a fresh scan of the loaded libraries on every call
            def limit(self, limits: int, user_api: str):
                return threadpool_limits(limits, user_api=user_api)

        now = base._openmp_controller

        def ms() -> float:
            run.predict(rec)
            t = time.perf_counter()
            for _ in range(calls):
                run.predict(rec)
            return (time.perf_counter() - t) / calls * 1000

        res: dict[str, list[float]] = {"scan per call (before)": [], "scan once (now)": []}
        for _ in range(repeats):
            base._openmp_controller = PerCall
            res["scan per call (before)"].append(ms())
            base._openmp_controller = now
            res["scan once (now)"].append(ms())
    out = {k: statistics.median(v) for k, v in res.items()}
    for k, v in out.items():
        print(f"{k}: {v:.3f} ms per one-record Run.predict")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    main(a.calls, a.repeats)
