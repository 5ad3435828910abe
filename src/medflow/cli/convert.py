"""`medflow convert`: any event source (OMOP files or database, FHIR, an event table, MEDS) -> a MEDS dataset,
and a cohort's samples -> a MEDS label file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medflow.cli.show import err, out


def convert(source: Annotated[str, typer.Argument(help="OMOP folder, database URL or .db/.duckdb file; FHIR folder; "
                                                       "MEDS folder; CSV/Parquet event table")],
            out_dir: Annotated[Path, typer.Option("--out", "-o", help="MEDS folder to write")],
            kind: Annotated[str, typer.Option("--from", help="auto | omop | meds | fhir | events")] = "auto",
            cdm_schema: Annotated[str | None, typer.Option(help="OMOP: schema of the CDM tables")] = None,
            vocab_schema: Annotated[str | None, typer.Option(help="OMOP: schema of the vocabulary tables")] = None,
            codes: Annotated[str, typer.Option(help="OMOP: codes from standard or source concepts")] = "standard",
            chunk_persons: Annotated[int, typer.Option(help="OMOP: persons per shard (bounds memory)")] = 20_000,
            subject_id: Annotated[str | None, typer.Option(help="event table: subject column")] = None,
            time: Annotated[str | None, typer.Option(help="event table: time column")] = None,
            code: Annotated[str | None, typer.Option(help="event table: code column")] = None,
            cohort: Annotated[str | None, typer.Option(help="also write this cohort's samples as MEDS labels "
                                                            "(readmission_30d, in_hospital_mortality, ...)")] = None,
            labels: Annotated[Path | None, typer.Option(help="label file to write (default: "
                                                             "OUT/labels/COHORT.parquet)")] = None,
            overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False) -> None:
    """Write a source as a MEDS dataset (and a cohort as a MEDS label file) for other MEDS tools."""
    import json

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from medflow.data.convert import cohort_labels, convert_to_meds
    from medflow.errors import ConfigError

    if kind not in ("auto", "omop", "meds", "fhir", "events"):
        raise ConfigError(f"--from '{kind}': choose auto, omop, meds, fhir or events.")
    if codes not in ("standard", "source"):
        raise ConfigError(f"--codes '{codes}': choose standard or source.")
    with Progress(SpinnerColumn(), TextColumn("converting {task.fields[n]:,} subjects"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("convert", total=None, n=0)
        path = convert_to_meds(source, out_dir, kind, overwrite=overwrite, cdm_schema=cdm_schema,
                               vocab_schema=vocab_schema, codes=codes, chunk_persons=chunk_persons,
                               subject_id=subject_id, time=time, code=code,
                               progress=lambda k: bar.update(task, n=bar.tasks[0].fields["n"] + k))
    info = json.loads((path / "metadata" / "dataset.json").read_text())
    synthetic = (path / "SYNTHETIC.txt").exists()
    shards = len(list((path / "data").rglob("*.parquet")))
    out.print(f"{'SYNTHETIC ' if synthetic else ''}MEDS dataset '{info.get('dataset_name')}': {shards} shard(s) -> "
              f"{path}", soft_wrap=True, highlight=False)
    if cohort:
        target = labels or path / "labels" / f"{cohort}.parquet"
        written, frame = cohort_labels(path, cohort, target)
        out.print(f"MEDS labels for '{cohort}': {frame.height:,} samples of {frame['subject_id'].n_unique():,} "
                  f"subjects -> {written}", soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(convert)
