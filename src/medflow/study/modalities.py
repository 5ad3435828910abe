"""Did each modality help? Every modality alone, every set that leaves one out, and all together, trained with one
model on the same repeated k-fold patient partitions (`compare_modalities:`; the generalisation of
`compare_blocks`).

Per fold, each modality's featurizer is fitted once on the training part; a configuration is the same inputs with
the other modalities marked missing everywhere (`MultiInputs.without`), so every configuration sees exactly the
samples, folds and features of the others. Out-of-fold predictions give one score per configuration; differences
are estimated with a paired bootstrap over patients (both configurations scored on the same resampled patients):
each configuration against all modalities, each modality's added value (all minus all-but-it), the best fused set
against the best single modality. Also: the share of patients whose decision changes when a modality is removed,
and the scores on the patients who lack each modality.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medflow.config import ModalitiesConfig
from medflow.data.dataset import Dataset
from medflow.data.splits import KFold
from medflow.errors import ConfigError
from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.metrics import get_metric
from medflow.features import encode_targets, featurize, make_featurizer
from medflow.models.base import build_estimator
from medflow.tasks.base import Task
from medflow.train.trainer import TrainConfig

__all__ = ["ModalitiesConfig", "compare_modalities"]

ALL = "all modalities"


def _configs(names: list[str], leave_one_out: bool) -> dict[str, list[str]]:
    out = {f"{m} only": [m] for m in names}
    if leave_one_out and len(names) > 2:
        out.update({f"without {m}": [k for k in names if k != m] for m in names})
    out[ALL] = list(names)
    return out


def compare_modalities(ds: Dataset, task: Task, cfg: ModalitiesConfig, train: TrainConfig, seed: int,
                       data: Any = None, progress: Any = None) -> dict[str, Any]:
    """Out-of-fold scores of each modality set, with paired bootstrap CIs (see the module docstring)."""
    if ds.modalities is None or len(ds.modalities.parts) < 2:
        raise ConfigError("compare_modalities needs a dataset with at least two modalities (data: with event data, "
                          "notes, images or tables together).")
    names = list(ds.modalities.parts)
    configs = _configs(names, cfg.leave_one_out)
    frame, n = ds.frame, len(ds.frame)
    metric = get_metric(cfg.metric or task.primary_metric)
    oof: dict[str, list[np.ndarray]] = {c: [] for c in configs}
    present = np.stack([ds.modalities.parts[m].present for m in names], axis=1)
    y_all = None
    cost: dict[str, list[float]] = {c: [0.0, 0] for c in configs}  # seconds training, epochs
    for r in range(cfg.repeats):
        folds = KFold(k=cfg.k, valid=cfg.valid).make(frame[ds.patient_id], task.strata(frame), seed + 1000 * r)
        preds: dict[str, np.ndarray] = {}
        for fold in folds:
            tr, va, te = (frame.iloc[i] for i in (fold.train, fold.valid, fold.test))
            t = task.model_copy(deep=True).fit(tr)
            feat = make_featurizer(ds, [], tr, data)
            xs = [featurize(feat, ds, d) for d in (tr, va, te)]
            ys = [encode_targets(feat, t, ds, d) for d in (tr, va, te)]
            y_all = t.encode(frame) if y_all is None else y_all
            for name, keep in configs.items():
                drop = [m for m in names if m not in keep]
                x_tr, x_va, x_te = (x.without(drop) for x in xs)
                est = build_estimator(cfg.model, cfg.params, t)
                start = time.perf_counter()
                est.fit(x_tr, ys[0], x_va, ys[1], train, seed + r)
                cost[name][0] += time.perf_counter() - start
                cost[name][1] += max(len(getattr(est, "history", []) or []), 1)
                p = np.asarray(est.predict(x_te))
                p = p.reshape(len(p), -1)
                if name not in preds:
                    preds[name] = np.full((n, p.shape[1]), np.nan)
                preds[name][fold.test] = p
                if progress is not None:
                    progress()
        for name in configs:
            oof[name].append(preds[name])
    pid = frame[ds.patient_id].astype(str).to_numpy()
    out = _summarize(oof, y_all, metric, pid, present, names, configs, cfg, seed, task)
    for c, (seconds, epochs) in cost.items():
        out["configs"][c]["seconds_per_epoch"] = seconds / epochs
    singles = sum(out["configs"][f"{m} only"]["seconds_per_epoch"] for m in names)
    out["cost"] = {"all_seconds_per_epoch": out["configs"][ALL]["seconds_per_epoch"],
                   "singles_seconds_per_epoch": singles,
                   "ratio": out["configs"][ALL]["seconds_per_epoch"] / singles if singles else float("nan")}
    return out


def _squeeze(p: np.ndarray) -> np.ndarray:
    return p[:, 0] if p.shape[1] == 1 else p


def _summarize(oof, y, metric, pid, present, names, configs, cfg: ModalitiesConfig, seed: int,
               task: Task) -> dict[str, Any]:
    mean = {c: _squeeze(np.mean(v, axis=0)) for c, v in oof.items()}

    def score(name: str, idx: np.ndarray) -> float:
        return float(metric(y[idx], mean[name][idx]))

    sign = 1 if metric.higher_is_better else -1
    everyone = np.arange(len(y))
    point = {c: score(c, everyone) for c in configs}
    samples = list(patient_resamples(pid, cfg.n_bootstrap, seed))
    per = {c: np.array([score(c, idx) for idx in samples]) for c in configs}

    def interval(values: np.ndarray, value: float) -> dict[str, float]:
        return {"value": value, "low": float(np.quantile(values, 0.025)), "high": float(np.quantile(values, 0.975))}

    singles = [c for c, keep in configs.items() if len(keep) == 1]
    fused = [c for c, keep in configs.items() if len(keep) > 1]
    best_single = max(singles, key=lambda c: sign * point[c])
    best_fused = max(fused, key=lambda c: sign * point[c])
    decide = getattr(task, "decisions", None)
    if decide is None and task.kind == "binary":
        def decide(p: np.ndarray) -> np.ndarray:
            return p >= 0.5
    results = {}
    for c, keep in configs.items():
        r = {"set": ", ".join(keep), **interval(per[c], point[c])}
        if c != ALL:
            r["vs_all"] = interval(per[c] - per[ALL], point[c] - point[ALL])
            if decide is not None:
                r["decisions_changed"] = float(np.mean(decide(mean[c]) != decide(mean[ALL])))
        results[c] = r
    added = {}
    for m in names:
        other = f"without {m}" if f"without {m}" in configs else (
            f"{next(k for k in names if k != m)} only" if len(names) == 2 else None)
        if other is not None:
            added[m] = interval(per[ALL] - per[other], point[ALL] - point[other])
    missing = {}
    for j, m in enumerate(names):
        lack = np.flatnonzero(~present[:, j])
        if len(lack) >= 20 and len(np.unique(y[lack])) > 1:
            boots = [lack[idx] for idx in patient_resamples(pid[lack], min(cfg.n_bootstrap, 500), seed)]
            boots = [b for b in boots if len(np.unique(y[b])) > 1]
            missing[m] = {"n": int(len(lack)), **{c: interval(np.array([score(c, b) for b in boots]), score(c, lack))
                                                  for c in dict.fromkeys((best_single, best_fused))}}
    diff = per[best_fused] - per[best_single]
    d, low, high = point[best_fused] - point[best_single], float(np.quantile(diff, 0.025)), float(
        np.quantile(diff, 0.975))
    verdict = ("helps" if sign * low > 0 else "hurts" if sign * high < 0 else
               "makes no difference that this sample can detect")
    return {"metric": metric.name, "model": cfg.model, "k": cfg.k, "repeats": cfg.repeats,
            "n_bootstrap": cfg.n_bootstrap, "modalities": names, "configs": results, "best_single": best_single,
            "best_fused": best_fused, "difference": {"value": d, "low": low, "high": high}, "added_value": added,
            "missing": missing,
            "verdict": f"{best_fused} vs {best_single}: fusion {verdict} ({metric.display} difference {d:+.3f}, "
                       f"95% CI {low:+.3f} to {high:+.3f})"}
