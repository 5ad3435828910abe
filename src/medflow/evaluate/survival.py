"""Survival metrics (scikit-survival's implementations) and calibration at horizons.

Targets are ``(n, 2)`` arrays ``[time, event]``; scores are ``(n, 1 + G)``: the risk score, then
survival probabilities at the task's grid. Harrell's C needs nothing else; Uno's C, the integrated
Brier score and time-dependent AUC weight by the inverse probability of censoring, estimated by
Kaplan-Meier on a reference sample (all evaluated patients), and need the grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.evaluate.metric import Metric, metric_function

__all__ = ["survival_metrics", "survival_calibration", "kaplan_meier", "km_at", "structured", "BOUND_METRICS"]

# metrics that need the task's grid and a censoring reference: name -> (display, higher is better)
BOUND_METRICS = {"c_uno": ("C-index (Uno)", True), "ibs": ("Integrated Brier", False)}


def structured(y: np.ndarray) -> np.ndarray:
    """[time, event] rows as scikit-survival's structured array (event: bool, time: float)."""
    y = np.asarray(y, dtype=float)
    out = np.empty(len(y), dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = y[:, 1] > 0.5, y[:, 0]
    return out


@metric_function("c_harrell", "C-index (Harrell)", True)
def c_harrell(y, s, t=0.5):
    from sksurv.metrics import concordance_index_censored

    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    risk = s[:, 0] if s.ndim == 2 else s
    if y[:, 1].sum() == 0:
        return float("nan")
    return float(concordance_index_censored(y[:, 1] > 0.5, y[:, 0], risk)[0])


def _uno(reference: np.ndarray):
    def c_uno(y, s, t=0.5):
        from sksurv.metrics import concordance_index_ipcw

        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        risk = s[:, 0] if s.ndim == 2 else s
        tau = float(np.quantile(reference[:, 0], 0.9))
        try:
            return float(concordance_index_ipcw(structured(reference), structured(y), risk, tau=tau)[0])
        except (ValueError, ZeroDivisionError):
            return float("nan")

    return c_uno


def _ibs(reference: np.ndarray, grid: np.ndarray):
    def ibs(y, s, t=0.5):
        from sksurv.metrics import integrated_brier_score

        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        mask = (grid >= y[:, 0].min()) & (grid < y[:, 0].max()) & (grid < reference[:, 0].max())
        if mask.sum() < 2:
            return float("nan")
        try:
            curves = s[:, 1:1 + len(grid)][:, mask]
            return float(integrated_brier_score(structured(reference), structured(y), curves, grid[mask]))
        except ValueError:
            return float("nan")

    return ibs


def _auc_at(reference: np.ndarray, horizon: float):
    def auc(y, s, t=0.5):
        from sksurv.metrics import cumulative_dynamic_auc

        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        risk = s[:, 0] if s.ndim == 2 else s
        if not (y[:, 0].min() < horizon < y[:, 0].max()) or not ((y[:, 0] <= horizon) & (y[:, 1] > 0.5)).any():
            return float("nan")
        try:
            return float(cumulative_dynamic_auc(structured(reference), structured(y), risk, [horizon])[0][0])
        except ValueError:
            return float("nan")

    return auc


def survival_metrics(state: dict[str, Any], reference: np.ndarray) -> list[Metric]:
    """C (Harrell, Uno), integrated Brier score and AUC at each horizon, bound to the grid and reference."""
    from medflow.registry import metrics

    grid = np.asarray(state["grid"])
    bound = {"c_uno": _uno(reference), "ibs": _ibs(reference, grid)}
    out = [metrics.get("c_harrell")] + [Metric(name, fn, BOUND_METRICS[name][1], BOUND_METRICS[name][0])
                                       for name, fn in bound.items()]
    for h in state["horizons"]:
        name = f"auc@{h:g}"
        out.append(Metric(name, _auc_at(reference, float(h)), True, f"AUC at {h:g}"))
    if state.get("competing_risks"):
        for i, cause in enumerate(state["causes"]):
            out.append(Metric(f"c_cause_{cause}", _cause_c(cause, 1 + len(grid) + i), True, f"C-index (cause {cause})"))
    return out


def _cause_c(cause: int, column: int):
    """Cause-specific Harrell's C: events of other causes count as censored at their time (a simplification
    of Wolbers et al.'s competing-risks C-index, documented in docs/survival.md)."""
    def c(y, s, t=0.5):
        from sksurv.metrics import concordance_index_censored

        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        hit = np.abs(y[:, 1] - cause) < 0.5
        if s.ndim != 2 or s.shape[1] <= column or not hit.any() or np.isnan(s[:, column]).any():
            return float("nan")  # a model without cause-specific predictions
        return float(concordance_index_censored(hit, y[:, 0], s[:, column])[0])

    return c


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival estimate: distinct times and S(t) just after each."""
    from sksurv.nonparametric import kaplan_meier_estimator

    t, s = kaplan_meier_estimator(np.asarray(event) > 0.5, np.asarray(time, dtype=float))
    return np.asarray(t), np.asarray(s)


def km_at(time: np.ndarray, event: np.ndarray, h: float) -> float:
    """The Kaplan-Meier survival probability at time h."""
    t, s = kaplan_meier(time, event)
    idx = np.searchsorted(t, h, side="right") - 1
    return float(s[idx]) if idx >= 0 else 1.0


def survival_calibration(y: np.ndarray, s: np.ndarray, state: dict[str, Any], n_groups: int = 10) -> dict:
    """Per horizon: predicted survival against Kaplan-Meier observed, by group (decile) of predicted risk."""
    grid = np.asarray(state["grid"])
    out = {}
    for h in state["horizons"]:
        if h >= y[:, 0].max():  # beyond the follow-up: nothing observed to compare with
            continue
        col = int(np.argmin(np.abs(grid - h)))
        pred = s[:, 1 + col]
        groups = np.array_split(np.argsort(pred), min(n_groups, max(2, len(pred) // 20)))
        mean_pred = [float(pred[g].mean()) for g in groups]
        observed = [km_at(y[g, 0], y[g, 1], h) for g in groups]
        sizes = [len(g) for g in groups]
        err = float(np.average(np.abs(np.array(mean_pred) - np.array(observed)), weights=sizes))
        out[f"{h:g}"] = {"mean_predicted": mean_pred, "observed": observed, "count": sizes, "ece": err}
    return out
