"""Multimodal datasets: one patient's events, notes, images and tables joined on the patient and, where the samples
have prediction times, on time.

The samples are the anchor: an event cohort's (subject, prediction time) rows, or the rows of a label table. Every
other source is a set of items (notes, images, rows of a lab or omics table) with a patient column and, when the
samples have prediction times, a time column. Per sample and modality:
- notes: the patient's notes written at or before the prediction time, oldest first (the last `max_notes`), as one
  text;
- images and tables: the latest item at or before the prediction time; a table declared `static` (a gene panel)
  has one row per patient and no time;
- events: the window up to the prediction time, which the event featurizer cuts (as in any event study).
An item dated after the prediction time never enters (the leakage guard, tested per modality with planted future
items), and a sample without a modality is normal: its row there is -1 and the fusion models mask it.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.dataset import Dataset, FeatureType
from medflow.errors import DataError, shown

__all__ = ["TableSource", "Modality", "MultimodalData", "join_modalities", "SAMPLE", "LOW_COVERAGE"]

SAMPLE = "__sample__"  # the multimodal frame's sample position, which each modality's rows index
LOW_COVERAGE = 0.05  # a modality present for fewer samples than this share is warned about


class TableSource(BaseModel):
    """One entry of the YAML's `data.tables:`: a table of features joined to the samples by patient (and time)."""

    model_config = ConfigDict(extra="forbid")
    path: str
    name: str | None = Field(None, description="the modality's name in reports and ablations (default: the file "
                                               "name without extension)")
    patient_id: str | None = Field(None, description="the column naming the patient (default: the samples')")
    time_column: str | None = Field(None, description="when each row was recorded; a sample reads the latest row at "
                                                      "or before its prediction time")
    static: bool = Field(False, description="one row per patient that does not change (e.g. a gene panel): no time "
                                            "column needed")
    types: dict[str, FeatureType] = {}
    drop: list[str] = []


@dataclass
class Modality:
    """One modality of a multimodal dataset, aligned to the samples."""

    name: str
    data: Dataset  # one row per sample that has the modality (what the modality's featurizer reads)
    rows: np.ndarray  # per sample: its row in `data.frame`, or -1 where the sample has none
    items: int  # items the source holds
    after: int  # items dated after every prediction time of their patient (never read)
    source: str
    how: str = "latest"  # how a sample reads it: "events", "latest", "notes" or "static"
    timed: bool = False  # joined on time (its items carry a time column)

    @property
    def present(self) -> np.ndarray:
        return self.rows >= 0


@dataclass
class MultimodalData:
    """The modalities of a multimodal Dataset, by name (e.g. events, notes, images, labs, omics)."""

    parts: dict[str, Modality]

    def coverage(self) -> dict[str, dict[str, Any]]:
        """Per modality: samples that have it, their share, items in the source and items never read."""
        return {name: {"modality": m.data.modality, "present": int(m.present.sum()),
                       "share": float(m.present.mean()) if len(m.rows) else 0.0, "items": m.items,
                       "after_prediction_time": m.after, "source": m.source}
                for name, m in self.parts.items()}

    def summary(self) -> dict[str, Any]:
        return {"modalities": self.coverage()}

    def fingerprint(self) -> bytes:
        h = hashlib.sha256()
        for name, m in self.parts.items():
            h.update(name.encode())
            h.update(m.rows.astype(np.int64).tobytes())
            h.update(m.data.fingerprint().encode())
        return h.digest()


def _times(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    if column not in frame.columns:
        raise DataError(f"{source}: time column '{column}' is not in the data; columns are {list(frame.columns)}.")
    t = pd.to_datetime(frame[column], errors="coerce", utc=True).dt.tz_localize(None)
    bad = t.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: row {row + 1} has no readable time in column '{column}' "
                        f"({shown(frame[column].iloc[row])}); give every item an ISO time such as 2024-03-01 08:00, "
                        "or drop the row.")
    return t


def _aligned(samples: pd.DataFrame, items: pd.DataFrame, how: str, max_notes: int) -> pd.DataFrame:
    """Per sample (`_sample`), the item rows (`_row`) it reads: the latest, or the last `max_notes` notes."""
    both = samples.merge(items, on="_pid", how="inner")
    if "_pt" in both.columns and "_t" in both.columns:
        both = both[both["_t"] <= both["_pt"]]  # the leakage guard: nothing after the prediction time
    both = both.sort_values(["_sample", "_t", "_row"] if "_t" in both.columns else ["_sample", "_row"])
    return both.groupby("_sample", sort=True).tail(max_notes if how == "notes" else 1)


def join_modalities(samples: Dataset, sources: dict[str, tuple[Dataset, str | None, str]], name: str | None = None,
                    max_notes: int = 5) -> Dataset:
    """A multimodal Dataset: `samples` (an event Dataset, whose events become the `events` modality, or a table of
    labelled samples) joined with `sources`, each `name -> (items Dataset, time column or None, how)` where `how` is
    "latest", "notes" (the texts of the last `max_notes` notes, oldest first) or "static" (one row per patient)."""
    frame = samples.frame.reset_index(drop=True).copy()
    frame[SAMPLE] = np.arange(len(frame))
    pid = samples.patient_id
    has_time = "prediction_time" in frame.columns
    left = pd.DataFrame({"_sample": frame[SAMPLE], "_pid": frame[pid].astype(str)})
    if has_time:
        left["_pt"] = pd.to_datetime(frame["prediction_time"], utc=True).dt.tz_localize(None)
    parts: dict[str, Modality] = {}
    if samples.events is not None:
        parts["events"] = Modality("events", samples, np.arange(len(frame)), samples.events.n_events, 0,
                                   samples.source, "events", True)
    for key, (items, time_col, how) in sources.items():
        parts[key] = _join_one(key, items, time_col, how, left, has_time, max_notes, frame, samples)
    for key, m in parts.items():
        share = float(m.present.mean()) if len(frame) else 0.0
        if share < LOW_COVERAGE:
            warnings.warn(f"{m.source}: modality '{key}' is present for only {m.present.sum()} of {len(frame)} "
                          f"samples ({share:.1%}); a model cannot learn much from it. Check its patient ids and "
                          "times, or leave it out.", UserWarning, stacklevel=2)
    mm = MultimodalData(parts)
    cov = ", ".join(f"{k} {v['share']:.0%}" for k, v in mm.coverage().items())
    synthetic = samples.synthetic or any(m.data.synthetic for m in parts.values())
    desc = (("SYNTHETIC (simulated) patients. " if synthetic and "SYNTHETIC" not in samples.description else "")
            + samples.description + f" Multimodal: {len(parts)} modalities joined on the patient"
            + (" and the prediction time" if has_time else "") + f" (coverage: {cov}).")
    ids = ["subject_id", "prediction_time"] if samples.events is not None else (
        [pid] + (["prediction_time"] if has_time else []))
    return Dataset(frame=frame, name=name or samples.name, patient_id=pid, feature_types=dict(samples.feature_types),
                   source=samples.source, synthetic=synthetic, description=desc, label_hint=samples.label_hint,
                   meta={**samples.meta, "kind": "multimodal", "id_columns": ids}, modalities=mm)


def _join_one(key: str, items: Dataset, time_col: str | None, how: str, left: pd.DataFrame, has_time: bool,
              max_notes: int, frame: pd.DataFrame, samples: Dataset) -> Modality:
    src = items.source
    f = items.frame.reset_index(drop=True)
    right = pd.DataFrame({"_pid": f[items.patient_id].astype(str), "_row": np.arange(len(f))})
    matched = right["_pid"].isin(set(left["_pid"]))
    if not matched.any():
        raise DataError(f"{src}: none of its {right['_pid'].nunique()} patient ids matches the samples' "
                        f"{left['_pid'].nunique()} (e.g. samples have {shown(left['_pid'].iloc[0])}, the source "
                        f"{shown(right['_pid'].iloc[0])}). Check its patient column ('{items.patient_id}') and the "
                        "id format.")
    if how == "static" or not has_time:
        dup = right["_pid"].duplicated(keep=False) & (how != "notes")
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise DataError(f"{src}: patient {shown(right['_pid'].iloc[row])} has several rows (row {row + 1} and "
                            "others) and the source has no time to choose one; set its time_column, or keep one row "
                            "per patient.")
        after = 0
    elif time_col is None:
        raise DataError(f"{src}: the samples have prediction times, so modality '{key}' needs a time column (when "
                        "each item was recorded) to keep later items out; set time_column, or static: true for data "
                        "that do not change (e.g. a gene panel).")
    else:
        right["_t"] = _times(f, time_col, src)
        last = left.groupby("_pid")["_pt"].max()
        after = int((right["_t"] > right["_pid"].map(last)).sum())
    chosen = _aligned(left, right, how, max_notes)
    rows = np.full(len(left), -1, dtype=np.int64)
    if how == "notes":
        text_col = items.text.text_column
        texts = chosen.groupby("_sample", sort=True)["_row"].agg(
            lambda r: "\n\n".join(str(f[text_col].iloc[i]) for i in r))
        samples_with = texts.index.to_numpy()
        rows[samples_with] = np.arange(len(samples_with))
        part = pd.DataFrame({items.patient_id: frame[samples.patient_id].iloc[samples_with].to_numpy(),
                             "note_id": [f"sample-{s}" for s in samples_with], text_col: texts.to_numpy()})
        data = Dataset(frame=part, name=key, patient_id=items.patient_id, feature_types={}, source=src,
                       synthetic=items.synthetic, meta={"kind": "text"}, text=items.text)
        return Modality(key, data, rows, len(f), after, src, how, time_col is not None and how != "static")
    rows_in = chosen["_row"].to_numpy()
    samples_with = chosen["_sample"].to_numpy()
    rows[samples_with] = np.arange(len(samples_with))
    part = f.iloc[rows_in].reset_index(drop=True)
    _check_labels(key, src, part, frame.iloc[samples_with].reset_index(drop=True), items.patient_id, time_col)
    drop = [c for c in (time_col,) if c and c in part.columns]
    types = {c: t for c, t in items.feature_types.items() if c not in drop and c != items.patient_id
             and c not in frame.columns}
    data = Dataset(frame=part.drop(columns=drop), name=key, patient_id=items.patient_id, feature_types=types,
                   source=src, synthetic=items.synthetic, meta=dict(items.meta), images=items.images)
    return Modality(key, data, rows, len(f), after, src, how, time_col is not None and how != "static")


def _check_labels(key: str, src: str, part: pd.DataFrame, anchor: pd.DataFrame, pid: str, time_col: str | None) -> None:
    """A column both the samples and a source hold (e.g. the label) must agree on every joined sample."""
    for col in part.columns:
        if col in (pid, time_col, "image", "prediction_time") or col not in anchor.columns:
            continue
        a, b = anchor[col].astype(str).to_numpy(), part[col].astype(str).to_numpy()
        bad = np.flatnonzero(a != b)
        if len(bad):
            raise DataError(f"{src}: column '{col}' of modality '{key}' disagrees with the samples' '{col}' for "
                            f"{len(bad)} sample(s) (e.g. joined row {bad[0] + 1}: {shown(b[bad[0]])} against "
                            f"{shown(a[bad[0]])}). Keep the label in one source: drop or "
                            "rename the column there.")
