"""The Trainer: owns the loop, optimizer, schedule, seeds and callbacks; the task owns the loss.

Data are in-memory tensors, or any input with `len()` and `batch(indices)` returning what the module's
forward takes (e.g. `features.codes.EventTensors`, which builds padded event batches); batches are drawn
with a seeded generator, so the same seed gives bit-identical weights on CPU, and a run resumed from
a checkpoint continues the exact sequence of batches and dropout masks of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.errors import ConfigError
from medflow.train import distributed
from medflow.train.augment import Augmenter, AugmentSpec
from medflow.train.privacy import PrivacyConfig

__all__ = ["TrainConfig", "Trainer", "TrainState", "take", "predict_outputs"]


def take(x: Any, idx: torch.Tensor | np.ndarray) -> Any:
    """Rows `idx` of an input: a tensor's rows, or `x.batch(idx)` for batchable inputs (event windows)."""
    if hasattr(x, "batch"):
        return x.batch(idx.numpy() if isinstance(idx, torch.Tensor) else idx)
    return x[idx]


@torch.no_grad()
def predict_outputs(module: nn.Module, x: Any, batch_size: int = 4096) -> torch.Tensor:
    """Raw outputs of `module` in eval mode over all rows of `x`, in batches."""
    if module.training:  # eval() walks every submodule: a quarter of a served one-record prediction's model time
        module.eval()
    n = len(x)
    if hasattr(x, "batch"):
        batch_size = min(batch_size, 512)  # padded event windows are n x L x d
    elif x.ndim > 2:  # images: activations grow with the pixels, so batches hold about 2M input values
        batch_size = max(1, min(batch_size, 2**21 // max(1, x[0].numel())))
    if n <= batch_size and isinstance(x, torch.Tensor):  # one batch (e.g. a served request): no index, no copy
        return module(x)
    return torch.cat([module(take(x, torch.arange(i, min(i + batch_size, n)))) for i in range(0, n, batch_size)])


class TrainConfig(BaseModel):
    """Options of the deep models' training (YAML: `train:`)."""

    model_config = ConfigDict(extra="forbid")
    max_epochs: int = Field(200, ge=1, le=100_000)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    patience: int = Field(20, ge=1)
    monitor: str | None = None
    grad_clip: float | None = Field(1.0, gt=0)
    progress: bool = True
    privacy: PrivacyConfig | None = None  # DP-SGD (train/privacy.py); per-sample clipping replaces grad_clip
    augment: Literal["default"] | list[AugmentSpec] | None = Field(
        None, description="image augmentation of training batches: 'default' or MONAI random transforms "
                          "(train/augment.py)")


@dataclass
class TrainState:
    """What the loop knows after each epoch; callbacks read and write it."""

    epoch: int = -1
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    val_metric: float = float("nan")
    should_stop: bool = False
    history: list[dict[str, float]] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # DP-SGD: epsilon spent so far, noise multiplier, steps


def _lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def factor(epoch: int) -> float:
        if epoch < cfg.warmup_epochs:
            return (epoch + 1) / (cfg.warmup_epochs + 1)
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.max_epochs - cfg.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))

    return factor


class Trainer:
    """Fits an `nn.Module` on tensors with AdamW, a learning-rate schedule and callbacks.

    Args:
        config: the training options.
        seed: seeds the model's initialization (when `fit` builds it), the batch order and dropout.
        callbacks: optional behaviour (early stopping, checkpoints, progress), called in order.
    """

    def __init__(self, config: TrainConfig, seed: int = 0, callbacks: Sequence[Any] = ()) -> None:
        self.config = config
        self.seed = seed
        self.callbacks = list(callbacks)
        self.state = TrainState()
        self.module: nn.Module | None = None
        self.private: Any = None  # DP-SGD wrapper while fitting with train.privacy
        self._swapped: list = []  # recurrent layers swapped for Opacus's while training privately
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.generator = torch.Generator().manual_seed(seed)
        self._augmenter: Augmenter | None = None

    def fit(
        self,
        module: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_valid: torch.Tensor | None = None,
        y_valid: torch.Tensor | None = None,
        val_metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
    ) -> TrainState:
        """Train `module` in place; returns the final state (history per epoch)."""
        cfg = self.config
        self.setup(module, loss_fn, len(x_train))
        for cb in self.callbacks:
            cb.on_fit_start(self)
        for epoch in range(self.state.epoch + 1, cfg.max_epochs):
            if self.state.should_stop:  # resumed from a checkpoint written after the stop decision
                break
            self.state.train_loss = self.train_epoch(x_train, y_train)
            self.state.epoch = epoch
            if x_valid is not None and len(x_valid):
                out = self.predict_outputs(x_valid)
                self.state.val_loss = float(loss_fn(out, y_valid))
                if val_metric is not None:
                    self.state.val_metric = float(val_metric(y_valid.numpy(), out.numpy()))
            self.state.history.append({"epoch": epoch, "train_loss": self.state.train_loss,
                                       "val_loss": self.state.val_loss, "val_metric": self.state.val_metric,
                                       "lr": self.optimizer.param_groups[0]["lr"]})
            if self.private is not None:
                self.state.history[-1]["epsilon"] = self.state.privacy["epsilon_spent"]
            for cb in self.callbacks:
                cb.on_epoch_end(self)
            if self.state.should_stop:
                break
        for cb in self.callbacks:
            cb.on_fit_end(self)
        self.close()
        return self.state

    def setup(self, module: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              n: int) -> None:
        """Create the optimizer, schedule and (with train.privacy) the DP-SGD wrapper for `n` training records.

        `fit` calls it; code that drives epochs itself (a federated site, `train/federated.py`) calls it once and
        then `train_epoch` as often as it needs: the optimizer state, the schedule, the batch generator and the
        privacy ledger carry over between calls, exactly as inside `fit`.
        """
        cfg = self.config
        world = distributed.world_size()
        if cfg.privacy is not None and world > 1:
            raise ConfigError("train.privacy: DP-SGD across several processes is not supported; train with "
                              "--nproc 1.")
        self.module = module
        if cfg.privacy is not None:  # GRU / LSTM train as Opacus's DP layers (the same weights), then go back
            from medflow.train.privacy import dp_layers

            self._swapped = dp_layers(module)
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(cfg))
        self.loss_fn = loss_fn
        self._batch_size = min(cfg.batch_size, n)
        self.private = None
        if cfg.privacy is not None:
            from medflow.train.privacy import PrivateTraining

            self.private = PrivateTraining(cfg.privacy, module, self.optimizer, n, self._batch_size, cfg.max_epochs,
                                           self.generator)
        self._forward = module if self.private is None else self.private.module
        if world > 1:  # after a resume has loaded the weights: DDP starts from rank 0's, identical anyway
            from torch.nn.parallel import DistributedDataParallel

            self._forward = DistributedDataParallel(module)

    def train_epoch(self, x_train: Any, y_train: torch.Tensor) -> float:
        """One epoch over the training records (after `setup`); returns the mean batch loss over all processes."""
        self.module.train()
        forward, loss_fn = self._forward, self.loss_fn
        if self.config.augment:
            if self.private is not None:
                raise ConfigError("train.augment with train.privacy: DP-SGD's accounting assumes the records as "
                                  "they are; remove one of the two.")
            if self._augmenter is None:
                first = torch.arange(1)
                self._augmenter = Augmenter(self.config.augment, take(x_train, first), y_train[first], self.seed)
            self._augmenter.start_epoch(self.state.epoch + 1)
        if self.private is not None:  # DP-SGD: Poisson batches, per-sample clipping, noise, accounting
            total, batches = self.private.epoch(lambda idx: loss_fn(forward(take(x_train, idx)), y_train[idx]))
        else:
            total, batches = self._epoch(forward, loss_fn, x_train, y_train, len(x_train), self._batch_size,
                                         distributed.world_size(), distributed.rank())
        self.scheduler.step()
        if self.private is not None:
            self.state.privacy = self.private.spent()
        return distributed.all_sum(total) / max(batches, 1)  # one message per epoch

    def close(self) -> None:
        """End training: Opacus's hooks come off (a plain module again) and the module is put in eval mode."""
        if self.private is not None:
            self.private.close()
        if self._swapped:
            from medflow.train.privacy import restore_layers

            restore_layers(self._swapped)
            self._swapped = []
        if self.module is not None:
            self.module.eval()

    def _epoch(self, forward: Any, loss_fn: Callable, x_train: Any, y_train: torch.Tensor, n: int, bs: int,
               world: int, rank: int) -> tuple[float, int]:
        """One pass over shuffled batches; returns the summed batch losses and the number of batches."""
        total, batches = 0.0, 0
        for idx in self._batches(x_train, n, bs):
            if len(idx) < max(2, world) and n >= 2:  # BatchNorm cannot train on a batch of one
                continue
            self.optimizer.zero_grad(set_to_none=True)
            part = torch.tensor_split(idx, world)[rank] if world > 1 else idx
            xb, yb = take(x_train, part), y_train[part]
            if self._augmenter is not None:
                xb, yb = self._augmenter(xb, yb)
            loss = loss_fn(forward(xb), yb)
            share = len(part) / len(idx)
            # DDP averages gradients over processes; weighting each process's mean loss by its share of
            # the global batch makes that average the gradient of the global batch's mean loss
            (loss * (share * world)).backward()
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
            self.optimizer.step()
            total += float(loss.detach()) * share
            batches += 1
        return total, batches

    def _batches(self, x: Any, n: int, bs: int) -> list[torch.Tensor]:
        """Shuffled batches; inputs with `sizes()` (event windows) are bucketed by length.

        Bucketing: the shuffled order is cut into chunks of 50 batches, each chunk sorted by window length
        and cut into batches, and the batches shuffled, so a batch pads to similar lengths (much less
        padding for RNNs and attention) while every epoch still sees a new random order.
        """
        perm = torch.randperm(n, generator=self.generator)
        if not hasattr(x, "sizes"):
            return [perm[i:i + bs] for i in range(0, n, bs)]
        sizes = torch.as_tensor(x.sizes())
        chunk = bs * 50
        out = []
        for i in range(0, n, chunk):
            part = perm[i:i + chunk]
            part = part[torch.argsort(sizes[part], stable=True)]
            out += [part[j:j + bs] for j in range(0, len(part), bs)]
        order = torch.randperm(len(out), generator=self.generator)
        return [out[k] for k in order.tolist()]

    @torch.no_grad()
    def predict_outputs(self, x: Any, batch_size: int = 4096) -> torch.Tensor:
        """Raw outputs in eval mode, batched."""
        assert self.module is not None
        return predict_outputs(self.module, x, batch_size)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where training stopped."""
        assert self.module is not None and self.optimizer is not None and self.scheduler is not None
        return {
            "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "epoch": self.state.epoch,
            "history": self.state.history, "should_stop": self.state.should_stop, "torch_rng": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "callbacks": {type(cb).__name__: cb.state_dict() for cb in self.callbacks},
            "privacy": None if getattr(self, "private", None) is None else self.private.state_dict(),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        assert self.module is not None and self.optimizer is not None and self.scheduler is not None
        self.module.load_state_dict(sd["module"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.state.epoch = int(sd["epoch"])
        self.state.history = list(sd["history"])
        self.state.should_stop = bool(sd["should_stop"])
        torch.set_rng_state(sd["torch_rng"])
        self.generator.set_state(sd["generator"])
        for cb in self.callbacks:
            if type(cb).__name__ in sd["callbacks"]:
                cb.load_state_dict(sd["callbacks"][type(cb).__name__])
        if getattr(self, "private", None) is not None and sd.get("privacy"):
            self.private.load_state_dict(sd["privacy"])
