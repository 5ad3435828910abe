"""The task contract (`Task`) and the binary, multiclass and regression kinds (multilabel: `tasks/multilabel.py`).

A task is a small pydantic config (what the YAML says) plus fitted state (the classes seen in
training, the target scale) that is saved with the run. It validates labels, encodes them,
owns the loss and turns a model's raw outputs into predictions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, PrivateAttr
from torch import nn

from medflow.errors import ConfigError, DataError, shown
from medflow.evaluate.conformal import apply_conformal

__all__ = ["Task", "Binary", "Multiclass", "Regression", "put_before"]


class Task(BaseModel, ABC):
    """Common contract of every task kind."""

    model_config = ConfigDict(extra="forbid")
    kind: str
    default_metrics: ClassVar[list[str]] = []
    monitor_metric: ClassVar[str] = "loss"
    primary_metric: ClassVar[str] = ""
    _state: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def label_columns(self) -> list[str]:
        return [self.label]  # type: ignore[attr-defined]

    @property
    def state(self) -> dict[str, Any]:
        return dict(self._state)

    def load_state(self, state: dict[str, Any]) -> Task:
        self._state = dict(state)
        return self

    def _label_series(self, frame: pd.DataFrame, source: str) -> pd.Series:
        if self.label not in frame.columns:
            raise DataError(
                f"{source}: label column '{self.label}' is missing; columns are {list(frame.columns)}. "
                "Fix task.label in the study."
            )
        y = frame[self.label]
        missing = y.isna().to_numpy()
        if missing.any():
            row = int(np.flatnonzero(missing)[0]) + 1
            raise DataError(
                f"{source}: label '{self.label}' is empty in {int(missing.sum())} record(s), first at row {row}; "
                "drop those records or fill the label."
            )
        return y

    @abstractmethod
    def check(self, frame: pd.DataFrame, source: str) -> None:
        """Raise a DataError when the labels cannot serve this task."""

    @abstractmethod
    def fit(self, frame: pd.DataFrame) -> Task:
        """Learn state from training records (classes, target scale)."""

    @abstractmethod
    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Labels as model targets (class indices or floats)."""

    @property
    @abstractmethod
    def output_dim(self) -> int: ...

    @abstractmethod
    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss on raw outputs (logits or scaled values)."""

    @abstractmethod
    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """Raw model outputs to predictions (probabilities, or values in label units)."""

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        """Values to stratify splits on, or None."""
        return frame[self.label]

    def prepare(self, ds: Any, features: list[str], cfg: Any, console: Any) -> tuple[Any, dict[str, Any] | None]:
        """Task-level checks and data steps before any split; returns the dataset to use and an analysis the run
        saves as `task_analysis.json` (None: nothing to save). Treatment effects check overlap here."""
        return ds, None

    def evaluate_extra(self, valid_y: np.ndarray, valid_s: np.ndarray, test_y: np.ndarray, test_s: np.ndarray,
                       pid: np.ndarray, cfg: Any, seed: int) -> dict[str, Any]:
        """Task-specific entries of a model in metrics.json beyond the metrics (e.g. uplift curves)."""
        return {}

    def combine(self, per_fold: list[np.ndarray]) -> np.ndarray:
        """One prediction from the fold models' (k-fold runs): their mean; span tasks vote."""
        return np.mean(per_fold, axis=0)

    def write_outputs(self, directory: Any, ds: Any, frame: pd.DataFrame, predictions: np.ndarray) -> None:
        """Store predictions that do not fit a table row (segmentation masks); nothing for row-level tasks."""
        return None

    # -- what `Run.predict` returns: each task kind shapes its own prediction table -------------------------
    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """The prediction columns of `score` (one row per record); `entry` is the model's metrics.json entry
        (its threshold, its conformal calibration)."""
        return {}

    def conformal_columns(self, fitted: dict[str, Any], score: np.ndarray) -> dict[str, Any]:
        """The conformal prediction set or interval of each record, from the calibration fitted on validation."""
        return {}

    def horizons_for(self, asked: list[float] | None) -> list[float]:
        """Times at which predictions are asked for (survival); none for other kinds."""
        return []

    def fold_outputs(self, est: Any, x: Any, horizons: list[float]) -> dict[str, np.ndarray]:
        """Outputs beyond `est.predict` that one fold's model gives for the records (survival at the horizons)."""
        return {}

    def finish_columns(self, out: dict[str, Any], score: np.ndarray, outputs: list[dict[str, np.ndarray]],
                       horizons: list[float]) -> dict[str, Any]:
        """Add the columns built from `fold_outputs` (in place); returns the table's attrs."""
        return {}

    def dataset_predictions(self, folds: Any, ds: Any) -> pd.DataFrame | None:
        """A whole prediction table for a task whose predictions are not scores per record (segmentation masks),
        from `folds`, an iterable of each fold's (estimator, inputs); None: the usual per-record table."""
        return None

    @property
    def classes(self) -> list[Any]:
        return list(self._state.get("classes", []))


class _Classification(Task):
    label: str
    class_weight: Literal["balanced", "none"] = "none"

    def _class_weights(self, y: np.ndarray) -> np.ndarray:
        counts = np.bincount(y, minlength=self.output_dim_classes).astype(float)
        return len(y) / (len(counts) * np.maximum(counts, 1))

    @property
    def output_dim_classes(self) -> int:
        return len(self.classes)


class Binary(_Classification):
    """Binary classification; `positive` is the label value of the positive class (default 1/True)."""

    kind: Literal["binary"] = "binary"
    positive: Any = None
    default_metrics: ClassVar[list[str]] = [
        "auroc", "auprc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier", "log_loss"]
    monitor_metric: ClassVar[str] = "log_loss"
    primary_metric: ClassVar[str] = "auroc"

    def _positive(self, values: list[Any], source: str) -> Any:
        if self.positive is not None:
            matches = [v for v in values if str(v) == str(self.positive)]
            if not matches:
                raise DataError(f"{source}: task.positive is {shown(self.positive)} but label '{self.label}' "
                                f"holds {values}.")
            return matches[0]
        for candidate in (1, True, "1", "yes", "true"):
            if any(str(v).lower() == str(candidate).lower() for v in values):
                return next(v for v in values if str(v).lower() == str(candidate).lower())
        raise ConfigError(f"{source}: label '{self.label}' holds {values}; set task.positive to the value "
                          "of the positive class.")

    def check(self, frame: pd.DataFrame, source: str) -> None:
        y = self._label_series(frame, source)
        values = sorted(y.unique().tolist(), key=str)
        if len(values) == 1:
            raise DataError(f"{source}: label '{self.label}' is {shown(values[0])} in every record; a binary task "
                            "needs both classes.")
        if len(values) > 2:
            listed = values[:10]
            raise DataError(f"{source}: label '{self.label}' has {len(values)} distinct values {listed}, but the "
                            "task is binary. Use kind: multiclass, or recode the label to two values.")
        self._positive(values, source)

    def fit(self, frame: pd.DataFrame) -> Binary:
        values = sorted(frame[self.label].unique().tolist(), key=str)
        pos = self._positive(values, "training data")
        neg = next(v for v in values if v != pos) if len(values) > 1 else None
        self._state = {"classes": [_plain(neg), _plain(pos)], "positive": _plain(pos)}
        y = self.encode(frame)
        self._state["pos_weight"] = float((y == 0).sum() / max((y == 1).sum(), 1))
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        pos = self._state["positive"]
        y = frame[self.label]
        hit = (y.astype(str) == str(pos)) | (y == pos)
        return hit.to_numpy().astype(np.int64)

    @property
    def output_dim(self) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pw = None
        if self.class_weight == "balanced":
            pw = torch.tensor(self._state["pos_weight"], dtype=outputs.dtype)
        return nn.functional.binary_cross_entropy_with_logits(outputs.squeeze(-1), target.float(), pos_weight=pw)

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype=np.float64).reshape(-1)))

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """The probability of the positive class, the label at the model's threshold, and the threshold."""
        classes, t = self.classes, entry["threshold"]
        return {"probability": score, "prediction": np.where(score >= t, classes[1], classes[0]),
                "threshold": np.full(len(score), t)}

    def conformal_columns(self, fitted: dict[str, Any], score: np.ndarray) -> dict[str, Any]:
        """The conformal prediction set: the classes whose score passes the calibrated quantile."""
        classes = self.classes
        sets = apply_conformal(fitted, score, self.kind)
        return {f"prediction_set_{fitted['coverage']:.0%}": [[c for c, keep in zip(classes, r, strict=True) if keep]
                                                            for r in sets.tolist()]}


class Multiclass(_Classification):
    """Single-label classification over three or more classes."""

    kind: Literal["multiclass"] = "multiclass"
    default_metrics: ClassVar[list[str]] = ["auroc_macro", "auroc_micro", "accuracy_mc", "f1_macro",
                                            "log_loss_mc"]
    monitor_metric: ClassVar[str] = "log_loss_mc"
    primary_metric: ClassVar[str] = "auroc_macro"

    def check(self, frame: pd.DataFrame, source: str) -> None:
        y = self._label_series(frame, source)
        n = y.nunique()
        if n < 2:
            raise DataError(f"{source}: label '{self.label}' has a single value; a multiclass task needs 2+.")
        if n > 1000:
            raise DataError(f"{source}: label '{self.label}' has {n} distinct values; is it a regression target?")

    def fit(self, frame: pd.DataFrame) -> Multiclass:
        classes = sorted(frame[self.label].unique().tolist(), key=str)
        self._state = {"classes": [_plain(c) for c in classes]}
        y = self.encode(frame)
        self._state["class_weights"] = self._class_weights(y).tolist()
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        lookup = {str(c): i for i, c in enumerate(self._state["classes"])}
        y = frame[self.label].astype(str)
        unknown = ~y.isin(lookup)
        if unknown.any():
            row = int(np.flatnonzero(unknown.to_numpy())[0]) + 1
            raise DataError(f"label '{self.label}' value {shown(y[unknown].iloc[0])} at row {row} was not seen in "
                            f"training (classes: {self._state['classes']}).")
        return y.map(lookup).to_numpy().astype(np.int64)

    @property
    def output_dim(self) -> int:
        return len(self.classes)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        w = None
        if self.class_weight == "balanced":
            w = torch.tensor(self._state["class_weights"], dtype=outputs.dtype)
        return nn.functional.cross_entropy(outputs, target.long(), weight=w)

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        z = np.asarray(outputs, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """Each class's probability and the most probable class."""
        classes = self.classes
        out: dict[str, Any] = {f"probability_{c}": score[:, j] for j, c in enumerate(classes)}
        out["prediction"] = [classes[j] for j in score.argmax(axis=1)]
        return out

    def conformal_columns(self, fitted: dict[str, Any], score: np.ndarray) -> dict[str, Any]:
        """The conformal prediction set: the classes whose score passes the calibrated quantile."""
        classes = self.classes
        sets = apply_conformal(fitted, score, self.kind)
        return {f"prediction_set_{fitted['coverage']:.0%}": [[c for c, keep in zip(classes, r, strict=True) if keep]
                                                            for r in sets.tolist()]}


class Regression(Task):
    """Continuous target; the deep models learn it standardized with the training mean and sd."""

    kind: Literal["regression"] = "regression"
    label: str
    default_metrics: ClassVar[list[str]] = ["rmse", "mae", "r2"]
    monitor_metric: ClassVar[str] = "rmse"
    primary_metric: ClassVar[str] = "rmse"

    def check(self, frame: pd.DataFrame, source: str) -> None:
        y = self._label_series(frame, source)
        parsed = pd.to_numeric(y, errors="coerce")
        bad = y[parsed.isna()]
        if len(bad):
            raise DataError(f"{source}: regression label '{self.label}' holds {shown(bad.iloc[0])} at row "
                            f"{int(bad.index[0]) + 1}; it must be numeric.")
        if parsed.nunique() < 2:
            raise DataError(f"{source}: regression label '{self.label}' is constant.")

    def fit(self, frame: pd.DataFrame) -> Regression:
        y = frame[self.label].astype(float)
        self._state = {"mean": float(y.mean()), "std": float(y.std(ddof=0)) or 1.0}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.label].astype(float).to_numpy()

    @property
    def output_dim(self) -> int:
        return 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scaled = (target - self._state["mean"]) / self._state["std"]
        return nn.functional.mse_loss(outputs.squeeze(-1), scaled.to(outputs.dtype))

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float64).reshape(-1) * self._state["std"] + self._state["mean"]

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        y = frame[self.label].astype(float)
        return pd.qcut(y.rank(method="first"), q=min(5, len(y) // 10 or 1), labels=False)

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        return {"prediction": score}

    def conformal_columns(self, fitted: dict[str, Any], score: np.ndarray) -> dict[str, Any]:
        """The conformal interval around each prediction."""
        pct = f"{fitted['coverage']:.0%}"
        low, high = apply_conformal(fitted, score, self.kind)
        return {f"interval_low_{pct}": low, f"interval_high_{pct}": high}


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def put_before(out: dict[str, Any], before: str, new: dict[str, Any]) -> None:
    """Insert `new` columns just before column `before` (at the end when there is none), in place."""
    keys = list(out)
    i = keys.index(before) if before in out else len(keys)
    rebuilt = {**{k: out[k] for k in keys[:i]}, **new, **{k: out[k] for k in keys[i:]}}
    out.clear()
    out.update(rebuilt)
