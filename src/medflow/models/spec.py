"""The model contract: a registry entry (`ModelSpec`), the Estimator every model implements (fit / predict /
save / load), and the check that a model reads the data's modality.

A saved model is its registry name, its plain hyper-parameters and its weights
(safetensors for torch, skops for scikit-learn): never a pickled class.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError

from medflow.artifacts import atomic_write_bytes
from medflow.errors import ConfigError, ModelError
from medflow.registry import models as model_registry
from medflow.tasks.base import Task
from medflow.train.trainer import TrainConfig

__all__ = ["ModelSpec", "Estimator", "check_inputs", "parse_params"]

# which data each kind of model reads: tabular models also read event data (as count features)
_READS = {"tabular": {"tabular", "events", "molecules", "text", "multimodal"}, "events": {"events"},
          "images": {"images"}, "graphs": {"molecules"}, "text": {"text"}, "multimodal": {"multimodal"}}
_DATA_HINT = {"events": "event data (data.meds, data.fhir, data.events, or data.dataset: ehr_sim)",
              "images": "images (data.images, or data.dataset: phantoms_2d / phantoms_3d)",
              "tabular": "a table (data.path or a tabular built-in)",
              "graphs": "molecules (data.molecules, or data.dataset: freesolv / solubility)",
              "text": "notes (data.text, or data.dataset: iu_reports)",
              "multimodal": "several modalities per patient (data: with events, text, images and tables together, "
                            "or data.dataset: multimodal_sim)"}


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
        self.layout: dict[str, Any] | None = None  # inputs of several parts (multimodal): each part's kind and shape
        self.history: list[dict[str, float]] = []
        self.sources: list[str] | None = None  # raw column of each input column, set by the caller
        self.resumed_from: int | None = None  # the epoch a killed training resumed after, if it did

    def inputs(self, x: Any) -> Any:
        """The form of `x` this model takes: count features for tabular models on event data."""
        if self.spec.inputs == "tabular" and hasattr(x, "to_matrix"):
            return x.to_matrix()
        if self.spec.inputs in ("events", "graphs", "text", "multimodal") and not hasattr(x, "batch"):
            raise ConfigError(f"model '{self.spec.name}' reads {self.spec.inputs}; give it "
                              f"{_DATA_HINT[self.spec.inputs]}, or choose a tabular model.")
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
                "input_shape": self.input_shape, **({"layout": self.layout} if self.layout else {}),
                "sources": self.sources, "history": self.history, "resumed_from": self.resumed_from,
                "privacy": getattr(self, "privacy", None), "extra": self.extra_state(),
                "ensemble": getattr(self, "ensemble", 1)}
        atomic_write_bytes(directory / "model.json", json.dumps(meta, indent=1).encode())


