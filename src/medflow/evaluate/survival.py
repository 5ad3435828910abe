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


def concordance(event: np.ndarray, time: np.ndarray, risk: np.ndarray, weights: np.ndarray | None = None,
                tied_tol: float = 1e-8) -> float:
    """Harrell's C (weights None) or Uno's (weights = squared IPCW), as scikit-survival computes it: for each
    event i, the comparable samples are those with a later time and those censored at its time; a pair counts 1
    when i has the higher risk and 1/2 when the risks tie. Vectorized over blocks of events (no Python loop over
    pairs); NaN when no pair is comparable."""
    event, time, risk = np.asarray(event, bool), np.asarray(time, float), np.asarray(risk, float)
    w = np.ones(len(time)) if weights is None else np.asarray(weights, float)
    events = np.flatnonzero(event)
    num = den = 0.0
    block = max(1, 4_000_000 // max(len(time), 1))
    for start in range(0, len(events), block):
        i = events[start:start + block]
        ti, ri = time[i][:, None], risk[i][:, None]
        comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
        diff = risk[None, :] - ri
        ties = np.abs(diff) <= tied_tol
        won = (diff < 0) & ~ties
        num += float(w[i] @ ((won & comparable).sum(1) + 0.5 * (ties & comparable).sum(1)))
        den += float(w[i] @ comparable.sum(1))
    return num / den if den > 0 else float("nan")


@metric_function("c_harrell", "C-index (Harrell)", True)
def c_harrell(y, s, t=0.5):
    y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    risk = s[:, 0] if s.ndim == 2 else s
    if y[:, 1].sum() == 0:
        return float("nan")
    return concordance(y[:, 1] > 0.5, y[:, 0], risk)


class Censoring:
    """The censoring distribution G of the reference (training) patients, fitted once per study: scikit-survival's
    CensoringDistributionEstimator (reverse Kaplan-Meier), reused by every bootstrap resample's Uno C, Brier score
    and time-dependent AUC instead of refitted inside each call."""

    def __init__(self, reference: np.ndarray) -> None:
        from sksurv.nonparametric import CensoringDistributionEstimator

        self.estimator = CensoringDistributionEstimator().fit(structured(reference))

    def prob(self, t: np.ndarray) -> np.ndarray:
        """G(t); a ValueError past the reference's follow-up, as scikit-survival raises."""
        return self.estimator.predict_proba(np.asarray(t, dtype=float))

    def ipcw(self, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        """1 / G(t_i) for events, 0 for censored samples."""
        w = np.zeros(len(time))
        if event.any():
            g = self.prob(time[event])
            if (g == 0).any():
                raise ValueError("censoring survival function is zero at one or more time points")
            w[event] = 1.0 / g
        return w


def _uno(reference: np.ndarray):
    tau = float(np.quantile(reference[:, 0], 0.9))
    cens = Censoring(reference)

    def c_uno(y, s, t=0.5):
        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        risk = s[:, 0] if s.ndim == 2 else s
        time, event = y[:, 0], y[:, 1] > 0.5
        before = time < tau
        try:
            w = np.zeros(len(time))
            w[before] = cens.ipcw(time[before], event[before])
        except ValueError:
            return float("nan")
        return concordance(event, time, risk, np.square(w))

    return c_uno


def _ibs(reference: np.ndarray, grid: np.ndarray):
    cens = Censoring(reference)

    def ibs(y, s, t=0.5):
        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        mask = (grid >= y[:, 0].min()) & (grid < y[:, 0].max()) & (grid < reference[:, 0].max())
        if mask.sum() < 2:
            return float("nan")
        times, curves = grid[mask], s[:, 1:1 + len(grid)][:, mask]
        time, event = y[:, 0], y[:, 1] > 0.5
        try:
            g_t, g_y = cens.prob(times), cens.prob(time)
        except ValueError:
            return float("nan")
        g_t, g_y = np.where(g_t == 0, np.inf, g_t), np.where(g_y == 0, np.inf, g_y)
        case = (time[:, None] <= times[None, :]) & event[:, None]
        control = time[:, None] > times[None, :]
        scores = (np.square(curves) * case / g_y[:, None] + np.square(1 - curves) * control / g_t[None, :]).mean(0)
        return float(np.trapezoid(scores, times) / (times[-1] - times[0]))

    return ibs


def _auc_at(reference: np.ndarray, horizon: float):
    cens = Censoring(reference)

    def auc(y, s, t=0.5):
        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        risk = s[:, 0] if s.ndim == 2 else s
        time, event = y[:, 0], y[:, 1] > 0.5
        if not (time.min() < horizon < time.max()) or not ((time <= horizon) & event).any():
            return float("nan")
        try:
            w = cens.ipcw(time, event)
        except ValueError:
            return float("nan")
        order = np.argsort(-risk, kind="quicksort")
        r, case = risk[order], ((time <= horizon) & event)[order]
        control = (time > horizon)[order]
        tp = np.cumsum(case * w[order])
        tp, fp = tp / tp[-1], np.cumsum(control) / control.sum()
        tied = np.abs(np.diff(np.r_[np.inf, r])) <= 1e-8  # a point tied with the one before it is dropped
        keep = ~np.r_[tied[1:], False]
        return float(np.trapezoid(np.r_[0, tp[keep]], np.r_[0, fp[keep]]))

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
        y, s = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
        hit = np.abs(y[:, 1] - cause) < 0.5
        if s.ndim != 2 or s.shape[1] <= column or not hit.any() or np.isnan(s[:, column]).any():
            return float("nan")  # a model without cause-specific predictions
        return concordance(hit, y[:, 0], s[:, column])

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
