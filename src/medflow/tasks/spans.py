"""Span extraction: labelled character spans per note (problems with their assertion, drugs, doses, routes,
frequencies; or any labels a JSONL / BRAT corpus carries), scored span by span.

The targets are the notes' gold spans (`Dataset.text.spans`, from JSONL / BRAT or the SYNTHETIC simulator), not
a frame column (`targets_from = "spans"`). Like segmentation, a span run's predictions table holds **one row
per note** with that note's counts (`case_strict_all_tpg` ...: gold spans matched, predicted spans matched,
gold spans, predicted spans; strict = same offsets and label, lenient = overlap and label; per label and over
all labels; and the assertions right on strictly matched spans). Every metric is a ratio of sums of those
columns, so the evaluator's patient bootstrap resamples notes by patient and recomputes micro precision,
recall and F1: the CIs, model selection and subgroups come unchanged. The predicted spans themselves go to
`test_outputs/spans.jsonl` beside each model.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from medflow.errors import ConfigError, DataError
from medflow.evaluate.metric import Metric
from medflow.nlp.tagger import note_counts
from medflow.tasks.base import Task

__all__ = ["SpanExtraction", "note_counts", "vote"]

_MODES = ("strict", "lenient")  # the order of `nlp.tagger.note_counts`'s columns
_COUNTS = ("tpg", "tpp", "gold", "pred")  # gold matched, predictions matched, gold, predictions


def _ratio(kind: str, base: int):
    """precision / recall / F1 from summed count columns starting at `base` (tpg, tpp, gold, pred)."""
    def fn(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
        tpg, tpp, ng, npred = np.asarray(s, float)[:, base:base + 4].sum(axis=0)
        r = tpg / ng if ng else float("nan")
        p = tpp / npred if npred else (float("nan") if not ng else 0.0)
        if kind == "precision":
            return p
        if kind == "recall":
            return r
        if not ng:
            return float("nan")
        return 2 * p * r / (p + r) if p + r else 0.0

    return fn


def _assertion_accuracy(col: int):  # also the relation accuracy: right / n in two columns
    def fn(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
        n, right = np.asarray(s, float)[:, col:col + 2].sum(axis=0)
        return right / n if n else float("nan")

    return fn


def vote(per_fold: list[np.ndarray]) -> np.ndarray:
    """Spans of several fold models: those a majority predicts (same offsets and label), in text order."""
    if len(per_fold) == 1:
        return per_fold[0]
    out = np.empty(len(per_fold[0]), dtype=object)
    for i in range(len(out)):
        seen: dict[tuple, list[dict[str, Any]]] = {}
        for spans in (fold[i] for fold in per_fold):
            for s in spans:
                seen.setdefault((s["start"], s["end"], s["label"]), []).append(s)
        out[i] = [v[0] for k, v in sorted(seen.items()) if 2 * len(v) > len(per_fold)]
    return out


class SpanExtraction(Task):
    """Find spans of `labels` in each note; PROBLEM-like spans (`assert_labels`) also get an assertion."""

    kind: Literal["spans"] = "spans"
    labels: list[str] = Field(["PROBLEM", "DRUG", "DOSE", "ROUTE", "FREQUENCY"], min_length=1)
    assert_labels: list[str] = ["PROBLEM"]
    primary_metric: ClassVar[str] = "span_f1"
    monitor_metric: ClassVar[str] = "loss"
    targets_from: ClassVar[str] = "spans"

    @property
    def label_columns(self) -> list[str]:
        return []

    @property
    def classes(self) -> list[Any]:
        return list(self.labels)

    def check(self, frame: pd.DataFrame, source: str) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"{source}: task.labels names a span label twice: {self.labels}.")
        stray = [a for a in self.assert_labels if a not in self.labels]
        if stray:
            raise ConfigError(f"task.assert_labels {stray} are not among task.labels {self.labels}.")

    def fit(self, frame: pd.DataFrame) -> SpanExtraction:
        self._state = {"classes": list(self.labels)}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        raise DataError("a span task's targets are the notes' gold spans (JSONL / BRAT data or a built-in with "
                        "spans), not a frame column.")

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return None

    @property
    def output_dim(self) -> int:
        return len(self.labels)

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise ConfigError("span extraction trains its own tagger (model span_tagger); no network loss.")

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def combine(self, per_fold: list[np.ndarray]) -> np.ndarray:
        return vote(per_fold)

    def case_columns(self) -> list[str]:
        cols = [f"case_{mode}_{lab}_{c}" for mode in _MODES for lab in ["all", *self.labels] for c in _COUNTS]
        return cols + ["case_assertion_n", "case_assertion_right", "case_relation_n", "case_relation_right"]

    def case_values(self, pred: np.ndarray, gold: np.ndarray) -> np.ndarray:
        """Per note: the counts of `case_columns`."""
        if len(gold) == 0:
            return np.zeros((0, len(self.case_columns())))
        return np.stack([note_counts(list(g), list(p), list(self.labels)) for g, p in zip(gold, pred, strict=True)])

    def metric_list(self) -> list[Metric]:
        """Micro (over all labels) strict F1 first, then its precision and recall, lenient F1, each label's
        strict F1, and the assertion accuracy on strictly matched spans."""
        from medflow.evaluate.metrics import get_metric

        k = 4 * (len(self.labels) + 1)  # where the lenient block starts
        out = [get_metric("span_f1"), Metric("span_precision", _ratio("precision", 0), True, "precision (strict)"),
               Metric("span_recall", _ratio("recall", 0), True, "recall (strict)"),
               Metric("span_lenient_f1", _ratio("f1", k), True, "F1 (lenient)")]
        out += [Metric(f"span_f1_{lab}", _ratio("f1", 4 * (1 + j)), True, f"F1 {lab} (strict)")
                for j, lab in enumerate(self.labels)]
        if self.assert_labels:
            out.append(Metric("assertion_accuracy", _assertion_accuracy(2 * k), True, "assertion accuracy"))
        if "DRUG" in self.labels and len(self.labels) > 1:
            out.append(Metric("relation_accuracy", _assertion_accuracy(2 * k + 2), True,
                              "attributes linked to their drug"))
        return out

    def prediction_columns(self, score: np.ndarray, entry: dict[str, Any]) -> dict[str, Any]:
        """`Run.predict` columns: the spans of each note and their count."""
        return {"spans": [list(s) for s in score], "n_spans": [len(s) for s in score]}

    def write_outputs(self, directory: Any, ds: Any, frame: pd.DataFrame, predictions: np.ndarray) -> None:
        """`spans.jsonl`: one line per test note, its id and its predicted spans."""
        import json
        from pathlib import Path

        from medflow.artifacts import atomic_write_bytes

        lines = [json.dumps({"note_id": str(nid), "spans": list(sp)}) for nid, sp in
                 zip(frame["note_id"], predictions, strict=True)]
        atomic_write_bytes(Path(directory) / "spans.jsonl", ("\n".join(lines) + "\n").encode())
