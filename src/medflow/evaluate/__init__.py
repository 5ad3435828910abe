"""Evaluation: metrics, bootstrap confidence intervals, thresholds, calibration and subgroups."""

from medflow.evaluate.bootstrap import bootstrap_ci
from medflow.evaluate.metrics import Metric, get_metric

__all__ = ["Metric", "get_metric", "bootstrap_ci"]
