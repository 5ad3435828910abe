"""Clinical notes as records: one row per note (its id, its patient, the text, labels), checked row by row.

A text Dataset's frame holds one row per note: `note_id`, the patient column (rows of one patient stay together
in splits; without one, each note is its own patient, and the report says so), the text column and any other
columns (labels). `Dataset.text` (`TextData`) names the text column and what was left out. Files: CSV / TSV /
Parquet of notes, JSONL (`{"text": ..., "spans": [{"start", "end", "label", "attributes"}], ...}`) and BRAT
standoff folders (`.txt` + `.ann`, read by `data.text_spans`). Every note is checked: empty text, bytes that
are not UTF-8 and notes over `max_chars` stop the run with the file and row (`on_empty: drop` leaves empty
notes out, counted in the manifest and report). Long notes within the limit are never cut: the featurizer
splits them into windows that the models pool over.

Real reports offline: torchxrayvision's wheel carries the Indiana University chest X-ray collection (3,955
radiology reports with MeSH labels); `make install` keeps the wheel (not installed: importing it needs
torchvision) under `.venv/share/medflow-wheels`, and `builtin_text` reads it as a zip.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.dataset import Dataset, FeatureType, infer_feature_types
from medflow.data.sources.tabular import read_frame
from medflow.errors import DataError

__all__ = ["TextSource", "TextData", "read_notes", "notes_dataset", "NOTE_ID"]

NOTE_ID = "note_id"
_TEXT_NAMES = ("text", "note", "note_text", "report", "TEXT")


class TextSource(BaseModel):
    """YAML `data.text`: notes in a CSV / TSV / Parquet / JSONL file or a BRAT folder, with labels or spans."""

    model_config = ConfigDict(extra="forbid")
    path: str
    text_column: str | None = Field(None, description="the column holding the note (default: text / note / report)")
    id_column: str | None = Field(None, description="a column naming each note (default: note-<row>)")
    patient_column: str | None = Field(None, description="the patient of each note: notes of one patient stay in "
                                                         "one split (default: each note its own patient)")
    on_empty: Literal["fail", "drop"] = Field("fail", description="empty notes: stop with their rows (fail), or "
                                                                  "leave them out, counted in the report (drop)")
    max_chars: int = Field(1_000_000, ge=100, description="longest note accepted, in characters: longer ones stop "
                                                          "the run with their row (never cut silently)")
    time_column: str | None = Field(None, description="multimodal studies: when each note was written (a sample "
                                                      "reads the notes at or before its prediction time)")


@dataclass
class TextData:
    """Which column holds the note, the notes left out, and gold spans when the source has them."""

    text_column: str
    dropped: list[dict[str, Any]] = field(default_factory=list)
    policy: str = "fail"
    spans: dict[str, list[dict[str, Any]]] | None = None  # note id -> [{start, end, label, attributes}]
    patient_given: bool = True

    def summary(self) -> dict[str, Any]:
        return {"text_column": self.text_column, "empty_notes_dropped": len(self.dropped),
                **({"dropped_examples": self.dropped[:5], "dropped": self.dropped} if self.dropped else {}),
                **({"notes_with_spans": len(self.spans)} if self.spans is not None else {}),
                **({} if self.patient_given else {"patient_column": "none (each note its own patient)"})}

    def fingerprint(self) -> bytes:
        spans = json.dumps(self.spans, sort_keys=True, default=str) if self.spans else ""
        return hashlib.sha256((repr(self.dropped) + spans).encode()).digest()


def read_notes(src: TextSource | str, synthetic: bool = False, name: str | None = None) -> Dataset:
    """A text Dataset from a notes file or a BRAT folder (see the module docstring)."""
    if isinstance(src, str):
        src = TextSource(path=src)
    path = Path(src.path)
    if not path.exists():
        raise DataError(f"{src.path}: no such file or folder; data.text.path must name a CSV, Parquet or JSONL file "
                        "of notes, or a folder: BRAT (.txt + .ann), i2b2 2014 (.xml) or i2b2 2009 (note + .m).")
    spans = None
    if path.is_dir() or path.suffix.lower() in (".jsonl", ".ndjson"):
        from medflow.data.text_spans import read_brat, read_jsonl

        if path.is_dir() and any(path.glob("*.xml")):
            from medflow.data.text_i2b2 import read_i2b2_2014 as read_dir
        elif path.is_dir() and (any(path.glob("*.m")) or any(path.glob("*.i2b2.entries"))):
            from medflow.data.text_i2b2 import read_i2b2_2009 as read_dir
        else:
            read_dir = read_brat
        frame, spans = read_dir(path) if path.is_dir() else read_jsonl(path)
        text_col = "text"
    else:
        frame = read_frame(path)
        text_col = src.text_column or next((c for c in _TEXT_NAMES if c in frame.columns), None)
        if text_col is None:
            raise DataError(f"{src.path}: no text column (looked for {', '.join(_TEXT_NAMES)}); columns are "
                            f"{list(frame.columns)}. Set data.text.text_column.")
    return notes_dataset(frame, text_col, str(path), src, name or path.stem, synthetic, spans=spans)


def check_notes(frame: pd.DataFrame, text_column: str, source: str, on_empty: str = "fail",
                max_chars: int = 1_000_000, what: str = "row") -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The notes that are text, non-empty and within `max_chars`; empty ones dropped (policy drop) and listed.
    A DataError names the file and row of the first problem otherwise."""
    if text_column not in frame.columns:
        raise DataError(f"{source}: text column '{text_column}' is missing; columns are {list(frame.columns)}.")
    values = frame[text_column]
    rows = frame["_record"].to_numpy() if "_record" in frame.columns else np.arange(len(frame)) + 1
    dropped, keep = [], np.ones(len(frame), dtype=bool)
    for i, v in enumerate(values.to_numpy()):
        if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
            if on_empty == "fail":
                raise DataError(f"{source}: {what} {rows[i]} has an empty note in '{text_column}'. Fix it, or set "
                                "data.text.on_empty: drop to leave empty notes out (they are counted in the report).")
            dropped.append({what: int(rows[i]), "reason": "empty note"})
            keep[i] = False
        elif not isinstance(v, str):
            raise DataError(f"{source}: {what} {rows[i]} holds a {type(v).__name__} in text column '{text_column}', "
                            "not text.")
        elif len(v) > max_chars:
            raise DataError(f"{source}: {what} {rows[i]} is a note of {len(v):,} characters, over data.text.max_chars "
                            f"({max_chars:,}); raise the limit if it is a real note (long notes are split into "
                            "windows, never cut), or fix the row.")
        elif "\ufffd" in v:
            raise DataError(f"{source}: {what} {rows[i]} holds bytes that were not UTF-8 (U+FFFD replacement "
                            "characters); re-export the file as UTF-8.")
    if not keep.any():
        raise DataError(f"{source}: every note is empty.")
    return frame.loc[keep].reset_index(drop=True), dropped


def notes_dataset(frame: pd.DataFrame, text_column: str, source: str, src: TextSource | None = None,
                  name: str = "notes", synthetic: bool = False, description: str = "",
                  label_hint: str | None = None, spans: dict[str, list[dict[str, Any]]] | None = None) -> Dataset:
    """A Dataset over a notes frame: note ids, the patient column, the text checked (`check_notes`)."""
    src = src or TextSource(path=source)
    frame, dropped = check_notes(frame, text_column, source, src.on_empty, src.max_chars)
    frame = frame.drop(columns=[c for c in ("_record",) if c in frame.columns])  # the readers' line numbers
    if src.id_column is not None:
        if src.id_column not in frame.columns:
            raise DataError(f"{source}: note id column '{src.id_column}' is missing; columns are "
                            f"{list(frame.columns)}.")
        ids = frame[src.id_column].astype(str)
        if ids.duplicated().any():
            raise DataError(f"{source}: note id {ids[ids.duplicated()].iloc[0]!r} appears twice in "
                            f"'{src.id_column}'; note ids must be unique.")
        frame = frame.assign(**{NOTE_ID: ids.to_numpy()})
    elif NOTE_ID not in frame.columns:
        frame = frame.assign(**{NOTE_ID: [f"note-{i + 1}" for i in range(len(frame))]})
    patient = src.patient_column or NOTE_ID
    if patient not in frame.columns:
        raise DataError(f"{source}: patient column '{patient}' is missing; columns are {list(frame.columns)}. "
                        "Set data.text.patient_column.")
    frame = frame[[NOTE_ID] + [c for c in frame.columns if c != NOTE_ID]]
    types = infer_feature_types(frame.drop(columns=[NOTE_ID]), source)
    types[text_column] = FeatureType.CATEGORICAL
    data = TextData(text_column, dropped, src.on_empty, spans, patient_given=src.patient_column is not None)
    return Dataset(frame=frame, name=name, patient_id=patient, feature_types=types, source=source,
                   synthetic=synthetic, description=description, label_hint=label_hint,
                   meta={"kind": "text", "text_config": src.model_dump()}, text=data)
