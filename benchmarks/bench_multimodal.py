"""(w) Multimodal fusion on the simulator with known cross-modal truth (issue #38). SYNTHETIC.

Patients of `data.simulate.multimodal` (default 2,000, seed 0): events, notes (85%), chest-image phantoms (60%),
lab panels (90%) and a 40-gene panel (40%), each carrying one latent factor of the outcome; planted items after the
prediction time that reveal the outcome (the leakage guard keeps them out).

1. `compare_modalities` with `fusion_masked` (5-fold by patient, out-of-fold AUROC, 1,000 patient bootstrap
   resamples): every modality alone, every leave-one-out set, all together; each modality's added value (paired
   CI); scores on the patients missing each modality; training seconds per epoch of the fused model against the
   sum of its encoders trained alone.
2. The fused models on the same folds: `fusion_late`, `fusion_masked`, `fusion_attention`, and HAIM's design
   (Soenksen et al. 2022: per-modality embeddings concatenated into a gradient-boosted model; here medflow's
   per-modality features: count features of the events, TF-IDF of the notes, 8 x 8 block-averaged pixels, the
   tables' columns, a presence flag each) with scikit-learn's histogram gradient boosting. Paired difference of
   each to HAIM's design.
3. Two oracles, with the modalities each patient has: the Bayes rule given the latent factors themselves, and the
   Bayes rule given what the data reveal (the count of decompensation codes, the written severity level, the
   opacity's radius, the latest creatinine, the five signature genes: each latent's posterior, the outcome's
   probability averaged over them). The second is the ceiling for a model reading these data.
4. Prediction latency per patient: `Run.predict` on one patient's multimodal record (median of 50), in bulk, and
   through the service (`POST /models/{name}/predict` with every modality, median of 50).

    python benchmarks/bench_multimodal.py [--patients 2000] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MODELS = ["fusion_late", "fusion_masked", "fusion_attention", "gradient_boosting"]


def fused_models(ds, epochs: int, seed: int = 0) -> dict:
    """Out-of-fold predictions of each model on all modalities, on compare_modalities' folds (same seed)."""
    from medflow.data.splits import KFold
    from medflow.features import encode_targets, featurize, make_featurizer
    from medflow.models.base import build_estimator
    from medflow.tasks import Binary
    from medflow.train.trainer import TrainConfig

    task = Binary(label="outcome")
    frame = ds.frame
    folds = KFold(k=5, valid=0.15).make(frame[ds.patient_id], task.strata(frame), seed)
    train = TrainConfig(max_epochs=epochs, patience=5, progress=False)
    oof = {m: np.full(len(frame), np.nan) for m in MODELS}
    seconds = dict.fromkeys(MODELS, 0.0)
    for fold in folds:
        tr, va, te = (frame.iloc[i] for i in (fold.train, fold.valid, fold.test))
        t = task.model_copy(deep=True).fit(tr)
        feat = make_featurizer(ds, [], tr)
        xs = [featurize(feat, ds, d) for d in (tr, va, te)]
        ys = [encode_targets(feat, t, ds, d) for d in (tr, va, te)]
        for m in MODELS:
            start = time.perf_counter()
            est = build_estimator(m, {}, t).fit(xs[0], ys[0], xs[1], ys[1], train, seed)
            seconds[m] += time.perf_counter() - start
            oof[m][fold.test] = est.predict(xs[2])
        print(f"  fold {fold.index}: done", file=sys.stderr)
    y = task.fit(frame).encode(frame)
    return {"oof": oof, "y": y, "seconds": seconds}


def paired(y, oof, pid, reference: str, n_boot: int = 1000, seed: int = 0) -> dict:
    from medflow.evaluate.bootstrap import patient_resamples
    from medflow.evaluate.metrics import auroc

    boots = list(patient_resamples(pid, n_boot, seed))
    out = {}
    for m, p in oof.items():
        per = np.array([auroc(y[i], p[i]) for i in boots])
        ref = np.array([auroc(y[i], oof[reference][i]) for i in boots])
        d = per - ref
        out[m] = {"auroc": float(auroc(y, p)), "low": float(np.quantile(per, 0.025)),
                  "high": float(np.quantile(per, 0.975)), "vs_ref": float(auroc(y, p) - auroc(y, oof[reference])),
                  "vs_low": float(np.quantile(d, 0.025)), "vs_high": float(np.quantile(d, 0.975))}
    return out


def latency(ds, epochs: int) -> dict:
    """Median seconds of `Run.predict` on one patient (fusion_masked), through a finished run."""
    import medflow as mf

    with tempfile.TemporaryDirectory() as tmp:
        run = mf.Study(dataset=ds, task=mf.tasks.Binary(label="outcome"), model="fusion_masked",
                       train={"max_epochs": min(epochs, 5), "progress": False}, output_dir=tmp,
                       explain={"examples": 0}).fit()
        one = ds.frame.iloc[[0]]
        from medflow.data.dataset import Dataset

        sub = Dataset(frame=one, name=ds.name, patient_id=ds.patient_id, feature_types=ds.feature_types,
                      source=ds.source, synthetic=True, meta=ds.meta, modalities=ds.modalities)
        times = []
        for _ in range(50):
            start = time.perf_counter()
            run.predict(sub)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        run.predict(ds)
        whole = (time.perf_counter() - start) / len(ds.frame)
        service = _service_latency(run.path, ds, tmp)
    return {"one_patient_ms": 1000 * float(np.median(times)), "per_patient_in_bulk_ms": 1000 * whole,
            "service_ms": service}


def _service_latency(path, ds, tmp: str) -> float:
    """Median ms of POST /models/{name}/predict with one patient's record (events, notes, image as PNG, labs,
    omics), in-process through FastAPI's test client (validation, join, prediction, audit row in SQLite)."""
    from fastapi.testclient import TestClient

    from medflow.serve import ServiceConfig, Store, create_app
    from medflow.serve.multimodal import record_body

    cfg = ServiceConfig(db=str(Path(tmp) / "s.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("bench")
    full = np.flatnonzero(np.all([m.present for m in ds.modalities.parts.values()], axis=0))
    bodies = [record_body(ds, int(i)) for i in full[:20]]
    times = []
    with TestClient(create_app([path], cfg)) as c:
        for k in range(60):
            start = time.perf_counter()
            r = c.post(f"/models/{ds.name}/predict", headers={"Authorization": f"Bearer {key}"},
                       json=bodies[k % len(bodies)])
            times.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
    return 1000 * float(np.median(times[10:]))


def run(patients: int = 2000, epochs: int = 30) -> dict:
    """Every figure of the section (see the module docstring)."""
    from medflow.config import ModalitiesConfig
    from medflow.data.builtin_multimodal import simulated_multimodal
    from medflow.study.modalities import compare_modalities
    from medflow.tasks import Binary
    from medflow.train.trainer import TrainConfig

    ds = simulated_multimodal(patients, seed=0)
    result: dict = {"patients": patients, "oracle": ds.meta["oracle"], "coverage": ds.modalities.coverage()}
    start = time.perf_counter()
    train = TrainConfig(max_epochs=epochs, patience=5, progress=False)
    result["compare"] = compare_modalities(ds, Binary(label="outcome"), ModalitiesConfig(k=5), train, 0)
    result["compare_seconds"] = time.perf_counter() - start
    print(result["compare"]["verdict"], file=sys.stderr)
    fused = fused_models(ds, epochs)
    pid = ds.frame[ds.patient_id].astype(str).to_numpy()
    result["fused"] = paired(fused["y"], fused["oof"], pid, "gradient_boosting")
    result["fused_seconds"] = fused["seconds"]
    result["latency"] = latency(ds, epochs)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default=str(HERE / "results" / "multimodal.json"))
    args = ap.parse_args()
    result = run(args.patients, args.epochs)
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    print("\n".join(markdown(result)))


def markdown(r: dict) -> list[str]:
    c, o, seen = r["compare"], r["oracle"], r["oracle"].get("observed", {})
    lines = ["| configuration | AUROC (95% CI) | vs all modalities (paired CI) | decisions changed | oracle: latents | "
             "oracle: observations |", "|---|---|---|---|---|---|"]
    for name, v in c["configs"].items():
        key = name.replace(" only", "_only").replace("without ", "without_")
        key = "present_modalities" if name == "all modalities" else key
        vs = (f"{v['vs_all']['value']:+.3f} ({v['vs_all']['low']:+.3f} to {v['vs_all']['high']:+.3f})"
              if "vs_all" in v else "")
        changed = f"{v['decisions_changed']:.1%}" if "decisions_changed" in v else ""
        lines.append(f"| {name} | {v['value']:.3f} ({v['low']:.3f}-{v['high']:.3f}) | {vs} | {changed} | "
                     f"{o.get(key, float('nan')):.3f} | {seen.get(key, float('nan')):.3f} |")
    lines += ["", f"Verdict: {c['verdict']}.", "", "| modality | added value (all minus all but it) |", "|---|---|"]
    lines += [f"| {m} | {a['value']:+.3f} ({a['low']:+.3f} to {a['high']:+.3f}) |" for m, a in c["added_value"].items()]
    lines += ["", f"| patients missing | n | {c['best_single']} | {c['best_fused']} |", "|---|---|---|---|"]
    for m, v in c["missing"].items():
        cells = [f"{v[k]['value']:.3f} ({v[k]['low']:.3f}-{v[k]['high']:.3f})" for k in (c["best_single"],
                                                                                          c["best_fused"])]
        lines.append(f"| {m} | {v['n']} | " + " | ".join(cells) + " |")
    lines += ["", "| model (all modalities) | AUROC (95% CI) | vs HAIM design (paired CI) | fit s (5 folds) |",
              "|---|---|---|---|"]
    for m, v in r["fused"].items():
        name = "HAIM design: gradient boosting on per-modality features" if m == "gradient_boosting" else m
        lines.append(f"| {name} | {v['auroc']:.3f} ({v['low']:.3f}-{v['high']:.3f}) | {v['vs_ref']:+.3f} "
                     f"({v['vs_low']:+.3f} to {v['vs_high']:+.3f}) | {r['fused_seconds'][m]:.0f} |")
    k = c["cost"]
    lines += ["", f"Cost: fused model {k['all_seconds_per_epoch']:.2f} s/epoch against "
              f"{k['singles_seconds_per_epoch']:.2f} s/epoch for its encoders trained alone (ratio "
              f"{k['ratio']:.2f}x). Prediction: "
              f"{r['latency']['one_patient_ms']:.1f} ms for one patient (`Run.predict`), "
              f"{r['latency']['per_patient_in_bulk_ms']:.2f} ms per patient in bulk, "
              f"{r['latency'].get('service_ms', float('nan')):.1f} ms per request through the service (one patient "
              "with every modality: JSON, join, prediction, audit)."]
    return lines


if __name__ == "__main__":
    main()
