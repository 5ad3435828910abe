"""Decision thresholds chosen on the validation split, then applied to the test split."""

from __future__ import annotations

import numpy as np

from medflow.errors import DataError

__all__ = ["youden_threshold", "sensitivity_threshold", "roc_points"]


def roc_points(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds that give them (descending)."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    P, N = max(tps[-1], 1), max(fps[-1], 1)
    return np.r_[0.0, fps / N], np.r_[0.0, tps / P], np.r_[np.inf, s[last]]


def _check(y: np.ndarray) -> None:
    if len(np.unique(y)) < 2:
        raise DataError("the validation split holds one class only, so no threshold can be chosen; "
                        "use a larger split.valid or stratify the split.")


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The threshold maximizing sensitivity + specificity - 1 (Youden's J)."""
    _check(y)
    fpr, tpr, thr = roc_points(y, s)
    j = tpr - fpr
    best = int(np.argmax(j[1:])) + 1
    return float(thr[best])


def sensitivity_threshold(y: np.ndarray, s: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity on (y, s) reaches `target`."""
    _check(y)
    fpr, tpr, thr = roc_points(y, s)
    ok = np.flatnonzero(tpr >= target)
    return float(thr[ok[0]]) if len(ok) else float(np.min(s))
