"""Time-to-event (survival) task with right censoring, and the deep-model heads that serve it.

Targets are encoded as an ``(n, 2)`` float array ``[time, event]``. A survival model's
predictions are an ``(n, 1 + G)`` array: column 0 the risk score (higher = earlier event), then the
survival probability at each of the task's G grid times (fitted on the training split).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch import nn

from medflow.errors import DataError, ModelError, shown
from medflow.tasks.base import Task

__all__ = ["Survival", "CoxHead", "DeepHitHead", "cox_partial_likelihood", "breslow_cumulative_hazard",
           "structured"]


def structured(y: np.ndarray) -> np.ndarray:
    """[time, event] rows as scikit-survival's structured array (event: bool, time: float)."""
    y = np.asarray(y, dtype=float)
    out = np.empty(len(y), dtype=[("event", bool), ("time", float)])
    out["event"], out["time"] = y[:, 1] > 0.5, y[:, 0]
    return out


class Survival(Task):
    """Right-censored time to event: `time` (>= 0, any unit) and `event` (1 observed, 0 censored)."""

    kind: Literal["survival"] = "survival"
    time: str
    event: str
    time_unit: str = "days"
    horizons: list[float] = Field(default_factory=list)
    grid_size: int = Field(40, ge=5, le=500)
    monitor_metric: ClassVar[str] = "c_harrell"
    primary_metric: ClassVar[str] = "c_harrell"

    @property
    def label_columns(self) -> list[str]:
        return [self.time, self.event]

    @property
    def default_metrics(self) -> list[str]:  # type: ignore[override]
        hs = self._state.get("horizons", self.horizons)
        return ["c_harrell", "c_uno", "ibs"] + [f"auc@{_fmt(h)}" for h in hs]

    def _column(self, frame: pd.DataFrame, col: str, source: str, role: str) -> pd.Series:
        if col not in frame.columns:
            raise DataError(f"{source}: {role} column '{col}' is missing; columns are {list(frame.columns)}. "
                            f"Fix task.{role} in the study.")
        s = frame[col]
        if s.isna().any():
            row = int(np.flatnonzero(s.isna().to_numpy())[0]) + 1
            raise DataError(f"{source}: {role} column '{col}' is empty at row {row} "
                            f"({int(s.isna().sum())} record(s)); drop those records or fill them.")
        return s

    def check(self, frame: pd.DataFrame, source: str) -> None:
        t = self._column(frame, self.time, source, "time")
        parsed = pd.to_numeric(t, errors="coerce")
        if parsed.isna().any():
            bad = t[parsed.isna()]
            raise DataError(f"{source}: time column '{self.time}' holds {shown(bad.iloc[0])} at row "
                            f"{int(bad.index[0]) + 1}; times must be numbers ({self.time_unit}).")
        if (parsed < 0).any():
            row = int(np.flatnonzero((parsed < 0).to_numpy())[0])
            raise DataError(f"{source}: time column '{self.time}' is negative ({parsed.iloc[row]}) at row {row + 1}; "
                            "times are durations from the origin and must be >= 0.")
        e = self._column(frame, self.event, source, "event")
        codes = e.map(_event_code)
        if codes.isna().any():
            bad = e[codes.isna()]
            raise DataError(f"{source}: event column '{self.event}' holds {shown(bad.iloc[0])} at row "
                            f"{int(bad.index[0]) + 1}; expected 1/0 (or true/false): 1 = event observed, "
                            "0 = censored.")
        if codes.sum() == 0:
            raise DataError(f"{source}: every record is censored (event column '{self.event}' is 0 throughout); "
                            "no survival model can be fitted without observed events.")

    def fit(self, frame: pd.DataFrame) -> Survival:
        y = self.encode(frame)
        times, events = y[:, 0], y[:, 1] > 0.5
        event_times = times[events]
        lo, hi = float(np.quantile(event_times, 0.02)), float(np.quantile(times, 0.9))
        hs = sorted(float(h) for h in self.horizons) or [
            float(np.quantile(event_times, q)) for q in (0.25, 0.5, 0.75)]
        grid = np.union1d(np.linspace(lo, max(hi, lo * 1.01 + 1e-9), self.grid_size), hs)  # horizons on the grid
        self._state = {"grid": grid.tolist(),
                       "horizons": hs, "max_time": float(times.max()),
                       "max_event_time": float(event_times.max()), "event_rate": float(events.mean())}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        t = pd.to_numeric(frame[self.time]).to_numpy(dtype=float)
        e = frame[self.event].map(_event_code).to_numpy(dtype=float)
        return np.column_stack([t, e])

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return frame[self.event].map(_event_code)

    @property
    def grid(self) -> np.ndarray:
        return np.asarray(self._state["grid"])

    @property
    def output_dim(self) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cox_partial_likelihood(outputs.squeeze(-1), target[:, 0], target[:, 1])

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Risk scores and survival curves, with the Breslow baseline of `CoxHead` fitted elsewhere."""
        raise ModelError("survival outputs become predictions through a model head (CoxHead, DeepHitHead), "
                         "which holds the fitted baseline hazard")


def _event_code(v: Any) -> float | None:
    if isinstance(v, bool | np.bool_):
        return float(v)
    s = str(v).strip().lower()
    if s in ("1", "1.0", "true"):
        return 1.0
    if s in ("0", "0.0", "false"):
        return 0.0
    return None


def _fmt(h: float) -> str:
    return f"{h:g}" if abs(h) < 1e6 else f"{h:.3g}"


def cox_partial_likelihood(log_h: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over events."""
    order = torch.argsort(time, descending=True, stable=True)
    log_h, time, event = log_h[order], time[order], event[order]
    log_risk = torch.logcumsumexp(log_h, dim=0)
    # with ties, every tied record shares the risk set of the earliest position of its time
    _, inverse, counts = torch.unique_consecutive(time, return_inverse=True, return_counts=True)
    last = torch.cumsum(counts, 0) - 1
    log_risk = log_risk[last][inverse]
    n_events = event.sum().clamp(min=1.0)
    return -((log_h - log_risk) * event).sum() / n_events


def breslow_cumulative_hazard(log_h: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, ...]:
    """Breslow estimate of the baseline cumulative hazard at each distinct event time."""
    risk = np.exp(log_h - log_h.max())
    order = np.argsort(time)
    t, e, r = time[order], event[order], risk[order]
    at_risk = np.cumsum(r[::-1])[::-1]
    uniq = np.unique(t[e > 0.5])
    first = np.searchsorted(t, uniq, side="left")
    deaths = np.array([e[t == u].sum() for u in uniq])
    h0 = deaths / at_risk[first]
    return uniq, np.cumsum(h0) * np.exp(-log_h.max())


class CoxHead:
    """DeepSurv: the network outputs a log hazard ratio; survival via the Breslow baseline hazard."""

    def __init__(self, task: Survival) -> None:
        self.task = task
        self.output_dim = 1
        self.state: dict[str, Any] = {}

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cox_partial_likelihood(outputs.squeeze(-1), target[:, 0], target[:, 1])

    def after_fit(self, outputs: np.ndarray, y: np.ndarray) -> None:
        times, cumhaz = breslow_cumulative_hazard(outputs.reshape(-1), y[:, 0], y[:, 1])
        self.state = {"times": times.tolist(), "cumhaz": cumhaz.tolist()}

    def survival(self, outputs: np.ndarray, times: np.ndarray) -> np.ndarray:
        t, h = np.asarray(self.state["times"]), np.asarray(self.state["cumhaz"])
        idx = np.searchsorted(t, np.asarray(times, dtype=float), side="right") - 1
        h0 = np.where(idx >= 0, h[np.clip(idx, 0, None)], 0.0)
        return np.exp(-np.outer(np.exp(outputs.reshape(-1)), h0))

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, 0]

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return np.column_stack([outputs.reshape(-1), self.survival(outputs, self.task.grid)])


class DeepHitHead:
    """DeepHit (Lee et al., AAAI 2018), single risk: a softmax over discrete time intervals, trained on
    the discrete-time likelihood plus a ranking loss (alpha weighs the two, sigma scales the ranking)."""

    def __init__(self, task: Survival, n_bins: int = 30, alpha: float = 0.2, sigma: float = 0.1) -> None:
        self.task, self.alpha, self.sigma = task, alpha, sigma
        self.output_dim = n_bins + 1  # the last output is "after the last cut"
        # interval ends, equally spaced up to the last training event time (restored from model.json when
        # loading): bin 0 is [0, cuts[0]), bin j is [cuts[j-1], cuts[j]), the extra last bin is after cuts[-1]
        end = float(task.state.get("max_event_time", 1.0))
        self.state: dict[str, Any] = {"cuts": np.linspace(end / n_bins, end, n_bins).tolist()}

    def _bins(self, time: torch.Tensor) -> torch.Tensor:
        cuts = torch.as_tensor(self.state["cuts"], dtype=time.dtype)
        return torch.clamp(torch.searchsorted(cuts, time.contiguous(), right=True), max=self.output_dim - 1)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time, event = target[:, 0], target[:, 1]
        idx = self._bins(time)
        logp = torch.log_softmax(outputs, dim=1)
        cdf = torch.cumsum(logp.exp(), dim=1)
        # bin j covers [cuts[j-1], cuts[j]); an event in bin j has probability pmf[j], a record censored in
        # bin j survived to its start: P(T >= cuts[j-1]) = sum(pmf[j:]) (never zero)
        log_tail = torch.logcumsumexp(logp.flip(1), dim=1).flip(1)
        nll = -(event * logp.gather(1, idx[:, None]).squeeze(1)
                + (1 - event) * log_tail.gather(1, idx[:, None]).squeeze(1)).mean()
        # ranking: a patient with an event at T_i should have a higher CDF at T_i than anyone still at risk
        f_i = cdf.gather(1, idx[:, None])                    # (n, 1): F_i(T_i)
        f_j = cdf[:, idx].T                                   # (n, n): F_j(T_i)
        ordered = (time[:, None] < time[None, :]).float() * event[:, None]
        rank = (ordered * torch.exp(-(f_i - f_j) / self.sigma)).sum() / ordered.sum().clamp(min=1.0)
        return self.alpha * nll + (1 - self.alpha) * rank

    def after_fit(self, outputs: np.ndarray, y: np.ndarray) -> None:
        return None

    def _surv_at_cuts(self, outputs: np.ndarray) -> np.ndarray:
        z = outputs - outputs.max(axis=1, keepdims=True)
        pmf = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        return 1 - np.cumsum(pmf, axis=1)[:, :-1]

    def survival(self, outputs: np.ndarray, times: np.ndarray) -> np.ndarray:
        cuts = np.asarray(self.state["cuts"])
        s = np.column_stack([np.ones(len(outputs)), self._surv_at_cuts(outputs)])
        idx = np.searchsorted(cuts, np.asarray(times, dtype=float), side="right")
        return s[:, np.clip(idx, 0, s.shape[1] - 1)]

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        """Minus the restricted mean survival time up to the last cut (differentiable, for attributions)."""
        cuts = torch.as_tensor(self.state["cuts"], dtype=outputs.dtype)
        pmf = torch.softmax(outputs, dim=1)
        surv = 1 - torch.cumsum(pmf, dim=1)[:, :-1]
        widths = torch.diff(torch.cat([cuts, cuts[-1:]]))
        return -(surv * widths).sum(dim=1)

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        risk = self.risk(torch.as_tensor(outputs, dtype=torch.float64)).numpy()
        return np.column_stack([risk, self.survival(outputs, self.task.grid)])


class _Head(nn.Module):
    """Wraps a network so its single output is the head's risk score (for Integrated Gradients)."""

    def __init__(self, module: nn.Module, head: Any) -> None:
        super().__init__()
        self.module, self.head = module, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.risk(self.module(x))[:, None]
