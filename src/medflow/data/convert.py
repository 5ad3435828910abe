"""Any event source medflow reads -> a MEDS dataset, and a cohort's samples -> a MEDS label file.

    medflow convert omop/ -o meds/ --cohort readmission_30d --labels labels/readmission_30d.parquet
    medflow convert postgresql://me@host/ohdsi --cdm-schema cdm -o meds/
    medflow convert fhir_export/ -o meds/

The source's kind is found from what it holds (`detect_source`): a folder with a person table is OMOP, a
folder with data/*.parquet is MEDS, Bundle JSON or NDJSON is FHIR, one CSV/Parquet table is an event table,
a database URL (or a .db / .duckdb file) is OMOP. OMOP streams a chunk of persons per shard; the others are
read whole and written by `write_meds`. The output is what the `meds` schema validates (data shards,
metadata/codes.parquet, metadata/dataset.json, metadata/subject_splits.parquet when the source has splits),
written atomically. Labels follow the MEDS label schema: `boolean_value` for a binary cohort, `float_value`
for a regression one, so the cohort can be benchmarked by other MEDS tools (MEDS-DEV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from medflow.data.sources.meds import EventData, read_meds, write_meds, write_meds_labels
from medflow.errors import DataError

__all__ = ["detect_source", "read_source", "convert_to_meds", "cohort_labels"]

Kind = Literal["auto", "omop", "meds", "fhir", "events"]


def detect_source(source: str | Path) -> str:
    text = str(source)
    if "://" in text:
        return "omop"
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder to convert.")
    if path.is_file():
        if path.suffix.lower() in (".db", ".duckdb", ".sqlite"):
            return "omop"
        if path.suffix.lower() in (".json", ".ndjson"):
            return "fhir"
        return "events"
    names = {p.name.lower() for p in path.iterdir()}
    if any(n.split(".")[0] == "person" for n in names):
        return "omop"
    if (path / "data").is_dir():
        return "meds"
    if any(n.endswith((".json", ".ndjson")) for n in names):
        return "fhir"
    raise DataError(f"{path}: cannot tell what this folder holds (no person table for OMOP, no data/ for MEDS, no "
                    "FHIR .json/.ndjson); name it with --from omop|meds|fhir|events.")


def read_source(source: str | Path, kind: Kind = "auto", **options) -> EventData:
    """The events of `source` in memory (OMOP options: cdm_schema, vocab_schema, codes; event tables: columns)."""
    kind = detect_source(source) if kind == "auto" else kind
    if kind == "omop":
        from medflow.data.sources.omop import read_omop

        url = str(source) if "://" in str(source) or Path(source).is_file() else None
        return read_omop(None if url else source, url, **_only(options, ("cdm_schema", "vocab_schema", "codes")))
    if kind == "meds":
        return read_meds(source)
    if kind == "fhir":
        from medflow.data.sources.fhir import read_fhir

        return read_fhir(source)
    from medflow.data.sources.event_table import read_event_table

    return read_event_table(source, **_only(options, ("subject_id", "time", "code", "value", "code_prefix")))


def _only(options: dict, keys: tuple[str, ...]) -> dict:
    return {k: v for k, v in options.items() if k in keys and v is not None}


def convert_to_meds(source: str | Path, out: str | Path, kind: Kind = "auto", overwrite: bool = False,
                    progress=None, **options) -> Path:
    """Write `source` as a MEDS folder at `out`; returns `out`."""
    kind = detect_source(source) if kind == "auto" else kind
    if kind == "omop":
        from medflow.data.sources.omop_meds import omop_to_meds

        url = str(source) if "://" in str(source) or Path(source).is_file() else None  # a .db file: OmopStore
        return omop_to_meds(out, None if url else source, url, overwrite=overwrite, progress=progress,
                            **_only(options, ("cdm_schema", "vocab_schema", "codes", "chunk_persons")))
    data = read_source(source, kind, **options)
    if data.synthetic:
        data.metadata = {**data.metadata, "medflow": {**data.metadata.get("medflow", {}), "synthetic": True}}
    path = write_meds(data, out, overwrite=overwrite)
    if data.synthetic:
        (path / "SYNTHETIC.txt").write_text("Converted from SYNTHETIC (simulated) patients. Not real data.\n")
    return path


def cohort_labels(meds: str | Path, cohort, out: str | Path) -> tuple[Path, pl.DataFrame]:
    """A cohort's samples over the MEDS folder `meds` as a MEDS label file at `out` (streamed shard by shard)."""
    from medflow.data.cohort import get_cohort
    from medflow.data.ehr import event_dataset
    from medflow.data.sources.meds import StreamedEvents

    spec = get_cohort(cohort)
    ds = event_dataset(StreamedEvents.open(meds), spec)
    frame = pl.from_pandas(ds.frame[["subject_id", "prediction_time", spec.name]])
    value = (pl.col(spec.name).cast(pl.Boolean).alias("boolean_value") if spec.kind == "binary"
             else pl.col(spec.name).cast(pl.Float64).alias("float_value"))
    labels = frame.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")),
                          value)
    return write_meds_labels(labels, out), labels
