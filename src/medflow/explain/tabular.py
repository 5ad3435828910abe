"""Attributions for tabular models, reported on the raw features (one-hot columns summed back).

Deep models: Captum's Integrated Gradients on the output logit (the predicted class for
multiclass). Baselines: Captum's FeatureAblation on the predicted score, each raw feature
ablated as one group. Global importance, for every model alike: permutation importance
on the test split (drop in the primary metric when one raw feature is shuffled).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from medflow.models.base import DeepEstimator, Estimator

__all__ = ["attributions", "permutation_importance", "group_columns", "method_name", "explain_tabular",
           "screen_features"]


def group_columns(sources: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique raw features (in order) and, per featurized column, the index of its raw feature."""
    names = list(dict.fromkeys(sources))
    index = {n: i for i, n in enumerate(names)}
    return names, np.array([index[s] for s in sources])


def method_name(est: Estimator) -> str:
    return "integrated_gradients" if isinstance(est, DeepEstimator) else "feature_ablation"


def _target(est: Estimator, x: torch.Tensor) -> torch.Tensor | int:
    if hasattr(est.task, "explain_column"):  # treatment effects: the CATE column (deep: the effect module's output)
        return 0 if isinstance(est, DeepEstimator) else est.task.explain_column
    if est.task.kind not in ("multiclass", "multilabel"):  # multilabel: the most probable label
        return 0
    return torch.as_tensor(np.asarray(est.predict(x.numpy())).argmax(axis=1))


def attributions(est: Estimator, x: np.ndarray, sources: list[str], n_steps: int = 32) -> tuple[list[str], np.ndarray]:
    """Per-record attributions on raw features: returns (feature names, n x n_features array)."""
    from captum.attr import FeatureAblation, IntegratedGradients

    names, group = group_columns(sources)
    xt = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    baseline = torch.zeros_like(xt)  # standardized mean for numerics, no category for one-hot blocks
    if isinstance(est, DeepEstimator):
        module = est.explain_module().eval()
        ig = IntegratedGradients(module)
        cols = ig.attribute(xt, baselines=baseline, target=_target(est, xt), n_steps=n_steps).detach().numpy()
        out = np.zeros((len(x), len(names)))
        np.add.at(out.T, group, cols.T)
        return names, out

    def forward(inp: torch.Tensor) -> torch.Tensor:
        p = np.asarray(est.predict(inp.detach().numpy()))
        return torch.as_tensor(p if p.ndim == 2 else p[:, None], dtype=torch.float32)

    mask = torch.as_tensor(group, dtype=torch.long).unsqueeze(0).expand_as(xt)
    fa = FeatureAblation(forward)
    # many ablated copies per call (up to about 4,096 rows): a forest or a boosted model pays a fixed cost per
    # predict call, so one call per feature made a 2-record explanation over 2,266 fingerprint bits and
    # descriptors take 40 s; the attributions are the same
    per_eval = max(1, min(len(names), 4096 // max(1, len(x))))
    cols = fa.attribute(xt, baselines=baseline, feature_mask=mask, target=_target(est, xt),
                        perturbations_per_eval=per_eval).detach().numpy()
    first = np.array([np.flatnonzero(group == g)[0] for g in range(len(names))])
    return names, cols[:, first]  # every column of a group carries the group's attribution


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray, sources: list[str],
    metric: Callable[[np.ndarray, np.ndarray], float], higher_is_better: bool, n_repeats: int = 5, seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean and sd of the metric's deterioration when each raw feature's columns are shuffled together. The
    shuffled copies go to the model many at a time (up to about 4,096 rows per call): a forest pays scikit-learn's
    dispatch per tree on every call. The shuffles are drawn in the same order as one call per copy would."""
    rng = np.random.default_rng(seed)
    names, group = group_columns(sources)
    base = metric(y, predict(x))
    n = len(x)
    jobs = [(g, rng.permutation(n)) for g in range(len(names)) for _ in range(n_repeats)]
    per_call = max(1, 4096 // max(1, n))
    drops: dict[int, list[float]] = {g: [] for g in range(len(names))}
    for start in range(0, len(jobs), per_call):
        part = jobs[start:start + per_call]
        copies = []
        for g, perm in part:
            cols = np.flatnonzero(group == g)
            xp = x.copy()
            xp[:, cols] = x[perm][:, cols]
            copies.append(xp)
        pred = np.asarray(predict(np.concatenate(copies)))
        for k, (g, _) in enumerate(part):
            score = metric(y, pred[k * n:(k + 1) * n])
            drops[g].append(base - score if higher_is_better else score - base)
    out = {name: {"mean": float(np.mean(drops[g])), "sd": float(np.std(drops[g]))} for g, name in enumerate(names)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["mean"]))


def screen_features(est: Estimator, x: np.ndarray, sources: list[str], keep: int) -> list[str]:
    """Sources with all but the `keep` raw features most related to the model's output lumped into one
    "other features" group, so ablation and permutation stay affordable on wide inputs (2,048 fingerprint
    bits, thousands of codes). The screen is model-agnostic: the largest |correlation| between any of a
    feature's columns and the model's output on the explained records."""
    names, group = group_columns(sources)
    if len(names) <= keep or len(x) < 3:
        return sources
    out = np.asarray(est.predict(x), dtype=float)
    out = out if out.ndim == 1 else out[np.arange(len(out)), out.argmax(axis=1)]
    xc = np.asarray(x, dtype=float) - np.mean(x, axis=0)
    oc = out - out.mean()
    with np.errstate(all="ignore"):
        corr = np.abs(xc.T @ oc) / (np.sqrt((xc**2).sum(axis=0) * (oc**2).sum()) + 1e-12)
    score = np.zeros(len(names))
    np.maximum.at(score, group, np.nan_to_num(corr))
    chosen = set(np.argsort(-score)[:keep].tolist())
    other = f"other features ({len(names) - len(chosen)})"
    return [names[g] if g in chosen else other for g in group]


def explain_tabular(est: Estimator, x_all: np.ndarray, y: np.ndarray, sources: list[str], metric, cfg,
                    seed: int) -> dict:
    """explanations.json entry of a model on a feature matrix: permutation importance, mean |attribution|
    and per-record attributions of example test records."""
    x = x_all[: cfg.max_records]
    sources = screen_features(est, x, sources, getattr(cfg, "max_features", 50))
    names, attr = attributions(est, x, sources)
    return {
        "method": method_name(est),
        "permutation_importance": permutation_importance(est.predict, x_all, y, sources, metric,
                                                         metric.higher_is_better, cfg.n_repeats, seed),
        "mean_abs_attribution": dict(sorted(zip(names, np.abs(attr).mean(axis=0).tolist(), strict=True),
                                            key=lambda kv: -kv[1])),
        "examples": [{"row": i, "attributions": dict(zip(names, attr[i].tolist(), strict=True))}
                     for i in range(min(cfg.examples, len(x)))],
    }
