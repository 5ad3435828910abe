"""The metric contract: a pure NumPy function with its name, display name and direction.

Metric functions live in `metrics.py` (classification, regression) and `survival.py`; both register
through `metric_function`, and `metrics.get_metric` looks any of them up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medflow.registry import register_metric

__all__ = ["Metric", "metric_function"]


@dataclass(frozen=True)
class Metric:
    """A metric function with its display name and direction."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray, float], float]
    higher_is_better: bool
    display: str
    uses_threshold: bool = False

    def __call__(self, y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
        return float(self.fn(y_true, y_score, threshold))


def metric_function(name: str, display: str, higher_is_better: bool, uses_threshold: bool = False):
    """Register a pure function `(y_true, y_score, threshold) -> float` as a metric."""

    def wrap(fn):
        register_metric(name)(Metric(name, fn, higher_is_better, display, uses_threshold))
        return fn

    return wrap
