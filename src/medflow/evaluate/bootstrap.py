"""Bootstrap confidence intervals that resample patients, not rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medflow.evaluate.metrics import Metric

__all__ = ["bootstrap_ci", "patient_resamples"]


def patient_resamples(patient_ids: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """Row indices of `n_boot` resamples, each drawing patients with replacement (all their rows)."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(patient_ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(uniq))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    samples = []
    one_row_each = bool((counts == 1).all())
    for _ in range(n_boot):
        chosen = rng.integers(0, len(uniq), len(uniq))
        if one_row_each:
            samples.append(order[chosen])
        else:
            samples.append(np.concatenate([order[starts[c]:starts[c] + counts[c]] for c in chosen]))
    return samples


def bootstrap_ci(
    metrics: Sequence[Metric],
    y_true: np.ndarray,
    y_score: np.ndarray,
    patient_ids: np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Point estimate and percentile CI of each metric, resampling patients with replacement.

    Resamples where a metric is undefined (e.g. one class only, for AUROC) are left out of
    that metric's interval; ``n_valid`` says how many remained.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score)
    samples = patient_resamples(np.asarray(patient_ids), n_boot, seed)
    alpha = (1 - level) / 2
    out = {}
    for m in metrics:
        point = m(y_true, y_score, threshold)
        values = np.array([m(y_true[idx], y_score[idx], threshold) for idx in samples], dtype=float)
        values = values[~np.isnan(values)]
        low, high = (np.quantile(values, [alpha, 1 - alpha]) if len(values) else (np.nan, np.nan))
        out[m.name] = {"value": point, "low": float(low), "high": float(high), "n_valid": int(len(values))}
    return out
