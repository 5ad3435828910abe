"""Decision curve analysis (Vickers & Elkin 2006): net benefit of acting on the model, against treat-all and
treat-none, over a range of threshold probabilities.

At threshold probability pt a clinician treats when the predicted risk is at least pt, which says a false
positive costs pt / (1 - pt) of a true positive's benefit: net benefit = TP/n - FP/n * pt / (1 - pt).
For survival at horizon h the risk is 1 - S(h) and the true- and false-positive rates among the treated
come from the Kaplan-Meier estimate in that group, as in dcurves' survival DCA, so censoring is handled.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medflow.evaluate.survival import km_at

__all__ = ["DecisionCurveConfig", "net_benefit", "net_benefit_survival", "decision_curve"]


class DecisionCurveConfig(BaseModel):
    """Threshold probabilities of the decision curve (YAML: `evaluate.decision_curve:`)."""

    model_config = ConfigDict(extra="forbid")
    low: float = Field(0.01, ge=0, lt=1)
    high: float = Field(0.99, gt=0, lt=1)
    step: float = Field(0.01, gt=0, le=0.5)

    @model_validator(mode="after")
    def _ordered(self) -> DecisionCurveConfig:
        if self.low >= self.high:
            raise ValueError(f"decision_curve.low ({self.low}) must be below decision_curve.high ({self.high})")
        return self

    def thresholds(self) -> np.ndarray:
        return np.round(np.arange(self.low, self.high + self.step / 2, self.step), 6)


def net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of treating when p >= pt, for each pt."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=float)
    n = len(y)
    treat = p[None, :] >= np.asarray(thresholds)[:, None]
    tp = (treat & y[None, :]).sum(axis=1) / n
    fp = (treat & ~y[None, :]).sum(axis=1) / n
    w = thresholds / (1 - thresholds)
    return tp - fp * w


def net_benefit_survival(time: np.ndarray, event: np.ndarray, risk: np.ndarray, horizon: float,
                         thresholds: np.ndarray) -> np.ndarray:
    """Net benefit at a horizon: risk = predicted probability of the event by then (1 - S(h))."""
    risk = np.asarray(risk, dtype=float)
    out = []
    for pt in thresholds:
        treated = risk >= pt
        share = treated.mean()
        if share == 0:
            out.append(0.0)
            continue
        s = km_at(time[treated], event[treated], horizon)
        out.append((1 - s) * share - s * share * pt / (1 - pt))
    return np.asarray(out)


def decision_curve(y: np.ndarray, score: np.ndarray, task_kind: str, cfg: DecisionCurveConfig,
                   state: dict | None = None) -> dict[str, Any] | None:
    """Net benefit of the model, treat-all and treat-none; for survival one curve per horizon."""
    th = cfg.thresholds()
    if task_kind == "binary":
        ones = np.ones(len(y))
        return {"thresholds": th.tolist(), "model": net_benefit(y, score, th).tolist(),
                "treat_all": net_benefit(y, ones, th).tolist(), "useful_range": _useful(th, net_benefit(
                    y, score, th), net_benefit(y, ones, th))}
    if task_kind != "survival" or not (state or {}).get("horizons"):
        return None
    grid = np.asarray(state["grid"], dtype=float)
    out: dict[str, Any] = {"thresholds": th.tolist(), "horizons": {}}
    time, event = y[:, 0], y[:, 1]
    for h in state["horizons"]:
        if h >= time.max():
            continue  # no one is followed that long: net benefit is undefined
        j = max(int(np.searchsorted(grid, h, side="right")) - 1, 0)
        risk = 1 - np.asarray(score, dtype=float)[:, 1 + j]
        model = net_benefit_survival(time, event, risk, h, th)
        treat_all = net_benefit_survival(time, event, np.ones(len(risk)), h, th)
        out["horizons"][f"{h:g}"] = {"model": model.tolist(), "treat_all": treat_all.tolist(),
                                     "useful_range": _useful(th, model, treat_all)}
    return out if out["horizons"] else None


def _useful(th: np.ndarray, model: np.ndarray, treat_all: np.ndarray) -> list[float] | None:
    """The lowest and highest threshold where the model beats both treat-all and treat-none."""
    better = (model > treat_all + 1e-12) & (model > 1e-12)
    return [float(th[better].min()), float(th[better].max())] if better.any() else None
