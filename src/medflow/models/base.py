"""Estimators: one fit/predict/save/load contract over deep (torch, `models.deep`) and baseline (scikit-learn)
models; `build_estimator` / `load_estimator` make either from a registry name.

A saved model is its registry name, its plain hyper-parameters and its weights
(safetensors for torch, skops for scikit-learn): never a pickled class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from medflow.artifacts import atomic_write_bytes
from medflow.errors import ModelError
from medflow.models.deep import DeepEstimator, Ensemble
from medflow.models.spec import Estimator, ModelSpec, check_inputs, parse_params
from medflow.registry import models as model_registry
from medflow.tasks.base import Task
from medflow.train.trainer import TrainConfig

__all__ = ["ModelSpec", "Estimator", "DeepEstimator", "SklearnEstimator", "Ensemble", "build_estimator",
           "load_estimator", "atomic_write_bytes", "fit_or_explain", "check_inputs"]


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
    est.layout = meta.get("layout")
    est.history = meta.get("history", [])
    est.privacy = meta.get("privacy")
    est.sources = meta.get("sources")
    est.load_extra_state(meta.get("extra", {}))
    est.ensemble = int(meta.get("ensemble", 1))
    est._load_weights(directory)
    return est


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
        with _openmp_controller().limit(limits=1, user_api="openmp"):
            return fn(*args, **kwargs)

    return wrapped


_CONTROLLER: list[Any] = [-1, None]  # (modules loaded when it was made, controller)


def _openmp_controller() -> Any:
    """threadpoolctl's view of the loaded thread pools, found again only when modules were imported since (a
    library's OpenMP runtime loads with its extension modules): finding them reads /proc/self/maps, 2.7 ms, which
    was most of a one-record prediction in the service."""
    import sys

    from threadpoolctl import ThreadpoolController

    if _CONTROLLER[0] != len(sys.modules):
        _CONTROLLER[1] = ThreadpoolController()
        _CONTROLLER[0] = len(sys.modules)
    return _CONTROLLER[1]


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
        if getattr(self.model, "n_jobs", 1) not in (1, None):
            # trained on every core; predicted on one: joblib threads add the trees' outputs in a varying order,
            # so a forest's predictions differed in the last bits from call to call
            self.model.set_params(n_jobs=1)
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
