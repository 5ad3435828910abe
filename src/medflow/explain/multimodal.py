"""Explanations of models that read several modalities: first by modality, by ablation.

A modality's contribution to a patient's prediction is the prediction with everything the patient has minus the
prediction with that modality removed (marked missing, as for a patient who lacks it): the fusion models are trained
with missing modalities (modality dropout), so removal is a state they know, not an out-of-distribution input.
Over the test set: the metric lost without each modality, the mean absolute change of the prediction for the
patients who have it, and the share of their decisions (at 0.5 for binary tasks) that change. Within each table
modality (labs, omics): permutation importance of its columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["explain_modalities", "modality_contributions"]


def _score(p: np.ndarray) -> np.ndarray:
    """One number per record: the probability of the positive class, else the prediction's first column."""
    p = np.asarray(p, dtype=float)
    return p if p.ndim == 1 else p[:, -1] if p.shape[1] == 2 else p[:, 0]


def modality_contributions(est: Any, x: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The full prediction per record and, per modality, the prediction without it."""
    full = np.asarray(est.predict(x))
    return full, {m: np.asarray(est.predict(x.without([m]))) for m in x.names}


def within_tables(est: Any, x: Any, y: np.ndarray, metric: Any, feat: Any, base: float, seed: int = 0,
                  max_features: int = 50) -> dict[str, dict[str, float]]:
    """Within each table modality: permutation importance of its columns (each input column shuffled among the
    samples that have the modality; the metric lost, summed over the columns one raw column became)."""
    rng = np.random.default_rng(seed)
    sign = 1.0 if metric.higher_is_better else -1.0
    out: dict[str, dict[str, float]] = {}
    for m in x.names:
        part = x.parts[m]
        if x.kinds.get(m) != "tabular" or part is None or hasattr(part, "batch"):
            continue
        sources = list(getattr(feat.parts[m], "output_sources", [])) if feat is not None else []
        if len(sources) != part.shape[1]:
            sources = [str(j) for j in range(part.shape[1])]
        lost: dict[str, float] = {}
        for j in range(min(part.shape[1], max_features)):
            shuffled = part.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            x2 = type(x)({**x.parts, m: shuffled}, x.index, x.kinds, x.widths)
            lost[sources[j]] = lost.get(sources[j], 0.0) + float(sign * (base - metric(y, est.predict(x2))))
        out[m] = dict(sorted(lost.items(), key=lambda kv: -kv[1]))
    return out


def explain_modalities(est: Any, x: Any, y: np.ndarray, metric: Any, examples: int = 5, feat: Any = None,
                       seed: int = 0) -> dict[str, Any]:
    """The explanations.json entry of a model on multimodal inputs (see the module docstring)."""
    full, without = modality_contributions(est, x)
    base = metric(y, full)
    sign = 1.0 if metric.higher_is_better else -1.0
    binary = est.task.kind == "binary"
    out: dict[str, Any] = {}
    for m, p in without.items():
        has = x.index[m] >= 0
        change = np.abs(_score(full) - _score(p))[has]
        out[m] = {"present": int(has.sum()), f"{metric.name}_lost": float(sign * (base - metric(y, p))),
                  "mean_abs_change": float(change.mean()) if len(change) else 0.0,
                  **({"decisions_changed": float(np.mean((_score(full)[has] >= 0.5) != (_score(p)[has] >= 0.5)))
                      if has.any() else 0.0} if binary else {})}
    contrib = {m: _score(full) - _score(p) for m, p in without.items()}
    return {"method": "modality_ablation", "metric": metric.name, "full": float(base), "modalities": out,
            "mean_abs_attribution": {m: float(np.abs(c).mean()) for m, c in contrib.items()},
            "within_tables": within_tables(est, x, y, metric, feat, base, seed),
            "examples": [{"row": i, "attributions": {m: float(c[i]) for m, c in contrib.items()}}
                         for i in range(min(examples, len(x)))]}
