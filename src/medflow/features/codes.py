"""Event featurization: a code vocabulary fitted on training patients, per-sample event windows, batches.

`EventFeaturizer.fit` learns, from training subjects' events at or before their prediction times only:
the code vocabulary (codes seen at least `min_count` times; id 0 = padding, 1 = unknown) and each
code's numeric-value mean and standard deviation. `transform` turns events + samples into
`EventTensors`: flat arrays (code id, time, normalized value) over all events of the samples' subjects,
sorted by subject then time, plus per-sample offsets. A sample's window is its subject's static events
and its timed events **at or before the prediction time** (found with one as-of join), the most recent
`max_len` kept; nothing after the prediction time can enter a batch or a count.

`EventTensors` (`features/windows.py`) builds batches from those arrays with NumPy fancy indexing:
codes, normalized values, a has-value flag, log1p(days before the prediction time) and log1p(days since
the previous event), left-aligned with a length per sample; `to_matrix()` gives the count features the
baselines use (MEDS-Tab style): log1p(count) per code over the whole window and the mean normalized value
of each numeric code, plus age.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.ma  # noqa: F401  (polars imports it on its first NumPy -> Series conversion: an import, not work)
import polars as pl

from medflow.data.sources.meds import EventData
from medflow.errors import DataError
from medflow.features.windows import MIN_TIME, PAD, UNKNOWN, US_PER_DAY, EventTensors

__all__ = ["EventFeaturizer", "EventTensors", "PAD", "UNKNOWN", "US_PER_DAY", "shard_stats"]


class EventFeaturizer:
    """Fit a code vocabulary and value scales on training samples; turn samples into EventTensors."""

    name = "codes-v1"

    def __init__(self, min_count: int = 1, max_len: int = 256, lookback_days: float | None = None) -> None:
        if max_len < 4:
            raise DataError(f"data.sequence.max_len must be at least 4, got {max_len}.")
        self.min_count, self.max_len, self.lookback_days = min_count, max_len, lookback_days
        self.vocab: list[str] = []
        self.value_mean: dict[str, float] = {}
        self.value_std: dict[str, float] = {}

    @property
    def n_codes(self) -> int:
        return len(self.vocab) + 2

    @property
    def code_names(self) -> list[str]:
        return ["<pad>", "<unknown>"] + self.vocab

    def fit(self, data: EventData, samples: pl.DataFrame) -> EventFeaturizer:
        """Learn from the events of `samples`' subjects at or before each subject's last prediction time.

        Streamed MEDS data (`StreamedEvents`) are read one shard at a time; the counts, sums and sums of
        squares of each shard are added up: the same vocabulary, and the same scales to float rounding."""
        if getattr(data, "streamed", False):
            stats = [shard_stats(shard.events, samples) for shard in data.shards()]
            self.set_stats(pl.concat(stats).group_by("code").agg(pl.col("n", "k", "s", "ss").sum()), data.source)
            return self
        cut = samples.group_by("subject_id").agg(pl.col("prediction_time").max().alias("_cut"))
        ev = (data.events.lazy().join(cut.lazy(), on="subject_id", how="inner")
              .filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("_cut"))))
        stats = (ev.group_by("code").agg(pl.len().alias("n"), pl.col("numeric_value").mean().alias("mean"),
                                         pl.col("numeric_value").std().alias("std"),
                                         pl.col("numeric_value").count().alias("n_values"))
                 .filter(pl.col("n") >= self.min_count).sort("code").collect())
        if stats.height == 0:
            raise DataError(f"{data.source}: no codes seen at least {self.min_count} times in the training "
                            "patients' histories; lower data.sequence.min_count.")
        self.vocab = stats["code"].to_list()
        numeric = stats.filter(pl.col("n_values") > 0)
        self.value_mean = dict(zip(numeric["code"].to_list(), numeric["mean"].to_list(), strict=True))
        stds = numeric["std"].fill_null(1.0).to_list()
        names = numeric["code"].to_list()
        self.value_std = {c: (s if s and s > 1e-8 else 1.0) for c, s in zip(names, stds, strict=True)}
        return self

    def _vocab_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"code": self.vocab, "_id": np.arange(2, self.n_codes, dtype=np.int32),
                             "_mean": [self.value_mean.get(c, 0.0) for c in self.vocab],
                             "_std": [self.value_std.get(c, 1.0) for c in self.vocab]},
                            schema={"code": pl.String, "_id": pl.Int32, "_mean": pl.Float64, "_std": pl.Float64})

    def set_stats(self, total: pl.DataFrame, source: str) -> None:
        """Vocabulary and value scales from per-code counts n, value counts k, sums s and sums of squares ss."""
        total = total.filter(pl.col("n") >= self.min_count).sort("code")
        if total.height == 0:
            raise DataError(f"{source}: no codes seen at least {self.min_count} times in the training "
                            "patients' histories; lower data.sequence.min_count.")
        self.vocab = total["code"].to_list()
        num = total.filter(pl.col("k") > 0).with_columns((pl.col("s") / pl.col("k")).alias("mean"))
        num = num.with_columns(((pl.col("ss") / pl.col("k") - pl.col("mean") ** 2).clip(0, None)
                                * pl.col("k") / (pl.col("k") - 1).clip(1, None)).sqrt().alias("std"))
        self.value_mean = dict(zip(num["code"].to_list(), num["mean"].to_list(), strict=True))
        self.value_std = {c: (s if s and s > 1e-8 else 1.0)
                          for c, s in zip(num["code"].to_list(), num["std"].to_list(), strict=True)}

    def _scaled_values(self, ids: np.ndarray, raw: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """Values standardized with the training mean and sd of their code, clipped to +-10; 0 where there is
        none. Codes unseen in training (<unknown>) get 0: their scale is unknown."""
        has_value = (raw.is_not_null() & raw.is_not_nan().fill_null(False)).to_numpy()
        out = raw.fill_nan(0.0).fill_null(0.0).to_numpy(writable=True)
        mean = np.zeros(self.n_codes, dtype=np.float32)
        std = np.ones(self.n_codes, dtype=np.float32)
        for i, c in enumerate(self.vocab, start=2):
            if c in self.value_mean:
                mean[i], std[i] = self.value_mean[c], self.value_std.get(c, 1.0)
        out -= mean[ids]  # in place: one float32 temporary at a time
        out /= std[ids]
        np.clip(out, -10, 10, out=out)
        out[(ids == UNKNOWN) | ~has_value] = 0.0
        return out, has_value

    def transform(self, data: EventData, samples: pl.DataFrame) -> EventTensors:
        """EventTensors of `samples` (rows in the given order)."""
        if not self.vocab:
            raise DataError("the event featurizer is not fitted; call fit() on the training samples first.")
        if getattr(data, "streamed", False):
            return self._transform_streamed(data, samples)
        subjects = samples["subject_id"].unique()
        # codes -> ids by a hash lookup (2x faster than a join on the code strings); values scaled in NumPy;
        # the subjects are picked after the strings are gone, so no copy of the code column is made
        ev = data.events.select(
            "subject_id", pl.col("time").cast(pl.Int64).fill_null(MIN_TIME).alias("t"),
            pl.col("code").replace_strict(self.vocab, pl.int_range(2, self.n_codes, dtype=pl.Int32, eager=True),
                                          default=UNKNOWN,
                                          return_dtype=pl.Int32).alias("id"),
            pl.col("numeric_value").cast(pl.Float32).alias("v"))
        if subjects.len() < ev["subject_id"].n_unique():
            ev = ev.filter(pl.col("subject_id").is_in(subjects.implode()))
        n_ev = ev.height
        sid = ev["subject_id"].to_numpy()  # views of the frame's buffers: no copies of the event columns
        t = ev["t"].to_numpy()
        is_static = t == MIN_TIME
        first = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if n_ev else np.zeros(0, np.int64)
        n_static_sub = np.add.reduceat(is_static, first, dtype=np.int64) if n_ev else np.zeros(0, np.int64)
        per_subject = pl.DataFrame({"subject_id": sid[first] if n_ev else np.zeros(0, np.int64),
                                    "_start": first.astype(np.int64), "_n_static": n_static_sub})
        events_idx = ev.select("subject_id", pl.col("t").alias("_t")).with_row_index("_row")
        s = samples.select("subject_id", pl.col("prediction_time").cast(pl.Int64).alias("_pt")).with_row_index("_i")
        s = s.join(per_subject, on="subject_id", how="left", maintain_order="left")
        missing = s.filter(pl.col("_start").is_null())
        if missing.height:
            raise DataError(f"{data.source}: subject {missing['subject_id'][0]} has a prediction time but no "
                            f"events at all ({missing.height} sample(s) like this); drop those samples.")
        s = s.sort(["subject_id", "_pt"]).join_asof(events_idx, left_on="_pt", right_on="_t", by="subject_id",
                                                   strategy="backward", check_sortedness=False)
        if self.lookback_days is not None:
            lb = int(self.lookback_days * US_PER_DAY)
            s = s.with_columns((pl.col("_pt") - lb).alias("_from")).sort(["subject_id", "_from"]).join_asof(
                events_idx.filter(pl.col("_t") > MIN_TIME).rename({"_row": "_first", "_t": "_tf"}),
                left_on="_from", right_on="_tf", by="subject_id", strategy="forward", check_sortedness=False)
        s = s.sort("_i")
        start = s["_start"].to_numpy().astype(np.int64)
        n_static = s["_n_static"].to_numpy().astype(np.int64)
        end = np.where(s["_row"].is_null().to_numpy(), start, s["_row"].fill_null(0).to_numpy() + 1).astype(np.int64)
        end = np.maximum(end, start + n_static)
        timed_start = start + n_static
        if self.lookback_days is not None:
            first_in = s["_first"].fill_null(np.iinfo(np.int64).max).to_numpy()
            timed_start = np.clip(np.maximum(timed_start, first_in), None, end)
        values, has_value = self._scaled_values(ev["id"].to_numpy(), ev["v"])
        age = samples["age"].fill_null(strategy="mean").fill_null(0).to_numpy()[:, None] / 100 \
            if "age" in samples.columns else None
        numeric_codes = np.array([i + 2 for i, c in enumerate(self.vocab) if c in self.value_mean], dtype=np.int64)
        return EventTensors(ev["id"].to_numpy(), t, values, has_value, start, n_static, end,
                            timed_start, s["_pt"].to_numpy(), self.n_codes, self.max_len, age, self.code_names,
                            numeric_codes)

    def _transform_streamed(self, data: Any, samples: pl.DataFrame) -> EventTensors:
        """Windows built shard by shard, then put back in the order of `samples`."""
        indexed = samples.with_row_index("_order")
        parts, orders = [], []
        for shard in data.shards():
            mine = indexed.join(shard.events.select("subject_id").unique(), on="subject_id", how="semi")
            if mine.height:
                parts.append(self.transform(shard, mine.drop("_order")))
                orders.append(mine["_order"].to_numpy())
        if not parts:
            raise DataError(f"{data.source}: none of the samples' subjects has events in any shard.")
        order = np.concatenate(orders)
        if len(order) != samples.height:
            raise DataError(f"{data.source}: {samples.height - len(order)} sample(s) name subjects with no events.")
        x = concat_tensors(parts, self)
        return x.subset(np.argsort(order, kind="stable"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.name, "min_count": self.min_count, "max_len": self.max_len,
                "lookback_days": self.lookback_days, "vocab": self.vocab, "value_mean": self.value_mean,
                "value_std": self.value_std}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventFeaturizer:
        f = cls(d["min_count"], d["max_len"], d.get("lookback_days"))
        f.vocab, f.value_mean, f.value_std = list(d["vocab"]), dict(d["value_mean"]), dict(d["value_std"])
        return f

    @property
    def output_sources(self) -> list[str]:
        return self.code_names


def stream_meds(root: str, cohort: Any, featurizer: EventFeaturizer | None = None,
                train_split: str = "train") -> tuple[EventTensors, pl.DataFrame, EventFeaturizer]:
    """MEDS folder -> (EventTensors, samples, featurizer), one shard in memory at a time.

    MEDS keeps each subject's events in one shard, so the cohort and the windows are computed shard by
    shard. Pass 1 (only when `featurizer` is None or unfitted) fits the vocabulary and value scales from
    the training subjects (`subject_splits`, or shards under `data/<train_split>/`) up to their prediction
    times; pass 2 builds each shard's windows and appends its arrays. Peak memory is the model-ready arrays
    (about 17 bytes per event) plus one shard.
    """
    from pathlib import Path

    from medflow.data.cohort import extract_samples
    from medflow.data.sources.meds import _check_schema, _scan

    root_p = Path(root)
    files = sorted((root_p / "data").rglob("*.parquet"))
    if not files:
        raise DataError(f"{root}: no MEDS shards under data/.")
    splits_path = root_p / "metadata" / "subject_splits.parquet"
    train_ids = (pl.read_parquet(splits_path).filter(pl.col("split") == train_split).select(
        pl.col("subject_id").cast(pl.Int64)) if splits_path.exists() else None)

    def shard(f: Any) -> EventData | None:
        tz, _ = _check_schema(f)
        return EventData(events=_scan(f, tz).collect(), source=str(f))

    feat = featurizer or EventFeaturizer()
    if not feat.vocab:
        stats = []
        for f in files:
            if train_ids is None and train_split not in f.parts:
                continue
            data = shard(f)
            try:
                samples = extract_samples(data, cohort)
            except DataError:
                continue
            if train_ids is not None:
                samples = samples.join(train_ids, on="subject_id", how="semi")
            stats.append(shard_stats(data.events, samples))
        if not stats:
            raise DataError(f"{root}: no training samples found in any shard for this cohort.")
        feat.set_stats(pl.concat(stats).group_by("code").agg(pl.col("n", "k", "s", "ss").sum()), root)
    parts: list[EventTensors] = []
    sample_parts: list[pl.DataFrame] = []
    for f in files:
        data = shard(f)
        try:
            samples = extract_samples(data, cohort)
        except DataError:
            continue
        parts.append(feat.transform(data, samples))
        sample_parts.append(samples)
        del data
    return concat_tensors(parts, feat), pl.concat(sample_parts, how="diagonal_relaxed"), feat


def shard_stats(events: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
    """Per-code event counts and value sums of the samples' subjects, up to each one's last prediction time."""
    cut = samples.group_by("subject_id").agg(pl.col("prediction_time").max().alias("_cut"))
    ev = events.join(cut, on="subject_id").filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("_cut")))
    v = pl.col("numeric_value").cast(pl.Float64)
    return ev.group_by("code").agg(pl.len().alias("n"), v.count().alias("k"), v.sum().alias("s"),
                                   (v * v).sum().alias("ss"))


def concat_tensors(parts: list[EventTensors], feat: EventFeaturizer) -> EventTensors:
    """One EventTensors from several built with the same featurizer (e.g. one per shard), in order."""
    shift = np.cumsum([0] + [len(p.codes) for p in parts[:-1]])
    cat = np.concatenate
    return EventTensors(cat([p.codes.astype(np.int32) for p in parts]), cat([p.times for p in parts]),
                        cat([p.values for p in parts]), cat([p.has_value for p in parts]),
                        cat([p.static_start + s for p, s in zip(parts, shift, strict=True)]),
                        cat([p.n_static for p in parts]),
                        cat([p.end + s for p, s in zip(parts, shift, strict=True)]),
                        cat([p.timed_start + s for p, s in zip(parts, shift, strict=True)]),
                        cat([p.pred_time for p in parts]), feat.n_codes, feat.max_len,
                        cat([p.extra for p in parts]) if parts[0].extra is not None else None, feat.code_names,
                        parts[0].numeric_codes)
