"""Streamed tokenization of a MEDS folder into a memory-mapped token cache, for pretraining.

Pass 1 reads one shard at a time and adds up each code's counts and value sums over the pretraining patients
(held-out patients never shape the vocabulary); pass 2 reads each shard again, turns every patient's whole
timeline into event ids and scaled values with that vocabulary (`features.codes.EventFeaturizer`, the same
tokenization a study applies), cuts it into windows of at most `max_len` events (the static events in front of
each, then consecutive timed events, the most recent window last), and appends the arrays to flat files. The
training reads them memory-mapped: resident memory holds one shard while tokenizing and the per-window index
(five numbers per window) while training, whatever the number of patients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medflow.artifacts import write_json
from medflow.data.sources.meds import StreamedEvents
from medflow.errors import DataError
from medflow.features.codes import EventFeaturizer, EventTensors, shard_stats

__all__ = ["TokenCache", "build_token_cache", "is_holdout"]

_FLAT = {"codes": np.int32, "times": np.int64, "values": np.float32, "has_value": np.bool_}
_WINDOW = ("static_start", "n_static", "end", "timed_start", "pred_time", "subject_id", "holdout")


def is_holdout(subject_id: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A fixed pseudo-random share of subjects held out (splitmix64 of the id and the seed): the same patient is
    held out in every shard, run and resume."""
    z = subject_id.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0**53 < fraction


@dataclass
class TokenCache:
    """The tokenized timelines: flat memory-mapped event arrays and the per-window index."""

    folder: Path
    featurizer: EventFeaturizer
    flat: dict[str, np.ndarray]
    windows: dict[str, np.ndarray]
    summary: dict[str, Any]

    def tensors(self, holdout: bool) -> EventTensors:
        """The windows of the pretraining (holdout=False) or held-out (True) patients, as EventTensors."""
        w = self.windows
        idx = np.flatnonzero(w["holdout"] == holdout)
        f = self.featurizer
        return EventTensors(self.flat["codes"], self.flat["times"], self.flat["values"], self.flat["has_value"],
                            w["static_start"][idx], w["n_static"][idx], w["end"][idx], w["timed_start"][idx],
                            w["pred_time"][idx], f.n_codes, f.max_len, None, f.code_names)

    @classmethod
    def open(cls, folder: Path) -> TokenCache:
        meta = json.loads((folder / "cache.json").read_text())
        n = meta["summary"]["tokens"]
        flat = {k: np.memmap(folder / f"{k}.bin", dtype=t, mode="r", shape=(n,)) for k, t in _FLAT.items()}
        with np.load(folder / "windows.npz") as z:
            windows = {k: z[k] for k in _WINDOW}
        return cls(folder, EventFeaturizer.from_dict(meta["featurizer"]), flat, windows, meta["summary"])


def _last_times(events: pl.DataFrame) -> pl.DataFrame:
    """One row per subject with timed events: its last event time (the end of its timeline)."""
    return (events.filter(pl.col("time").is_not_null()).group_by("subject_id", maintain_order=True)
            .agg(pl.col("time").max().alias("prediction_time")))


def _chunks(x: EventTensors, subject_id: np.ndarray, holdout: np.ndarray) -> dict[str, np.ndarray]:
    """Cut each subject's whole-timeline window into consecutive windows of at most max_len events."""
    ns = np.minimum(x.n_static, x.max_len // 4)
    step = x.max_len - ns
    m = x.end - x.timed_start
    k = np.maximum(-(-m // step), 1)  # windows per subject
    rep = np.repeat(np.arange(len(m)), k)
    j = np.arange(k.sum()) - np.repeat(np.cumsum(k) - k, k)  # 0 = the most recent window
    end = x.end[rep] - j * step[rep]
    last = np.maximum(end - 1, x.timed_start[rep])
    return {"static_start": x.static_start[rep], "n_static": x.n_static[rep], "end": end,
            "timed_start": x.timed_start[rep], "pred_time": x.times[last], "subject_id": subject_id[rep],
            "holdout": holdout[rep]}


def build_token_cache(meds: str | Path, folder: Path, min_count: int, max_len: int, holdout: float, seed: int,
                      progress: Any = None) -> TokenCache:
    """Tokenize the MEDS folder `meds` into `folder` (reused when a finished cache with the same settings is
    there: a resumed pretraining does not tokenize again)."""
    settings = {"meds": str(Path(meds).resolve()), "min_count": min_count, "max_len": max_len, "holdout": holdout,
                "seed": seed}
    done = folder / "cache.json"
    if done.exists():
        try:
            if json.loads(done.read_text()).get("settings") == settings:
                return TokenCache.open(folder)
        except (OSError, ValueError, KeyError):
            pass  # a stale or damaged cache is rebuilt, never trusted
    data = StreamedEvents.open(meds)
    feat = EventFeaturizer(min_count=min_count, max_len=max_len)
    stats = []
    for shard in data.shards():
        last = _last_times(shard.events)
        train = last.filter(~pl.Series(is_holdout(last["subject_id"].to_numpy(), holdout, seed)))
        if train.height:
            stats.append(shard_stats(shard.events, train))
        if progress:
            progress("vocabulary", shard.source)
    if not stats:
        raise DataError(f"{meds}: no patient with timed events outside the held-out share; nothing to pretrain on.")
    feat.set_stats(pl.concat(stats).group_by("code").agg(pl.col("n", "k", "s", "ss").sum()), str(meds))
    folder.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    files = {k: open(folder / f"{k}.bin", "wb") for k in _FLAT}  # noqa: SIM115 - closed below
    windows: dict[str, list[np.ndarray]] = {k: [] for k in _WINDOW}
    offset, subjects = 0, {"pretrain": 0, "holdout": 0}
    try:
        for shard in data.shards():
            last = _last_times(shard.events)
            if not last.height:
                continue
            x = feat.transform(shard, last)
            sid = last["subject_id"].to_numpy()
            hold = is_holdout(sid, holdout, seed)
            subjects["holdout"] += int(hold.sum())
            subjects["pretrain"] += int((~hold).sum())
            for k, t in _FLAT.items():
                getattr(x, k).astype(t, copy=False).tofile(files[k])
            part = _chunks(x, sid, hold)
            for k in ("static_start", "end", "timed_start"):
                part[k] = part[k] + offset
            for k in _WINDOW:
                windows[k].append(part[k])
            offset += len(x.codes)
            if progress:
                progress("tokens", shard.source)
    finally:
        for fh in files.values():
            fh.close()
    w = {k: np.concatenate(v) for k, v in windows.items()}
    np.savez(folder / "windows.npz", **w)
    summary = {"tokens": int(offset), "windows": int(len(w["end"])), "windows_holdout": int(w["holdout"].sum()),
               "subjects": subjects, "vocabulary": feat.n_codes, "shards": len(data.files),
               "synthetic": bool(data.synthetic)}
    write_json(done, {"settings": settings, "featurizer": feat.to_dict(), "summary": summary})
    return TokenCache.open(folder)
