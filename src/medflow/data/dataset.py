"""The `Dataset`: a table of records with a patient id and declared feature types."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from medflow.errors import DataError, shown

__all__ = ["FeatureType", "Dataset", "infer_feature_types", "coerce_types", "check_finite"]

ROW_ID = "__row__"


class FeatureType(StrEnum):
    """How a column is featurized."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BINARY = "binary"
    DATETIME = "datetime"


@dataclass
class Dataset:
    """Records (one row each) with a patient id column; rows of one patient stay together in splits.

    Attributes:
        frame: the records, one column per field.
        name: a short name used in run directories and reports.
        patient_id: the column identifying the patient.
        feature_types: the type of every column other than the patient id.
        source: where the data came from (a path, or ``builtin:<name>``).
        synthetic: True when the data were simulated; every output then says SYNTHETIC.
        description: free text shown in the report.
        label_hint: the natural label column for built-in datasets.
    """

    frame: pd.DataFrame
    name: str
    patient_id: str
    feature_types: dict[str, FeatureType]
    source: str = "memory"
    synthetic: bool = False
    description: str = ""
    label_hint: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    events: Any = None  # EventData for event datasets: the frame then holds one row per prediction sample
    images: Any = None  # ImageData for image datasets: the frame then holds one row per image
    molecules: Any = None  # MoleculeData for molecule datasets: the frame holds one row per molecule (SMILES)
    text: Any = None  # TextData for clinical notes: the frame holds one row per note
    # MultimodalData: several modalities joined per sample (the frame holds the samples; data.multimodal)
    modalities: Any = None

    @property
    def modality(self) -> str:
        """What the models read: "tabular" (the frame's columns), "events", "images", "molecules", "text" or
        "multimodal" (several of them per sample)."""
        if self.modalities is not None:
            return "multimodal"
        for kind in ("events", "images", "molecules", "text"):
            if getattr(self, kind) is not None:
                return kind
        return "tabular"

    @property
    def id_columns(self) -> list[str]:
        """The columns that name a record in predictions (patient, and the sample or image)."""
        if self.modalities is not None:
            return list(self.meta["id_columns"])
        if self.events is not None:
            return ["subject_id", "prediction_time"]
        if self.images is not None:
            return [self.patient_id, "image"]
        if self.molecules is not None:
            return [self.patient_id, self.molecules.smiles_column]
        if self.text is not None:
            return list(dict.fromkeys([self.patient_id, "note_id"]))
        return [] if self.patient_id == ROW_ID else [self.patient_id]

    def __post_init__(self) -> None:
        if self.patient_id not in self.frame.columns:
            raise DataError(
                f"{self.source}: patient id column '{self.patient_id}' is missing; "
                f"columns are {list(self.frame.columns)}. Set data.patient_id to one of them."
            )
        missing_ids = self.frame[self.patient_id].isna().to_numpy()
        if missing_ids.any():
            row = int(np.flatnonzero(missing_ids)[0]) + 1
            raise DataError(
                f"{self.source}: row {row} has no patient id in column '{self.patient_id}'; "
                "every record needs one."
            )

    def __len__(self) -> int:
        return len(self.frame)

    def inputs_text(self, n_features: int) -> str:
        """What the models read, in words (the run's first line)."""
        if self.modalities is not None:
            cov = self.modalities.coverage()
            return f"{len(cov)} modalities (" + ", ".join(f"{k} {v['share']:.0%}" for k, v in cov.items()) + ")"
        if self.events is not None:
            return f"{self.events.n_events:,} events"
        if self.images is not None:
            return f"{len(self.images)} images"
        if self.molecules is not None:
            return f"{len(self.frame)} molecules (SMILES in '{self.molecules.smiles_column}')"
        if self.text is not None:
            return f"{len(self.frame)} notes (text in '{self.text.text_column}')"
        return f"{n_features} features"

    @property
    def records(self) -> list[dict[str, Any]]:
        """The rows as plain dicts, the form `predict` accepts."""
        return self.frame.to_dict(orient="records")

    @property
    def n_patients(self) -> int:
        return int(self.frame[self.patient_id].nunique())

    def fingerprint(self) -> str:
        """A SHA-256 of the data's contents (values, columns and dtypes), for the manifest."""
        h = hashlib.sha256()
        h.update(repr(list(zip(self.frame.columns, map(str, self.frame.dtypes), strict=True))).encode())
        h.update(pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes())
        if self.modalities is not None:
            h.update(self.modalities.fingerprint())
            return h.hexdigest()
        if getattr(self.events, "streamed", False):
            h.update(self.events.fingerprint())
        elif self.events is not None:
            h.update(self.events.events.hash_rows(seed=0).to_numpy().tobytes())
        if self.images is not None:
            h.update(self.images.fingerprint())
        if self.molecules is not None:
            h.update(self.molecules.fingerprint())
        if self.text is not None:
            h.update(self.text.fingerprint())
        return h.hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "rows": len(self.frame),
            "patients": self.n_patients,
            "columns": len(self.frame.columns),
            "synthetic": self.synthetic,
            "description": self.description,
            **({"events": self.events.n_events, "streamed": True} if getattr(self.events, "streamed", False) else
               {"events": self.events.n_events, "event_subjects": self.events.n_subjects}
               if self.events is not None else {}),
            **(self.images.summary() if self.images is not None else {}),
            **(self.molecules.summary() if self.molecules is not None else {}),
            **(self.text.summary() if self.text is not None else {}),
            **(self.modalities.summary() if self.modalities is not None else {}),
        }


def _numeric_share(values: pd.Series) -> tuple[float, pd.Series]:
    nonnull = values.dropna()
    parsed = pd.to_numeric(nonnull, errors="coerce")
    share = float(parsed.notna().mean()) if len(nonnull) else 0.0
    return share, nonnull[parsed.isna()]


def infer_feature_types(frame: pd.DataFrame, source: str) -> dict[str, FeatureType]:
    """Infer a FeatureType per column from its values.

    A text column whose values are almost all numbers (>= 90%) is an error, not a category:
    it is nearly always a typo in a numeric column, and the message names the first bad row.
    """
    types: dict[str, FeatureType] = {}
    for col in frame.columns:
        s = frame[col]
        nonnull = s.dropna()
        if pd.api.types.is_bool_dtype(s):
            types[col] = FeatureType.BINARY
        elif pd.api.types.is_datetime64_any_dtype(s):
            types[col] = FeatureType.DATETIME
        elif pd.api.types.is_numeric_dtype(s):
            uniq = set(nonnull.unique().tolist())
            types[col] = FeatureType.BINARY if uniq and uniq <= {0, 1} else FeatureType.NUMERIC
        else:
            share, bad = _numeric_share(s)
            if share >= 0.9 and len(bad):
                _raise_text_in_numeric(source, col, bad)
            types[col] = FeatureType.CATEGORICAL
    return types


def _raise_text_in_numeric(source: str, col: str, bad: pd.Series) -> None:
    row = int(bad.index[0]) + 1
    raise DataError(
        f"{source}: column '{col}' is numeric but row {row} holds {shown(bad.iloc[0])} "
        f"({len(bad)} such value(s)). Fix the value, leave it empty for missing, "
        f"or declare the column categorical under data.types."
    )


def check_finite(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    """Reject +/-inf in numeric columns, naming the column and rows (scikit-learn would fail later, unclearly)."""
    for col in columns:
        s = frame[col]
        if not pd.api.types.is_float_dtype(s):
            continue
        bad = np.flatnonzero(np.isinf(s.to_numpy(dtype=float, na_value=np.nan)))
        if len(bad):
            rows = ", ".join(str(int(i) + 1) for i in bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise DataError(f"{source}: column '{col}' holds an infinite value ({shown(s.iloc[bad[0]])}) in "
                            f"{len(bad)} record(s), row(s) {rows}. Infinity is usually a division by zero "
                            "upstream: fix the values, or leave them empty for missing.")


def coerce_types(frame: pd.DataFrame, types: dict[str, FeatureType], source: str) -> pd.DataFrame:
    """Convert columns to the dtype their declared type needs, with row-level errors."""
    out = frame.copy()
    for col, kind in types.items():
        if col not in out.columns:
            raise DataError(
                f"{source}: data.types names column '{col}', which is not in the file; "
                f"columns are {list(out.columns)}."
            )
        s = out[col]
        if kind == FeatureType.NUMERIC and not pd.api.types.is_numeric_dtype(s):
            parsed = pd.to_numeric(s, errors="coerce")
            bad = s[parsed.isna() & s.notna()]
            if len(bad):
                _raise_text_in_numeric(source, col, bad)
            out[col] = parsed.astype(float)
        elif kind == FeatureType.DATETIME and not pd.api.types.is_datetime64_any_dtype(s):
            parsed = pd.to_datetime(s, errors="coerce", utc=True)
            bad = s[parsed.isna() & s.notna()]
            if len(bad):
                row = int(bad.index[0]) + 1
                raise DataError(
                    f"{source}: column '{col}' is declared datetime but row {row} holds {shown(bad.iloc[0])}; "
                    "use ISO dates such as 2024-03-01."
                )
            out[col] = parsed
        elif kind == FeatureType.CATEGORICAL:
            out[col] = s.astype("object").where(s.notna(), None)
    return out
