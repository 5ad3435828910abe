"""Differentially private training (DP-SGD) on the Trainer, with Opacus's per-sample gradients and accountant.

`train: {privacy: {epsilon: 3, delta: 1e-5, max_grad_norm: 1.0}}` trains every deep model of a study so that
the released weights are (epsilon, delta)-differentially private with respect to the training patients'
records (Abadi et al. 2016): each optimizer step clips every sample's gradient to `max_grad_norm`, adds Gaussian
noise of scale `noise_multiplier * max_grad_norm` to their sum, and batches are drawn by Poisson sampling (each
record in each step with probability batch_size / n), which the RDP accountant assumes. The noise multiplier is
the smallest that keeps the whole planned training (max_epochs) within epsilon; early stopping can only spend
less, and the epsilon actually spent is recorded per epoch. Validation records drive early stopping and model
selection; they are not protected by the guarantee (keep them apart from the records you need to protect).
Models whose layers Opacus cannot compute per-sample gradients for (BatchNorm mixes samples) are refused with
Opacus's reason.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError

__all__ = ["PrivacyConfig", "PrivateTraining", "dp_layers", "restore_layers"]


def dp_layers(module: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """Swap every `nn.GRU` / `nn.LSTM` inside `module` for Opacus's `DPGRU` / `DPLSTM` in place (the same weights
    under the same parameter names), so DP-SGD can compute their per-sample gradients; returns what
    `restore_layers` puts back after training, so the saved and served model is the plain one."""
    from opacus.layers import DPGRU, DPLSTM

    swapped = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (nn.GRU, nn.LSTM):
                cls = DPGRU if isinstance(child, nn.GRU) else DPLSTM
                dp = cls(child.input_size, child.hidden_size, num_layers=child.num_layers, bias=child.bias,
                         batch_first=child.batch_first, dropout=child.dropout, bidirectional=child.bidirectional)
                dp.load_state_dict(child.state_dict())
                setattr(parent, name, dp)
                swapped.append((parent, name, child))
    return swapped


def restore_layers(swapped: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """Put the plain recurrent layers back, carrying the trained weights over."""
    for parent, name, original in swapped:
        original.load_state_dict(getattr(parent, name).state_dict())
        setattr(parent, name, original)


class PrivacyConfig(BaseModel):
    """DP-SGD options (YAML: `train: {privacy: {...}}`)."""

    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(gt=0, le=100)
    delta: float = Field(1e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)


class PrivateTraining:
    """Wraps a module and optimizer for DP-SGD; draws Poisson batches and keeps the privacy ledger."""

    def __init__(self, cfg: PrivacyConfig, module: nn.Module, optimizer: torch.optim.Optimizer, n: int,
                 batch_size: int, max_epochs: int, generator: torch.Generator) -> None:
        from opacus import GradSampleModule
        from opacus.accountants import RDPAccountant
        from opacus.accountants.utils import get_noise_multiplier
        from opacus.optimizers import DPOptimizer
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(module, strict=False)
        if errors:
            reasons = "; ".join(sorted({str(e).split("\n")[0] for e in errors}))
            raise ConfigError(f"train.privacy: this model cannot be trained with DP-SGD: {reasons}. Use a model "
                              "without BatchNorm or attention (mlp with norm: layer or none; on event data gru, "
                              "lstm, retain or bag_of_codes_mlp) or drop train.privacy.")
        if n < 2:
            raise ConfigError("train.privacy: DP-SGD needs at least 2 training records.")
        if cfg.delta >= 1 / n:
            raise ConfigError(f"train.privacy.delta {cfg.delta:g} is not below 1/n = {1 / n:.2g} for {n} training "
                              "records: a delta that large allows a mechanism that publishes some records outright; "
                              f"set delta below {1 / n:.1g} (e.g. 1e-5).")
        self.cfg, self.n, self.generator = cfg, n, generator
        self.sample_rate = min(1.0, batch_size / n)
        self.steps_per_epoch = max(1, round(1 / self.sample_rate))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            self.noise_multiplier = float(get_noise_multiplier(
                target_epsilon=cfg.epsilon, target_delta=cfg.delta, sample_rate=self.sample_rate,
                steps=self.steps_per_epoch * max_epochs, accountant="rdp"))
        self.module = GradSampleModule(module)
        self.optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                     max_grad_norm=cfg.max_grad_norm, expected_batch_size=batch_size)
        self.accountant = RDPAccountant()
        from opacus.accountants.analysis.rdp import compute_rdp

        self._orders = list(RDPAccountant.DEFAULT_ALPHAS)
        self._rdp_step = np.asarray(compute_rdp(q=self.sample_rate, noise_multiplier=self.noise_multiplier, steps=1,
                                                orders=self._orders))

    def batches(self) -> list[torch.Tensor]:
        """One epoch of Poisson-sampled batches (sizes vary; a batch may be empty)."""
        draws = torch.rand(self.steps_per_epoch, self.n, generator=self.generator) < self.sample_rate
        return [torch.nonzero(row, as_tuple=True)[0] for row in draws]

    def epoch(self, batch_loss: Any) -> tuple[float, int]:
        """One epoch of private steps; `batch_loss(idx)` is the mean loss of records idx. Returns the summed batch
        losses and the number of non-empty batches."""
        total, batches = 0.0, 0
        for idx in self.batches():
            loss = batch_loss(idx) if len(idx) else None
            self.step(loss)
            if loss is not None:
                total, batches = total + float(loss.detach()), batches + 1
        return total, batches

    def step(self, loss: torch.Tensor | None) -> None:
        """Clip per-sample gradients, add noise, update, and account for the step (also for an empty batch,
        which releases noise only)."""
        if loss is not None:
            with warnings.catch_warnings():  # inputs never require grad here: Opacus's hook note does not apply
                warnings.filterwarnings("ignore", message="Full backward hook is firing")
                loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def spent(self) -> dict[str, Any]:
        """The privacy spent so far. Every step has the same noise and sample rate, so the RDP of the whole run
        is `steps` times one step's (computed once): the same figure as the accountant's `get_epsilon`, without
        its 8 ms per call, which was most of an epoch's cost on small data."""
        from opacus.accountants.analysis.rdp import get_privacy_spent

        steps = sum(h[2] for h in self.accountant.history)
        with warnings.catch_warnings():  # "optimal order is the largest alpha": the bound is valid, if loose
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            eps = float(get_privacy_spent(orders=self._orders, rdp=self._rdp_step * steps,
                                          delta=self.cfg.delta)[0]) if steps else 0.0
        return {"epsilon_spent": eps, "epsilon_target": self.cfg.epsilon, "delta": self.cfg.delta,
                "max_grad_norm": self.cfg.max_grad_norm, "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate, "steps": int(steps), "accountant": "rdp (opacus)"}

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.accountant.history]}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.accountant.history = [tuple(h) for h in sd.get("history", [])]

    def close(self) -> None:
        """Detach Opacus's hooks and per-sample gradients: the trained module is a plain module again."""
        close = getattr(self.module, "_close", None) or self.module.remove_hooks
        close()
        for p in self.module._module.parameters():
            p.grad_sample = None
