"""FHIR R4 (Bundles and bulk NDJSON) and event tables -> the same events as MEDS; bad input named."""

import json

import polars as pl
import pytest

from medflow.data.cohort import extract_samples
from medflow.data.simulate.ehr import simulate_ehr
from medflow.data.sources.event_table import read_event_table
from medflow.data.sources.fhir import read_fhir
from medflow.data.sources.meds import read_meds
from medflow.errors import DataError
from tests.ehr.fhir_export import write_bundles, write_ndjson


@pytest.fixture(scope="module")
def meds(tmp_path_factory):
    return read_meds(simulate_ehr(tmp_path_factory.mktemp("s") / "c", patients=40, seed=5))


def _comparable(ev: pl.DataFrame) -> pl.DataFrame:
    birth = pl.col("code") == "MEDS_BIRTH"  # FHIR birthDate is a date
    time = pl.when(birth).then(pl.col("time").dt.truncate("1d")).otherwise(pl.col("time").dt.truncate("1s"))
    return ev.with_columns(time.alias("time"), pl.col("numeric_value").round(3)).sort(
        ["subject_id", "time", "code", "numeric_value"], nulls_last=False)


@pytest.mark.parametrize("writer", [write_bundles, write_ndjson])
def test_fhir_gives_the_same_events_and_labels(meds, tmp_path, writer):
    fhir = read_fhir(writer(meds.events, tmp_path / "fhir"))
    # the simulator's static RACE code has no FHIR home here; every other event comes back
    expected = meds.events.filter(~pl.col("code").str.starts_with("RACE//"))
    assert _comparable(fhir.events).drop("subject_id").equals(_comparable(expected).drop("subject_id"))
    assert fhir.metadata["fhir"]["resources"]["Patient"] == 40
    a = extract_samples(meds, "readmission_30d")["readmission_30d"].to_list()
    b = extract_samples(fhir, "readmission_30d")["readmission_30d"].to_list()
    assert a == b


def test_unknown_resource_types_are_counted(meds, tmp_path):
    fhir = read_fhir(write_bundles(meds.events, tmp_path / "b"))
    assert fhir.metadata["fhir"]["skipped_resource_types"] == {"Claim": 40}


def test_malformed_json_names_file_and_line(tmp_path):
    (tmp_path / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "a"}\n{"resourceType": \n')
    with pytest.raises(DataError, match=r"Patient\.ndjson line 2: malformed JSON"):
        read_fhir(tmp_path)


def test_missing_subject_reference_names_the_resource(tmp_path):
    bundle = {"resourceType": "Bundle", "entry": [
        {"resource": {"resourceType": "Patient", "id": "a"}},
        {"resource": {"resourceType": "Condition", "id": "c1", "code": {"coding": [{"code": "I10"}]}}}]}
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    with pytest.raises(DataError, match=r"b\.json: Condition/c1: no subject reference"):
        read_fhir(tmp_path)


def test_reference_to_unknown_patient(tmp_path):
    (tmp_path / "Condition.ndjson").write_text(json.dumps(
        {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/zz"},
         "onsetDateTime": "2020-01-01T00:00:00Z", "code": {"coding": [{"code": "I10"}]}}) + "\n")
    (tmp_path / "Patient.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "a"}) + "\n")
    with pytest.raises(DataError, match="no Patient resource, e.g. 'zz'"):
        read_fhir(tmp_path)


def test_mixed_time_zones_are_refused(tmp_path):
    lines = [{"resourceType": "Patient", "id": "a"},
             {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/a"}, "class": {"code": "IMP"},
              "period": {"start": "2020-01-01T10:00:00+02:00"}},
             {"resourceType": "Encounter", "id": "e2", "subject": {"reference": "Patient/a"}, "class": {"code": "IMP"},
              "period": {"start": "2020-02-01T10:00:00"}}]
    (tmp_path / "x.ndjson").write_text("\n".join(json.dumps(r) for r in lines))
    with pytest.raises(DataError, match=r"x\.ndjson line 3: Encounter/e2: a dateTime without a time-zone offset"):
        read_fhir(tmp_path)


def test_offsets_are_converted_to_utc(tmp_path):
    lines = [{"resourceType": "Patient", "id": "a"},
             {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/a"}, "class": {"code": "IMP"},
              "period": {"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-03T10:00:00Z"}}]
    (tmp_path / "x.ndjson").write_text("\n".join(json.dumps(r) for r in lines))
    ev = read_fhir(tmp_path).events
    assert str(ev.filter(pl.col("code") == "ENCOUNTER//INPATIENT//START")["time"][0]) == "2020-01-01 08:00:00"


def test_event_table_with_column_mapping(meds, tmp_path):
    table = meds.events.rename({"subject_id": "patient", "time": "charttime", "code": "item",
                                "numeric_value": "val"}).with_columns(
        ("p" + pl.col("patient").cast(pl.String)).alias("patient"),
        pl.col("charttime").dt.strftime("%Y-%m-%d %H:%M:%S.%6f")).sample(fraction=1.0, shuffle=True, seed=0)
    table.write_csv(tmp_path / "events.csv")
    data = read_event_table(tmp_path / "events.csv", "patient", "charttime", "item", "val")
    assert data.n_events == meds.n_events and data.n_subjects == 40
    a = extract_samples(meds, "in_hospital_mortality")["in_hospital_mortality"].sum()
    assert extract_samples(data, "in_hospital_mortality")["in_hospital_mortality"].sum() == a


def test_event_table_bad_time_and_value(tmp_path):
    (tmp_path / "e.csv").write_text("sid,t,code,v\n1,2020-01-01,A,1.0\n1,yesterday,B,\n")
    with pytest.raises(DataError, match=r"e\.csv: row 3 column 't' holds 'yesterday', not a time"):
        read_event_table(tmp_path / "e.csv", "sid", "t", "code", "v")
    (tmp_path / "f.csv").write_text("sid,t,code,v\n1,2020-01-01,A,high\n")
    with pytest.raises(DataError, match=r"f\.csv: row 2 column 'v' holds 'high', not a number"):
        read_event_table(tmp_path / "f.csv", "sid", "t", "code", "v")
    (tmp_path / "g.csv").write_text("sid,t,code\n1,2020-01-01T10:00:00Z,A\n1,2020-01-02T10:00:00,B\n")
    with pytest.raises(DataError, match=r"mixes times with a UTC offset \(row 2\) and without one \(row 3\)"):
        read_event_table(tmp_path / "g.csv", "sid", "t", "code", None)
    with pytest.raises(DataError, match="data.events.code names column 'item'"):
        read_event_table(tmp_path / "g.csv", "sid", "t", "item", None)


def test_bulk_export_manifest_is_read_and_other_files_are_skipped(meds, tmp_path):
    folder = write_ndjson(meds.events, tmp_path / "bulk")
    files = sorted(p.name for p in folder.glob("*.ndjson"))
    (folder / "manifest.json").write_text(json.dumps({
        "transactionTime": "2024-01-01T00:00:00Z", "request": "https://ehr.example/$export",
        "requiresAccessToken": True,
        "output": [{"type": f[:-7], "url": f"https://ehr.example/files/{f}"} for f in files],
        "error": [{"type": "OperationOutcome", "url": "https://ehr.example/files/err.ndjson"}]}))
    (folder / "README.json").write_text(json.dumps({"note": "export notes, not a resource"}))
    with pytest.warns(UserWarning, match="1 error file"):
        fhir = read_fhir(folder)
    assert fhir.metadata["fhir"]["resources"]["Patient"] == 40
    assert fhir.events.height == read_fhir(write_ndjson(meds.events, tmp_path / "plain")).events.height

    (folder / "manifest.json").unlink()  # without a manifest: every file, non-resources skipped by name
    with pytest.warns(UserWarning, match=r"README\.json: not a FHIR resource or Bundle"):
        assert read_fhir(folder).metadata["fhir"]["resources"]["Patient"] == 40

    (folder / "manifest.json").write_text(json.dumps({"output": [{"type": "Patient",
                                                                  "url": "https://x/files/Missing.ndjson"}]}))
    with pytest.raises(DataError, match=r"output\[0\] lists 'https://x/files/Missing.ndjson', but no file named "
                                        r"'Missing.ndjson'"):
        read_fhir(folder)
