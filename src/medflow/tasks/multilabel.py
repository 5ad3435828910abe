"""Multilabel classification: several yes/no labels per record, one 0/1 column each."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from medflow.errors import ConfigError, DataError, shown
from medflow.tasks.base import Task

__all__ = ["Multilabel"]


class Multilabel(Task):
    """Several yes/no labels per record at once (e.g. findings on one X-ray): one 0/1 column each.

    One logit per label, binary cross-entropy averaged over labels; predictions are one probability per
    label; metrics are per-label AUROC / AUPRC averaged over labels (macro) and F1 at 0.5.

    `missing: mask` allows empty labels (multi-task assays where not every record was tested on every
    target, e.g. Tox21): the loss and every metric use each label's observed records only; a record
    missing every label is an error (it teaches nothing).
    """

    kind: Literal["multilabel"] = "multilabel"
    labels: list[str]
    missing: Literal["error", "mask"] = "error"
    default_metrics: ClassVar[list[str]] = ["auroc_labels", "auprc_labels", "f1_labels"]
    monitor_metric: ClassVar[str] = "auroc_labels"
    primary_metric: ClassVar[str] = "auroc_labels"

    @property
    def label_columns(self) -> list[str]:
        return list(self.labels)

    @property
    def classes(self) -> list[Any]:
        return list(self.labels)

    def check(self, frame: pd.DataFrame, source: str) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"{source}: task.labels must name two or more distinct 0/1 columns, got {self.labels}.")
        for col in self.labels:
            if col not in frame.columns:
                raise DataError(f"{source}: label column '{col}' is missing; columns are {list(frame.columns)}.")
            y = frame[col]
            if self.missing == "mask":
                y = y.dropna()
            bad = y[~y.isin([0, 1, True, False])]
            if len(bad) and bad.isna().all():
                raise DataError(f"{source}: label '{col}' is empty at row {int(bad.index[0]) + 1} ({len(bad)} "
                                "record(s)); fill it, or set task.missing: mask to learn from the observed labels "
                                "only.")
            if len(bad):
                raise DataError(f"{source}: label '{col}' holds {shown(bad.iloc[0])} at row {int(bad.index[0]) + 1}; "
                                "each multilabel column must be 0 or 1.")
            if y.nunique() < 2:
                raise DataError(f"{source}: label '{col}' is {shown(y.iloc[0])} in every record; drop it from "
                                "task.labels (a label that never varies cannot be learned or scored).")
        none = frame[self.labels].isna().all(axis=1).to_numpy()
        if none.any():
            raise DataError(f"{source}: {int(none.sum())} record(s) have none of the labels {self.labels}, first at "
                            f"row {int(np.flatnonzero(none)[0]) + 1}; drop them.")

    def fit(self, frame: pd.DataFrame) -> Multilabel:
        self._state = {"classes": list(self.labels)}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[self.labels].astype(float).to_numpy()  # NaN where a masked label is missing

    @property
    def output_dim(self) -> int:
        return len(self.labels)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        seen = ~torch.isnan(target)
        if bool(seen.all()):
            return nn.functional.binary_cross_entropy_with_logits(outputs, target.float())
        per = nn.functional.binary_cross_entropy_with_logits(outputs, torch.nan_to_num(target.float()),
                                                             reduction="none")
        return (per * seen).sum() / seen.sum().clamp(min=1)

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-np.asarray(outputs, dtype=np.float64)))

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return None

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """Each label's probability, and the labels at or above 0.5."""
        classes = self.classes
        out: dict[str, Any] = {f"probability_{c}": score[:, j] for j, c in enumerate(classes)}
        out["prediction"] = [[c for c, p in zip(classes, row, strict=True) if p >= 0.5] for row in score]
        return out
