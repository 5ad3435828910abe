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
from medflow.evaluate.conformal import apply_conformal
from medflow.tasks.base import Task, put_before

__all__ = ["Survival", "CoxHead", "DeepHitHead", "cox_partial_likelihood", "breslow_cumulative_hazard"]


class Survival(Task):
    """Right-censored time to event: `time` (>= 0, any unit) and `event` (1 observed, 0 censored)."""

    kind: Literal["survival"] = "survival"
    time: str
    event: str
    time_unit: str = "days"
    horizons: list[float] = Field(default_factory=list)
    grid_size: int = Field(40, ge=5, le=500)
    competing_risks: bool = False  # event holds 0 (censored) or a cause 1..K; see docs/survival.md
    monitor_metric: ClassVar[str] = "c_harrell"
    primary_metric: ClassVar[str] = "c_harrell"

    @property
    def label_columns(self) -> list[str]:
        return [self.time, self.event]

    @property
    def default_metrics(self) -> list[str]:  # type: ignore[override]
        hs = self._state.get("horizons", self.horizons)
        causes = [f"c_cause_{k}" for k in self.causes] if self.competing_risks else []
        return ["c_harrell", "c_uno", "ibs"] + [f"auc@{_fmt(h)}" for h in hs] + causes

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

    def prepare(self, ds: Any, features: list[str], cfg: Any, console: Any) -> tuple[Any, None]:
        """Horizons past the longest follow-up are kept, but their metrics are undefined (reported as n/a)."""
        if self.horizons:
            longest = float(self.encode(ds.frame)[:, 0].max())
            beyond = [f"{h:g}" for h in self.horizons if h >= longest]
            if beyond:
                console.print(f"[yellow]warning:[/yellow] task.horizons {', '.join(beyond)} are at or beyond the "
                              f"longest follow-up ({longest:g} {self.time_unit}); AUC and calibration there cannot "
                              "be estimated and are reported as n/a.")
        return ds, None

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
        codes = e.map(self._code)
        if codes.isna().any():
            bad = e[codes.isna()]
            expected = ("0 = censored or a cause code 1, 2, ... (competing risks)" if self.competing_risks else
                        "1/0 (or true/false): 1 = event observed, 0 = censored; for several event types set "
                        "task.competing_risks: true")
            raise DataError(f"{source}: event column '{self.event}' holds {shown(bad.iloc[0])} at row "
                            f"{int(bad.index[0]) + 1}; expected {expected}.")
        if codes.sum() == 0:
            raise DataError(f"{source}: every record is censored (event column '{self.event}' is 0 throughout); "
                            "no survival model can be fitted without observed events.")

    def _code(self, v: Any) -> float | None:
        if not self.competing_risks:
            return _event_code(v)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return f if f >= 0 and f == int(f) else None

    @property
    def causes(self) -> list[int]:
        """Event types (competing risks): [1] for a single event."""
        return list(self._state.get("causes", [1]))

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
                       "max_event_time": float(event_times.max()), "event_rate": float(events.mean()),
                       "causes": sorted({int(c) for c in y[:, 1] if c > 0}) if self.competing_risks else [1],
                       "competing_risks": self.competing_risks}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        t = pd.to_numeric(frame[self.time]).to_numpy(dtype=float)
        e = frame[self.event].map(self._code).to_numpy(dtype=float)
        return np.column_stack([t, e])

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return frame[self.event].map(self._code)

    @property
    def grid(self) -> np.ndarray:
        return np.asarray(self._state["grid"])

    @property
    def output_dim(self) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return cox_partial_likelihood(outputs.squeeze(-1), target[:, 0], (target[:, 1] > 0.5).to(outputs.dtype))

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Risk scores and survival curves, with the Breslow baseline of `CoxHead` fitted elsewhere."""
        raise ModelError("survival outputs become predictions through a model head (CoxHead, DeepHitHead), "
                         "which holds the fitted baseline hazard")

    # -- what `Run.predict` returns ----------------------------------------------------------------------------
    def conformal_columns(self, fitted: dict[str, Any], score: np.ndarray) -> dict[str, Any]:
        """Status sets at the horizons: "event" and/or "no event" by each horizon."""
        pct = f"{fitted['coverage']:.0%}"
        sets = apply_conformal(fitted, score, self.kind, np.asarray(self.state["grid"], dtype=float))
        return {f"event_by_{h}_set_{pct}": [[lab for lab, keep in zip(("no event", "event"), row, strict=True) if keep]
                                            for row in r] for h, r in sets.items()}

    def horizons_for(self, asked: list[float] | None) -> list[float]:
        return list(asked or self.state.get("horizons", []))

    def fold_outputs(self, est: Any, x: Any, horizons: list[float]) -> dict[str, np.ndarray]:
        """S(t) at the horizons and, for competing risks, each cause's cumulative incidence there."""
        if not horizons:
            return {}
        hs = np.asarray(horizons, dtype=float)
        out = {"at": est.predict_survival(x, hs)}
        head = getattr(est, "head", None)
        if self.competing_risks and hasattr(head, "cif"):
            out["cif"] = head.cif(est.outputs(x), hs)
        return out

    def finish_columns(self, out: dict[str, Any], score: np.ndarray, outputs: list[dict[str, np.ndarray]],
                       horizons: list[float]) -> dict[str, Any]:
        """Risk, survival at each horizon and cumulative incidence of each cause (before `model`), and the whole
        curve on the grid (last); returns the table's attrs (the grid and its time unit)."""
        import warnings

        limit = self.state["max_time"]
        beyond = [h for h in horizons if h > limit]
        if beyond:
            warnings.warn(f"horizons {beyond} lie beyond the longest follow-up in training ({limit:g} "
                          f"{self.time_unit}); survival there is extrapolated (held at the last estimate)",
                          stacklevel=4)
        new = {"risk": score[:, 0]}
        if horizons:
            at = np.mean([o["at"] for o in outputs], axis=0)
            new.update({f"survival_at_{h:g}": at[:, j] for j, h in enumerate(horizons)})
            if "cif" in outputs[0]:  # competing risks
                cif = np.mean([o["cif"] for o in outputs], axis=0)
                new.update({f"cif_{cause}_at_{h:g}": cif[:, i, j] for i, cause in enumerate(self.causes)
                            for j, h in enumerate(horizons)})
        put_before(out, "model", new)
        out["survival_curve"] = [row.tolist() for row in score[:, 1:1 + len(self.grid)]]
        return {"grid": self.state["grid"], "time_unit": self.time_unit}


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
    t, e, r = time[order], (event[order] > 0.5).astype(float), risk[order]
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
        # any cause counts as the event (all-cause hazard) when the task has competing risks
        return cox_partial_likelihood(outputs.squeeze(-1), target[:, 0], (target[:, 1] > 0.5).to(outputs.dtype))

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
    """DeepHit (Lee et al., AAAI 2018): a softmax over K causes x `n_bins` time intervals plus "after the
    last interval", trained on the discrete-time likelihood plus a ranking loss per cause (alpha weighs the
    two, sigma scales the ranking). K = 1 is single-risk DeepHit; K > 1 needs task.competing_risks."""

    def __init__(self, task: Survival, n_bins: int = 30, alpha: float = 0.2, sigma: float = 0.1) -> None:
        self.task, self.alpha, self.sigma, self.n_bins = task, alpha, sigma, n_bins
        self.causes = task.causes
        self.output_dim = len(self.causes) * n_bins + 1
        # interval ends, equally spaced up to the last training event time (restored from model.json when
        # loading): bin 0 is [0, cuts[0]), bin j is [cuts[j-1], cuts[j]), the extra last output is after cuts[-1]
        end = float(task.state.get("max_event_time", 1.0))
        self.state: dict[str, Any] = {"cuts": np.linspace(end / n_bins, end, n_bins).tolist(),
                                      "causes": list(self.causes)}

    def _bins(self, time: torch.Tensor) -> torch.Tensor:
        cuts = torch.as_tensor(self.state["cuts"], dtype=time.dtype)
        return torch.searchsorted(cuts, time.contiguous(), right=True)  # n_bins = after the last cut

    def _pmf(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities per (cause, bin) and of surviving past the last cut."""
        logp = torch.log_softmax(outputs, dim=1)
        return logp[:, :-1].reshape(len(outputs), len(self.causes), self.n_bins), logp[:, -1]

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        time, code = target[:, 0], target[:, 1].round().long()
        idx = self._bins(time)
        logp, log_after = self._pmf(outputs)
        n, k = len(outputs), len(self.causes)
        # an event of cause c in bin j has probability pmf[c, j]; a record censored in bin j survived to its
        # start: the mass of every cause at bins >= j plus "after" (never zero)
        cause_index = torch.as_tensor([self.causes.index(int(c)) if c > 0 else 0 for c in code.tolist()])
        inside = torch.clamp(idx, max=self.n_bins - 1)
        event_logp = logp[torch.arange(n), cause_index, inside]
        event_logp = torch.where(idx >= self.n_bins, log_after, event_logp)
        tail = torch.logcumsumexp(torch.logsumexp(logp, dim=1).flip(1), dim=1).flip(1)  # (n, bins): bins >= j
        tail = torch.cat([tail, torch.zeros(n, 1, dtype=tail.dtype) - torch.inf], dim=1)
        censored_logp = torch.logaddexp(tail[torch.arange(n), idx], log_after)
        event = (code > 0).to(outputs.dtype)
        nll = -(event * event_logp + (1 - event) * censored_logp).mean()
        cdf = torch.cumsum(logp.exp(), dim=2)  # (n, K, bins): cumulative incidence per cause
        rank = outputs.new_zeros(())
        for c in range(k):
            cif = torch.cat([cdf[:, c], cdf[:, c, -1:]], dim=1)  # bin index n_bins reads the last value
            f_i = cif.gather(1, idx[:, None])                    # F_c,i(T_i)
            f_j = cif[:, idx].T                                  # F_c,j(T_i)
            ordered = (time[:, None] < time[None, :]).to(outputs.dtype) * (cause_index == c)[:, None] * event[:, None]
            rank = rank + (ordered * torch.exp(-(f_i - f_j) / self.sigma)).sum() / ordered.sum().clamp(min=1.0)
        return self.alpha * nll + (1 - self.alpha) * rank / k

    def after_fit(self, outputs: np.ndarray, y: np.ndarray) -> None:
        return None

    def _cif_at_cuts(self, outputs: np.ndarray) -> np.ndarray:
        logp, _ = self._pmf(torch.as_tensor(outputs, dtype=torch.float64))
        return torch.cumsum(logp.exp(), dim=2).numpy()  # (n, K, bins)

    def cif(self, outputs: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Cumulative incidence of each cause at `times`: (n, K, len(times))."""
        cuts = np.asarray(self.state["cuts"])
        c = np.concatenate([np.zeros((len(outputs), len(self.causes), 1)), self._cif_at_cuts(outputs)], axis=2)
        idx = np.searchsorted(cuts, np.asarray(times, dtype=float), side="right")
        return c[:, :, np.clip(idx, 0, c.shape[2] - 1)]

    def survival(self, outputs: np.ndarray, times: np.ndarray) -> np.ndarray:
        return np.clip(1 - self.cif(outputs, times).sum(axis=1), 0, 1)

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        """Minus the restricted mean event-free time up to the last cut (differentiable, for attributions)."""
        cuts = torch.as_tensor(self.state["cuts"], dtype=outputs.dtype)
        logp, _ = self._pmf(outputs)
        surv = 1 - torch.cumsum(logp.exp().sum(dim=1), dim=1)
        widths = torch.diff(torch.cat([cuts.new_zeros(1), cuts]))
        return -(torch.cat([surv.new_ones(len(outputs), 1), surv[:, :-1]], dim=1) * widths).sum(dim=1)

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Risk, S(grid), then (competing risks only) each cause's incidence by the last cut."""
        risk = self.risk(torch.as_tensor(outputs, dtype=torch.float64)).numpy()
        cols = [risk[:, None], self.survival(outputs, self.task.grid)]
        if self.task.competing_risks:
            cols.append(self._cif_at_cuts(outputs)[:, :, -1])
        return np.column_stack(cols)


class _Head(nn.Module):
    """Wraps a network so its single output is the head's risk score (for Integrated Gradients)."""

    def __init__(self, module: nn.Module, head: Any) -> None:
        super().__init__()
        self.module, self.head = module, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.risk(self.module(x))[:, None]
