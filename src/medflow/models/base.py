"""Estimators: one fit/predict/save/load contract over deep (torch) and baseline (scikit-learn) models.

A saved model is its registry name, its plain hyper-parameters and its weights
(safetensors for torch, skops for scikit-learn): never a pickled class.
"""

from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from medflow.artifacts import atomic_write_bytes
from medflow.errors import ConfigError, ModelError
from medflow.registry import models as model_registry
from medflow.tasks.base import Task
from medflow.train.callbacks import Checkpoint, EarlyStopping, ProgressBar, round_bar
from medflow.train.distributed import is_main
from medflow.train.trainer import TrainConfig, Trainer

__all__ = ["ModelSpec", "Estimator", "DeepEstimator", "SklearnEstimator", "build_estimator", "load_estimator",
           "atomic_write_bytes", "fit_or_explain", "check_inputs"]

# which data each kind of model reads: tabular models also read event data (as count features)
_READS = {"tabular": {"tabular", "events"}, "events": {"events"}, "images": {"images"}}
_DATA_HINT = {"events": "event data (data.meds, data.fhir, data.events, or data.dataset: ehr_sim)",
              "images": "images (data.images, or data.dataset: phantoms_2d / phantoms_3d)",
              "tabular": "a table (data.path or a tabular built-in)"}


def check_inputs(spec: ModelSpec, modality: str, source: str) -> None:
    """A model must read the data's modality: a ConfigError naming both otherwise."""
    if modality not in _READS.get(spec.inputs, {spec.inputs}):
        fits = sorted(n for n, s in model_registry.items() if modality in _READS.get(s.inputs, {s.inputs}))
        raise ConfigError(f"model '{spec.name}' reads {spec.inputs} but {source} holds {modality}; give it "
                          f"{_DATA_HINT.get(spec.inputs, spec.inputs)}, or choose a model for {modality}: "
                          f"{', '.join(fits)}.")


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build a model for a task from plain dimensions and parameters."""

    name: str
    family: str  # "deep" or "baseline"
    task_kinds: frozenset[str]
    params: type[BaseModel]
    build: Callable[..., Any]
    description: str
    head: Callable[[Task, BaseModel], Any] | None = None  # deep models: a non-default output head
    estimator: type | None = None  # overrides the Estimator class chosen by family
    inputs: str = "tabular"  # "tabular": a feature matrix (event data give count features); "events": windows;
    # "images": arrays (n, C, *spatial)
    # model selection prefers the lowest rank among models tied on validation (docs/evaluation.md):
    # 0 no-skill reference, 1 linear, 2 tree ensembles, 3 MLPs, 4 residual / fusion / sequence networks
    complexity: int = 3
    # the default hyper-parameter search of `tune:` (as tune.space writes it), or None: not tuned by default
    search: dict[str, Any] | None = None


def parse_params(spec: ModelSpec, params: dict[str, Any]) -> BaseModel:
    try:
        return spec.params(**params)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        fields = ", ".join(spec.params.model_fields)
        raise ConfigError(f"model '{spec.name}' params: {problems}. Valid params: {fields}.") from exc


class Estimator(ABC):
    """Fit on featurized arrays, predict task-level scores, save and load."""

    def __init__(self, spec: ModelSpec, params: BaseModel, task: Task) -> None:
        if task.kind not in spec.task_kinds:
            raise ConfigError(f"model '{spec.name}' does not support {task.kind} tasks; it supports "
                              f"{sorted(spec.task_kinds)}.")
        self.spec, self.params, self.task = spec, params, task
        self.in_dim: int | None = None
        self.input_shape: list[int] | None = None  # one record's input shape, e.g. [C, H, W] for images
        self.history: list[dict[str, float]] = []
        self.sources: list[str] | None = None  # raw column of each input column, set by the caller
        self.resumed_from: int | None = None  # the epoch a killed training resumed after, if it did

    def inputs(self, x: Any) -> Any:
        """The form of `x` this model takes: count features for tabular models on event data."""
        if self.spec.inputs == "tabular" and hasattr(x, "to_matrix"):
            return x.to_matrix()
        if self.spec.inputs == "events" and not hasattr(x, "batch"):
            raise ConfigError(f"model '{self.spec.name}' reads event sequences; give it event data (data.meds, "
                              "data.fhir, data.events or a simulated EHR dataset), or choose a tabular model.")
        is_image = not hasattr(x, "batch") and getattr(x, "ndim", 2) > 2
        if (self.spec.inputs == "images") != is_image:
            what = "images" if self.spec.inputs == "images" else "a feature table"
            raise ConfigError(f"model '{self.spec.name}' reads {what}, but got input of shape "
                              f"{getattr(x, 'shape', '?')}.")
        return x

    @abstractmethod
    def fit(self, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray,
            train: TrainConfig, seed: int, workdir: Path | None = None) -> Estimator: ...

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (binary: of the positive class; multiclass: n x k) or values (regression)."""

    def predict_survival(self, x: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Survival probability at `times` per record (survival tasks only)."""
        raise ModelError(f"model '{self.spec.name}' does not predict survival curves ({self.task.kind} task).")

    def extra_state(self) -> dict[str, Any]:
        """Plain-JSON state beyond the weights (e.g. a baseline hazard), saved in model.json."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    @abstractmethod
    def _save_weights(self, directory: Path) -> None: ...

    @abstractmethod
    def _load_weights(self, directory: Path) -> None: ...

    def save(self, directory: Path) -> None:
        """Write weights, then `model.json` last (its presence marks a complete model)."""
        self._save_weights(directory)
        meta = {"name": self.spec.name, "params": self.params.model_dump(), "in_dim": self.in_dim,
                "input_shape": self.input_shape,
                "sources": self.sources, "history": self.history, "resumed_from": self.resumed_from,
                "privacy": getattr(self, "privacy", None), "extra": self.extra_state()}
        atomic_write_bytes(directory / "model.json", json.dumps(meta, indent=1).encode())


def build_estimator(name: str, params: dict[str, Any], task: Task) -> Estimator:
    spec: ModelSpec = model_registry.get(name)
    parsed = parse_params(spec, params)
    cls = spec.estimator or (DeepEstimator if spec.family == "deep" else SklearnEstimator)
    return cls(spec, parsed, task)


def load_estimator(directory: Path, task: Task) -> Estimator:
    meta_path = directory / "model.json"
    if not meta_path.exists():
        raise ModelError(f"{directory}: no model.json; the model was not saved completely.")
    meta = json.loads(meta_path.read_text())
    est = build_estimator(meta["name"], meta["params"], task)
    est.in_dim = meta["in_dim"]
    est.input_shape = meta.get("input_shape")
    est.history = meta.get("history", [])
    est.privacy = meta.get("privacy")
    est.sources = meta.get("sources")
    est.load_extra_state(meta.get("extra", {}))
    est._load_weights(directory)
    return est


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
        self.init: Any = None  # transfer learning (`models.transfer.Init`): weights to start from, layers to freeze

    def _make_head(self) -> Any:
        if self.spec.head is not None:
            return self.spec.head(self.task, self.params)
        if self.task.kind == "survival":
            from medflow.tasks.survival import CoxHead

            return CoxHead(self.task)
        return self.task

    def _build(self, in_dim: int) -> nn.Module:
        self.in_dim = in_dim
        if self.head is None:
            self.head = self._make_head()
        kwargs = self.params.model_dump()
        if "input_shape" in inspect.signature(self.spec.build).parameters:
            kwargs["input_shape"] = self.input_shape
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
        from medflow.evaluate.metrics import get_metric

        torch.manual_seed(seed)
        x_train, x_valid = self.inputs(x_train), self.inputs(x_valid)
        self.head = self._make_head()
        self.input_shape = [int(v) for v in x_train.shape[1:]]
        self.module = self._build(x_train.shape[1])
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
            callbacks.append(ProgressBar(f"{self.spec.name:>18}"))
        trainer = Trainer(train, seed=seed, callbacks=callbacks)

        def val_metric(y: np.ndarray, out: np.ndarray) -> float:
            if hasattr(self.head, "after_fit"):  # e.g. the Breslow baseline, refitted on the current outputs
                self.head.after_fit(out, y)
            return metric(y, self.head.predict_from_outputs(out))

        state = trainer.fit(self.module, self.head.loss, _tensor(x_train), _target(y_train),
                            _tensor(x_valid), _target(y_valid), None if metric is None else val_metric)
        self.history = state.history
        self.privacy = state.privacy  # DP-SGD: the epsilon spent (None when trained without train.privacy)
        self.best_epoch = callbacks[0].best_epoch
        resumed = [cb.resumed_from for cb in callbacks if isinstance(cb, Checkpoint)]
        self.resumed_from = resumed[0] if resumed else None
        if hasattr(self.head, "after_fit"):
            self.head.after_fit(self.outputs(x_train), np.asarray(y_train))
        return self

    def fit_federated(self, sites: list[tuple[str, Any, np.ndarray, Any, np.ndarray]], train: TrainConfig, fed: Any,
                      seed: int, progress: Callable | None = None) -> DeepEstimator:
        """Train across sites with Flower (`train/federated.py`): `sites` are (name, x_train, y_train, x_stop,
        y_stop) per site; the weights of the round with the lowest site-weighted validation loss are kept."""
        from medflow.train.federated import Site, federated_fit

        torch.manual_seed(seed)
        self.head = self._make_head()
        if hasattr(self.head, "after_fit"):
            raise ConfigError(f"model '{self.spec.name}': federated training of a model whose head is fitted on the "
                              "pooled training outputs after training (a survival baseline hazard) is not supported.")
        parts = [Site(name, _tensor(self.inputs(x)), _target(y), _tensor(self.inputs(xv)), _target(yv))
                 for name, x, y, xv, yv in sites]
        self.input_shape = [int(v) for v in parts[0].x_train.shape[1:]]
        self.module = self._build(parts[0].x_train.shape[1])
        if self.init is not None:
            self.init.apply(self.module)
        show = progress is None and train.progress and is_main()
        with round_bar(f"{self.spec.name:>18}", fed.rounds, show) as bar:
            result = federated_fit(self.module, self.head.loss, parts, train, fed, seed, progress or bar)
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

        self.module = self._build(self.in_dim)
        self.module.load_state_dict(load_file(directory / "model.safetensors"))
        self.module.eval()


def _tensor(x: Any) -> Any:
    if hasattr(x, "batch"):  # batchable inputs (event windows) stay as they are
        return x
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


def _target(y: np.ndarray) -> torch.Tensor:
    y = np.asarray(y)
    return torch.as_tensor(y, dtype=torch.long if y.dtype.kind in "iub" else torch.float32)


def fit_or_explain(name: str, fit: Callable[[], Any]) -> Any:
    """Run a library's fit; numerical failures become a ModelError that names the model."""
    try:
        return fit()
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
        raise ModelError(f"model '{name}' could not be fitted ({type(exc).__name__}: {exc}). Try more "
                         "regularization in its params, or check for constant or duplicated columns.") from exc


def one_openmp_thread(fn: Callable) -> Callable:
    """Run a library call with one OpenMP thread.

    torch and scikit-learn ship different OpenMP runtimes; once torch has run, scikit-learn's parallel
    loops (e.g. gradient-boosting prediction) spin against torch's idle threads and run 10x slower
    (measured: 259 ms against 8 ms for 100 rows). One thread avoids the contention.
    """
    import functools

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="openmp"):
            return fn(*args, **kwargs)

    return wrapped


class SklearnEstimator(Estimator):
    """A scikit-learn model fitted on the training split (the validation split is not used)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("fit", "predict", "predict_survival"):
            if name in cls.__dict__:
                setattr(cls, name, one_openmp_thread(cls.__dict__[name]))

    @one_openmp_thread
    def fit(self, x_train, y_train, x_valid, y_valid, train: TrainConfig, seed: int, workdir: Path | None = None):
        x_train = self.inputs(x_train)
        self.in_dim = x_train.shape[1]
        self.model = self.spec.build(task=self.task, seed=seed, **self.params.model_dump())
        fit_or_explain(self.spec.name, lambda: self.model.fit(x_train, y_train))
        return self

    @one_openmp_thread
    def predict(self, x: np.ndarray) -> np.ndarray:
        x = self.inputs(x)
        if self.task.kind == "regression":
            return np.asarray(self.model.predict(x), dtype=float)
        proba = self.model.predict_proba(x)
        return proba[:, 1] if self.task.kind == "binary" else proba

    def _save_weights(self, directory: Path) -> None:
        import skops.io as sio

        atomic_write_bytes(directory / "model.skops", sio.dumps(self.model))

    def _load_weights(self, directory: Path) -> None:
        import skops.io as sio

        path = directory / "model.skops"
        untrusted = sio.get_untrusted_types(file=path)
        unsafe = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy.", "sksurv.", "medflow."))]
        if unsafe:
            raise ModelError(f"{path}: holds types outside scikit-learn/scikit-survival/NumPy/SciPy/medflow "
                             f"({unsafe}); refusing to load.")
        self.model = sio.load(path, trusted=untrusted)
