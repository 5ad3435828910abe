"""OMOP CDM in (files, SQLite, DuckDB, PostgreSQL), MEDS out, vocabulary codes, roll-ups, OHDSI cohort tables,
and every bad input named."""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pyarrow.parquet as pq
import pytest

from medflow.data.cohort import extract_samples
from medflow.data.convert import cohort_labels, convert_to_meds, detect_source
from medflow.data.ehr import event_dataset
from medflow.data.omop_cohort import CohortTable
from medflow.data.rollup import Rollup, rollup_codes
from medflow.data.simulate.ehr import simulate_ehr
from medflow.data.simulate.omop import omop_from_events, simulate_omop, write_omop_tables
from medflow.data.sources.meds import read_meds
from medflow.data.sources.omop import read_omop
from medflow.errors import DataError

KEY = ["subject_id", "prediction_time"]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The simulator's 300 patients as MEDS and as OMOP Parquet files (same seed: the same patients)."""
    tmp = tmp_path_factory.mktemp("omop")
    meds = read_meds(simulate_ehr(tmp / "meds", patients=300, seed=3))
    meds.synthetic = True
    tables = omop_from_events(meds)
    write_omop_tables(tables, tmp / "omop")
    return tmp, meds, tables


def _sorted(ev: pl.DataFrame) -> pl.DataFrame:
    return ev.sort(["subject_id", "time", "code", "numeric_value"], nulls_last=False)


def test_round_trip_gives_the_simulators_samples_and_valid_meds(sim):
    tmp, meds, _ = sim
    data = read_omop(tmp / "omop", chunk_persons=70)  # several chunks
    assert data.synthetic and data.n_subjects == 300
    assert data.metadata["omop"]["rows"]["person"] == 300 and data.metadata["omop"]["fallbacks"] == {}
    assert data.metadata["omop"]["units"]["LOINC/2160-0"] == ["mg/dL"]
    for cohort in ("readmission_30d", "in_hospital_mortality", "los"):
        a, b = extract_samples(meds, cohort), extract_samples(data, cohort)
        assert a.select(*KEY, cohort).equals(b.select(*KEY, cohort)), cohort
        assert a["sex"].equals(b["sex"]) and a["age"].equals(b["age"])
    # MEDS out, then back into medflow: the same samples again
    out = convert_to_meds(tmp / "omop", tmp / "meds_out", chunk_persons=100)
    assert len(list((out / "data").rglob("*.parquet"))) == 3 and (out / "SYNTHETIC.txt").exists()
    back = read_meds(out)
    assert _sorted(back.events).equals(_sorted(data.events))
    assert extract_samples(back, "readmission_30d").select(*KEY).equals(
        extract_samples(meds, "readmission_30d").select(*KEY))
    import meds as meds_pkg

    for shard in (out / "data").rglob("*.parquet"):
        meds_pkg.DataSchema.validate(pq.read_table(shard))
    meds_pkg.CodeMetadataSchema.validate(pq.read_table(out / "metadata" / "codes.parquet"))
    info = json.loads((out / "metadata" / "dataset.json").read_text())
    assert info["etl_name"] == "medflow.omop_to_meds" and info["medflow"]["synthetic"] is True
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    hf = codes.filter(pl.col("code") == "SNOMED/84114007").row(0, named=True)
    assert hf["description"] == "Heart failure" and hf["parent_codes"] == ["SNOMED/49601007"]
    # and the cohort as a MEDS label file
    path, labels = cohort_labels(out, "readmission_30d", tmp / "labels" / "r.parquet")
    meds_pkg.LabelSchema.validate(pq.read_table(path))
    truth = extract_samples(meds, "readmission_30d")
    assert labels["boolean_value"].cast(pl.Int8).equals(truth["readmission_30d"].cast(pl.Int8), check_names=False)


def test_csv_as_other_tools_write_it_sqlite_and_duckdb_read_the_same(sim):
    tmp, _, tables = sim
    ref = _sorted(read_omop(tmp / "omop").events)
    csv = tmp / "csv"
    write_omop_tables(tables, csv, "csv")
    for f in list(csv.glob("*.csv")):  # Eunomia / OHDSI exports: upper-case file and column names
        text = f.read_text().split("\n", 1)
        (csv / f.name.upper().replace(".CSV", ".csv")).write_text(text[0].upper() + "\n" + text[1])
        f.unlink()
    assert (csv / "PERSON.csv").exists()
    for source in (dict(path=csv), dict(url=f"sqlite:///{write_omop_tables(tables, tmp / 'cdm.db', 'sqlite')}"),
                   dict(url=f"duckdb:///{write_omop_tables(tables, tmp / 'cdm.duckdb', 'duckdb')}")):
        got = _sorted(read_omop(**source, chunk_persons=120).events)
        assert got.equals(ref), source
    assert detect_source(tmp / "cdm.db") == "omop" and detect_source(csv) == "omop"
    assert _sorted(read_meds(convert_to_meds(tmp / "cdm.db", tmp / "from_db")).events).equals(ref)  # a .db file


def test_postgres_with_cdm_and_vocab_schemas(sim, postgres_url):
    from sqlalchemy import create_engine, text

    tmp, _, tables = sim
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS cdm CASCADE; DROP SCHEMA IF EXISTS vocab CASCADE; "
                          "CREATE SCHEMA cdm; CREATE SCHEMA vocab"))
    pg = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    for name, frame in tables.items():
        schema = "vocab" if name.startswith("concept") else "cdm"
        frame.write_database(f"{schema}.{name}", pg, if_table_exists="replace")
    engine.dispose()
    got = read_omop(url=pg, cdm_schema="cdm", vocab_schema="vocab", chunk_persons=150)
    assert _sorted(got.events).equals(_sorted(read_omop(tmp / "omop").events))
    with pytest.raises(DataError, match="schema 'cdm54' does not exist"):
        read_omop(url=pg, cdm_schema="cdm54")


def _tiny(tmp, **changes) -> object:
    """An OMOP folder written the way an OHDSI ETL writes it (dates without times, unmapped concepts as 0,
    source values, an observation with a value), not by medflow's simulator."""
    t = {
        "person": pl.DataFrame({"person_id": [1, 2], "gender_concept_id": [8532, 8507], "year_of_birth": [1950, 1961],
                                "month_of_birth": [4, None], "day_of_birth": [2, None],
                                "race_concept_id": [8527, 0], "ethnicity_concept_id": [0, 0]}),
        "visit_occurrence": pl.DataFrame({"visit_occurrence_id": [10, 11], "person_id": [1, 2],
                                          "visit_concept_id": [9201, 9203], "visit_start_date": ["2020-01-05",
                                                                                                 "2020-02-01"],
                                          "visit_end_date": ["2020-01-09", "2020-02-01"]}),
        "condition_occurrence": pl.DataFrame({"person_id": [1, 1, 2], "condition_concept_id": [201826, 0, 320128],
                                              "condition_start_date": ["2020-01-05", "2020-01-06", "2020-02-01"],
                                              "condition_source_concept_id": [45576876, 0, 0],
                                              "condition_source_value": ["E11.9", "Z99.89", "I10"]}),
        "observation": pl.DataFrame({"person_id": [2], "observation_concept_id": [4275495],
                                     "observation_date": ["2020-02-01"], "value_as_number": [3.0]}),
        "death": pl.DataFrame({"person_id": [1], "death_date": ["2020-03-01"]}),
        "concept": pl.DataFrame({"concept_id": [201826, 45576876, 320128, 4275495, 8527, 8532, 8507, 4274025],
                                 "concept_name": ["Type 2 diabetes mellitus", "Type 2 diabetes mellitus without "
                                                  "complications", "Essential hypertension", "Pain score", "White",
                                                  "FEMALE", "MALE", "Disease"],
                                 "vocabulary_id": ["SNOMED", "ICD10CM", "SNOMED", "SNOMED", "Race", "Gender",
                                                   "Gender", "SNOMED"],
                                 "concept_code": ["44054006", "E11.9", "59621000", "225908003", "5", "F", "M",
                                                  "64572001"]}),
        "concept_ancestor": pl.DataFrame({"ancestor_concept_id": [4274025, 4274025],
                                          "descendant_concept_id": [201826, 320128],
                                          "min_levels_of_separation": [1, 1]}),
    }
    for name, frame in changes.items():
        if frame is None:
            t.pop(name)
        else:
            t[name] = frame
    folder = tmp / "tiny"
    write_omop_tables(t, folder, "csv", overwrite=True, synthetic=False)
    return folder


def test_codes_standard_source_fallbacks_and_dates_without_times(tmp_path):
    folder = _tiny(tmp_path)
    data = read_omop(folder)
    assert not data.synthetic
    ev = data.events
    one = ev.filter(pl.col("subject_id") == 1)
    assert one.filter(pl.col("time").is_null())["code"].to_list() == ["GENDER//F", "RACE//White"]
    assert one.filter(pl.col("code") == "MEDS_BIRTH")["time"].dt.date().to_list()[0].isoformat() == "1950-04-02"
    assert one.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END")["time"].dt.to_string("%Y-%m-%d %H:%M:%S")[0] \
        == "2020-01-09 23:59:59"  # a date-only end closes at the end of its day
    codes = set(ev["code"])
    assert {"SNOMED/44054006", "SNOMED/59621000", "CONDITION_OCCURRENCE_SOURCE/Z99.89", "SNOMED/225908003",
            "ENCOUNTER//EMERGENCY//START", "MEDS_DEATH", "GENDER//M"} <= codes
    assert ev.filter(pl.col("code") == "SNOMED/225908003")["numeric_value"].to_list() == [3.0]
    assert data.metadata["omop"]["fallbacks"] == {"condition_occurrence": 1}
    two = ev.filter((pl.col("subject_id") == 2) & (pl.col("code") == "MEDS_BIRTH"))
    assert two["time"].dt.date().to_list()[0].isoformat() == "1961-01-01"  # year only: January 1st
    src = set(read_omop(folder, codes="source").events["code"])
    assert "ICD10CM/E11.9" in src and "SNOMED/59621000" in src  # no source concept: the standard one
    # without a vocabulary: concept ids, said in the manifest
    bare = read_omop(_tiny(tmp_path, concept=None, concept_ancestor=None))
    assert "OMOP/201826" in set(bare.events["code"])
    assert bare.metadata["omop"]["vocabulary"].startswith("absent")


def test_rollups_by_concept_ancestor_icd_prefix_and_meds_parents(sim, tmp_path):
    tmp, _, _ = sim
    tiny = rollup_codes(read_omop(_tiny(tmp_path)), [Rollup(vocabulary="SNOMED", levels=1)])
    assert {"SNOMED/44054006", "SNOMED/59621000"}.isdisjoint(tiny.events["code"])
    assert tiny.events.filter(pl.col("code") == "SNOMED/64572001").height == 2
    assert tiny.metadata["rollup"]["SNOMED"]["codes_after"] < tiny.metadata["rollup"]["SNOMED"]["codes_before"]
    icd = rollup_codes(read_omop(tmp / "omop", codes="source"), [Rollup(vocabulary="ICD10CM", levels=2)])
    assert {"ICD10CM/I50", "ICD10CM/I48"} <= set(icd.events["code"])
    assert not any(c.startswith("ICD10CM/I50.") for c in icd.events["code"])
    # the MEDS copy carries the hierarchy (parent_codes): the same roll-up from the MEDS folder
    omop = rollup_codes(read_omop(tmp / "omop"), [Rollup(vocabulary="SNOMED", levels=1)])
    meds = rollup_codes(read_meds(convert_to_meds(tmp / "omop", tmp_path / "m")), [Rollup(vocabulary="SNOMED",
                                                                                             levels=1)])
    assert set(omop.events["code"]) == set(meds.events["code"])
    assert "SNOMED/49601007" in set(meds.events["code"])


def test_ohdsi_cohort_table_gives_samples_and_labels(sim, tmp_path):
    tmp, meds, tables = sim
    data = read_omop(tmp / "omop")
    visits = tables["visit_occurrence"].sort("visit_start_datetime")
    first = visits.group_by("person_id", maintain_order=True).first()
    target = first.select(pl.lit(1).alias("cohort_definition_id"), pl.col("person_id").alias("subject_id"),
                          pl.col("visit_start_date").alias("cohort_start_date"),
                          pl.col("visit_end_date").alias("cohort_end_date"))
    later = visits.join(first.select("person_id", pl.col("visit_start_date").alias("f")), on="person_id").filter(
        pl.col("visit_start_date") > pl.col("f")).group_by("person_id").agg(pl.col("visit_start_date").min())
    outcome = later.select(pl.lit(2).alias("cohort_definition_id"), pl.col("person_id").alias("subject_id"),
                           pl.col("visit_start_date").alias("cohort_start_date"),
                           pl.col("visit_start_date").alias("cohort_end_date"))
    pl.concat([target, outcome]).write_csv(tmp_path / "cohort.csv")
    spec = CohortTable(table=str(tmp_path / "cohort.csv"), target_cohort_id=1, outcome_cohort_id=2,
                       time_at_risk_days=180, name="readmit_180d")
    ds = event_dataset(data, spec)
    frame = pl.from_pandas(ds.frame)
    deaths = set(data.events.filter(pl.col("code") == "MEDS_DEATH")["subject_id"])
    gap = later.join(first.select("person_id", pl.col("visit_start_date").alias("f")), on="person_id").select(
        "person_id", ((pl.col("visit_start_date") - pl.col("f")).dt.total_days()).alias("days"))
    expect = {r["person_id"]: int(r["days"] <= 180) for r in gap.iter_rows(named=True)}
    got = dict(zip(frame["subject_id"].cast(pl.Int64), frame["readmit_180d"], strict=True))
    assert len(got) >= 200 and sum(got.values()) > 10
    for pid, y in got.items():
        assert y == expect.get(pid, 0), pid
    assert set(got) | deaths >= set(target["subject_id"]) - set(got)  # those left out died by their index day
    assert frame["prediction_time"].dt.hour().unique().to_list() == [23]  # the end of the index day
    assert "sex" in frame.columns and "age" in frame.columns
    # the same table inside the database, by name
    db = write_omop_tables({**tables, "cohort": pl.concat([target, outcome])}, tmp_path / "c.db", "sqlite")
    url = f"sqlite:///{db}"
    spec_db = spec.model_copy(update={"table": "cohort"})
    ds_db = event_dataset(read_omop(url=url), spec_db, cohort_url=url)
    assert ds_db.frame["readmit_180d"].tolist() == ds.frame["readmit_180d"].tolist()


def _bad(tmp_path, **changes):
    return lambda: read_omop(_tiny(tmp_path, **changes))


@pytest.mark.parametrize("change, message", [
    (dict(person=None), "OMOP table 'person' is missing \\(CDM 5.4"),
    (dict(visit_occurrence=pl.DataFrame({"person_id": [1], "visit_concept_id": [9201],
                                         "visit_start_date": ["2020-01-01"]})),
     "'visit_occurrence' has no column visit_end_date \\(CDM 5.4"),
    (dict(observation=pl.DataFrame({"person_id": [2], "observation_concept_id": [4275495],
                                    "observation_date": ["1940-05-01"], "value_as_number": [1.0]})),
     "person 2 has an event \\(SNOMED/225908003\\) on 1940-05-01, before their birth"),
    (dict(death=pl.DataFrame({"person_id": [1], "death_date": ["2020-01-07"]})),
     "person 1 has an event .* on 2020-01-09, after their death \\(2020-01-07\\)"),
    (dict(person=pl.DataFrame({"person_id": [1, 2], "gender_concept_id": [8532, None], "year_of_birth": [1950, 1961],
                               "race_concept_id": [0, 0]})), "person 2 has no gender_concept_id"),
    (dict(person=pl.DataFrame({"person_id": [1, 2], "gender_concept_id": [8532, 8507], "year_of_birth": [1950, None],
                               "race_concept_id": [0, 0]})), "person 2 has no year_of_birth"),
    (dict(observation=pl.DataFrame({"person_id": [2], "observation_concept_id": [999],
                                    "observation_date": ["2020-02-01"]})),
     "observation: concept id 999 is not in the concept table"),
    (dict(condition_occurrence=pl.DataFrame({"person_id": [1], "condition_concept_id": [201826],
                                             "condition_start_date": ["2020-13-45"]})),
     "column 'condition_start_date' holds '2020-13-45' \\(person 1\\), not a date"),
])
def test_bad_omop_is_one_line_naming_table_person_and_value(tmp_path, change, message):
    with pytest.raises(DataError, match=message):
        _bad(tmp_path, **change)()


def test_unreachable_database_hides_the_password_and_convert_leaves_nothing(tmp_path):
    from tests.conftest import _free_port

    url = f"postgresql+psycopg://omop:s3cret@127.0.0.1:{_free_port()}/cdm"
    with pytest.raises(DataError) as info:
        read_omop(url=url)
    assert "cannot connect" in str(info.value) and "s3cret" not in str(info.value) and "***" in str(info.value)
    bad = _tiny(tmp_path, death=pl.DataFrame({"person_id": [1], "death_date": ["2020-01-07"]}))
    r = subprocess.run([sys.executable, "-m", "medflow", "convert", str(bad), "-o", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "after their death" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def _cfg(tmp_path, name, data):
    from medflow.config import parse_config

    return parse_config({"name": name, "output_dir": str(tmp_path / "runs"),
                         "data": {**data, "cohort": "readmission_30d"},
                         "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["logistic_regression"],
                         "evaluate": {"n_bootstrap": 100}, "train": {"progress": False},
                         "explain": {"max_records": 20, "n_repeats": 1, "examples": 1}})


def test_study_on_omop_equals_its_meds_twin_and_predicts_on_another_database(tmp_path):
    import pandas as pd

    from medflow.cli.predict_io import event_input
    from medflow.runs import load_run
    from medflow.study import run_study

    simulate_omop(tmp_path / "site_a", patients=500, seed=5)
    simulate_ehr(tmp_path / "site_a_meds", patients=500, seed=5)
    db = simulate_omop(tmp_path / "site_b.duckdb", patients=150, seed=6, fmt="duckdb")
    omop = run_study(_cfg(tmp_path, "omop", {"omop": {"path": str(tmp_path / "site_a")}}))
    twin = run_study(_cfg(tmp_path, "meds", {"meds": str(tmp_path / "site_a_meds"), "use_source_splits": False}))
    assert "SYNTHETIC" in (omop.path / "report.html").read_text()
    a, b = (pd.read_parquet(r.path / "predictions.parquet") for r in (omop, twin))
    both = a.merge(b, on=["patient_id", "row", "model"])
    assert len(both) == len(a) == len(b) and (both["split_x"] == both["split_y"]).all()  # the same samples, split
    assert (both["score_x"] - both["score_y"]).abs().max() < 0.02  # the same model, up to code names and order
    # the run predicts on another site's database, with the run's options (roll-ups included)
    rolled = run_study(_cfg(tmp_path, "rolled", {"omop": {"path": str(tmp_path / "site_a")},
                                                 "rollup": [{"vocabulary": "SNOMED", "levels": 1}]}))
    r = load_run(rolled.path)
    frame = event_input(r, db, None)
    preds = r.predict(frame)
    assert len(preds) == len(frame.frame) > 50 and preds["probability"].between(0, 1).all()
    codes = set(frame.events.events["code"])
    assert "SNOMED/84114007" not in codes and "SNOMED/49601007" in codes  # rolled up as in training


def test_streamed_omop_goes_through_a_meds_copy_with_the_same_samples(sim):
    from medflow.config import DataConfig
    from medflow.study.data import load_event_data

    tmp, _, _ = sim
    source = {"path": str(tmp / "omop"), "chunk_persons": 100}
    streamed = load_event_data(DataConfig(omop=source, cohort="readmission_30d", stream=True))
    memory = load_event_data(DataConfig(omop=source, cohort="readmission_30d"))
    assert getattr(streamed.events, "streamed", False) and len(streamed.events.files) == 3
    cols = ["subject_id", "prediction_time", "readmission_30d"]
    assert streamed.frame[cols].reset_index(drop=True).equals(memory.frame[cols].reset_index(drop=True))
    assert streamed.synthetic and memory.synthetic
