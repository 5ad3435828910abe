"""The EHR simulator's patients written as an OMOP CDM 5.4 database: files or a SQL database. SYNTHETIC.

`simulate_omop` runs the known-truth simulator (`simulate.ehr`) and writes the same patients as OMOP
tables: person, visit_occurrence, condition_occurrence, drug_exposure, procedure_occurrence,
measurement, death, cdm_source, and a small vocabulary (concept, concept_relationship,
concept_ancestor). `omop_from_events` does the conversion for any EventData that uses the simulator's
codes, so the truth (the oracle, the labels) carries over: a cohort read back from the OMOP tables has
the simulator's samples exactly.

The vocabulary is the simulator's own, written the way Athena's is: conditions are recorded with
their ICD-10-CM code as the source concept and a SNOMED CT standard concept (mapped by hand), with a
two-level SNOMED hierarchy above them in concept_ancestor; labs are LOINC, drugs RxNorm ingredients and
procedures ICD-10-PCS (standard in OMOP). Gender, race, ethnicity and visit concepts use the OHDSI
standard ids every CDM shares (8507 / 8532, 8527 / 8516 / 8515 / 8522, 38003563 / 38003564, 9201);
every other concept id lies above 2,000,000,000, the range OHDSI reserves for local concepts.
`cdm_source.cdm_source_name` says SYNTHETIC, and a `SYNTHETIC.txt` file sits beside the tables.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import Literal

import polars as pl

from medflow.data.sources.meds import EventData, atomic_dir, read_meds

__all__ = ["simulate_omop", "omop_from_events", "omop_vocabulary", "write_omop_tables", "full_table", "SNOMED"]

LOCAL = 2_000_000_000
GENDER = {"M": (8507, "MALE"), "F": (8532, "FEMALE")}
RACE = {"W": (8527, "White"), "B": (8516, "Black or African American"), "A": (8515, "Asian"),
        "H": (8522, "Other Race"), "O": (8522, "Other Race")}
HISPANIC, NOT_HISPANIC = (38003563, "Hispanic or Latino"), (38003564, "Not Hispanic or Latino")
INPATIENT_VISIT = 9201
# ICD-10-CM source code -> (SNOMED CT standard code, name, parent group)
SNOMED = {
    "I50.9": ("84114007", "Heart failure", "cardio"), "J44.9": ("13645005", "Chronic obstructive lung disease", "resp"),
    "E11.9": ("44054006", "Type 2 diabetes mellitus", "metab"), "N18.3": ("433144002", "Chronic kidney disease stage 3",
                                                                           "renal"),
    "I10": ("59621000", "Essential hypertension", "cardio"), "I48.91": ("49436004", "Atrial fibrillation", "cardio"),
    "R69": ("39104002", "Illness", "finding"), "J18.9": ("233604007", "Pneumonia", "resp"),
    "A41.9": ("91302008", "Sepsis", "infect"), "N17.9": ("14669001", "Acute renal failure syndrome", "renal"),
    "I50.23": ("10633002", "Acute congestive heart failure", "cardio"),
    "N39.0": ("68566005", "Urinary tract infectious disease", "infect"),
    "I21.4": ("401303003", "Acute non-ST segment elevation myocardial infarction", "cardio"),
    "K92.2": ("74474003", "Gastrointestinal hemorrhage", "gi"), "I63.9": ("432504007", "Cerebral infarction", "cardio"),
}
GROUPS = {"cardio": ("49601007", "Disorder of cardiovascular system"), "resp": ("50043002", "Disorder of respiratory "
                                                                                         "system"),
          "metab": ("75934005", "Metabolic disease"), "renal": ("90708001", "Kidney disease"),
          "infect": ("40733004", "Infectious disease"), "gi": ("53619000", "Disorder of digestive system"),
          "finding": ("404684003", "Clinical finding")}
ROOT = ("404684003", "Clinical finding")
UNITS = {"2160-0": "mg/dL", "2524-7": "mmol/L", "6690-2": "10*3/uL", "718-7": "g/dL", "2345-7": "mg/dL",
         "30934-4": "pg/mL", "2951-2": "mmol/L", "2823-3": "mmol/L", "8867-4": "/min", "8480-6": "mm[Hg]"}
DOMAIN = {"ICD10CM": "Condition", "SNOMED": "Condition", "LOINC": "Measurement", "RXNORM": "Drug",
          "ICD10PCS": "Procedure", "UCUM": "Unit"}
VOCAB_ID = {"ICD10CM": "ICD10CM", "SNOMED": "SNOMED", "LOINC": "LOINC", "RXNORM": "RxNorm",
            "ICD10PCS": "ICD10PCS", "UCUM": "UCUM"}


# every column of the CDM 5.4 tables the simulator writes (those it has no value for are written empty, as
# an ETL writes them), so tools that expect the full tables (meds_etl, OHDSI's DDL) read them
CDM_COLUMNS = {
    "person": "person_id gender_concept_id year_of_birth month_of_birth day_of_birth birth_datetime race_concept_id "
              "ethnicity_concept_id location_id provider_id care_site_id person_source_value gender_source_value "
              "gender_source_concept_id race_source_value race_source_concept_id ethnicity_source_value "
              "ethnicity_source_concept_id",
    "visit_occurrence": "visit_occurrence_id person_id visit_concept_id visit_start_date visit_start_datetime "
                        "visit_end_date visit_end_datetime visit_type_concept_id provider_id care_site_id "
                        "visit_source_value visit_source_concept_id admitted_from_concept_id "
                        "admitted_from_source_value discharged_to_concept_id discharged_to_source_value "
                        "preceding_visit_occurrence_id",
    "condition_occurrence": "condition_occurrence_id person_id condition_concept_id condition_start_date "
                            "condition_start_datetime condition_end_date condition_end_datetime "
                            "condition_type_concept_id condition_status_concept_id stop_reason provider_id "
                            "visit_occurrence_id visit_detail_id condition_source_value condition_source_concept_id "
                            "condition_status_source_value",
    "drug_exposure": "drug_exposure_id person_id drug_concept_id drug_exposure_start_date drug_exposure_start_datetime "
                     "drug_exposure_end_date drug_exposure_end_datetime verbatim_end_date drug_type_concept_id "
                     "stop_reason refills quantity days_supply sig route_concept_id lot_number provider_id "
                     "visit_occurrence_id visit_detail_id drug_source_value drug_source_concept_id route_source_value "
                     "dose_unit_source_value",
    "procedure_occurrence": "procedure_occurrence_id person_id procedure_concept_id procedure_date procedure_datetime "
                            "procedure_end_date procedure_end_datetime procedure_type_concept_id modifier_concept_id "
                            "quantity provider_id visit_occurrence_id visit_detail_id procedure_source_value "
                            "procedure_source_concept_id modifier_source_value",
    "measurement": "measurement_id person_id measurement_concept_id measurement_date measurement_datetime "
                   "measurement_time measurement_type_concept_id operator_concept_id value_as_number "
                   "value_as_concept_id unit_concept_id range_low range_high provider_id visit_occurrence_id "
                   "visit_detail_id measurement_source_value measurement_source_concept_id unit_source_value "
                   "unit_source_concept_id value_source_value measurement_event_id meas_event_field_concept_id",
    "death": "person_id death_date death_datetime death_type_concept_id cause_concept_id cause_source_value "
             "cause_source_concept_id",
}


def _dtype(column: str) -> pl.DataType:
    if column.endswith("_datetime"):
        return pl.Datetime("us")
    if column.endswith("_date"):
        return pl.Date()
    if column.endswith("_id") or column in ("refills", "days_supply", "year_of_birth"):
        return pl.Int64()
    if column in ("quantity", "range_low", "range_high", "value_as_number"):
        return pl.Float64()
    return pl.String()


def full_table(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every CDM 5.4 column of table `name`, in the CDM's order (absent ones empty)."""
    cols = CDM_COLUMNS.get(name)
    if cols is None:
        return frame
    return frame.select([pl.col(c) if c in frame.columns else pl.lit(None, _dtype(c)).alias(c) for c in cols.split()])


def omop_vocabulary(codes: list[str]) -> dict[str, pl.DataFrame]:
    """The simulator's concept, concept_relationship and concept_ancestor tables for its MEDS `codes`."""
    rows: list[dict] = []
    ids: dict[tuple[str, str], int] = {}

    def add(vocab: str, code: str, name: str, standard: bool, domain: str | None = None) -> int:
        key = (VOCAB_ID[vocab], code)
        if key not in ids:
            ids[key] = LOCAL + len(ids) + 1
            rows.append({"concept_id": ids[key], "concept_name": name, "domain_id": domain or DOMAIN[vocab],
                         "vocabulary_id": VOCAB_ID[vocab], "concept_class_id": "Clinical Finding" if vocab == "SNOMED"
                         else vocab, "standard_concept": "S" if standard else None, "concept_code": code})
        return ids[key]

    maps, ancestors = [], []
    root = add("SNOMED", *ROOT, standard=True)
    group_ids = {g: add("SNOMED", code, name, standard=True) for g, (code, name) in GROUPS.items()}
    for meds in codes:
        vocab, _, code = meds.partition("//")
        if vocab == "ICD10CM":
            snomed, name, group = SNOMED[code]
            src, std = add("ICD10CM", code, name, standard=False), add("SNOMED", snomed, name, standard=True)
            maps.append((src, std))
            ancestors += [(std, std, 0), (group_ids[group], std, 1)]
            if group_ids[group] != root:
                ancestors.append((root, std, 2))
        elif vocab in ("LOINC", "RXNORM", "ICD10PCS"):
            cid = add(vocab, code, meds, standard=True)
            maps.append((cid, cid))
            if vocab == "LOINC":
                add("UCUM", UNITS[code], UNITS[code], standard=True)
    ancestors += [(g, g, 0) for g in group_ids.values()] + [(root, g, 1) for g in group_ids.values() if g != root]
    concept = pl.DataFrame(rows).with_columns(pl.lit("1970-01-01").str.to_date().alias("valid_start_date"),
                                              pl.lit("2099-12-31").str.to_date().alias("valid_end_date"),
                                              pl.lit(None, pl.String).alias("invalid_reason"))
    fixed = pl.DataFrame({"concept_id": [8507, 8532, 8527, 8516, 8515, 8522, *HISPANIC[:1], *NOT_HISPANIC[:1],
                                         INPATIENT_VISIT],
                          "concept_name": ["MALE", "FEMALE", "White", "Black or African American", "Asian",
                                           "Other Race", HISPANIC[1], NOT_HISPANIC[1], "Inpatient Visit"],
                          "domain_id": ["Gender"] * 2 + ["Race"] * 4 + ["Ethnicity"] * 2 + ["Visit"],
                          "vocabulary_id": ["Gender"] * 2 + ["Race"] * 4 + ["Ethnicity"] * 2 + ["Visit"],
                          "concept_class_id": ["Gender"] * 2 + ["Race"] * 4 + ["Ethnicity"] * 2 + ["Visit"],
                          "standard_concept": ["S"] * 9,
                          "concept_code": ["M", "F", "5", "3", "2", "8", "Hispanic", "Not Hispanic", "IP"]})
    concept = pl.concat([fixed, concept], how="diagonal_relaxed")
    relationship = pl.DataFrame(maps, schema=["concept_id_1", "concept_id_2"], orient="row").with_columns(
        pl.lit("Maps to").alias("relationship_id"))
    ancestor = pl.DataFrame(ancestors, schema=["ancestor_concept_id", "descendant_concept_id",
                                               "min_levels_of_separation"], orient="row").unique().with_columns(
        pl.col("min_levels_of_separation").alias("max_levels_of_separation")).sort(pl.all())
    return {"concept": concept, "concept_relationship": relationship, "concept_ancestor": ancestor}


def omop_from_events(data: EventData, name: str = "medflow simulated EHR") -> dict[str, pl.DataFrame]:
    """OMOP CDM 5.4 tables for events that use the simulator's MEDS codes (GENDER//, RACE//, ICD10CM//, ...)."""
    ev = data.events
    codes = ev["code"].unique().sort().to_list()
    vocab = omop_vocabulary(codes)
    concept = vocab["concept"]
    key = pl.concat_str(pl.col("vocabulary_id").str.to_uppercase(), pl.lit("//"), pl.col("concept_code"))
    cid = dict(zip(concept.select(key)["vocabulary_id"].to_list(), concept["concept_id"].to_list(), strict=True))
    std = dict(vocab["concept_relationship"].select("concept_id_1", "concept_id_2").iter_rows())
    static = ev.filter(pl.col("time").is_null())
    sex = static.filter(pl.col("code").str.starts_with("GENDER//")).select(
        "subject_id", pl.col("code").str.slice(8).alias("g"))
    race = static.filter(pl.col("code").str.starts_with("RACE//")).select(
        "subject_id", pl.col("code").str.slice(6).alias("r"))
    birth = ev.filter(pl.col("code") == "MEDS_BIRTH").select("subject_id", pl.col("time").alias("birth_datetime"))
    person = (birth.join(sex, on="subject_id", how="left").join(race, on="subject_id", how="left")
              .rename({"subject_id": "person_id"}).sort("person_id"))
    person = person.with_columns(
        pl.col("g").replace_strict({k: v[0] for k, v in GENDER.items()}, default=0).alias("gender_concept_id"),
        pl.col("birth_datetime").dt.year().alias("year_of_birth"),
        pl.col("birth_datetime").dt.month().alias("month_of_birth"),
        pl.col("birth_datetime").dt.day().alias("day_of_birth"),
        pl.col("r").replace_strict({k: v[0] for k, v in RACE.items()}, default=0).alias("race_concept_id"),
        pl.when(pl.col("r") == "H").then(HISPANIC[0]).otherwise(NOT_HISPANIC[0]).alias("ethnicity_concept_id"),
        pl.col("g").alias("gender_source_value"), pl.col("r").alias("race_source_value"),
    ).select("person_id", "gender_concept_id", "year_of_birth", "month_of_birth", "day_of_birth", "birth_datetime",
             "race_concept_id", "ethnicity_concept_id", "gender_source_value", "race_source_value")
    timed = ev.filter(pl.col("time").is_not_null())
    starts = timed.filter(pl.col("code") == "ENCOUNTER//INPATIENT//START").select("subject_id", "time").sort(
        "subject_id", "time")
    ends = timed.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END").select(
        "subject_id", pl.col("time").alias("end")).sort("subject_id", "end")
    visits = starts.join_asof(ends, left_on="time", right_on="end", by="subject_id", strategy="forward",
                             check_sortedness=False)
    visit = visits.select(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("visit_occurrence_id"),
                          pl.col("subject_id").alias("person_id"),
                          pl.lit(INPATIENT_VISIT).alias("visit_concept_id"),
                          pl.col("time").dt.date().alias("visit_start_date"),
                          pl.col("time").alias("visit_start_datetime"),
                          pl.col("end").dt.date().alias("visit_end_date"), pl.col("end").alias("visit_end_datetime"),
                          pl.lit(32817).alias("visit_type_concept_id"))

    def clinical(prefix: str, table: str, stem: str, date_col: str, extra: dict | None = None) -> pl.DataFrame:
        part = timed.filter(pl.col("code").str.starts_with(prefix + "//"))
        src = part["code"].replace_strict(cid, return_dtype=pl.Int64)
        cols = {f"{table}_id": pl.int_range(1, pl.len() + 1, dtype=pl.Int64), "person_id": pl.col("subject_id"),
                f"{stem}_concept_id": src.replace_strict(std, return_dtype=pl.Int64),
                date_col: pl.col("time").dt.date(), date_col.replace("_date", "_datetime"): pl.col("time"),
                f"{stem}_type_concept_id": pl.lit(32817),
                f"{stem}_source_value": pl.col("code").str.split("//").list.last(),
                f"{stem}_source_concept_id": src}
        return part.select(**cols, **(extra or {}))

    condition = clinical("ICD10CM", "condition_occurrence", "condition", "condition_start_date")
    drug = clinical("RXNORM", "drug_exposure", "drug", "drug_exposure_start_date")
    drug = drug.with_columns(pl.col("drug_exposure_start_date").alias("drug_exposure_end_date"))
    procedure = clinical("ICD10PCS", "procedure_occurrence", "procedure", "procedure_date")
    lab = timed.filter(pl.col("code").str.starts_with("LOINC//"))
    units = {k.split("//", 1)[1]: v for k, v in cid.items() if k.startswith("UCUM//")}
    unit = lab["code"].str.slice(7).replace_strict(UNITS)
    measurement = clinical("LOINC", "measurement", "measurement", "measurement_date", {
        "value_as_number": pl.col("numeric_value").cast(pl.Float64),
        "unit_concept_id": unit.replace_strict(units, return_dtype=pl.Int64), "unit_source_value": unit})
    death = timed.filter(pl.col("code") == "MEDS_DEATH").select(
        pl.col("subject_id").alias("person_id"), pl.col("time").dt.date().alias("death_date"),
        pl.col("time").alias("death_datetime"), pl.lit(32817).alias("death_type_concept_id"))
    synthetic = data.synthetic or "SYNTHETIC" in name.upper()
    source = pl.DataFrame({"cdm_source_name": [f"{name} (SYNTHETIC)" if synthetic else name],
                           "cdm_source_abbreviation": ["medflow_sim" if synthetic else "medflow"],
                           "cdm_holder": ["medflow"], "cdm_version": ["5.4"],
                           "cdm_release_date": [date.today()], "source_release_date": [date.today()],
                           "vocabulary_version": ["medflow simulator vocabulary 1"],
                           "source_description": ["SYNTHETIC patients from medflow's EHR simulator; not real data."
                                                  if synthetic else "written by medflow"]})
    clinical_tables = {"person": person, "visit_occurrence": visit, "condition_occurrence": condition,
                       "drug_exposure": drug, "procedure_occurrence": procedure, "measurement": measurement,
                       "death": death}
    return {**{k: full_table(k, v) for k, v in clinical_tables.items()}, "cdm_source": source, **vocab}


def write_omop_tables(tables: dict[str, pl.DataFrame], out: str | Path,
                      fmt: Literal["parquet", "csv", "sqlite", "duckdb"] = "parquet", overwrite: bool = False,
                      synthetic: bool = True) -> Path:
    """Write OMOP tables as a folder of Parquet/CSV files (one per table) or one SQLite/DuckDB file, atomically."""
    out = Path(out)
    if fmt in ("sqlite", "duckdb"):
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it.")
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.unlink(missing_ok=True)
        from sqlalchemy import create_engine

        engine = create_engine(f"{fmt}:///{tmp}")
        try:
            for name, frame in tables.items():
                frame.write_database(name, engine, if_table_exists="replace")
        finally:
            engine.dispose()
        tmp.replace(out)
        return out
    with atomic_dir(out, overwrite) as folder:
        for name, frame in tables.items():
            if fmt == "csv":
                frame.write_csv(folder / f"{name}.csv", datetime_format="%Y-%m-%d %H:%M:%S%.6f")
            else:
                frame.write_parquet(folder / f"{name}.parquet")
        if synthetic:
            (folder / "SYNTHETIC.txt").write_text("Simulated patients (medflow simulate omop). Not real data.\n")
    return out


def simulate_omop(out: str | Path, patients: int = 2000, seed: int = 0,
                  fmt: Literal["parquet", "csv", "sqlite", "duckdb"] = "parquet", bias_group: str | None = None,
                  overwrite: bool = False) -> Path:
    """The simulator's patients (SYNTHETIC, known truth) as an OMOP CDM 5.4 folder or database file."""
    from medflow.data.simulate.ehr import simulate_ehr

    with tempfile.TemporaryDirectory() as tmp:
        meds = simulate_ehr(Path(tmp) / "meds", patients=patients, seed=seed, bias_group=bias_group)
        data = read_meds(meds)
        data.synthetic = True
        tables = omop_from_events(data, name=f"medflow simulated EHR, {patients} patients, seed {seed}")
    return write_omop_tables(tables, out, fmt, overwrite=overwrite)
