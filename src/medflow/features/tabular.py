"""Tabular featurizer: imputation with missing indicators, standardization, one-hot with unknown bucket.

Fitted on the training split only; its state is plain JSON saved with the run, so prediction on
raw records reproduces the transform exactly.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.dataset import FeatureType
from medflow.errors import DataError, shown

__all__ = ["TabularFeaturizer", "UNKNOWN", "MISSING_SUFFIX", "numbers"]

UNKNOWN = "__unknown__"
MISSING_SUFFIX = "__missing"


@dataclass
class TabularFeaturizer:
    """Turns records into a float32 matrix.

    Numeric and datetime columns: median imputation, a missing-indicator column when the
    training data had gaps, then standardization with the training mean and sd. Binary:
    0/1 with mode imputation. Categorical: mode imputation and one-hot over the training
    categories plus an ``__unknown__`` column for values first seen at prediction time.
    """

    feature_types: dict[str, FeatureType]
    version: str = "tabular-v1"
    state: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fitted(self) -> bool:
        return bool(self.state)

    def fit(self, frame: pd.DataFrame) -> TabularFeaturizer:
        """Learn imputation values, scales and categories from training records."""
        self.state = {}
        for col, kind in self.feature_types.items():
            s = frame[col]
            has_missing = bool(s.isna().any())
            if kind in (FeatureType.NUMERIC, FeatureType.DATETIME):
                v = _as_float(s, kind)
                median = float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
                filled = np.where(np.isnan(v), median, v)
                std = float(filled.std())
                self.state[col] = {"median": median, "mean": float(filled.mean()), "std": std if std > 0 else 1.0,
                                   "indicator": has_missing}
            elif kind == FeatureType.BINARY:
                values = sorted(s.dropna().unique().tolist(), key=str)
                positive = _binary_positive(values)
                mode = s.mode(dropna=True)
                self.state[col] = {"values": [_plain(v) for v in values], "positive": _plain(positive),
                                   "mode": _plain(mode.iloc[0]) if len(mode) else None, "indicator": has_missing}
            else:
                text = s.dropna().astype(str)
                mode = text.mode()
                self.state[col] = {"categories": sorted(text.unique().tolist()),
                                   "mode": mode.iloc[0] if len(mode) else UNKNOWN, "indicator": has_missing}
        return self

    @property
    def output_names(self) -> list[str]:
        names = []
        for col, kind in self.feature_types.items():
            st = self.state[col]
            if kind == FeatureType.CATEGORICAL:
                names += [f"{col}={c}" for c in st["categories"]] + [f"{col}={UNKNOWN}"]
            else:
                names.append(col)
            if st["indicator"]:
                names.append(col + MISSING_SUFFIX)
        return names

    @property
    def output_sources(self) -> list[str]:
        """The raw column each output column comes from (for attributions on raw features)."""
        sources = []
        for col, kind in self.feature_types.items():
            st = self.state[col]
            n = len(st["categories"]) + 1 if kind == FeatureType.CATEGORICAL else 1
            sources += [col] * (n + int(st["indicator"]))
        return sources

    def check_columns(self, frame: pd.DataFrame, source: str = "input") -> list[str]:
        """Raise when a feature column is missing; return (and warn about) extra columns."""
        have = set(frame.columns)  # a set: membership in a pandas Index costs a microsecond per column
        missing = [c for c in self.feature_types if c not in have]
        if missing:
            raise DataError(f"{source}: missing feature column(s) {missing}; the model was trained with "
                            f"{list(self.feature_types)}. Add them (empty values are allowed).")
        extra = [c for c in frame.columns if c not in self.feature_types]
        return extra

    def transform(self, frame: pd.DataFrame, source: str = "input") -> np.ndarray:
        """Records to a float32 matrix with `len(output_names)` columns."""
        if not self.fitted:
            raise DataError("the featurizer is not fitted; call fit() on training records first.")
        self.check_columns(frame, source)
        fast_cols, z, fast_miss = self._numeric_block(frame, source)
        fast = {c: j for j, c in enumerate(fast_cols)}
        blocks: list[tuple[int, np.ndarray]] = []  # (first output column, block) of the columns read one by one
        z_at, miss_at, miss_of = [], [], []  # where the vectorized numeric columns and their indicators go
        pos = 0
        for col, kind in self.feature_types.items():
            st = self.state[col]
            if col in fast:
                z_at.append(pos)
                pos += 1
                if st["indicator"]:
                    miss_at.append(pos)
                    miss_of.append(fast[col])
                    pos += 1
                continue
            block, miss = self._column(frame, col, kind, source)
            blocks.append((pos, block))
            pos += block.shape[1]
            if st["indicator"]:
                blocks.append((pos, miss.astype(float)[:, None]))
                pos += 1
        out = np.empty((len(frame), pos), np.float32)  # filled in place: no per-column arrays stacked
        if z_at:
            out[:, z_at] = z
        if miss_at:
            out[:, miss_at] = fast_miss[:, miss_of]
        for at, block in blocks:
            out[:, at:at + block.shape[1]] = block
        return out

    def _column(self, frame: pd.DataFrame, col: str, kind: FeatureType, source: str) -> tuple[np.ndarray, np.ndarray]:
        """One raw column's output block (n x 1, or n x (categories + 1) one-hot) and its missing mask."""
        st, s = self.state[col], frame[col]
        miss = s.isna().to_numpy()
        if kind in (FeatureType.NUMERIC, FeatureType.DATETIME):
            v = _as_float(s, kind, source, col)
            v = np.where(np.isnan(v), st["median"], v)
            return ((v - st["mean"]) / st["std"])[:, None], miss
        if kind == FeatureType.BINARY:
            filled = s.where(~s.isna(), st["mode"])
            known = {str(x) for x in st["values"]}
            bad = ~filled.astype(str).isin(known) & filled.notna()
            if bad.any() and len(st["values"]) == 1:
                # a rare flag absent from this training part (e.g. one fold): the column was constant there,
                # so the model learned nothing from it; the other value is encoded as the training one
                warnings.warn(f"{source}: {int(bad.sum())} value(s) of binary column '{col}' were not seen in "
                              f"training (constant {shown(st['values'][0])} there) and are encoded as that value",
                              stacklevel=3)
                filled = filled.where(~bad, st["values"][0])
            elif bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
                raise DataError(f"{source}: binary column '{col}' holds {shown(filled[bad].iloc[0])} at row {row}; "
                                f"training saw only {st['values']}.")
            return (filled.astype(str) == str(st["positive"])).to_numpy(float)[:, None], miss
        text = s.astype(object).where(~s.isna(), st["mode"]).astype(str)
        cats = st["categories"]
        lookup = {c: i for i, c in enumerate(cats)}
        idx = text.map(lookup).fillna(len(cats)).to_numpy(int)
        onehot = np.zeros((len(frame), len(cats) + 1))
        onehot[np.arange(len(frame)), idx] = 1.0
        unseen = int((idx == len(cats)).sum())
        if unseen:
            warnings.warn(f"{source}: {unseen} value(s) of '{col}' were not seen in training and go to its unknown "
                          "bucket", stacklevel=3)
        return onehot, miss

    def _numeric_block(self, frame: pd.DataFrame, source: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Numeric columns already held as numbers, standardized in one vectorized pass (the per-column path
        costs tens of microseconds of pandas overhead per column, which dominates predicting one record):
        (their names, the standardized n x k matrix, its missing mask)."""
        # each distinct dtype tested once (a table of 30 float columns has one)
        dtypes = frame.dtypes.tolist()  # a Series built per call: read once
        kinds = {d: pd.api.types.is_numeric_dtype(d) for d in set(dtypes)}
        numeric = dict(zip(frame.columns, (kinds[d] for d in dtypes), strict=True))
        cols = [c for c, k in self.feature_types.items() if k == FeatureType.NUMERIC and numeric[c]]
        if not cols:
            return [], np.zeros((len(frame), 0)), np.zeros((len(frame), 0), bool)
        v = numbers(frame, cols)
        inf = np.isinf(v)
        if inf.any():
            j = int(np.flatnonzero(inf.any(axis=0))[0])
            rows = np.flatnonzero(inf[:, j])
            raise DataError(f"{source}: column '{cols[j]}' holds an infinite value in {len(rows)} record(s), first "
                            f"at row {int(rows[0]) + 1}. Fix the values or leave them empty for missing.")
        miss = np.isnan(v)
        st = [self.state[c] for c in cols]
        median = np.array([x["median"] for x in st])
        mean = np.array([x["mean"] for x in st])
        std = np.array([x["std"] for x in st])
        return cols, (np.where(miss, median, v) - mean) / std, miss

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "feature_types": {k: v.value for k, v in self.feature_types.items()},
                "state": self.state}

    @classmethod
    def merge(cls, parts: list[tuple[TabularFeaturizer, int]]) -> TabularFeaturizer:
        """One featurizer from several fitted on disjoint record sets (federated sites), from their summaries.

        `parts` are (featurizer, training records). Means and standard deviations are pooled exactly (the sd
        over the sites' imputed values); the median is the record-weighted mean of the sites' medians (a
        median cannot be pooled from medians); categories and binary values are the union; modes the
        record-weighted majority of the sites' modes; a missing indicator is kept when any site had gaps.
        """
        first = parts[0][0]
        out = cls(dict(first.feature_types), first.version)
        n = np.array([float(k) for _, k in parts])
        w = n / n.sum()
        for col, kind in first.feature_types.items():
            st = [f.state[col] for f, _ in parts]
            indicator = any(x["indicator"] for x in st)
            if kind in (FeatureType.NUMERIC, FeatureType.DATETIME):
                means = np.array([x["mean"] for x in st])
                mean = float(w @ means)
                var = float(w @ (np.array([x["std"] for x in st]) ** 2 + (means - mean) ** 2))
                out.state[col] = {"median": float(w @ np.array([x["median"] for x in st])), "mean": mean,
                                  "std": float(np.sqrt(var)) if var > 0 else 1.0, "indicator": indicator}
                continue
            votes: dict[str, float] = {}
            for x, k in zip(st, n, strict=True):
                if x["mode"] is not None:
                    votes[json.dumps(x["mode"])] = votes.get(json.dumps(x["mode"]), 0.0) + k
            mode = json.loads(max(sorted(votes), key=votes.__getitem__)) if votes else None
            if kind == FeatureType.BINARY:
                values = sorted({json.dumps(v) for x in st for v in x["values"]})
                values = sorted((json.loads(v) for v in values), key=str)
                out.state[col] = {"values": values, "positive": _plain(_binary_positive(values)), "mode": mode,
                                  "indicator": indicator}
            else:
                out.state[col] = {"categories": sorted({c for x in st for c in x["categories"]}),
                                  "mode": UNKNOWN if mode is None else mode, "indicator": indicator}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TabularFeaturizer:
        if d.get("version") != "tabular-v1":
            raise DataError(f"featurizer version {d.get('version')!r} is not supported by this medflow.")
        return cls({k: FeatureType(v) for k, v in d["feature_types"].items()}, d["version"], d["state"])


def _as_float(s: pd.Series, kind: FeatureType, source: str = "input", col: str = "") -> np.ndarray:
    if kind == FeatureType.DATETIME:
        t = pd.to_datetime(s, errors="coerce", utc=True)
        days = (t - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds() / 86400.0
        return days.to_numpy(dtype=float, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=float, na_value=np.nan)
    else:
        parsed = pd.to_numeric(s, errors="coerce")
        bad = s[parsed.isna() & s.notna()]
        if len(bad):
            raise DataError(f"{source}: column '{col}' is numeric but row {int(bad.index[0]) + 1} holds "
                            f"{shown(bad.iloc[0])}. Fix the value or leave it empty for missing.")
        v = parsed.to_numpy(dtype=float, na_value=np.nan)
    inf = np.flatnonzero(np.isinf(v))
    if len(inf):
        raise DataError(f"{source}: column '{col}' holds an infinite value in {len(inf)} record(s), first at row "
                        f"{int(inf[0]) + 1}. Fix the values or leave them empty for missing.")
    return v


def _binary_positive(values: list[Any]) -> Any:
    for v in values:
        if str(v).lower() in ("1", "1.0", "true", "yes", "y"):
            return v
    return values[-1] if values else 1


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def numbers(frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """`frame[cols]` as a float matrix (missing as NaN). A frame holding exactly `cols` in that order (the
    service's frames) is not selected first: the selection costs more than the arithmetic on a few records."""
    block = frame if frame.shape[1] == len(cols) and list(frame.columns) == cols else frame[cols]
    return block.to_numpy(dtype=float, na_value=np.nan)
