"""Calibration: reliability curve and expected calibration error."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["reliability", "expected_calibration_error"]


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Mean predicted probability and observed frequency per equal-width bin (empty bins left out)."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    mean_pred, observed, counts = [], [], []
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            mean_pred.append(float(p[mask].mean()))
            observed.append(float(y[mask].mean()))
            counts.append(int(mask.sum()))
    return {"mean_predicted": mean_pred, "observed": observed, "count": counts,
            "ece": expected_calibration_error(y, p, n_bins)}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Count-weighted mean |observed - predicted| over equal-width probability bins."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    idx = np.clip(np.digitize(p, np.linspace(0, 1, n_bins + 1)[1:-1]), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(p))
