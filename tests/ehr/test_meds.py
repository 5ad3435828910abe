"""MEDS in and out: as medflow writes it, as others write it, and every bad input named."""

import json
import subprocess
import sys

import polars as pl
import pytest

from medflow.data.sources.meds import EventData, read_meds, read_meds_labels, write_meds, write_meds_labels
from medflow.errors import DataError
from tests.conftest import make_events


def _shard(path, df):
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)


def test_roundtrip_keeps_events_and_splits(tmp_path):
    data, _ = make_events(30)
    data.splits = pl.DataFrame({"subject_id": list(range(30)), "split": ["train"] * 20 + ["tuning"] * 5 +
                                ["held_out"] * 5})
    write_meds(data, tmp_path / "m", shard_size=7)
    back = read_meds(tmp_path / "m")
    assert back.events.equals(data.events)
    assert back.splits.sort("subject_id").equals(data.splits.sort("subject_id"))
    assert len(list((tmp_path / "m" / "data").rglob("*.parquet"))) >= 5  # several shards, nested by split
    assert json.loads((tmp_path / "m" / "metadata" / "dataset.json").read_text())["etl_name"] == "medflow"
    # every shard conforms to the schema of the `meds` package
    import meds
    import pyarrow.parquet as pq

    required = meds.DataSchema.schema()
    for shard in (tmp_path / "m" / "data").rglob("*.parquet"):
        schema = pq.read_schema(shard)
        for name in ("subject_id", "time", "code", "numeric_value"):
            assert schema.field(name).type == required.field(name).type, (shard, name)


def test_reads_meds_written_by_meds_testing_helpers(tmp_path):
    out = tmp_path / "sample"
    subprocess.run([sys.executable, "-c", "from meds_testing_helpers.dataset_generator import main; main()",
                    "N_subjects=40", f"output_dir={out}"], check=True, capture_output=True, cwd=tmp_path)
    data = read_meds(out)
    assert data.n_subjects == 40
    assert data.events["time"].null_count() > 0  # static events with a null time
    assert data.splits is not None and set(data.splits["split"].unique()) <= {"train", "tuning", "held_out"}
    # a task computed elsewhere, as a MEDS label file: the last event time of each subject
    last = data.events.group_by("subject_id").agg(pl.col("time").max().alias("prediction_time"))
    labels = last.with_columns((pl.col("subject_id") % 2 == 0).alias("boolean_value"))
    write_meds_labels(labels, tmp_path / "labels.parquet")
    back = read_meds_labels(tmp_path / "labels.parquet")
    assert back.height == 40 and back["boolean_value"].sum() == 20


def test_other_writers_layouts_are_accepted(tmp_path):
    """Shards directly under data/, odd code strings, extra columns, Date-less metadata, no splits."""
    df = pl.DataFrame({"subject_id": [1, 1, 1, 2], "time": [None, "2020-01-01", "2020-01-02", "2021-05-05"],
                       "code": ["SEX//F", "LAB//123//mg/dL", "NOSEPARATOR", "ICD10CM//I50.9"],
                       "numeric_value": [None, 1.5, None, None], "extra_col": ["x", "y", "z", "w"]}).with_columns(
        pl.col("time").str.to_datetime("%Y-%m-%d"))
    _shard(tmp_path / "m" / "data" / "only.parquet", df)
    data = read_meds(tmp_path / "m")
    assert data.splits is None and data.events.columns == ["subject_id", "time", "code", "numeric_value"]
    assert data.events["code"].to_list()[1] == "LAB//123//mg/dL"


def test_missing_column_names_file(tmp_path):
    _shard(tmp_path / "m" / "data" / "0.parquet", pl.DataFrame({"subject_id": [1], "code": ["A"]}))
    with pytest.raises(DataError, match=r"0\.parquet: MEDS column 'time' is missing"):
        read_meds(tmp_path / "m")


def test_wrong_types_name_the_column(tmp_path):
    _shard(tmp_path / "m" / "data" / "0.parquet",
           pl.DataFrame({"subject_id": [1], "time": ["2020-01-01"], "code": ["A"], "numeric_value": [1.0]}))
    with pytest.raises(DataError, match=r"column 'time' must be a timestamp, found String"):
        read_meds(tmp_path / "m")
    _shard(tmp_path / "n" / "data" / "0.parquet",
           pl.DataFrame({"subject_id": ["p1"], "time": [None], "code": ["A"], "numeric_value": [1.0]}))
    with pytest.raises(DataError, match=r"column 'subject_id' must be an integer"):
        read_meds(tmp_path / "n")


def test_events_out_of_order_name_the_row(tmp_path):
    df = pl.DataFrame({"subject_id": [1, 1, 1], "time": ["2020-01-03", "2020-01-01", "2020-01-05"],
                       "code": ["A", "B", "C"], "numeric_value": [None, None, None]}).with_columns(
        pl.col("time").str.to_datetime("%Y-%m-%d"), pl.col("numeric_value").cast(pl.Float32))
    _shard(tmp_path / "m" / "data" / "0.parquet", df)
    with pytest.raises(DataError, match=r"0\.parquet: events out of time order at row 2 \(subject 1"):
        read_meds(tmp_path / "m")


def test_mixed_time_zones_across_shards(tmp_path):
    base = pl.DataFrame({"subject_id": [1], "time": ["2020-01-03"], "code": ["A"], "numeric_value": [None]}
                        ).with_columns(pl.col("time").str.to_datetime("%Y-%m-%d"),
                                       pl.col("numeric_value").cast(pl.Float32))
    _shard(tmp_path / "m" / "data" / "a.parquet", base)
    _shard(tmp_path / "m" / "data" / "b.parquet", base.with_columns(
        pl.col("subject_id") + 1, pl.col("time").dt.replace_time_zone("Europe/Paris")))
    with pytest.raises(DataError, match=r"a\.parquet: timestamps have no time zone, but .*b\.parquet has "
                                        r"'Europe/Paris'"):
        read_meds(tmp_path / "m")


def test_not_a_meds_folder(tmp_path):
    with pytest.raises(DataError, match="no such MEDS folder"):
        read_meds(tmp_path / "nowhere")
    (tmp_path / "empty" / "data").mkdir(parents=True)
    with pytest.raises(DataError, match="no .parquet shards"):
        read_meds(tmp_path / "empty")


def test_failed_write_leaves_nothing(tmp_path):
    bad = EventData(events=pl.DataFrame({"subject_id": [1], "time": [None], "code": ["A"]}))  # no numeric_value
    with pytest.raises(pl.exceptions.ColumnNotFoundError):
        write_meds(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
