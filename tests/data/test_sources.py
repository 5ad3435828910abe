from pathlib import Path

import pandas as pd
import pytest

from medflow.data.dataset import FeatureType
from medflow.data.sources.tabular import read_table
from medflow.errors import DataError
from tests.conftest import make_frame


def test_csv_and_parquet_read_the_same(tmp_path: Path):
    frame = make_frame(50)
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    a = read_table(tmp_path / "d.csv", patient_id="pid")
    b = read_table(tmp_path / "d.parquet", patient_id="pid")
    assert a.feature_types == b.feature_types
    assert a.feature_types["x1"] == FeatureType.NUMERIC
    assert a.feature_types["cat"] == FeatureType.CATEGORICAL
    assert a.feature_types["y"] == FeatureType.BINARY
    assert a.n_patients == 50


def test_type_override(tmp_path: Path):
    make_frame(30).to_csv(tmp_path / "d.csv", index=False)
    ds = read_table(tmp_path / "d.csv", patient_id="pid", types={"y": "categorical"})
    assert ds.feature_types["y"] == FeatureType.CATEGORICAL


def test_empty_file(tmp_path: Path):
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(DataError, match=r"e\.csv: the file is empty"):
        read_table(tmp_path / "e.csv")


def test_header_only(tmp_path: Path):
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="no records"):
        read_table(tmp_path / "h.csv")


def test_not_csv_or_parquet(tmp_path: Path):
    (tmp_path / "d.xlsx").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError, match=r"d\.xlsx: unsupported file type '\.xlsx'"):
        read_table(tmp_path / "d.xlsx")


def test_corrupt_parquet(tmp_path: Path):
    (tmp_path / "d.parquet").write_text("not parquet at all")
    with pytest.raises(DataError, match=r"d\.parquet: not a readable Parquet file"):
        read_table(tmp_path / "d.parquet")


def test_text_in_numeric_column_names_row(tmp_path: Path):
    frame = make_frame(40)
    frame["x1"] = frame["x1"].round(3).astype(object)
    frame.loc[17, "x1"] = "abc"
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"column 'x1' is numeric but row 18 holds 'abc'"):
        read_table(tmp_path / "d.csv", patient_id="pid")


def test_declared_numeric_with_text(tmp_path: Path):
    pd.DataFrame({"pid": [1, 2, 3], "v": ["1", "x", "3"], "y": [0, 1, 0]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"column 'v' is numeric but row 2 holds 'x'"):
        read_table(tmp_path / "d.csv", patient_id="pid", types={"v": "numeric"})


def test_missing_patient_id_column(tmp_path: Path):
    make_frame(10).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match="patient id column 'patient' is missing"):
        read_table(tmp_path / "d.csv", patient_id="patient")


def test_missing_file():
    with pytest.raises(DataError, match="file not found"):
        read_table("/nonexistent/file.csv")


def test_builtin_datasets_are_real():
    from medflow.data.builtin import load

    bc = load("breast_cancer")
    assert len(bc) == 569 and int(bc.frame["malignant"].sum()) == 212
    db = load("diabetes")
    assert len(db) == 442 and db.feature_types["sex"] == FeatureType.CATEGORICAL
    assert bc.fingerprint() == load("breast_cancer").fingerprint()


def test_infinite_values_are_named_at_loading(tmp_path):
    from medflow.data.sources.tabular import read_table

    (tmp_path / "t.csv").write_text("pid,ratio,y\n1,0.5,0\n2,inf,1\n3,1.2,0\n4,-inf,1\n")
    with pytest.raises(DataError, match=r"t\.csv: column 'ratio' holds an infinite value \(inf\) in 2 record\(s\), "
                                        r"row\(s\) 2, 4"):
        read_table(tmp_path / "t.csv", patient_id="pid")


def test_latin1_csv_gets_a_fix_and_reads_with_data_encoding(tmp_path):
    from medflow.data.sources.tabular import read_table

    (tmp_path / "l.csv").write_bytes("pid,ward,y\n1,Cardiologie,0\n2,Médecine,1\n3,Gériatrie,0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"l\.csv: not UTF-8 text: byte 0xe9 at line 3 \(record 2\).*"
                                        r"data\.encoding: latin-1"):
        read_table(tmp_path / "l.csv", patient_id="pid")
    ds = read_table(tmp_path / "l.csv", patient_id="pid", encoding="latin-1")
    assert ds.frame["ward"].tolist() == ["Cardiologie", "Médecine", "Gériatrie"]
    with pytest.raises(DataError, match="unknown encoding 'klingon'"):
        read_table(tmp_path / "l.csv", patient_id="pid", encoding="klingon")
