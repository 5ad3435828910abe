"""Model-ready event windows (`EventTensors`): flat arrays of every event of the samples' subjects, sorted by subject
then time, and per-sample offsets; `batch(idx)` builds padded torch batches with NumPy fancy indexing (no Python loop
over patients), `to_matrix()` the count features the baselines read. `features.codes.EventFeaturizer` builds them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EventTensors", "PAD", "UNKNOWN", "US_PER_DAY", "MIN_TIME"]


PAD, UNKNOWN = 0, 1
US_PER_DAY = 86_400 * 1_000_000
MIN_TIME = -(2**62)  # the time of static events (no time) in the flat arrays


class EventTensors:
    """Model-ready event windows of n samples; `shape` is (n, vocabulary size) for the estimators."""

    def __init__(self, codes: np.ndarray, times: np.ndarray, values: np.ndarray, has_value: np.ndarray,
                 static_start: np.ndarray, n_static: np.ndarray, end: np.ndarray, timed_start: np.ndarray,
                 pred_time: np.ndarray, n_codes: int, max_len: int, extra: np.ndarray | None = None,
                 code_names: list[str] | None = None, numeric_codes: np.ndarray | None = None) -> None:
        self.codes, self.times, self.values, self.has_value = codes, times, values, has_value
        self.static_start, self.n_static, self.end, self.timed_start = static_start, n_static, end, timed_start
        self.pred_time, self.n_codes, self.max_len = pred_time, n_codes, max_len
        self.extra = extra  # per-sample numeric extras for the count matrix (age)
        self.code_names = code_names or [str(i) for i in range(n_codes)]
        self.numeric_codes = numeric_codes if numeric_codes is not None else np.zeros(0, np.int64)
        self._matrix: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.end)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.n_codes)

    def subset(self, idx: np.ndarray) -> EventTensors:
        idx = np.asarray(idx)
        return EventTensors(self.codes, self.times, self.values, self.has_value, self.static_start[idx],
                            self.n_static[idx], self.end[idx], self.timed_start[idx], self.pred_time[idx],
                            self.n_codes, self.max_len, None if self.extra is None else self.extra[idx],
                            self.code_names, self.numeric_codes)

    def __getitem__(self, idx: Any) -> EventTensors:
        return self.subset(np.arange(len(self))[idx])

    def sizes(self) -> np.ndarray:
        """Window length of every sample (what a batch pads to), for length-bucketed batching."""
        ns = np.minimum(self.n_static, self.max_len // 4)
        return ns + np.minimum(self.end - self.timed_start, self.max_len - ns)

    def positions(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Event positions (n x L, left-aligned) and the valid mask for samples `idx`."""
        ns = np.minimum(self.n_static[idx], self.max_len // 4)
        k = np.minimum(self.end[idx] - self.timed_start[idx], self.max_len - ns)
        total = ns + k
        width = max(int(total.max()) if len(total) else 1, 1)
        j = np.arange(width)[None, :]
        pos = np.where(j < ns[:, None], self.static_start[idx][:, None] + j,
                       (self.end[idx] - k)[:, None] + (j - ns[:, None]))
        valid = j < total[:, None]
        return np.where(valid, pos, 0), valid

    def batch(self, idx: Any) -> dict[str, Any]:
        """Padded torch tensors for samples `idx` (torch is imported here, so preprocessing never loads it)."""
        import torch

        idx = np.asarray(idx)
        pos, valid = self.positions(idx)
        codes = np.where(valid, self.codes[pos], PAD)
        t = self.times[pos]
        static = t == MIN_TIME
        pt = self.pred_time[idx][:, None]
        days_before = np.where(static | ~valid, 0.0, (pt - t) / US_PER_DAY)
        prev = np.concatenate([t[:, :1], t[:, :-1]], axis=1)
        gap = np.where(static | (prev == MIN_TIME) | ~valid, 0.0, (t - prev) / US_PER_DAY)
        gap[:, 0] = 0.0
        lengths = valid.sum(axis=1)
        return {
            "codes": torch.from_numpy(codes.astype(np.int64)),
            "values": torch.from_numpy(np.where(valid, self.values[pos], 0.0).astype(np.float32)),
            "has_value": torch.from_numpy((valid & self.has_value[pos]).astype(np.float32)),
            "dt": torch.from_numpy(np.log1p(np.maximum(days_before, 0)).astype(np.float32)),
            "gap": torch.from_numpy(np.log1p(np.maximum(gap, 0)).astype(np.float32)),
            # days before the prediction time; -1 for static events and padding (time-to-event pretraining)
            "days": torch.from_numpy(np.where(static | ~valid, -1.0, np.maximum(days_before, 0)).astype(np.float32)),
            "mask": torch.from_numpy(valid),
            "lengths": torch.from_numpy(np.maximum(lengths, 1).astype(np.int64)),
        }

    def window(self, i: int) -> dict[str, np.ndarray]:
        """The events a sample's model sees (positions into the flat arrays), for explanations."""
        pos, valid = self.positions(np.array([i]))
        p = pos[0][valid[0]]
        return {"pos": p, "codes": self.codes[p], "times": self.times[p], "values": self.values[p]}

    def to_matrix(self) -> np.ndarray:
        """Count features over each sample's whole window (not truncated): log1p counts, mean values, age."""
        if self._matrix is not None:
            return self._matrix
        n, v = len(self), self.n_codes
        lengths = self.n_static + (self.end - self.timed_start)
        sample = np.repeat(np.arange(n), lengths)
        seg_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
        # static rows first, then timed rows from timed_start
        offset = np.arange(lengths.sum()) - seg_start
        ns = np.repeat(self.n_static, lengths)
        pos = np.where(offset < ns, np.repeat(self.static_start, lengths) + offset,
                       np.repeat(self.timed_start, lengths) + offset - ns)
        flat = sample * v + self.codes[pos]
        counts = np.bincount(flat, minlength=n * v).reshape(n, v).astype(np.float32)
        has = self.has_value[pos]
        sums = np.bincount(flat[has], weights=self.values[pos][has], minlength=n * v).reshape(n, v)
        nval = np.bincount(flat[has], minlength=n * v).reshape(n, v)
        means = np.where(nval > 0, sums / np.maximum(nval, 1), 0.0)[:, self.numeric_codes].astype(np.float32)
        parts = [np.log1p(counts[:, 2:]), means]
        if self.extra is not None:
            parts.append(self.extra.astype(np.float32))
        self._matrix = np.ascontiguousarray(np.concatenate(parts, axis=1))
        return self._matrix

    def matrix_names(self) -> list[str]:
        names = [f"count:{c}" for c in self.code_names[2:]] + [f"mean:{self.code_names[i]}" for i in self.numeric_codes]
        return names + (["age"] if self.extra is not None else [])
