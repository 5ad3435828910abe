"""Prediction tasks on event data: who is predicted, when, and what the label is, without leakage.

A `Cohort` is defined on encounters (a start code paired with the next end code of the same subject):
the prediction time is the encounter's start or end plus an offset; samples whose encounter ended, or
whose subject died, at or before the prediction time are excluded; the label looks only *after* the
prediction time. Presets cover the common tasks::

    readmission_30d         at discharge; a new admission within 30 days (in-hospital deaths excluded)
    in_hospital_mortality   24 h after admission; death before discharge
    long_los                24 h after admission; length of stay over 7 days
    los                     24 h after admission; length of stay in days (regression)

Labels can also come from a MEDS label file computed elsewhere (`labels_from_meds`). Either way the
result is one row per sample: `subject_id`, `prediction_time`, the label column, and demographics read
from static events (sex, race, ...) and the birth event (age at the prediction time) for subgroups.
Extraction is a few Polars joins over the whole event table, never a loop over subjects.
"""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.sources.meds import EventData
from medflow.errors import ConfigError, DataError, did_you_mean

__all__ = ["Cohort", "PRESETS", "extract_samples", "labels_from_meds", "get_cohort", "demographics",
           "with_demographics"]

US_PER_DAY = 86_400 * 1_000_000


class Cohort(BaseModel):
    """An encounter-based prediction task (YAML: `data.cohort:` a preset name or these fields)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["binary", "regression"] = "binary"
    encounter_start: str = Field("ENCOUNTER//INPATIENT//START", description="code prefix of an encounter's start")
    encounter_end: str = Field("ENCOUNTER//INPATIENT//END", description="code prefix of an encounter's end")
    death_code: str = "MEDS_DEATH"
    anchor: Literal["start", "end"] = "end"
    offset_hours: float = Field(0.0, ge=0)
    outcome: Literal["readmission", "death_in_encounter", "los_over", "los_days"] = "readmission"
    window_days: float = Field(30.0, gt=0, description="readmission window, or the threshold for los_over")
    exclude_died_in_encounter: bool = True
    min_age: float | None = None


PRESETS: dict[str, Cohort] = {
    "readmission_30d": Cohort(name="readmission_30d", anchor="end", outcome="readmission", window_days=30),
    "in_hospital_mortality": Cohort(name="in_hospital_mortality", anchor="start", offset_hours=24,
                                    outcome="death_in_encounter", exclude_died_in_encounter=False),
    "long_los": Cohort(name="long_los", anchor="start", offset_hours=24, outcome="los_over", window_days=7,
                       exclude_died_in_encounter=False),
    "los": Cohort(name="los", kind="regression", anchor="start", offset_hours=24, outcome="los_days",
                  exclude_died_in_encounter=False),
}


def get_cohort(spec: str | Cohort | dict) -> Cohort:
    if isinstance(spec, Cohort):
        return spec
    if isinstance(spec, dict):
        return Cohort(**spec)
    if spec not in PRESETS:
        raise ConfigError(f"unknown cohort '{spec}'.{did_you_mean(spec, PRESETS)} Presets: {', '.join(PRESETS)}; "
                          "or define one with fields (encounter_start, anchor, offset_hours, outcome, ...).")
    return PRESETS[spec]


def _bounds(ev: pl.DataFrame, cohort: Cohort) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Encounter start and end times per subject, in one lazy pass (no copy of the timed events)."""
    timed = ev.lazy().filter(pl.col("time").is_not_null())

    def times(prefix: str, name: str) -> pl.LazyFrame:
        return (timed.filter(pl.col("code").str.starts_with(prefix))
                .select("subject_id", pl.col("time").alias(name)).unique().sort(["subject_id", name]))

    starts, ends = pl.collect_all([times(cohort.encounter_start, "start"), times(cohort.encounter_end, "end")])
    return starts, ends


def _encounters(ev: pl.DataFrame, cohort: Cohort, bounds: tuple | None = None) -> pl.DataFrame:
    starts, ends = bounds or _bounds(ev, cohort)
    if starts.height == 0 or ends.height == 0:
        which = cohort.encounter_start if starts.height == 0 else cohort.encounter_end
        raise DataError(f"no events with a code starting '{which}', so cohort '{cohort.name}' finds no encounters. "
                        "Set data.cohort.encounter_start / encounter_end to the codes your data uses "
                        "(e.g. HOSPITAL_ADMISSION and HOSPITAL_DISCHARGE), or give a MEDS label file.")
    enc = starts.join_asof(ends, left_on="start", right_on="end", by="subject_id", strategy="forward",
                         check_sortedness=False)
    return enc.filter(pl.col("end").is_not_null())


def demographics(ev: pl.DataFrame) -> pl.DataFrame:
    """One row per subject: birth time and the static categorical codes (GENDER//F -> sex = F, ...)."""
    subjects = ev.select("subject_id").unique()
    birth = (ev.filter(pl.col("code") == "MEDS_BIRTH").group_by("subject_id")
             .agg(pl.col("time").min().alias("_birth")))
    out = subjects.join(birth, on="subject_id", how="left")
    static = ev.filter(pl.col("time").is_null() & pl.col("code").str.contains("//"))
    if static.height:
        parts = static.select("subject_id", pl.col("code").str.split_exact("//", 1).alias("kv")).unnest("kv")
        parts = parts.rename({"field_0": "field", "field_1": "value"}).with_columns(
            pl.col("field").str.to_lowercase().replace({"gender": "sex"}))
        wide = parts.unique(["subject_id", "field"], keep="first").pivot(
            on="field", index="subject_id", values="value")
        out = out.join(wide.select("subject_id", *sorted(c for c in wide.columns if c != "subject_id")),
                       on="subject_id", how="left")
    return out


def with_demographics(samples: pl.DataFrame, ev: pl.DataFrame) -> pl.DataFrame:
    demo = demographics(ev)
    out = samples.join(demo, on="subject_id", how="left")
    age = ((pl.col("prediction_time") - pl.col("_birth")).dt.total_days() / 365.25).round(1)
    return out.with_columns(age.alias("age")).drop("_birth")


def extract_samples(data: EventData, cohort: str | Cohort | dict) -> pl.DataFrame:
    """Samples of a cohort: subject_id, prediction_time, the label (column named after the cohort), demographics."""
    cohort = get_cohort(cohort)
    ev = data.events
    bounds = _bounds(ev, cohort)
    enc = _encounters(ev, cohort, bounds)
    anchor = pl.col("start") if cohort.anchor == "start" else pl.col("end")
    offset = pl.duration(microseconds=int(cohort.offset_hours * 3600 * 1_000_000))
    enc = enc.with_columns((anchor + offset).alias("prediction_time")).sort(["subject_id", "prediction_time"])
    deaths = (ev.lazy().filter((pl.col("code") == cohort.death_code) & pl.col("time").is_not_null())
              .group_by("subject_id").agg(pl.col("time").min().alias("death")).collect())
    enc = enc.join(deaths, on="subject_id", how="left")
    # nothing about the outcome may have happened at or before the prediction time: the subject is alive
    # then and, when predicting during the encounter, still in it
    enc = enc.filter(pl.col("death").is_null() | (pl.col("death") > pl.col("prediction_time")))
    if cohort.anchor == "start":
        enc = enc.filter(pl.col("end") > pl.col("prediction_time"))
    died_in = pl.col("death").is_not_null() & (pl.col("death") <= pl.col("end"))
    if cohort.exclude_died_in_encounter:
        enc = enc.filter(~died_in)
    los_days = (pl.col("end") - pl.col("start")).dt.total_microseconds() / US_PER_DAY
    if cohort.outcome == "readmission":
        starts = bounds[0].rename({"start": "next_start"})  # sorted by subject, then time
        enc = enc.join_asof(starts, left_on="prediction_time", right_on="next_start", by="subject_id",
                            strategy="forward", allow_exact_matches=False, check_sortedness=False)
        gap = (pl.col("next_start") - pl.col("prediction_time")).dt.total_microseconds() / US_PER_DAY
        label = (pl.col("next_start").is_not_null() & (gap <= cohort.window_days)).cast(pl.Int8)
    elif cohort.outcome == "death_in_encounter":
        label = died_in.cast(pl.Int8)
    elif cohort.outcome == "los_over":
        label = (los_days > cohort.window_days).cast(pl.Int8)
    else:
        label = los_days.cast(pl.Float64)
    samples = enc.select("subject_id", "prediction_time", label.alias(cohort.name))
    samples = samples.unique(["subject_id", "prediction_time"], keep="first").sort(["subject_id", "prediction_time"])
    samples = with_demographics(samples, ev)
    if cohort.min_age is not None:
        samples = samples.filter(pl.col("age") >= cohort.min_age)
    if samples.height == 0:
        raise DataError(f"{data.source}: cohort '{cohort.name}' selects no samples (encounters found: {enc.height}).")
    return samples


def labels_from_meds(data: EventData, labels: pl.DataFrame, name: str, source: str) -> pl.DataFrame:
    """Samples from a MEDS label file: its value column becomes the label column `name`."""
    from medflow.data.sources.meds import LABEL_VALUES

    value = next(c for c in LABEL_VALUES if c in labels.columns and labels[c].null_count() < labels.height)
    known = data.events.select("subject_id").unique()
    missing = labels.join(known, on="subject_id", how="anti")
    if missing.height:
        sid = missing["subject_id"][0]
        row = int(labels["subject_id"].eq(sid).arg_true()[0]) + 1
        raise DataError(f"{source}: row {row} labels subject {sid}, who has no events in {data.source} "
                        f"({missing.height} label row(s) like this). Drop those rows or add the subject's events.")
    col = pl.col(value).cast(pl.Int8) if value in ("boolean_value",) else pl.col(value)
    samples = labels.select("subject_id", "prediction_time", col.alias(name)).sort(["subject_id", "prediction_time"])
    return with_demographics(samples, data.events)
