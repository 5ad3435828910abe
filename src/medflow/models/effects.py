"""Treatment-effect models: meta-learners on gradient boosting, and TARNet, DragonNet and CFRNet on the Trainer.

Every model predicts ``[mu0, mu1, cate]`` per patient (`tasks.effects`). The deep ones share one network
(`TwoHeadNet`): a representation phi(x) and one outcome head per arm (Shalit, Johansson & Sontag 2017);
DragonNet adds a propensity head on phi and the targeted-regularization parameter epsilon (Shi, Blei &
Veitch 2019); CFRNet adds a penalty on the distance between the treated and control distributions of phi
(Wasserstein by Sinkhorn iterations, or linear MMD) and weights the factual loss by arm size.

>>> import torch
>>> net = TwoHeadNet(in_dim=5, out_dim=4, hidden=16, depth=2, head_hidden=8, head_depth=1, propensity=True)
>>> net(torch.zeros(3, 5)).shape
torch.Size([3, 4])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.models.base import SklearnEstimator, fit_or_explain
from medflow.train.trainer import TrainConfig

__all__ = ["TwoHeadNet", "TARNetConfig", "DragonNetConfig", "CFRNetConfig", "MetaLearnerConfig",
           "MetaLearnerEstimator", "build_tarnet", "build_dragonnet", "build_cfrnet", "dragonnet_head",
           "cfrnet_head", "sinkhorn_distance"]


class TARNetConfig(BaseModel):
    """Hyper-parameters of TARNet (and the shared body of DragonNet and CFRNet)."""

    model_config = ConfigDict(extra="forbid")
    hidden: int = Field(200, ge=1, le=4096)
    depth: int = Field(3, ge=1, le=16)
    head_hidden: int = Field(100, ge=1, le=4096)
    head_depth: int = Field(2, ge=1, le=16)
    dropout: float = Field(0.0, ge=0, lt=1)


class DragonNetConfig(TARNetConfig):
    alpha: float = Field(1.0, ge=0, description="weight of the propensity head's cross-entropy")
    beta: float = Field(1.0, ge=0, description="weight of the targeted regularization")
    targeted_reg: bool = True


class CFRNetConfig(TARNetConfig):
    alpha: float = Field(1.0, ge=0, description="weight of the balance penalty between arms' representations")
    balance: Literal["wasserstein", "mmd"] = "wasserstein"


def _mlp(width: int, hidden: int, depth: int, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ELU(), nn.Dropout(dropout)]
        width = hidden
    return nn.Sequential(*layers), width


class TwoHeadNet(nn.Module):
    """phi(x), then mu0(phi) and mu1(phi) [, propensity logit(phi), epsilon] [, phi itself].

    Output columns: 0 and 1 the potential outcomes on the link scale; with `propensity` 2 the treatment
    logit and 3 the targeted-regularization epsilon (one learned scalar); with `expose_rep` the last
    `hidden` columns are phi (for the balance penalty).
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 200, depth: int = 3, head_hidden: int = 100,
                 head_depth: int = 2, dropout: float = 0.0, propensity: bool = False, expose_rep: bool = False) -> None:
        super().__init__()
        expected = 2 + (2 if propensity else 0) + (hidden if expose_rep else 0)
        if out_dim != expected:
            raise ValueError(f"TwoHeadNet with these options has {expected} outputs, not {out_dim}")
        self.rep, width = _mlp(in_dim, hidden, depth, dropout)
        self.heads = nn.ModuleList()
        for _ in range(2):
            body, w = _mlp(width, head_hidden, head_depth, dropout)
            self.heads.append(nn.Sequential(body, nn.Linear(w, 1)))
        self.propensity = nn.Linear(width, 1) if propensity else None
        self.epsilon = nn.Parameter(torch.zeros(1)) if propensity else None
        self.expose_rep = expose_rep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = self.rep(x)
        parts = [self.heads[0](phi), self.heads[1](phi)]
        if self.propensity is not None:
            parts += [self.propensity(phi), self.epsilon.expand(len(x), 1)]
        if self.expose_rep:
            parts.append(phi)
        return torch.cat(parts, dim=1)


def build_tarnet(in_dim: int, out_dim: int, **p: Any) -> TwoHeadNet:
    return TwoHeadNet(in_dim, out_dim, **p)


def build_dragonnet(in_dim: int, out_dim: int, alpha: float, beta: float, targeted_reg: bool, **p: Any) -> TwoHeadNet:
    return TwoHeadNet(in_dim, out_dim, propensity=True, **p)


def build_cfrnet(in_dim: int, out_dim: int, alpha: float, balance: str, **p: Any) -> TwoHeadNet:
    return TwoHeadNet(in_dim, out_dim, expose_rep=True, **p)


class _EffectHead:
    """A head over the task's factual loss; predictions are the task's [mu0, mu1, cate]."""

    def __init__(self, task: Any, params: Any) -> None:
        self.task, self.params, self.state = task, params, {}

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return self.task.predict_from_outputs(np.asarray(outputs)[:, :2])


class DragonHead(_EffectHead):
    output_dim = 4

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target[:, 0].to(outputs.dtype)
        loss = self.task.factual_loss(outputs, target)
        logit = outputs[:, 2]
        loss = loss + self.params.alpha * nn.functional.binary_cross_entropy_with_logits(logit, t)
        if self.params.targeted_reg:
            g = torch.sigmoid(logit).clamp(0.01, 0.99)
            q = torch.where(t > 0.5, outputs[:, 1], outputs[:, 0])
            y = self.task.scaled_outcome(target[:, 1].to(outputs.dtype))
            if self.task.outcome_kind == "binary":
                q = torch.sigmoid(q)
            h = t / g - (1 - t) / (1 - g)
            loss = loss + self.params.beta * torch.mean((y - (q + outputs[:, 3] * h)) ** 2)
        return loss


def dragonnet_head(task: Any, params: Any) -> DragonHead:
    return DragonHead(task, params)


def sinkhorn_distance(a: torch.Tensor, b: torch.Tensor, lam: float = 10.0, iterations: int = 10) -> torch.Tensor:
    """Entropy-regularized Wasserstein-1 distance between two point clouds (uniform weights), as in CFR."""
    cost = torch.cdist(a, b)
    scale = cost.detach().mean().clamp_min(1e-8)
    kernel = torch.exp(-lam * cost / scale)
    u = torch.full((len(a),), 1.0 / len(a), dtype=a.dtype)
    v = torch.full((len(b),), 1.0 / len(b), dtype=a.dtype)
    r = torch.ones_like(u) / len(a)
    for _ in range(iterations):
        c = v / (kernel.T @ r).clamp_min(1e-30)
        r = u / (kernel @ c).clamp_min(1e-30)
    plan = r[:, None] * kernel * c[None, :]
    return torch.sum(plan.detach() * cost)


class CFRHead(_EffectHead):
    def __init__(self, task: Any, params: Any) -> None:
        super().__init__(task, params)
        self.output_dim = 2 + params.hidden

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = target[:, 0]
        u = float(self.task.state.get("treated_share", 0.5))
        w = torch.where(t > 0.5, 1 / (2 * u), 1 / (2 * (1 - u))).to(outputs.dtype)
        loss = self.task.factual_loss(outputs, target, w)
        phi = outputs[:, 2:]
        treated, control = phi[t > 0.5], phi[t <= 0.5]
        if len(treated) and len(control) and self.params.alpha > 0:
            if self.params.balance == "mmd":
                ipm = torch.sum((treated.mean(0) - control.mean(0)) ** 2)
            else:
                ipm = sinkhorn_distance(treated, control)
            loss = loss + self.params.alpha * ipm
        return loss


def cfrnet_head(task: Any, params: Any) -> CFRHead:
    return CFRHead(task, params)


class MetaLearnerConfig(BaseModel):
    """Gradient boosting (scikit-learn's histogram GBM) inside each meta-learner; defaults are scikit-learn's."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_iter: int = Field(100, ge=1, le=5000)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(0.0, ge=0)


def build_meta(task: Any, seed: int, **params: Any) -> dict:
    return {"params": params, "seed": seed}


class MetaLearnerEstimator(SklearnEstimator):
    """S-, T- and X-learners (Kuenzel et al. 2019) on gradient boosting; the name of the registry entry picks one.

    S: one outcome model on (x, t); T: one per arm; X: the T-learner's imputed individual effects regressed on
    x in each arm, blended by the propensity. Binary outcomes use classifiers (probabilities) for the outcome
    models, so the CATE is a risk difference.
    """

    def _gbm(self, classify: bool) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(random_state=self.seed, **self.params.model_dump())

    def _outcome(self, x: np.ndarray, y: np.ndarray) -> Any:
        binary = self.task.outcome_kind == "binary"
        if binary and len(np.unique(y)) < 2:
            from sklearn.dummy import DummyClassifier

            return DummyClassifier(strategy="prior").fit(x, y)
        return self._gbm(binary).fit(x, y)

    def _mu(self, model: Any, x: np.ndarray) -> np.ndarray:
        if self.task.outcome_kind == "binary":
            return model.predict_proba(x)[:, -1] if len(model.classes_) > 1 and model.classes_[-1] == 1 else (
                np.full(len(x), float(model.classes_[0])))
        return model.predict(x)

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        x = np.asarray(self.inputs(x_train), dtype=np.float64)
        y = np.asarray(y_train, dtype=float)
        t, out = y[:, 0].astype(int), y[:, 1]
        self.in_dim, self.seed = x.shape[1], seed
        name = self.spec.name

        def fit_all() -> dict:
            if name == "s_learner":
                return {"s": self._outcome(np.column_stack([x, t]), out)}
            models = {f"mu{a}": self._outcome(x[t == a], out[t == a]) for a in (0, 1)}
            if name == "x_learner":
                d1 = out[t == 1] - self._mu(models["mu0"], x[t == 1])
                d0 = self._mu(models["mu1"], x[t == 0]) - out[t == 0]
                models["tau1"] = self._gbm(False).fit(x[t == 1], d1)
                models["tau0"] = self._gbm(False).fit(x[t == 0], d0)
                models["g"] = self._gbm(True).fit(x, t)
            return models

        self.model = fit_or_explain(name, fit_all)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(self.inputs(x), dtype=np.float64)
        m = self.model
        if "s" in m:
            mu0 = self._mu(m["s"], np.column_stack([x, np.zeros(len(x))]))
            mu1 = self._mu(m["s"], np.column_stack([x, np.ones(len(x))]))
            return np.column_stack([mu0, mu1, mu1 - mu0])
        mu0, mu1 = self._mu(m["mu0"], x), self._mu(m["mu1"], x)
        if "g" in m:
            g = m["g"].predict_proba(x)[:, 1]
            cate = g * m["tau0"].predict(x) + (1 - g) * m["tau1"].predict(x)
            return np.column_stack([mu0, mu1, cate])
        return np.column_stack([mu0, mu1, mu1 - mu0])
