"""Bootstrap confidence intervals that resample patients, not rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from medflow.evaluate.metric import Metric

__all__ = ["bootstrap_ci", "patient_resamples", "PatientResamples"]


class PatientResamples:
    """Row indices of `n_boot` resamples, each drawing patients with replacement (all their rows).

    Re-iterable and lazy: each pass regenerates the same resamples from the seed, one at a time, so a
    bootstrap over hundreds of thousands of test rows holds one resample in memory, not all of them.
    """

    def __init__(self, patient_ids: np.ndarray, n_boot: int, seed: int) -> None:
        self.n_boot, self.seed = n_boot, seed
        uniq, inverse = np.unique(np.asarray(patient_ids), return_inverse=True)
        self.n_patients = len(uniq)
        self.order = np.argsort(inverse, kind="stable")
        self.counts = np.bincount(inverse, minlength=len(uniq))
        self.starts = np.r_[0, np.cumsum(self.counts)[:-1]]
        self.one_row_each = bool((self.counts == 1).all())

    def __len__(self) -> int:
        return self.n_boot

    def __iter__(self) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(self.seed)
        for _ in range(self.n_boot):
            chosen = rng.integers(0, self.n_patients, self.n_patients)
            if self.one_row_each:
                yield self.order[chosen]
            else:  # all rows of each chosen patient, in the order drawn (vectorized concatenation of their slices)
                lengths = self.counts[chosen]
                ends = np.cumsum(lengths)
                offsets = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - lengths, lengths)
                yield self.order[np.repeat(self.starts[chosen], lengths) + offsets]


def patient_resamples(patient_ids: np.ndarray, n_boot: int, seed: int) -> PatientResamples:
    """Row indices of `n_boot` patient-level resamples (re-iterable; see `PatientResamples`)."""
    return PatientResamples(patient_ids, n_boot, seed)


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
