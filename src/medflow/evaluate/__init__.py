"""Evaluation: metrics, bootstrap confidence intervals, thresholds, calibration and subgroups.

Importing any module of this package first imports the modules that register metrics (`metrics`, `survival`,
`effects`), so `get_metric` finds every metric by name without a module importing back up to register them.
"""

from medflow.evaluate import effects, survival  # noqa: F401  (register the effect and survival metrics)
from medflow.evaluate.bootstrap import bootstrap_ci
from medflow.evaluate.metrics import Metric, get_metric

__all__ = ["Metric", "get_metric", "bootstrap_ci"]
