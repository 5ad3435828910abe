"""Per-patient embeddings from a pretrained timeline encoder, as Parquet for other tools (`medflow embed`).

Each patient (or each row of a MEDS label file: subject and prediction time) is represented by the encoder's
state at its last event at or before that time, and log1p of the days since it (what `timeline_transformer`'s
head reads). The MEDS folder is read one shard at a time; the events are tokenized with the pretrained
vocabulary (codes it does not know become <unknown>, and the count is in `summary.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medflow.artifacts import write_json
from medflow.data.sources.meds import StreamedEvents, read_meds_labels
from medflow.errors import DataError
from medflow.features.codes import UNKNOWN
from medflow.models.pretrained import load_pretrained

__all__ = ["embed_timelines"]


def embed_timelines(run_dir: str | Path, meds: str | Path, out: str | Path, labels: str | Path | None = None,
                    batch_size: int = 256) -> Path:
    """Write `out` (Parquet: subject_id, prediction_time, z_0..z_{d}) and `out`'s `.summary.json`."""
    import torch

    from medflow.artifacts import write_parquet
    from medflow.models.timeline import TimelineClassifier

    run = load_pretrained(run_dir)
    feat = run.featurizer()
    module = TimelineClassifier(feat.n_codes, 1, **run.model_params)
    module.load_state_dict({**module.state_dict(), **run.encoder_state()})
    module.eval()
    wanted = None if labels is None else read_meds_labels(labels).select(
        pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))).unique(
        maintain_order=True)
    parts, unknown, total = [], 0, 0
    for shard in StreamedEvents.open(meds).shards():
        ev = shard.events
        if wanted is None:
            samples = (ev.filter(pl.col("time").is_not_null()).group_by("subject_id", maintain_order=True)
                       .agg(pl.col("time").max().alias("prediction_time")))
        else:
            samples = wanted.join(ev.select("subject_id").unique(), on="subject_id", how="semi")
        if not samples.height:
            continue
        x = feat.transform(shard, samples)
        unknown += int((x.codes == UNKNOWN).sum())
        total += len(x.codes)
        with torch.no_grad():
            z = np.concatenate([module.represent(x.batch(np.arange(i, min(i + batch_size, len(x))))).numpy()
                                for i in range(0, len(x), batch_size)])
        frame = samples.select("subject_id", "prediction_time").with_columns(
            [pl.Series(f"z_{j}", z[:, j]) for j in range(z.shape[1])])
        parts.append(frame)
    if not parts:
        raise DataError(f"{meds}: no patient to embed" + (f" (none of the subjects in {labels} has events)"
                                                          if labels else " (no timed events)") + ".")
    result = pl.concat(parts)
    out = Path(out)
    write_parquet(out, result.to_pandas())
    summary: dict[str, Any] = {"pretrained_run": str(run.path), "meds": str(meds), "rows": result.height,
                               "dimensions": result.width - 2, "events": total, "unknown_events": unknown,
                               "unknown_share": unknown / max(total, 1), "synthetic": bool(run.meta.get("synthetic"))}
    write_json(out.with_suffix(".summary.json"), summary)
    return out
