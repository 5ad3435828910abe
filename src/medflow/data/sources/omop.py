"""OMOP CDM 5.4 -> EventData (MEDS events), from files or a database, a chunk of persons at a time.

    data:
      omop: {path: omop/}                      # or url: postgresql://user@host/db, cdm_schema: cdm, vocab_schema: vocab
      cohort: readmission_30d

The events each table becomes:

=========================  ==================================================================================
person                     MEDS_BIRTH (birth_datetime, else year/month/day of birth with month and day 1 when
                           absent), GENDER//M|F|U|<name>, RACE//<name>, ETHNICITY//<name> (static)
visit_occurrence           ENCOUNTER//INPATIENT|AMBULATORY|EMERGENCY|<name>//START at the visit's start and
                           //END at its end (a date without a time ends at 23:59:59 that day)
condition_occurrence,      `vocabulary_id/concept_code` of the standard concept (`codes: standard`, the
drug_exposure,             default) or of the source concept (`codes: source`), e.g. ICD10CM/E11.9,
procedure_occurrence,      RxNorm/197361, LOINC/2345-7; measurement and observation carry value_as_number.
measurement, observation   A concept id of 0 (no mapping) falls back to the other concept, then to
                           `<TABLE>_SOURCE/<source_value>`; without a concept table codes are `OMOP/<id>`
death                      MEDS_DEATH (death_datetime, else the date)
=========================  ==================================================================================

Visits, birth, death and demographics use medflow's MEDS conventions (as the FHIR reader does), so the
cohorts (readmission, mortality, length of stay) work unchanged. Rows are read for one range of person ids
at a time (`chunk_persons`), in SQL or by lazy scans, and the concept lookups are per chunk: memory is
bounded by a chunk, whatever the database's size. Checked, each a one-line error naming the table,
column, person and value: missing tables / columns (with the CDM version), persons without gender or year
of birth, events dated before birth or after the death date, concept ids absent from the concept table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from medflow.data.sources.meds import EventData
from medflow.data.sources.omop_tables import CDM_VERSION, REQUIRED, OmopStore, hide_password
from medflow.errors import DataError

__all__ = ["read_omop", "iter_omop", "OmopRead", "EVENT_TABLES", "VISITS"]

# table: (concept stem, start date column, value column)
EVENT_TABLES = {
    "condition_occurrence": ("condition", "condition_start_date", None),
    "drug_exposure": ("drug", "drug_exposure_start_date", None),
    "procedure_occurrence": ("procedure", "procedure_date", None),
    "measurement": ("measurement", "measurement_date", "value_as_number"),
    "observation": ("observation", "observation_date", "value_as_number"),
}
VISITS = {9201: "INPATIENT", 262: "INPATIENT", 8717: "INPATIENT", 9202: "AMBULATORY", 9203: "EMERGENCY",
          581477: "HOME", 5083: "VIRTUAL", 32036: "LAB", 38004515: "INPATIENT"}
GENDERS = {8507: "M", 8532: "F", 8551: "U", 8521: "O", 8570: "O"}
DAY_US = 86_400_000_000
FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y%m%d")


@dataclass
class OmopRead:
    """What the reader met, for the manifest: tables, counts, fallbacks, units per measurement code."""

    tables: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    vocabulary: bool = False
    codes: str = "standard"
    fallbacks: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    units: dict[str, set] = field(default_factory=dict)
    cdm_source: dict = field(default_factory=dict)
    hierarchy: pl.DataFrame | None = None
    names: dict[str, str] = field(default_factory=dict)

    def identity(self, path: str | Path | None) -> tuple[str, bool]:
        """The database's name (cdm_source, else the folder's) and whether it says it is SYNTHETIC (its name, or a
        SYNTHETIC.txt beside the tables)."""
        name = str(self.cdm_source.get("cdm_source_name") or (Path(path).name if path is not None else "omop"))
        return name, "SYNTHETIC" in name.upper() or (path is not None and (Path(path) / "SYNTHETIC.txt").exists())

    def as_dict(self) -> dict:
        return {"tables": self.tables, "rows": self.rows, "vocabulary": "concept table" if self.vocabulary else
                "absent: codes are OMOP/<concept_id>", "codes": self.codes, "fallbacks": self.fallbacks,
                "dropped": self.dropped, "units": {k: sorted(v) for k, v in sorted(self.units.items())},
                "cdm_source": self.cdm_source}


def _time(frame: pl.DataFrame, date_col: str, where: str, end_of_day: bool = False) -> pl.Series:
    """The datetime column when filled, else the date (at 00:00, or 23:59:59 for an end)."""
    dt_col = date_col.replace("_date", "_datetime")
    out = _as_datetime(frame, date_col, where)
    if end_of_day:
        out = out + timedelta(microseconds=DAY_US - 1_000_000)
    if dt_col in frame.columns:
        dt = _as_datetime(frame, dt_col, where)
        out = dt.fill_null(out) if dt.null_count() < len(dt) else out
    return out


def _as_datetime(frame: pl.DataFrame, col: str, where: str) -> pl.Series:
    s = frame[col]
    if s.dtype == pl.String or s.dtype == pl.Null:
        text = s.cast(pl.String).str.strip_chars()
        parsed = pl.select(pl.coalesce([pl.lit(text).str.to_datetime(f, strict=False, time_unit="us")
                                        for f in FORMATS])).to_series()
        bad = parsed.is_null() & text.is_not_null() & (text != "")
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(f"{where}: column '{col}' holds {s[i]!r} (person {frame['person_id'][i]}), not a date; "
                            "OMOP dates are ISO (2021-03-04, or 2021-03-04 10:00:00 for datetimes).")
        s = parsed
    elif isinstance(s.dtype, pl.Datetime) and s.dtype.time_zone is not None:
        s = s.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    elif s.dtype != pl.Date and not isinstance(s.dtype, pl.Datetime):
        raise DataError(f"{where}: column '{col}' must hold dates, found {s.dtype}.")
    return s.cast(pl.Datetime("us"))


def _int(frame: pl.DataFrame, col: str) -> pl.Series:
    if col not in frame.columns:
        return pl.Series(col, [None] * frame.height, pl.Int64)
    return frame[col].cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False).cast(pl.Int64)


class _Vocab:
    """concept_id -> code, looked up per chunk, with a cache; `OMOP/<id>` when there is no concept table."""

    def __init__(self, store: OmopStore) -> None:
        self.store, self.present = store, store.check("concept")
        self.known = pl.DataFrame(schema={"concept_id": pl.Int64, "code": pl.String, "name": pl.String})

    def lookup(self, ids: pl.Series, where: str) -> pl.DataFrame:
        ids = ids.drop_nulls().unique()
        ids = ids.filter(ids != 0)
        new = ids.filter(~ids.is_in(self.known["concept_id"].implode()))
        if len(new):
            if self.present:
                rows = self.store.where_in("concept", ["concept_id", "vocabulary_id", "concept_code", "concept_name"],
                                           "concept_id", new.to_list())
                found = rows.select(pl.col("concept_id").cast(pl.Int64),
                                    pl.concat_str(pl.col("vocabulary_id").cast(pl.String), pl.lit("/"),
                                                  pl.col("concept_code").cast(pl.String)).alias("code"),
                                    (pl.col("concept_name").cast(pl.String) if "concept_name" in rows.columns
                                     else pl.lit(None, pl.String)).alias("name"))
                absent = new.filter(~new.is_in(found["concept_id"].implode()))
                if len(absent):
                    raise DataError(f"{where}: concept id {absent[0]}" + (f" (and {len(absent) - 1} more)"
                                    if len(absent) > 1 else "") + " is not in the concept table "
                                    f"({self.store.where}); load the vocabulary release the CDM was built with.")
            else:
                found = pl.DataFrame({"concept_id": new, "code": "OMOP/" + new.cast(pl.String),
                                      "name": pl.Series([None] * len(new), dtype=pl.String)})
            self.known = pl.concat([self.known, found.unique("concept_id")])
        return self.known


def _person_events(store: OmopStore, vocab: _Vocab, lo: int, hi: int, info: OmopRead
                   ) -> tuple[pl.DataFrame, pl.DataFrame]:
    cols = ["person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime",
            "race_concept_id", "ethnicity_concept_id", "race_source_value", "ethnicity_source_value"]
    p = store.rows("person", cols, lo, hi)
    where = f"{store.where}: person"
    info.rows["person"] = info.rows.get("person", 0) + p.height
    pid, gender, year = _int(p, "person_id"), _int(p, "gender_concept_id"), _int(p, "year_of_birth")
    for name, s, fix in (("gender_concept_id", gender, "8551 (UNKNOWN) where it is not recorded"),
                         ("year_of_birth", year, "the year, or leave the person out")):
        bad = (s.is_null() | (s == 0)) if name == "gender_concept_id" else s.is_null()
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(f"{where}: person {pid[i]} has no {name} ({bad.sum()} person(s) in all); CDM "
                            f"{CDM_VERSION} requires it: set {fix}.")
    month, day = _int(p, "month_of_birth").fill_null(1), _int(p, "day_of_birth").fill_null(1)
    birth = pl.datetime(pl.lit(year), pl.lit(month), pl.lit(day), time_unit="us")
    birth = pl.select(birth).to_series()
    if "birth_datetime" in p.columns:
        birth = _as_datetime(p, "birth_datetime", where).fill_null(birth)
    names = vocab.lookup(pl.concat([_int(p, "race_concept_id"), _int(p, "ethnicity_concept_id")]), where)
    name_of = dict(zip(names["concept_id"].to_list(), names["name"].to_list(), strict=True))

    def label(ids: pl.Series, raw: str) -> pl.Series:
        src = p[raw].cast(pl.String) if raw in p.columns else pl.Series([None] * p.height, dtype=pl.String)
        text = [name_of.get(i) or (s if s else (str(i) if i else None)) for i, s in zip(ids, src, strict=True)]
        return pl.Series(text, dtype=pl.String)

    static = [pl.DataFrame({"subject_id": pid, "code": "GENDER//" + gender.replace_strict(
        GENDERS, default=None, return_dtype=pl.String).fill_null("O")})]
    for prefix, col, raw in (("RACE", "race_concept_id", "race_source_value"),
                             ("ETHNICITY", "ethnicity_concept_id", "ethnicity_source_value")):
        if col in p.columns:
            static.append(pl.DataFrame({"subject_id": pid, "code": f"{prefix}//" + label(_int(p, col), raw)}))
    static = pl.concat(static).drop_nulls().with_columns(pl.lit(None, pl.Datetime("us")).alias("time"))
    births = pl.DataFrame({"subject_id": pid, "time": birth, "code": "MEDS_BIRTH"})
    bounds = pl.DataFrame({"subject_id": pid, "birth": birth.dt.date()})
    return pl.concat([static.select("subject_id", "time", "code"), births]), bounds


def _visit_events(store: OmopStore, vocab: _Vocab, lo: int, hi: int, info: OmopRead) -> pl.DataFrame:
    v = store.rows("visit_occurrence", ["person_id", "visit_concept_id", "visit_start_date", "visit_start_datetime",
                                        "visit_end_date", "visit_end_datetime"], lo, hi)
    info.rows["visit_occurrence"] = info.rows.get("visit_occurrence", 0) + v.height
    where = f"{store.where}: visit_occurrence"
    if not v.height:
        return pl.DataFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String})
    cid = _int(v, "visit_concept_id")
    other = vocab.lookup(cid.filter(~cid.is_in(list(VISITS))), where)
    names = {**dict(zip(other["concept_id"].to_list(), other["name"].fill_null(other["code"]).to_list(),
                        strict=True)), **VISITS}
    kind = cid.replace_strict(names, default="UNKNOWN", return_dtype=pl.String).str.to_uppercase().str.replace_all(
        r"[^A-Z0-9]+", "_")
    start, end = _time(v, "visit_start_date", where), _time(v, "visit_end_date", where, end_of_day=True)
    pid = _int(v, "person_id")
    return pl.concat([pl.DataFrame({"subject_id": pid, "time": start, "code": "ENCOUNTER//" + kind + "//START"}),
                      pl.DataFrame({"subject_id": pid, "time": end, "code": "ENCOUNTER//" + kind + "//END"})])


def _clinical(store: OmopStore, vocab: _Vocab, table: str, lo: int, hi: int, codes: str, info: OmopRead
              ) -> pl.DataFrame:
    stem, date_col, value_col = EVENT_TABLES[table]
    cols = ["person_id", f"{stem}_concept_id", f"{stem}_source_concept_id", f"{stem}_source_value", date_col,
            date_col.replace("_date", "_datetime"), value_col or "", "unit_source_value", "unit_concept_id"]
    t = store.rows(table, [c for c in cols if c], lo, hi)
    where = f"{store.where}: {table}"
    info.rows[table] = info.rows.get(table, 0) + t.height
    if not t.height:
        return pl.DataFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                    "numeric_value": pl.Float32})
    std, src = _int(t, f"{stem}_concept_id"), _int(t, f"{stem}_source_concept_id")
    first, second = (std, src) if codes == "standard" else (src, std)
    known = vocab.lookup(pl.concat([std, src]), where)
    code_of = dict(zip(known["concept_id"].to_list(), known["code"].to_list(), strict=True))
    a = first.replace_strict(code_of, default=None, return_dtype=pl.String)
    b = second.replace_strict(code_of, default=None, return_dtype=pl.String)
    raw = (t[f"{stem}_source_value"].cast(pl.String) if f"{stem}_source_value" in t.columns
           else pl.Series([None] * t.height, dtype=pl.String))
    c = pl.when(raw.is_not_null() & (raw.str.strip_chars() != "")).then(
        pl.lit(f"{table.upper()}_SOURCE/") + raw).otherwise(None)
    c = pl.select(c).to_series()
    code = a.fill_null(b).fill_null(c)
    fell = int(a.is_null().sum())
    if fell:
        info.fallbacks[table] = info.fallbacks.get(table, 0) + fell
    value = (t[value_col].cast(pl.String).cast(pl.Float32, strict=False) if value_col and value_col in t.columns
             else pl.Series([None] * t.height, dtype=pl.Float32))
    out = pl.DataFrame({"subject_id": _int(t, "person_id"), "time": _time(t, date_col, where), "code": code,
                        "numeric_value": value})
    if table == "measurement":
        unit = t["unit_source_value"].cast(pl.String) if "unit_source_value" in t.columns else None
        if unit is not None:
            for k, u in out.select("code", unit.alias("u")).drop_nulls().unique().iter_rows():
                info.units.setdefault(k, set()).add(u)
    dropped = int(out["code"].null_count())
    if dropped:
        info.dropped[table] = info.dropped.get(table, 0) + dropped
    return out.drop_nulls("code")


def _check_dates(ev: pl.DataFrame, bounds: pl.DataFrame, where: str) -> None:
    timed = ev.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH")).join(
        bounds, on="subject_id", how="left")
    early = timed.filter(pl.col("time").dt.date() < pl.col("birth"))
    if early.height:
        r = early.row(0, named=True)
        raise DataError(f"{where}: person {r['subject_id']} has an event ({r['code']}) on {r['time']:%Y-%m-%d}, "
                        f"before their birth ({r['birth']}); {early.height} such event(s). Fix the dates or the "
                        "person's year/month/day of birth.")
    if "death" in bounds.columns:
        late = timed.filter((pl.col("time").dt.date() > pl.col("death")) & (pl.col("code") != "MEDS_DEATH"))
        if late.height:
            r = late.row(0, named=True)
            raise DataError(f"{where}: person {r['subject_id']} has an event ({r['code']}) on {r['time']:%Y-%m-%d}, "
                            f"after their death ({r['death']}); {late.height} such event(s). Fix the dates or the "
                            "death record.")


def _hierarchy(store: OmopStore, vocab: _Vocab) -> pl.DataFrame:
    """code, ancestor, levels for the concepts the events use (concept_ancestor's min_levels_of_separation)."""
    ids = vocab.known["concept_id"].to_list()
    rows = store.where_in("concept_ancestor", ["ancestor_concept_id", "descendant_concept_id",
                                               "min_levels_of_separation"], "descendant_concept_id", ids)
    if not rows.height:
        return pl.DataFrame(schema={"code": pl.String, "ancestor": pl.String, "levels": pl.Int64})
    rows = rows.select(_int(rows, "ancestor_concept_id").alias("a"), _int(rows, "descendant_concept_id").alias("d"),
                       _int(rows, "min_levels_of_separation").alias("levels"))
    known = vocab.lookup(rows["a"], f"{store.where}: concept_ancestor").select("concept_id", "code")
    return (rows.join(known.rename({"concept_id": "d"}), on="d")
            .join(known.rename({"concept_id": "a", "code": "ancestor"}), on="a")
            .select("code", "ancestor", "levels"))


def _chunks(store: OmopStore, chunk_persons: int) -> tuple[list[tuple[int, int]], int]:
    ids = _int(store.rows("person", ["person_id"]), "person_id")
    if ids.null_count():
        raise DataError(f"{store.where}: person: a row has no person_id (it is required and an integer).")
    ids = ids.sort()
    if ids.is_duplicated().any():
        raise DataError(f"{store.where}: person: person_id {ids.filter(ids.is_duplicated())[0]} appears twice.")
    bounds = [(int(ids[i]), int(ids[min(i + chunk_persons, len(ids)) - 1])) for i in range(0, len(ids), chunk_persons)]
    return bounds, len(ids)


def iter_omop(path: str | Path | None = None, url: str | None = None, cdm_schema: str | None = None,
              vocab_schema: str | None = None, codes: Literal["standard", "source"] = "standard",
              chunk_persons: int = 20_000, info: OmopRead | None = None) -> Iterator[pl.DataFrame]:
    """Events of one chunk of persons at a time (sorted by subject, then time; static events first)."""
    store = OmopStore.open(path, url, cdm_schema, vocab_schema)
    info = info if info is not None else OmopRead()
    try:
        store.check("person", required=True)
        present = [t for t in REQUIRED if store.check(t)]
        info.tables, info.codes = present, codes
        info.vocabulary = "concept" in present
        vocab = _Vocab(store)
        if "cdm_source" in present:
            src = store.rows("cdm_source", store.columns("cdm_source"))
            info.cdm_source = {k: (str(v) if v is not None else None) for k, v in src.row(0, named=True).items()} \
                if src.height else {}
        chunks, _ = _chunks(store, chunk_persons)
        for lo, hi in chunks:
            parts, bounds = _person_events(store, vocab, lo, hi, info)
            parts = [parts.with_columns(pl.lit(None, pl.Float32).alias("numeric_value"))]
            if "visit_occurrence" in present:
                parts.append(_visit_events(store, vocab, lo, hi, info).with_columns(
                    pl.lit(None, pl.Float32).alias("numeric_value")))
            for table in EVENT_TABLES:
                if table in present:
                    parts.append(_clinical(store, vocab, table, lo, hi, codes, info))
            if "death" in present:
                d = store.rows("death", ["person_id", "death_date", "death_datetime"], lo, hi)
                info.rows["death"] = info.rows.get("death", 0) + d.height
                if d.height:
                    where = f"{store.where}: death"
                    when = _time(d, "death_date", where)
                    deaths = pl.DataFrame({"subject_id": _int(d, "person_id"), "time": when, "code": "MEDS_DEATH"})
                    bounds = bounds.join(deaths.group_by("subject_id").agg(pl.col("time").min().dt.date()
                                                                           .alias("death")), on="subject_id",
                                         how="left")
                    parts.append(deaths.with_columns(pl.lit(None, pl.Float32).alias("numeric_value")))
            ev = pl.concat([p.select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                                     pl.col("code").cast(pl.String), pl.col("numeric_value").cast(pl.Float32))
                            for p in parts])
            _check_dates(ev, bounds, store.where)
            yield ev.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)
        info.names = {c: n for c, n in vocab.known.select("code", "name").iter_rows() if n}
        if "concept_ancestor" in present and info.vocabulary:
            info.hierarchy = _hierarchy(store, vocab)
    finally:
        store.close()


def read_omop(path: str | Path | None = None, url: str | None = None, cdm_schema: str | None = None,
              vocab_schema: str | None = None, codes: Literal["standard", "source"] = "standard",
              chunk_persons: int = 20_000) -> EventData:
    """An OMOP CDM database (a folder of table files, or a SQLAlchemy URL) as EventData in memory."""
    info = OmopRead()
    frames = list(iter_omop(path, url, cdm_schema, vocab_schema, codes, chunk_persons, info))
    events = pl.concat(frames) if frames else pl.DataFrame(schema={"subject_id": pl.Int64, "time": pl.Datetime("us"),
                                                                   "code": pl.String, "numeric_value": pl.Float32})
    source = str(path) if path is not None else hide_password(url or "")
    name, synthetic = info.identity(path)
    meta = {"dataset_name": str(name), "omop": info.as_dict()}
    return EventData(events=events, metadata=meta, source=source, synthetic=synthetic, hierarchy=info.hierarchy)
