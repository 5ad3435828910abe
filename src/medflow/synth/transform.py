"""Tables <-> matrices for generative models: what a generator learns and how its samples become records again.

Numeric (and datetime) columns become one standard-normal column through a quantile transform fitted on the
real values (skewed, multi-modal and count-valued marginals all become Gaussian, and every sample maps back into
the real range), plus a 0/1 missing flag when the column had gaps; integer-valued columns are rounded back to
integers. Binary and categorical columns become one-hot blocks (missing is a category of its own). `spans` tells a
model which output columns are continuous, flags, or one categorical block, so its decoder applies the right
loss and sampling to each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import QuantileTransformer

from medflow.data.dataset import FeatureType
from medflow.errors import DataError

__all__ = ["TableTransformer", "Span", "as_float"]

MISSING = "__missing__"


@dataclass(frozen=True)
class Span:
    column: str
    kind: str  # "num" (one standard-normal column), "flag" (0/1 missing flag), "cat" (one-hot block)
    start: int
    width: int


class TableTransformer:
    def __init__(self, types: dict[str, FeatureType], max_quantiles: int = 1000) -> None:
        self.types = dict(types)
        self.max_quantiles = max_quantiles
        self.spans: list[Span] = []
        self.numeric: dict[str, dict] = {}
        self.categories: dict[str, list] = {}

    @property
    def width(self) -> int:
        return sum(s.width for s in self.spans)

    def fit(self, frame: pd.DataFrame, seed: int = 0) -> TableTransformer:
        if len(frame) < 2:
            raise DataError(f"a generator needs at least 2 training records, got {len(frame)}.")
        pos = 0
        for col, kind in self.types.items():
            if kind in (FeatureType.NUMERIC, FeatureType.DATETIME):
                v = as_float(frame[col], kind)
                ok = ~np.isnan(v)
                if not ok.any():
                    raise DataError(f"column '{col}' has no values; drop it before synthesizing.")
                qt = QuantileTransformer(n_quantiles=int(min(self.max_quantiles, ok.sum())),
                                         output_distribution="normal", random_state=seed, subsample=10**9)
                qt.fit(v[ok, None])
                self.numeric[col] = {"qt": qt, "integer": bool(np.all(np.mod(v[ok], 1) == 0)),
                                     "missing": bool((~ok).any()), "datetime": kind == FeatureType.DATETIME}
                self.spans.append(Span(col, "num", pos, 1))
                pos += 1
                if self.numeric[col]["missing"]:
                    self.spans.append(Span(col, "flag", pos, 1))
                    pos += 1
            else:
                values = frame[col].astype(object).where(frame[col].notna(), MISSING)
                cats = list(pd.unique(values))
                self.categories[col] = cats
                self.spans.append(Span(col, "cat", pos, len(cats)))
                pos += len(cats)
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), self.width), dtype=np.float32)
        for span in self.spans:
            col = span.column
            if span.kind == "num":
                v = as_float(frame[col], self.types[col])
                ok = ~np.isnan(v)
                z = np.zeros(len(v))
                if ok.any():
                    z[ok] = self.numeric[col]["qt"].transform(v[ok, None])[:, 0]
                out[:, span.start] = z
            elif span.kind == "flag":
                out[:, span.start] = frame[col].isna().to_numpy()
            else:
                values = frame[col].astype(object).where(frame[col].notna(), MISSING)
                index = {c: i for i, c in enumerate(self.categories[col])}
                codes = values.map(index).to_numpy()
                known = ~pd.isna(codes)
                out[np.flatnonzero(known), span.start + codes[known].astype(int)] = 1.0
        return out

    def inverse(self, matrix: np.ndarray, rng: np.random.Generator | None = None) -> pd.DataFrame:
        """Records from generator outputs: numeric columns mapped back through the quantiles (so into the real
        range), flags at 0.5, one-hot blocks by their largest entry (or sampled from the block's softmax when
        `rng` is given and the block holds logits)."""
        cols: dict[str, np.ndarray] = {}
        for span in self.spans:
            col, block = span.column, matrix[:, span.start:span.start + span.width]
            if span.kind == "num":
                info = self.numeric[col]
                v = info["qt"].inverse_transform(np.clip(block, -5.2, 5.2))[:, 0]
                cols[col] = np.round(v) if info["integer"] else v
            elif span.kind == "flag":
                cols[col] = np.where(block[:, 0] > 0.5, np.nan, cols[col])
            else:
                if rng is not None:
                    p = np.exp(block - block.max(1, keepdims=True))
                    p /= p.sum(1, keepdims=True)
                    idx = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
                else:
                    idx = block.argmax(1)
                vals = np.asarray(self.categories[col], dtype=object)[idx]
                cols[col] = np.where(vals == MISSING, None, vals)
        frame = pd.DataFrame(cols)[list(self.types)]
        for col, info in self.numeric.items():
            if info["datetime"]:
                frame[col] = pd.to_datetime(frame[col], unit="s", utc=True)
        return frame


def as_float(s: pd.Series, kind: FeatureType) -> np.ndarray:
    """A numeric or datetime column as floats (datetimes in seconds); what cannot be read becomes NaN."""
    if kind == FeatureType.DATETIME:
        t = pd.to_datetime(s, errors="coerce", utc=True)
        return np.where(t.isna(), np.nan, t.astype("int64") / 1e9)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
