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
        self.n = 0
        self.counts: dict[str, dict[str, Any]] = {}
        for col in schema.fields:
            ref = schema.columns.get(col, {}).get("reference")
            self.counts[col] = {"missing": 0, "outside": 0, "bins": None, "cats": {}, "ref": ref}
            if ref and "edges" in ref:
                self.counts[col]["bins"] = np.zeros(len(ref["edges"]) + 1, np.int64)

    def observe(self, frame: pd.DataFrame) -> None:
        with self._lock:
            self.n += len(frame)
            for col, f in self.schema.fields.items():
                c, s = self.counts[col], frame[col]
                present = s.dropna()
                c["missing"] += int(len(s) - len(present))
                if f["type"] == "numeric" and len(present):
                    v = present.astype(float).to_numpy()
                    rng = f.get("training_range")
                    if rng:
                        c["outside"] += int(((v < rng[0]) | (v > rng[1])).sum())
                    if c["bins"] is not None:
                        c["bins"] += np.bincount(np.searchsorted(c["ref"]["edges"], v, side="right"),
                                                 minlength=len(c["bins"]))
                elif f["type"] in ("categorical", "binary"):
                    for value, k in present.astype(str).value_counts().items():
                        c["cats"][value] = c["cats"].get(value, 0) + int(k)

    def summary(self, min_records: int = 30) -> dict[str, Any]:
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
