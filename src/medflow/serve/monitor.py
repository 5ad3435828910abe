"""Input drift of a served model against its training data, from the records it has been asked to predict.

Per feature: the population stability index (PSI) over the training deciles (numeric) or the training categories
(categorical, binary), the share of values outside the training range, the share of unseen categories, and the
missing share beside training's. PSI < 0.1 is read as stable, 0.1-0.2 as moderate and >= 0.2 as a shift worth
review (Siddiqi 2006; the usual credit-scoring convention, used in clinical model monitoring too). The reference
is the study data's distribution saved in the run's quality.json (`reference`); runs written before it was saved
report ranges and missingness only.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DriftMonitor", "psi"]

EPS = 1e-4


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index between two share vectors (each sums to 1); empty bins floored at 1e-4."""
    e = np.clip(np.asarray(expected, float), EPS, None)
    o = np.clip(np.asarray(observed, float), EPS, None)
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


class DriftMonitor:
    """Counts of the inputs seen per feature bin; `summary()` compares them to training."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._lock = threading.Lock()
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.batch = 256
        self._num = [c for c, f in schema.fields.items() if f["type"] == "numeric"]
        self._other = [c for c in schema.fields if c not in self._num]
        self.n = 0
        self.counts: dict[str, dict[str, Any]] = {}
        for col in schema.fields:
            ref = schema.columns.get(col, {}).get("reference")
            self.counts[col] = {"missing": 0, "outside": 0, "bins": None, "cats": {}, "ref": ref}
            if ref and "edges" in ref:
                self.counts[col]["bins"] = np.zeros(len(ref["edges"]) + 1, np.int64)

    def observe(self, frame: pd.DataFrame) -> None:
        """Queue a request's records as two small arrays (numeric, other); they are counted in batches, so a
        request pays tens of microseconds, not a pandas pass per feature."""
        num = frame[self._num].to_numpy(dtype=float, na_value=np.nan) if self._num else None
        other = frame[self._other].to_numpy(dtype=object) if self._other else None
        with self._lock:
            self._pending.append((num, other))
            self._pending_rows += len(frame)
            if self._pending_rows < self.batch:
                return
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            if not self._pending:
                return
            pending, self._pending, self._pending_rows = self._pending, [], 0
            num = np.vstack([p[0] for p in pending]) if self._num else None
            other = np.vstack([p[1] for p in pending]) if self._other else None
            self.n += sum(len(p[0] if p[0] is not None else p[1]) for p in pending)
            for j, col in enumerate(self._num):
                c, v = self.counts[col], num[:, j]
                v = v[~np.isnan(v)]
                c["missing"] += int(len(num) - len(v))
                rng = self.schema.fields[col].get("training_range")
                if rng and len(v):
                    c["outside"] += int(((v < rng[0]) | (v > rng[1])).sum())
                if c["bins"] is not None and len(v):
                    c["bins"] += np.bincount(np.searchsorted(c["ref"]["edges"], v, side="right"),
                                             minlength=len(c["bins"]))
            for j, col in enumerate(self._other):
                c = self.counts[col]
                values = [x for x in other[:, j] if x is not None and x == x]
                c["missing"] += int(len(other) - len(values))
                if self.schema.fields[col]["type"] in ("categorical", "binary"):
                    for value in values:
                        key = str(value)
                        c["cats"][key] = c["cats"].get(key, 0) + 1

    def summary(self, min_records: int = 30) -> dict[str, Any]:
        self._flush()
        with self._lock:
            rows, flagged = [], []
            for col, f in self.schema.fields.items():
                c = self.counts[col]
                row: dict[str, Any] = {"feature": col, "type": f["type"], "n": self.n,
                                       "missing_share": c["missing"] / self.n if self.n else None,
                                       "missing_in_training": f.get("missing_in_training"), "psi": None}
                present = self.n - c["missing"]
                if f["type"] == "numeric":
                    row["outside_training_range_share"] = c["outside"] / present if present else None
                    if c["bins"] is not None and present:
                        row["psi"] = psi(c["ref"]["shares"], c["bins"] / present)
                elif f["type"] in ("categorical", "binary") and present:
                    ref = (c["ref"] or {}).get("categories", {})
                    known = set(f.get("categories") or [str(v) for v in f.get("values") or []])
                    unseen = sum(k for v, k in c["cats"].items() if v not in known)
                    row["unseen_category_share"] = unseen / present
                    if ref:
                        cats = [k for k in ref if k != "__other__"]
                        obs = [c["cats"].get(k, 0) for k in cats]
                        exp = [ref[k] for k in cats]
                        if "__other__" in ref or unseen:
                            exp.append(ref.get("__other__", 0.0))
                            obs.append(present - sum(obs))
                        row["psi"] = psi(np.asarray(exp), np.asarray(obs) / present)
                if row["psi"] is not None:
                    row["stability"] = "stable" if row["psi"] < 0.1 else "moderate" if row["psi"] < 0.2 else "shift"
                    if row["psi"] >= 0.2 and self.n >= min_records:
                        flagged.append(f"{col}: PSI {row['psi']:.2f}")
                if (row.get("outside_training_range_share") or 0) > 0.05 and self.n >= min_records:
                    flagged.append(f"{col}: {row['outside_training_range_share']:.0%} outside the training range")
                rows.append(row)
        note = None if self.n >= min_records else \
            f"{self.n} record(s) seen; drift figures are unreliable below {min_records}"
        return {"records_seen": self.n, "features": rows, "flagged": flagged, "note": note,
                "reference": "the study data's distribution (quality.json); PSI >= 0.2 flags a shift"}
