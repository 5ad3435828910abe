"""Survival models: Cox PH and random survival forest (scikit-survival), a Kaplan-Meier no-skill
reference, and the configs of the deep ones (DeepSurv and DeepHit heads live in tasks/survival.py).

Every survival estimator predicts an ``(n, 1 + G)`` array: the risk score, then S(t) on the task's grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator

from medflow.evaluate.survival import structured
from medflow.models.base import SklearnEstimator, fit_or_explain
from medflow.models.tabular import MLPConfig
from medflow.tasks.base import Task
from medflow.tasks.survival import DeepHitHead
from medflow.train.trainer import TrainConfig

__all__ = ["CoxPHConfig", "RSFConfig", "KMConfig", "DeepHitConfig", "SurvivalSklearnEstimator",
           "KaplanMeierReference", "cox_information", "deephit_head", "build_deephit_body"]


class CoxPHConfig(BaseModel):
    """Ridge-penalized Cox proportional hazards (Breslow ties).

    `alpha` must be > 0: a one-hot block sums to 1, which the baseline hazard already absorbs, so an
    unpenalized fit is singular; a tiny alpha (1e-6) is the plain Cox model for practical purposes.
    """

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(0.1, gt=0)


class RSFConfig(BaseModel):
    """Random survival forest; training times are coarsened to `time_bins` quantiles to bound its size."""

    model_config = ConfigDict(extra="forbid")
    n_estimators: int = Field(100, ge=1, le=2000)
    min_samples_leaf: int = Field(15, ge=1)
    max_features: str | float = "sqrt"
    time_bins: int = Field(100, ge=10, le=10_000)


class KMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeepHitConfig(MLPConfig):
    """An MLP body with the DeepHit head: `n_bins` time intervals, loss = alpha * NLL + (1 - alpha) * rank."""

    n_bins: int = Field(30, ge=2, le=1000)
    alpha: float = Field(0.2, ge=0, le=1)
    sigma: float = Field(0.1, gt=0)


def build_deephit_body(in_dim: int, out_dim: int, n_bins: int, alpha: float, sigma: float, **mlp: Any):
    from medflow.models.tabular import MLP

    return MLP(in_dim, out_dim, **mlp)


def deephit_head(task: Task, params: DeepHitConfig) -> DeepHitHead:
    return DeepHitHead(task, params.n_bins, params.alpha, params.sigma)


class KaplanMeierReference(BaseEstimator):
    """No-skill reference: the same Kaplan-Meier curve and the same risk for every patient."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> KaplanMeierReference:
        from sksurv.nonparametric import kaplan_meier_estimator

        self.unique_times_, self.survival_ = kaplan_meier_estimator(y["event"], y["time"])
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x))

    def predict_survival_function(self, x: np.ndarray, return_array: bool = True) -> np.ndarray:
        return np.tile(self.survival_, (len(x), 1))


def build_cox(task: Task, seed: int, alpha: float):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    return CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow", n_iter=200)


def build_rsf(task: Task, seed: int, time_bins: int, **params: Any):
    from sksurv.ensemble import RandomSurvivalForest

    return RandomSurvivalForest(random_state=seed, n_jobs=1, **params)


def build_km(task: Task, seed: int):
    return KaplanMeierReference()


def _coarsen(y: np.ndarray, bins: int) -> np.ndarray:
    """Round times up to the nearest of `bins` quantiles of the event times (fewer distinct times)."""
    t = y[:, 0].copy()
    edges = np.unique(np.quantile(t[y[:, 1] > 0.5], np.linspace(0, 1, bins)))
    idx = np.clip(np.searchsorted(edges, t, side="left"), 0, len(edges) - 1)
    out = y.copy()
    out[:, 0] = np.where(t <= edges[-1], edges[idx], t)
    return out


def cox_information(x: np.ndarray, y: np.ndarray, beta: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Observed information (negative Hessian) of the ridge-penalized Breslow partial log-likelihood."""
    order = np.argsort(-y[:, 0], kind="stable")
    x, t, e = x[order], y[order, 0], y[order, 1] > 0.5
    w = np.exp(x @ beta - (x @ beta).max())
    s0 = np.cumsum(w)
    s1 = np.cumsum(w[:, None] * x, axis=0)
    s2 = np.cumsum(w[:, None, None] * (x[:, :, None] * x[:, None, :]), axis=0)
    last = np.r_[np.flatnonzero(np.diff(t) != 0), len(t) - 1]  # risk set of a tie group ends at its last row
    group_end = last[np.searchsorted(last, np.arange(len(t)))]
    info = np.zeros((x.shape[1], x.shape[1]))
    for i in np.flatnonzero(e):
        g = group_end[i]
        mean = s1[g] / s0[g]
        info += s2[g] / s0[g] - np.outer(mean, mean)
    return info + alpha * np.eye(x.shape[1])


class SurvivalSklearnEstimator(SklearnEstimator):
    """A scikit-survival model on [time, event] targets, predicting risk and S(t) on the task grid."""

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        self.in_dim = x_train.shape[1]
        params = self.params.model_dump()
        self.model = self.spec.build(task=self.task, seed=seed, **params)
        y = _coarsen(np.asarray(y_train, float), params["time_bins"]) if "time_bins" in params else y_train
        fit_or_explain(self.spec.name, lambda: self.model.fit(x_train, structured(y)))
        self.summary = self._summary(x_train, np.asarray(y_train, float))
        return self

    def _summary(self, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
        if not hasattr(self.model, "coef_"):
            return {}
        beta = np.asarray(self.model.coef_, dtype=float)
        try:
            cov = np.linalg.inv(cox_information(x, y, beta, float(self.params.model_dump().get("alpha", 0))))
            se = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            se = np.full_like(beta, np.nan)
        return {"coef": beta.tolist(), "se": se.tolist()}

    def extra_state(self) -> dict[str, Any]:
        return {"summary": getattr(self, "summary", {})}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.summary = state.get("summary", {})

    def predict(self, x: np.ndarray) -> np.ndarray:
        risk = np.asarray(self.model.predict(x), dtype=float)
        return np.column_stack([risk, self.predict_survival(x, self.task.grid)])

    def predict_survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        values = np.asarray(self.model.predict_survival_function(x, return_array=True), dtype=float)
        known = np.asarray(self.model.unique_times_, dtype=float)
        idx = np.searchsorted(known, np.asarray(times, dtype=float), side="right") - 1
        return np.where(idx >= 0, values[:, np.clip(idx, 0, None)], 1.0)
