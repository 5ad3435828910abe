"""OMOP CDM -> a MEDS folder, a chunk of persons at a time (bounded memory, atomic).

Each chunk of persons (`chunk_persons`) becomes one data shard (`data/train/<i>.parquet`: OMOP declares no
split; medflow splits by patient when it reads the folder). `metadata/codes.parquet` carries each code's
concept name as its description and, where concept_ancestor is present, the parents one level up as
`parent_codes`, so a roll-up (`data.rollup`) works on the MEDS copy as on the database.
`metadata/dataset.json` records what the reader met (tables, row counts, fallbacks, units) under "omop".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import polars as pl

from medflow.data.sources.meds import _version, atomic_dir, write_codes, write_shard
from medflow.data.sources.omop import OmopRead, iter_omop

__all__ = ["omop_to_meds"]


def omop_to_meds(out: str | Path, path: str | Path | None = None, url: str | None = None,
                 cdm_schema: str | None = None, vocab_schema: str | None = None,
                 codes: Literal["standard", "source"] = "standard", chunk_persons: int = 20_000,
                 overwrite: bool = False, progress=None) -> Path:
    """Write the OMOP database at `path` / `url` as a MEDS folder at `out`. Returns `out`."""
    info = OmopRead()
    out = Path(out)
    with atomic_dir(out, overwrite) as tmp:
        (tmp / "data" / "train").mkdir(parents=True)
        seen: set[str] = set()
        n_events = n_subjects = 0
        for i, chunk in enumerate(iter_omop(path, url, cdm_schema, vocab_schema, codes, chunk_persons, info)):
            write_shard(chunk, tmp / "data" / "train" / f"{i}.parquet")
            seen.update(chunk["code"].unique().to_list())
            n_events += chunk.height
            n_subjects += chunk["subject_id"].n_unique()
            if progress:
                progress(chunk["subject_id"].n_unique())
        meta = tmp / "metadata"
        meta.mkdir()
        codes_frame = pl.DataFrame({"code": sorted(seen)}, schema={"code": pl.String})
        if info.hierarchy is not None and info.hierarchy.height:
            parents = (info.hierarchy.filter(pl.col("levels") == 1).group_by("code")
                       .agg(pl.col("ancestor").sort().alias("parent_codes")))
            codes_frame = codes_frame.join(parents, on="code", how="left")
        else:
            codes_frame = codes_frame.with_columns(pl.lit(None, pl.List(pl.String)).alias("parent_codes"))
        units = {k: ", ".join(sorted(v)) for k, v in info.units.items()}
        text = {c: (info.names.get(c, "") + (f" [{units[c]}]" if c in units else "")).strip() or None for c in seen}
        codes_frame = codes_frame.with_columns(
            pl.col("code").replace_strict(text, default=None, return_dtype=pl.String).alias("description")
        ).select("code", "description", "parent_codes")
        write_codes(codes_frame, meta / "codes.parquet")
        name, synthetic = info.identity(path)
        dataset = {"dataset_name": str(name), "dataset_version": str(info.cdm_source.get("cdm_release_date") or "1"),
                   "etl_name": "medflow.omop_to_meds", "etl_version": _version(), "meds_version": "0.4.1",
                   "omop": {**info.as_dict(), "events": n_events, "subjects": n_subjects},
                   "medflow": {"synthetic": synthetic}}
        (meta / "dataset.json").write_text(json.dumps(dataset, indent=1, default=str))
        if synthetic:
            (tmp / "SYNTHETIC.txt").write_text("Converted from a SYNTHETIC OMOP database. Not real patients.\n")
    return out
