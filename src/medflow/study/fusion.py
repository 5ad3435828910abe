"""Comparing blocks of features (e.g. clinical vs gene expression) and their fusion, on the same folds.

For each of `repeats` k-fold partitions by patient, every configuration is trained on the same training
parts: each block alone, early fusion (all blocks concatenated into one network) and late fusion (one
encoder per block, joined before the head). Out-of-fold predictions give one score per configuration
and repeat; the difference between the better fusion and the best single block is estimated with a
paired bootstrap over patients (both configurations scored on the same resampled patients).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.config import BlocksConfig
from medflow.data.dataset import Dataset
from medflow.data.splits import KFold
from medflow.errors import ConfigError
from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.metrics import get_metric
from medflow.features.tabular import TabularFeaturizer
from medflow.models.base import build_estimator
from medflow.tasks.base import Task
from medflow.train.trainer import TrainConfig

__all__ = ["BlocksConfig", "compare_blocks"]


def _blocks(cfg: BlocksConfig, ds: Dataset, features: list[str]) -> dict[str, list[str]]:
    blocks = cfg.blocks or ds.meta.get("blocks")
    if not blocks or len(blocks) < 2:
        raise ConfigError(f"compare_blocks needs at least two blocks of columns; dataset '{ds.name}' declares "
                          "none, so list them under compare_blocks.blocks.")
    for name, cols in blocks.items():
        unknown = [c for c in cols if c not in features]
        if unknown:
            raise ConfigError(f"compare_blocks.blocks['{name}'] names {unknown}, which are not feature columns.")
    return {k: list(v) for k, v in blocks.items()}


def _configs(blocks: dict[str, list[str]], model: str, params: dict,
             kind: str) -> dict[str, tuple[str, dict, list[str]]]:
    from medflow.registry import models

    every = [c for cols in blocks.values() for c in cols]
    out = {f"{name} only": (model, params, cols) for name, cols in blocks.items()}
    out["early fusion"] = (model, params, every)
    if kind in models.get("late_fusion").task_kinds:  # one encoder per block (not for every task kind)
        late = {k: v for k, v in params.items() if k in ("hidden", "dropout")}
        out["late fusion"] = ("late_fusion", {**late, "blocks": blocks}, every)
    return out


def compare_blocks(ds: Dataset, task: Task, cfg: BlocksConfig, train: TrainConfig, seed: int) -> dict[str, Any]:
    """Out-of-fold scores of each block alone and of early and late fusion, with a paired bootstrap CI."""
    features = [c for c in ds.feature_types if c not in task.label_columns]
    blocks = _blocks(cfg, ds, features)
    configs = _configs(blocks, cfg.model, cfg.params, task.kind)
    frame, n = ds.frame, len(ds.frame)
    metric = get_metric(cfg.metric or task.primary_metric)
    oof: dict[str, list[np.ndarray]] = {c: [] for c in configs}
    y_all = None
    for r in range(cfg.repeats):
        folds = KFold(k=cfg.k, valid=cfg.valid).make(frame[ds.patient_id], task.strata(frame), seed + 1000 * r)
        preds = {c: np.full((n, 0), np.nan) for c in configs}
        for fold in folds:
            tr, va, te = (frame.iloc[i] for i in (fold.train, fold.valid, fold.test))
            t = task.model_copy(deep=True).fit(tr)
            ys = [t.encode(d) for d in (tr, va, te)]
            y_all = t.encode(frame) if y_all is None else y_all
            for name, (model, params, cols) in configs.items():
                feat = TabularFeaturizer({c: ds.feature_types[c] for c in cols}).fit(tr)
                est = build_estimator(model, params, t)
                est.sources = feat.output_sources
                xs = [feat.transform(d) for d in (tr, va, te)]
                est.fit(xs[0], ys[0], xs[1], ys[1], train, seed + r)
                p = np.asarray(est.predict(xs[2]))
                p = p.reshape(len(p), -1)
                if preds[name].shape[1] == 0:
                    preds[name] = np.full((n, p.shape[1]), np.nan)
                preds[name][fold.test] = p
        for name in configs:
            oof[name].append(preds[name])
    out = _summarize(oof, y_all, metric, frame[ds.patient_id].astype(str).to_numpy(), cfg, seed, configs)
    if hasattr(task, "decisions"):  # e.g. treatment effects: does a block change who is recommended treatment?
        every = task.decisions(np.mean(oof["early fusion"], axis=0))
        out["decision_changes"] = {name: float(np.mean(task.decisions(np.mean(oof[name], axis=0)) != every))
                                   for name in configs if name.endswith(" only")}
    return out


def _summarize(oof, y, metric, pid, cfg: BlocksConfig, seed: int, configs) -> dict[str, Any]:
    def score(name: str, idx: np.ndarray) -> float:
        return float(np.mean([metric(y[idx], p[idx]) for p in oof[name]]))

    everyone = np.arange(len(y))
    means = {name: score(name, everyone) for name in oof}
    sign = 1 if metric.higher_is_better else -1
    singles = [c for c in configs if c.endswith(" only")]
    best_single = max(singles, key=lambda c: sign * means[c])
    best_fusion = max((c for c in ("early fusion", "late fusion") if c in means), key=lambda c: sign * means[c])
    samples = patient_resamples(pid, cfg.n_bootstrap, seed)
    per = {name: np.array([score(name, idx) for idx in samples]) for name in oof}
    diff = per[best_fusion] - per[best_single]
    results = {name: {"value": means[name], "low": float(np.quantile(per[name], 0.025)),
                      "high": float(np.quantile(per[name], 0.975)), "columns": len(configs[name][2])}
               for name in oof}
    point = means[best_fusion] - means[best_single]
    low, high = float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))
    verdict = ("helps" if sign * low > 0 else "hurts" if sign * high < 0 else
               "makes no difference that this sample can detect")
    return {"metric": metric.name, "model": cfg.model, "k": cfg.k, "repeats": cfg.repeats,
            "n_bootstrap": cfg.n_bootstrap, "configs": results, "best_single": best_single,
            "best_fusion": best_fusion,
            "difference": {"value": point, "low": low, "high": high},
            "verdict": f"{best_fusion} vs {best_single}: fusion {verdict} "
                       f"({metric.display} difference {point:+.3f}, 95% CI {low:+.3f} to {high:+.3f})"}


