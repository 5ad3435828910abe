"""Samples and labels from OHDSI cohort tables (as ATLAS, CohortGenerator or any SQL writes them).

    data:
      omop: {path: omop/}
      cohort: {table: cohort.csv, target_cohort_id: 1, outcome_cohort_id: 2, time_at_risk_days: 365}

A cohort table has `cohort_definition_id, subject_id, cohort_start_date, cohort_end_date`. Each entry of
the target cohort is one sample: its prediction time is the end of the index day (cohort_start_date at
23:59:59.999999, so the index day's records are history, as PatientLevelPrediction's default covariate
window includes day 0), and its label is 1 when the subject enters the outcome cohort after the
prediction time and at most `time_at_risk_days` after the index date (PLP's risk window "1 to 365 days").
Subjects with the outcome on or before the index day are left out (`exclude_prior_outcome`, PLP's
default), as are samples whose subject died on or before it. `table` is a CSV / Parquet file, or the
name of a table in the OMOP database (`results.cohort`) when the events come from `data.omop.url`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.sources.meds import EventData
from medflow.errors import DataError

__all__ = ["CohortTable", "read_cohort_table", "samples_from_cohort_table"]

COLUMNS = ("cohort_definition_id", "subject_id", "cohort_start_date", "cohort_end_date")
DAY_US = 86_400_000_000


class CohortTable(BaseModel):
    """YAML `data.cohort:` an OHDSI cohort table: target entries are the samples, an outcome cohort the label."""

    model_config = ConfigDict(extra="forbid")
    table: str = Field(description="a CSV/Parquet cohort file, or a table of the OMOP database (schema.table)")
    target_cohort_id: int
    outcome_cohort_id: int
    time_at_risk_days: float = Field(365.0, gt=0)
    exclude_prior_outcome: bool = True
    name: str = "outcome"


def read_cohort_table(spec: CohortTable, url: str | None = None) -> pl.DataFrame:
    """The cohort rows (ids as Int64, dates as Date), from a file or the OMOP database's table."""
    path = Path(spec.table)
    if path.suffix.lower() in (".csv", ".parquet", ".pq", ".tsv") or url is None:
        if not path.exists():
            raise DataError(f"{path}: cohort table not found (data.cohort.table: a CSV/Parquet file, or a table in "
                            "the OMOP database given by data.omop.url).")
        try:
            raw = pl.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pl.read_csv(
                path, infer_schema=False, separator="\t" if path.suffix.lower() == ".tsv" else ",")
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: cannot read the cohort table ({exc}).") from exc
        where = str(path)
    else:
        from medflow.data.sources.omop_tables import OmopStore

        schema, _, name = spec.table.rpartition(".")
        store = OmopStore.open(url=url, cdm_schema=schema or None)
        try:
            raw = store.rows_of(name, list(COLUMNS))
        finally:
            store.close()
        where = f"{store.where}: {spec.table}"
    raw = raw.rename({c: c.lower() for c in raw.columns})
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataError(f"{where}: the cohort table has no column {', '.join(missing)} (the OHDSI cohort table has "
                        f"{', '.join(COLUMNS)}).")
    out = raw.select(pl.col("cohort_definition_id").cast(pl.String).cast(pl.Int64, strict=False),
                     pl.col("subject_id").cast(pl.String).cast(pl.Int64, strict=False),
                     *[pl.col(c).cast(pl.String).str.slice(0, 10).str.to_date(strict=False)
                       for c in ("cohort_start_date", "cohort_end_date")])
    for col in COLUMNS:
        bad = out[col].is_null() & raw[col].is_not_null()
        if bad.any() or out[col].null_count():
            i = int((bad | out[col].is_null()).arg_true()[0])
            raise DataError(f"{where}: row {i + 2} column '{col}' holds {raw[col][i]!r}; ids are integers and dates "
                            "ISO (2021-03-04).")
    return out


def samples_from_cohort_table(data: EventData, spec: CohortTable, rows: pl.DataFrame) -> pl.DataFrame:
    """subject_id, prediction_time and the label (named `spec.name`) for each target cohort entry."""
    target = rows.filter(pl.col("cohort_definition_id") == spec.target_cohort_id)
    outcome = rows.filter(pl.col("cohort_definition_id") == spec.outcome_cohort_id)
    if not target.height:
        ids = sorted(rows["cohort_definition_id"].unique().to_list())
        raise DataError(f"cohort table: no entry of target cohort {spec.target_cohort_id} (cohort ids present: {ids}).")
    known = data.events.select("subject_id").unique()
    unknown = target.join(known, on="subject_id", how="anti")
    if unknown.height:
        raise DataError(f"cohort table: {unknown.height} target entr(ies) name subjects with no records in "
                        f"{data.source}, e.g. subject {unknown['subject_id'][0]}.")
    index = pl.col("cohort_start_date").cast(pl.Datetime("us"))
    samples = target.select("subject_id", (index + pl.duration(microseconds=DAY_US - 1)).alias("prediction_time"),
                            (index + pl.duration(days=spec.time_at_risk_days)).alias("_end")).unique(
        ["subject_id", "prediction_time"], maintain_order=True)
    onsets = outcome.select("subject_id", pl.col("cohort_start_date").cast(pl.Datetime("us")).alias("_onset"))
    pairs = samples.join(onsets, on="subject_id", how="left")
    per = pairs.group_by("subject_id", "prediction_time", maintain_order=True).agg(
        ((pl.col("_onset") > pl.col("prediction_time")) & (pl.col("_onset") <= pl.col("_end"))).any()
        .fill_null(False).alias("_hit"),
        (pl.col("_onset") <= pl.col("prediction_time")).any().fill_null(False).alias("_prior"))
    if spec.exclude_prior_outcome:
        per = per.filter(~pl.col("_prior"))
    death = data.events.filter(pl.col("code") == "MEDS_DEATH").group_by("subject_id").agg(
        pl.col("time").min().alias("_death"))
    per = per.join(death, on="subject_id", how="left").filter(
        pl.col("_death").is_null() | (pl.col("_death") > pl.col("prediction_time")))
    if not per.height:
        raise DataError("cohort table: every target entry was left out (prior outcome or death by the index day).")
    return per.select("subject_id", "prediction_time", pl.col("_hit").cast(pl.Int8).alias(spec.name)).sort(
        ["subject_id", "prediction_time"])
