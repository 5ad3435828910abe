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

from medflow.evaluate.drift import summarize
from medflow.features.tabular import numbers

__all__ = ["DriftMonitor"]


class DriftMonitor:
    """Counts of the inputs seen per feature bin; `summary()` compares them to training."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self._lock = threading.Lock()
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0
        self.batch = 256
        self._saved_n = 0
        from datetime import UTC, datetime

        self.started = datetime.now(UTC).isoformat(timespec="seconds")
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
        num = numbers(frame, self._num) if self._num else None
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

    def state(self) -> dict[str, Any]:
        """The raw counts (additive: states of several workers or restarts sum), with what summarizing needs."""
        self._flush()
        with self._lock:
            counts = {col: {"missing": c["missing"], "outside": c["outside"], "cats": dict(c["cats"]),
                            "bins": None if c["bins"] is None else c["bins"].tolist()}
                      for col, c in self.counts.items()}
            return {"n": self.n, "counts": counts, "fields": self.schema.fields,
                    "references": {col: c["ref"] for col, c in self.counts.items()}}

    def summary(self, min_records: int = 30) -> dict[str, Any]:
        return summarize(self.state(), min_records)

    def save(self, run_dir: Any, model: str, version: int) -> bool:
        """Write this process's counts to `<run>/monitoring/<host>-<pid>.json` (atomically) when they changed;
        the run's report sums every such file into its monitoring section."""
        import os
        import socket
        from datetime import UTC, datetime
        from pathlib import Path

        from medflow.artifacts import write_json

        state = self.state()
        if state["n"] == self._saved_n:
            return False
        state.update(model=model, version=version, started=self.started,
                     updated=datetime.now(UTC).isoformat(timespec="seconds"))
        write_json(Path(run_dir) / "monitoring" / f"{socket.gethostname()}-{os.getpid()}.json", state)
        self._saved_n = state["n"]
        return True
