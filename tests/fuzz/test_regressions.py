"""Inputs the reader fuzzing found crashing a reader with a library's exception (or a Rust panic) instead of
medflow's one-line error, kept as regression tests: each now raises a DataError / ConfigError naming the file."""

from pathlib import Path

import pytest

from medflow.errors import ConfigError, DataError
from tests.fuzz import targets


def _case(tmp_path: Path, target_name: str, data: bytes) -> Path:
    t = next(t for t in targets.TARGETS if t.name == target_name)
    case = tmp_path / "case"
    case.mkdir(parents=True)
    if t.others:
        t.others(case)
    path = case / t.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _reads(tmp_path, name, data, match, error=DataError):
    t = next(t for t in targets.TARGETS if t.name == name)
    path = _case(tmp_path, name, data)
    with pytest.raises(error, match=match):
        t.read(path)


def test_event_table_whose_first_time_polars_cannot_infer(tmp_path):  # was polars ComputeError
    _reads(tmp_path, "event table", b"subject_id,time,code,numeric_value\n1,3x:99,DX//I10,\n2,2020-01-01,DX//E11,\n",
           r"events\.csv: row 2 column 'time' holds '3x:99', not a time")


def test_damaged_parquet_labels_and_shards(tmp_path):  # was polars ComputeError / PanicException
    labels = targets._labels()
    _reads(tmp_path / "a", "meds labels", labels[: len(labels) // 2], r"labels\.parquet: not a readable Parquet")


def test_text_files_that_are_not_utf8(tmp_path):  # were UnicodeDecodeError
    _reads(tmp_path / "a", "fhir bundle", targets._fhir().replace(b"female", b"f\xe9male"),
           r"bundle\.json: not UTF-8")
    _reads(tmp_path / "b", "brat", targets._ann().replace(b"Lasix", b"L\xfesix"), r"n1\.ann: not UTF-8")
    _reads(tmp_path / "c", "study yaml", targets._yaml().replace(b"fuzz", b"f\xc3\x28zz"), r"study\.yaml: not UTF-8",
           ConfigError)
    _reads(tmp_path / "d", "study yaml", b"- a\n- b\n", r"study\.yaml: a study file is a mapping", ConfigError)


def test_sdf_property_that_is_not_utf8(tmp_path):  # was UnicodeDecodeError from RDKit
    _reads(tmp_path, "sdf", targets._sdf().replace(b"1.5", b"\xdc1.5", 1),
           r"mols\.sdf: 1 invalid SDF record\(s\): record 1: a property value is not UTF-8")


def test_damaged_archives_and_images(tmp_path):  # were BadZipFile, EOFError, ValueError, OrientationError
    npz = targets._npz()
    _reads(tmp_path / "a", "npz", npz[: len(npz) - 30], r"set\.npz: not a readable \.npz file")
    png = targets._png()
    _reads(tmp_path / "b", "png", png[:20] + png[26:], r"img\.png: not a readable image")


CRASHES = sorted((Path(__file__).parent / "crashes").iterdir())


@pytest.mark.parametrize("saved", CRASHES, ids=[p.name for p in CRASHES])
def test_saved_fuzz_crashes(tmp_path, saved):
    """The inputs `make fuzz` found (a Rust panic in polars, NotImplementedError and BytesLengthException in
    pydicom, OrientationError in nibabel, BadZipFile, PIL's ValueError, RDKit's UnicodeDecodeError), as found:
    each is now medflow's error naming the file."""
    name = saved.name.rsplit("-", 1)[0].replace("_", " ")
    t = next(t for t in targets.TARGETS if t.name == name)
    path = _case(tmp_path, name, saved.read_bytes())
    with pytest.raises(DataError) as err:
        t.read(path)
    assert path.name in str(err.value) or path.parent.name in str(err.value)


def test_harness_reports_what_is_not_medflow_s_error(tmp_path):
    """The property itself can fail: a reader raising something else, hanging or naming no file is reported."""
    from tests.fuzz import harness

    def boom(p):
        raise KeyError("x")

    def silent(p):
        raise DataError("something is wrong")

    t = targets.Target("t", "f.csv", lambda: b"", boom)
    assert harness.check(t, b"x").startswith("crash: KeyError")
    assert harness.check(targets.Target("t", "f.csv", lambda: b"", silent), b"x").startswith(
        "message does not name the file")
    slow = targets.Target("t", "f.csv", lambda: b"", lambda p: __import__("time").sleep(3))
    assert harness.check(slow, b"x", limit=1) == "hang: over 1 s"
    assert harness.check(targets.TARGETS[0], targets._csv()) is None  # a valid file passes
