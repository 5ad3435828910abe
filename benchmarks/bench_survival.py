"""Survival benchmark: 5-fold patient-level CV (stratified on the event), the same folds for every model,
C-index (Harrell, Uno) and integrated Brier score per fold (mean and 95% t-interval over folds), and fit time.

Deep models hold out 15% of each training part for early stopping; the baselines, which need no
validation data, train on all of it."""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from medflow.data.builtin import load
from medflow.data.splits import KFold
from medflow.evaluate.survival import survival_metrics
from medflow.features.tabular import TabularFeaturizer
from medflow.models import build_estimator
from medflow.tasks import Survival
from medflow.train.trainer import TrainConfig

MODELS = ["cox_ph", "random_survival_forest", "deepsurv", "deephit"]
DATASETS = ["gbsg2", "flchain", "veterans"]


def _fold_scores(name: str, k: int, seed: int) -> dict[str, dict[str, list[float]]]:
    ds = load(name)
    task0 = Survival(time="time", event="event")
    frame = ds.frame
    feats = [c for c in ds.feature_types if c not in ("time", "event")]
    folds = KFold(k=k, valid=0.15).make(frame[ds.patient_id], task0.strata(frame), seed)
    out: dict[str, dict[str, list[float]]] = {m: {"c_harrell": [], "c_uno": [], "ibs": [], "fit_s": []}
                                              for m in MODELS}
    train_cfg = TrainConfig(progress=False, batch_size=128 if len(frame) > 2000 else 64)
    for fold in folds:
        tr, va, te = (frame.iloc[i] for i in (fold.train, fold.valid, fold.test))
        task = task0.model_copy(deep=True).fit(tr)
        feat = TabularFeaturizer({c: ds.feature_types[c] for c in feats}).fit(tr)
        xs = [feat.transform(d) for d in (tr, va, te)]
        ys = [task.encode(d) for d in (tr, va, te)]
        reference = np.vstack(ys)
        metrics = {m.name: m for m in survival_metrics(task.state, reference)}
        for model in MODELS:
            start = time.perf_counter()
            est = build_estimator(model, {}, task)
            if est.spec.family == "baseline":  # no early stopping: the validation rows are training rows too
                est.fit(np.vstack(xs[:2]), np.vstack(ys[:2]), xs[1][:0], ys[1][:0], train_cfg, seed)
            else:
                est.fit(xs[0], ys[0], xs[1], ys[1], train_cfg, seed)
            out[model]["fit_s"].append(time.perf_counter() - start)
            pred = est.predict(xs[2])
            for metric in ("c_harrell", "c_uno", "ibs"):
                out[model][metric].append(metrics[metric](ys[2], pred))
    return out


def _summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return {"mean": float(v.mean()), "low": float(v.mean() - half), "high": float(v.mean() + half),
            "sd": float(v.std(ddof=1))}


def run(k: int = 5, seed: int = 0) -> list[dict]:
    rows = []
    for name in DATASETS:
        scores = _fold_scores(name, k, seed)
        for model, s in scores.items():
            rows.append({"dataset": name, "model": model, **{m: _summary(v) for m, v in s.items() if m != "fit_s"},
                         "fit_s": float(np.sum(s["fit_s"]))})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row["dataset"], row["model"], round(row["c_harrell"]["mean"], 3), round(row["c_uno"]["mean"], 3),
              round(row["ibs"]["mean"], 3), round(row["fit_s"], 1))


def fusion(seed: int = 0) -> dict:
    """Clinical vs gene-expression blocks vs their fusion on breast_cancer_genomic (DeepSurv, 2 x 5-fold)."""
    from medflow.study.fusion import BlocksConfig, compare_blocks

    ds = load("breast_cancer_genomic")
    cfg = BlocksConfig(model="deepsurv", params={"hidden": 32, "depth": 1, "dropout": 0.2}, k=5, repeats=2)
    train = TrainConfig(progress=False, max_epochs=100, patience=10, weight_decay=1e-2)
    start = time.perf_counter()
    out = compare_blocks(ds, Survival(time="time", event="event"), cfg, train, seed)
    out["seconds"] = time.perf_counter() - start
    return out
