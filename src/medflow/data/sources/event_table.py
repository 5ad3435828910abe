"""A CSV/Parquet table of events (one row per event) -> EventData, with a column mapping from the YAML.

    data:
      events: {path: events.csv, subject_id: patient, time: charttime, code: itemid, value: valuenum,
               code_prefix: LAB}

Rows need not be sorted (medflow sorts them). Times are ISO strings or timestamps; an empty time marks
a static event. Subject ids that are not integers are numbered in sorted order (the map is kept in
`metadata["subject_ids"]`). Errors name the file, the row and the column.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from medflow.data.sources.meds import EventData
from medflow.errors import DataError

__all__ = ["read_event_table"]


def _read(path: Path) -> pl.DataFrame:
    if not path.exists():
        raise DataError(f"{path}: event table not found.")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pl.read_parquet(path)
        return pl.read_csv(path, infer_schema_length=0)  # all strings; typed below with row-level errors
    except (Exception, pl.exceptions.PanicException) as exc:  # noqa: BLE001 - polars panics on some damaged files
        raise DataError(f"{path}: cannot read the event table ({exc}).") from exc


def _bad_row(mask: pl.Series) -> int:
    return int(mask.arg_true()[0]) + 2  # 1-based, plus the header line


def read_event_table(path: str | Path, subject_id: str = "subject_id", time: str = "time", code: str = "code",
                     value: str | None = "numeric_value", code_prefix: str | None = None) -> EventData:
    path = Path(path)
    df = _read(path)
    for role, col in (("subject_id", subject_id), ("time", time), ("code", code), ("value", value)):
        if col is not None and col not in df.columns:
            raise DataError(f"{path}: data.events.{role} names column '{col}', which is not in the table "
                            f"(columns: {df.columns}).")
    ids = df[subject_id]
    if ids.null_count():
        raise DataError(f"{path}: row {_bad_row(ids.is_null())} has no subject id in column '{subject_id}'.")
    as_int = ids.cast(pl.Int64, strict=False)
    mapping = None
    if as_int.null_count():
        keys = ids.cast(pl.String)
        uniq = keys.unique().sort()
        mapping = dict(zip(uniq.to_list(), range(len(uniq)), strict=True))
        as_int = keys.replace_strict(mapping, return_dtype=pl.Int64)
    t = df[time]
    if t.dtype == pl.String:
        text = t.str.strip_chars()
        has_tz = text.str.contains(r"(Z|[+-]\d\d:?\d\d)$").fill_null(False)
        timed = text.is_not_null() & (text != "")
        naive = ~has_tz & timed & text.str.contains(r"[T ]\d").fill_null(False)
        if (has_tz & timed).any() and naive.any():
            raise DataError(f"{path}: column '{time}' mixes times with a UTC offset (row "
                            f"{_bad_row(has_tz & timed)}) and without one (row {_bad_row(naive)}); write every "
                            "time in one convention.")
        try:  # polars infers the format from the first time; one it cannot read at all raises
            if has_tz.any():
                parsed = text.str.to_datetime(time_zone="UTC", strict=False).dt.replace_time_zone(None)
            else:
                parsed = text.str.to_datetime(strict=False)
        except pl.exceptions.ComputeError as exc:
            row = _bad_row(timed)
            raise DataError(f"{path}: row {row} column '{time}' holds {text[row - 2]!r}, not a time; use ISO times "
                            "such as 2021-03-04 10:00:00 (leave empty for static events).") from exc
        bad = parsed.is_null() & timed
        if bad.any():
            row = _bad_row(bad)
            raise DataError(f"{path}: row {row} column '{time}' holds {t[row - 2]!r}, not a time; use ISO times "
                            "such as 2021-03-04 10:00:00 (leave empty for static events).")
        t = parsed
    elif isinstance(t.dtype, pl.Datetime) and t.dtype.time_zone is not None:
        t = t.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    elif not (isinstance(t.dtype, pl.Datetime) or t.dtype == pl.Date):
        raise DataError(f"{path}: column '{time}' must hold times, found {t.dtype}.")
    codes = df[code].cast(pl.String)
    if codes.null_count():
        raise DataError(f"{path}: row {_bad_row(codes.is_null())} has no code in column '{code}'.")
    if code_prefix:
        codes = f"{code_prefix}//" + codes
    values = pl.Series("numeric_value", [None] * df.height, pl.Float32)
    if value is not None:
        raw = df[value]
        values = raw.cast(pl.Float32, strict=False)
        bad = values.is_null() & raw.is_not_null() & (raw.cast(pl.String).str.strip_chars() != "")
        if bad.any():
            row = _bad_row(bad)
            raise DataError(f"{path}: row {row} column '{value}' holds {raw[row - 2]!r}, not a number.")
    events = pl.DataFrame({"subject_id": as_int, "time": t.cast(pl.Datetime("us")), "code": codes,
                           "numeric_value": values})
    events = events.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
    meta = {"dataset_name": path.stem}
    if mapping is not None:
        meta["subject_ids"] = {v: k for k, v in mapping.items()}
    return EventData(events=events, metadata=meta, source=str(path))
