"""Split conformal prediction: prediction sets (classification) and intervals (regression) with a coverage guarantee.

The validation predictions are the calibration set; the test predictions show the empirical coverage.
Classification uses the LAC score (1 - probability of the true class; Sadinle et al. 2019), class-conditional
by default (Mondrian: one quantile per class, so a rare class is covered as often as a common one; Vovk 2012).
Regression uses absolute residuals (Lei et al. 2018). Survival uses the same class-conditional sets for the
binary status "event by horizon h", at each horizon, calibrated on the patients whose status at h is known,
each weighted by the inverse probability of remaining uncensored (IPCW), so censoring does not bias the
quantile. With k-fold runs the calibration rows of every fold are pooled (docs/evaluation.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medflow.evaluate.bootstrap import patient_resamples

__all__ = ["ConformalConfig", "conformal_quantile", "fit_conformal", "apply_conformal", "conformal_summary"]


class ConformalConfig(BaseModel):
    """Conformal prediction options (YAML: `evaluate.conformal:`)."""

    model_config = ConfigDict(extra="forbid")
    coverage: float = Field(0.9, gt=0.5, lt=1, description="target probability that the set holds the truth")
    class_conditional: bool = Field(True, description="one quantile per class (classification, survival)")


def conformal_quantile(scores: np.ndarray, coverage: float, weights: np.ndarray | None = None) -> float:
    """The split-conformal threshold: the ceil((n + 1) * coverage)-th smallest score (inf when n is too small).

    With `weights` (IPCW), the weighted quantile at level coverage with the test point's weight taken as
    the largest calibration weight (a conservative version of Tibshirani et al. 2019).
    """
    s = np.sort(np.asarray(scores, dtype=float))
    n = len(s)
    if n == 0:  # nothing to calibrate on: the set must hold every label
        return float("inf")
    if weights is None:
        k = int(np.ceil((n + 1) * coverage))
        return float(s[k - 1]) if 0 < k <= n else float("inf")
    order = np.argsort(np.asarray(scores, dtype=float))
    w = np.asarray(weights, dtype=float)[order]
    cum = np.cumsum(w) / (w.sum() + w.max())
    idx = np.searchsorted(cum, coverage)
    return float(s[idx]) if idx < n else float("inf")


def _probabilities(score: np.ndarray, task_kind: str) -> np.ndarray:
    s = np.asarray(score, dtype=float)
    return np.column_stack([1 - s, s]) if task_kind == "binary" else s


def _class_quantiles(p: np.ndarray, y: np.ndarray, cfg: ConformalConfig,
                     weights: np.ndarray | None = None) -> list[float]:
    y = np.asarray(y).astype(int)
    alphas = 1 - p[np.arange(len(y)), y]
    w = None if weights is None else np.asarray(weights, dtype=float)
    if not cfg.class_conditional:
        return [conformal_quantile(alphas, cfg.coverage, w)] * p.shape[1]
    return [conformal_quantile(alphas[y == j], cfg.coverage, None if w is None else w[y == j])
            for j in range(p.shape[1])]


def _km_censoring(time: np.ndarray, event: np.ndarray):
    """G(t), the Kaplan-Meier probability of remaining uncensored, as a step function."""
    from medflow.evaluate.survival import kaplan_meier

    grid, surv = kaplan_meier(time, 1 - np.asarray(event, dtype=float))

    def g(x: np.ndarray) -> np.ndarray:  # value just before x (left limit), floored to keep weights finite
        i = np.searchsorted(grid, np.asarray(x, dtype=float), side="left") - 1
        return np.maximum(np.where(i >= 0, surv[np.clip(i, 0, None)], 1.0), 0.05)

    return g


def _status_at(y: np.ndarray, h: float, g) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Known status at horizon h ('event by h' = 1), the mask of patients whose status is known, IPC weights."""
    time, event = y[:, 0], y[:, 1]
    known = (time > h) | (event == 1)
    status = ((time <= h) & (event == 1)).astype(int)
    w = 1.0 / g(np.minimum(time, h))
    return status, known, w


def _event_prob(score: np.ndarray, grid: np.ndarray, h: float) -> np.ndarray:
    """1 - S(h) from the survival columns of a survival score matrix (the last grid point at or before h)."""
    j = max(int(np.searchsorted(grid, h, side="right")) - 1, 0)
    return 1 - np.asarray(score, dtype=float)[:, 1 + j]


def fit_conformal(y: np.ndarray, score: np.ndarray, task_kind: str, cfg: ConformalConfig,
                  state: dict | None = None) -> dict[str, Any]:
    """Calibrate on validation targets and predictions; the result is saved in metrics.json and used by predict."""
    out: dict[str, Any] = {"coverage": cfg.coverage, "n_calibration": int(len(y))}
    if task_kind == "regression":
        out.update(method="absolute_residual",
                   qhat=conformal_quantile(np.abs(np.asarray(y, float) - np.asarray(score, float)), cfg.coverage))
    elif task_kind in ("binary", "multiclass"):
        out.update(method="lac_class_conditional" if cfg.class_conditional else "lac",
                   qhat=_class_quantiles(_probabilities(score, task_kind), y, cfg))
    elif task_kind == "survival":
        grid, horizons = np.asarray(state["grid"], float), list(state.get("horizons") or [])
        g = _km_censoring(y[:, 0], y[:, 1])
        q = {}
        for h in horizons:
            status, known, w = _status_at(y, h, g)
            p = _probabilities(_event_prob(score, grid, h)[known], "binary")
            q[f"{h:g}"] = _class_quantiles(p, status[known], cfg, w[known])
        out.update(method="ipcw_event_by_horizon" + ("_class_conditional" if cfg.class_conditional else ""),
                   qhat=q)
    else:
        raise ValueError(f"no conformal method for task kind {task_kind!r}")
    return out


def apply_conformal(fitted: dict[str, Any], score: np.ndarray, task_kind: str,
                    grid: np.ndarray | None = None) -> Any:
    """Prediction sets (n, k) booleans, intervals (low, high), or for survival {horizon: (n, 2) sets}."""
    if task_kind == "regression":
        s = np.asarray(score, dtype=float)
        return s - fitted["qhat"], s + fitted["qhat"]
    if task_kind == "survival":
        return {h: 1 - _probabilities(_event_prob(score, np.asarray(grid), float(h)), "binary")
                <= np.asarray(q)[None, :] for h, q in fitted["qhat"].items()}
    return 1 - _probabilities(score, task_kind) <= np.asarray(fitted["qhat"])[None, :]


def _coverage_ci(covered: np.ndarray, pid: np.ndarray, seed: int, level: float = 0.95,
                 weights: np.ndarray | None = None, n_boot: int = 300) -> dict[str, float]:
    w = np.ones(len(covered)) if weights is None else np.asarray(weights, float)
    value = float(np.sum(w * covered) / np.sum(w)) if len(covered) else float("nan")
    boots = [np.sum(w[i] * covered[i]) / np.sum(w[i]) for i in patient_resamples(pid, n_boot, seed) if len(i)]
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2]) if boots else (np.nan, np.nan)
    return {"value": value, "low": float(lo), "high": float(hi)}


def conformal_summary(fitted: dict[str, Any], y: np.ndarray, score: np.ndarray, pid: np.ndarray, task_kind: str,
                      seed: int, classes: list | None = None, grid: np.ndarray | None = None) -> dict[str, Any]:
    """Empirical coverage on the test split (with a patient-bootstrap 95% CI), set sizes or interval widths."""
    if task_kind == "regression":
        lo, hi = apply_conformal(fitted, score, task_kind)
        yy = np.asarray(y, dtype=float)
        return {"coverage": _coverage_ci(((yy >= lo) & (yy <= hi)).astype(float), pid, seed),
                "mean_width": float(np.mean(hi - lo))}
    if task_kind == "survival":
        sets = apply_conformal(fitted, score, task_kind, grid)
        g = _km_censoring(y[:, 0], y[:, 1])
        out = {}
        for h, s in sets.items():
            status, known, w = _status_at(y, float(h), g)
            cov = s[np.arange(len(status)), status][known].astype(float)
            out[h] = {"coverage": _coverage_ci(cov, pid[known], seed, weights=w[known]),
                      "mean_set_size": float(s[known].sum(axis=1).mean()) if known.any() else float("nan"),
                      "n_known": int(known.sum())}
        return {"horizons": out}
    sets = apply_conformal(fitted, score, task_kind)
    yy = np.asarray(y).astype(int)
    covered = sets[np.arange(len(yy)), yy].astype(float)
    size = sets.sum(axis=1)
    names = [str(c) for c in (classes or range(sets.shape[1]))]
    by_class = {names[j]: _coverage_ci(covered[yy == j], pid[yy == j], seed) for j in range(sets.shape[1])
                if (yy == j).any()}
    return {"coverage": _coverage_ci(covered, pid, seed), "coverage_by_class": by_class,
            "mean_set_size": float(size.mean()), "singleton_share": float((size == 1).mean()),
            "empty_share": float((size == 0).mean())}
