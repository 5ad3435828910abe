"""Deep estimators: a torch module trained by the core Trainer (early stopping, checkpoints, DP-SGD, federated
rounds), optionally as an ensemble of members trained with consecutive seeds."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from medflow.artifacts import atomic_write_bytes
from medflow.errors import ConfigError, ModelError
from medflow.models.spec import Estimator, ModelSpec
from medflow.tasks.base import Task
from medflow.train.callbacks import Checkpoint, EarlyStopping, ProgressBar, round_bar
from medflow.train.distributed import is_main
from medflow.train.trainer import TrainConfig, Trainer

__all__ = ["DeepEstimator", "Ensemble"]


class DeepEstimator(Estimator):
    """A torch module trained by the Trainer with early stopping and per-epoch checkpoints.

    The output head owns the loss and turns outputs into predictions: the task itself for
    classification and regression, `CoxHead` (DeepSurv) by default for survival, or the head the
    model's registry entry names (e.g. DeepHit).
    """

    module: nn.Module

    def __init__(self, spec: ModelSpec, params: BaseModel, task: Task) -> None:
        super().__init__(spec, params, task)
        self.head: Any = None
        self.ensemble = 1  # members trained with consecutive seeds and averaged (ModelEntry.ensemble)
        self.init: Any = None  # transfer learning (`models.transfer.Init`): weights to start from, layers to freeze

    def _make_head(self) -> Any:
        if self.spec.head is not None:
            return self.spec.head(self.task, self.params)
        if self.task.kind == "survival":
            from medflow.tasks.survival import CoxHead

            return CoxHead(self.task)
        return self.task

    def build_module(self, in_dim: int) -> nn.Module:
        """The network (an `Ensemble` of `ensemble` members when that is > 1), untrained."""
        if self.ensemble > 1:
            return Ensemble([self._build_member(in_dim) for _ in range(self.ensemble)])
        return self._build_member(in_dim)

    def _build_member(self, in_dim: int) -> nn.Module:
        self.in_dim = in_dim
        if self.head is None:
            self.head = self._make_head()
        kwargs = self.params.model_dump()
        if "input_shape" in inspect.signature(self.spec.build).parameters:
            kwargs["input_shape"] = self.input_shape
        if "layout" in inspect.signature(self.spec.build).parameters:
            kwargs["layout"] = self.layout
        if "sources" in inspect.signature(self.spec.build).parameters:
            if self.sources is None:
                raise ModelError(f"model '{self.spec.name}' needs the input column names (est.sources).")
            kwargs["sources"] = self.sources
        return self.spec.build(in_dim=in_dim, out_dim=self.head.output_dim, **kwargs)

    def extra_state(self) -> dict[str, Any]:
        return {"head": self.head.state} if self.head is not self.task else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.head = self._make_head()
        if self.head is not self.task:
            self.head.state = dict(state.get("head", {}))

    def explain_module(self) -> nn.Module:
        """The module whose single output is attributed: the logit, the head's risk score, or the effect."""
        if hasattr(self.task, "effect_module"):
            return self.task.effect_module(self.module)
        if hasattr(self.head, "risk"):
            from medflow.tasks.survival import _Head

            return _Head(self.module, self.head)
        return self.module

    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        """Train (with early stopping on `x_valid`); `ensemble` > 1 trains that many members with seeds seed,
        seed + 1, ... (each its own early stopping) and keeps their average (`Ensemble`)."""
        x_train, x_valid = self.inputs(x_train), self.inputs(x_valid)
        self.head = self._make_head()
        self.input_shape = [int(v) for v in x_train.shape[1:]]
        self.layout = x_train.input_layout() if hasattr(x_train, "input_layout") else None
        k = self.ensemble
        if k > 1 and train.privacy is not None:
            raise ConfigError(f"model '{self.spec.name}': an ensemble with DP-SGD would spend the privacy budget "
                              f"once per member ({k}x epsilon); train one private model (ensemble: 1).")
        if k > 1 and self.spec.inputs == "images":
            raise ConfigError(f"model '{self.spec.name}': ensembles of image models are not supported yet "
                              "(Grad-CAM explains one network); set ensemble: 1.")
        if self.init is not None and self.init.freeze == "features":
            return self._fit_frozen(x_train, y_train, seed)
        members, histories, best = [], [], []
        for i in range(k):
            member_dir = None if workdir is None else (workdir / f"member_{i}" if k > 1 else workdir)
            module, state, stop, resumed = self._fit_member(x_train, y_train, x_valid, y_valid, train, seed + i,
                                                             member_dir, f"{self.spec.name}" + (f"[{i + 1}/{k}]"
                                                                                                if k > 1 else ""))
            members.append(module)
            histories.append(state.history)
            best.append(stop.best_epoch)
            self.privacy = state.privacy  # DP-SGD: the epsilon spent (None when trained without train.privacy)
            self.resumed_from = resumed
        self.module = members[0] if k == 1 else Ensemble(members)
        self.history = histories[0] if k == 1 else [
            {"epoch": j, **{key: float(np.mean([h[j][key] for h in histories if j < len(h)]))
                            for key in ("train_loss", "val_loss", "val_metric")}}
            for j in range(min(len(h) for h in histories))]
        self.best_epoch = best[0] if k == 1 else best
        if hasattr(self.head, "after_fit"):
            self.head.after_fit(self.outputs(x_train), np.asarray(y_train))
        return self

    def _fit_frozen(self, x_train: Any, y_train: Any, seed: int) -> DeepEstimator:
        """A pretrained encoder's frozen representations into a cross-validated logistic regression head."""
        from medflow.models.transfer import fit_frozen_head

        if self.ensemble > 1:
            raise ConfigError(f"model '{self.spec.name}': mode frozen_features fits one logistic regression; an "
                              "ensemble of identical frozen encoders adds nothing (set ensemble: 1).")
        torch.manual_seed(seed)
        self.module = self._build_member(x_train.shape[1])
        self.init.apply(self.module)
        self.init.report["logistic_regression"] = fit_frozen_head(self.module, x_train, np.asarray(y_train), seed,
                                                                  getattr(self.task, "class_weight", None))
        self.history, self.best_epoch, self.privacy, self.resumed_from = [], 0, None, None
        return self

    def _fit_member(self, x_train: Any, y_train: Any, x_valid: Any, y_valid: Any, train: TrainConfig, seed: int,
                    workdir: Path | None, label: str) -> tuple[nn.Module, Any, Any, int | None]:
        from medflow.evaluate.metrics import get_metric

        torch.manual_seed(seed)
        self.module = self._build_member(x_train.shape[1])
        if self.init is not None:
            self.init.apply(self.module)
        monitor = train.monitor or self.task.monitor_metric
        metric = None if monitor == "loss" else get_metric(monitor)
        callbacks: list = [EarlyStopping("val_loss" if metric is None else "val_metric",
                                         higher_is_better=bool(metric and metric.higher_is_better),
                                         patience=train.patience)]
        if workdir is not None:
            callbacks.append(Checkpoint(workdir))
        if train.progress and is_main():
            callbacks.append(ProgressBar(f"{label:>18}"))
        trainer = Trainer(train, seed=seed, callbacks=callbacks)

        def val_metric(y: np.ndarray, out: np.ndarray) -> float:
            if hasattr(self.head, "after_fit"):  # e.g. the Breslow baseline, refitted on the current outputs
                self.head.after_fit(out, y)
            return metric(y, self.head.predict_from_outputs(out))

        state = trainer.fit(self.module, self.head.loss, _tensor(x_train), _target(y_train),
                            _tensor(x_valid), _target(y_valid), None if metric is None else val_metric)
        resumed = [cb.resumed_from for cb in callbacks if isinstance(cb, Checkpoint)]
        return self.module, state, callbacks[0], resumed[0] if resumed else None

    def predict_spread(self, x: Any) -> np.ndarray | None:
        """The standard deviation of the ensemble members' predictions per record (None for one network)."""
        if not isinstance(self.module, Ensemble):
            return None
        from medflow.train.trainer import predict_outputs

        xt = _tensor(self.inputs(x))
        preds = [np.asarray(self.head.predict_from_outputs(predict_outputs(m, xt).numpy()))
                 for m in self.module.members]
        return np.std(preds, axis=0)

    def site(self, name: str, x: Any, y: np.ndarray, x_valid: Any, y_valid: np.ndarray) -> Any:
        """One federated site's training and validation data as the tensors this model trains on."""
        from medflow.train.federated import Site

        return Site(name, _tensor(self.inputs(x)), _target(y), _tensor(self.inputs(x_valid)), _target(y_valid))

    def fit_federated(self, sites: list[tuple[str, Any, np.ndarray, Any, np.ndarray]], train: TrainConfig, fed: Any,
                      seed: int, progress: Callable | None = None, fit: Callable | None = None) -> DeepEstimator:
        """Train across sites with Flower (`train/federated.py`): `sites` are (name, x_train, y_train, x_stop,
        y_stop) per site; the weights of the round with the lowest site-weighted validation loss are kept.
        `fit`: how the rounds run (default: in this process, `federated_fit`; `train.loopback.loopback_fit` runs
        them as separate Flower processes)."""
        from medflow.train.federated import federated_fit

        fit = fit or federated_fit

        torch.manual_seed(seed)
        self.head = self._make_head()
        if hasattr(self.head, "after_fit"):
            raise ConfigError(f"model '{self.spec.name}': federated training of a model whose head is fitted on the "
                              "pooled training outputs after training (a survival baseline hazard) is not supported.")
        parts = [self.site(name, x, y, xv, yv) for name, x, y, xv, yv in sites]
        self.input_shape = [int(v) for v in parts[0].x_train.shape[1:]]
        self.layout = (parts[0].x_train.input_layout() if hasattr(parts[0].x_train, "input_layout")
                       else None)
        self.module = self.build_module(parts[0].x_train.shape[1])
        if self.init is not None:
            self.init.apply(self.module)
        show = progress is None and train.progress and is_main()
        with round_bar(f"{self.spec.name:>18}", fed.rounds, show) as bar:
            result = fit(self.module, self.head.loss, parts, train, fed, seed, progress or bar)
        self.module.load_state_dict(result.state_dict)
        self.module.eval()
        self.history = [{"epoch": h["round"] - 1, "train_loss": h["train_loss"], "val_loss": h["val_loss"],
                         "val_metric": float("nan"), "site_train_loss": h["site_train_loss"]} for h in result.history]
        self.best_epoch = result.best_round - 1
        if result.privacy:  # each record is protected by its own site's DP-SGD: the model's epsilon is the largest
            worst = max(result.privacy.values(), key=lambda p: p["epsilon_spent"])
            self.privacy = {**worst, "per_site": {k: v["epsilon_spent"] for k, v in result.privacy.items()}}
        else:
            self.privacy = None
        return self

    def outputs(self, x: Any) -> np.ndarray:
        from medflow.train.trainer import predict_outputs

        return predict_outputs(self.module, _tensor(self.inputs(x))).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict_from_outputs(self.outputs(x))

    def predict_survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        if not hasattr(self.head, "survival"):
            return super().predict_survival(x, times)
        return self.head.survival(self.outputs(x), np.asarray(times, dtype=float))

    def _save_weights(self, directory: Path) -> None:
        from safetensors.torch import save

        state = {k: v.contiguous() for k, v in self.module.state_dict().items()}
        atomic_write_bytes(directory / "model.safetensors", save(state))

    def _load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        self.module = self.build_module(self.in_dim)
        self.module.load_state_dict(load_file(directory / "model.safetensors"))
        self.module.eval()


class Ensemble(nn.Module):
    """Members of one architecture trained with different seeds; the output is the mean of theirs (for
    classification, the mean logit), so the head, the explainers and export treat it as one network."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Any) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


def _tensor(x: Any) -> Any:
    if hasattr(x, "batch"):  # batchable inputs (event windows) stay as they are
        return x
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


def _target(y: np.ndarray) -> torch.Tensor:
    y = np.asarray(y)
    return torch.as_tensor(y, dtype=torch.long if y.dtype.kind in "iub" else torch.float32)
