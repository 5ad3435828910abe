"""Streamed MEDS studies (`data.stream: true`): one shard in memory at a time, the same study as in memory."""

import pandas as pd
import pytest

import medflow.data.sources.meds as meds
from medflow.config import parse_config
from medflow.data.simulate.ehr import simulate_ehr
from medflow.errors import ConfigError
from medflow.study import run_study


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return simulate_ehr(tmp_path_factory.mktemp("stream") / "c", patients=400, seed=3)


def _cfg(path, stream, out):
    return parse_config({
        "name": f"s{int(stream)}", "output_dir": str(out),
        "data": {"meds": str(path), "cohort": "readmission_30d", "stream": stream, "sequence": {"max_len": 48}},
        "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["gru", "logistic_regression"],
        "train": {"max_epochs": 2, "patience": 2, "progress": False},
        "evaluate": {"n_bootstrap": 50}, "explain": {"max_records": 20, "n_repeats": 1, "examples": 1}})


def test_streamed_study_equals_the_in_memory_one_and_never_loads_the_whole_folder(cohort, tmp_path, monkeypatch):
    memory = run_study(_cfg(cohort, False, tmp_path))

    def refuse(*a, **k):
        raise AssertionError("a streamed study must not read the whole MEDS folder")

    monkeypatch.setattr(meds, "read_meds", refuse)
    streamed = run_study(_cfg(cohort, True, tmp_path))
    a, b = memory.predictions(), streamed.predictions()
    m = a.merge(b, on=["model", "split", "row"], suffixes=("_m", "_s"))
    assert len(m) == len(a) == len(b) and (m["patient_id_m"] == m["patient_id_s"]).all()  # same samples, splits
    diff = (m["score_m"] - m["score_s"]).abs().groupby(m["model"]).max()
    assert diff["gru"] < 1e-5  # the same windows and weights
    assert diff["logistic_regression"] < 0.01  # value scales agree to float rounding; lbfgs amplifies a little
    assert streamed.manifest["data"]["streamed"] is True
    assert streamed.manifest["data_fingerprint"] != memory.manifest["data_fingerprint"]  # hashed from the files
    report = (streamed.path / "report.html").read_text()
    assert "read one shard at a time" in report and "SYNTHETIC" in report
    assert isinstance(b, pd.DataFrame)


def test_stream_needs_a_meds_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"data.stream reads a MEDS folder one shard at a time .*it needs data.meds "
                                          "or data.omop"):
        parse_config({"data": {"dataset": "ehr_sim", "stream": True}, "task": {"kind": "binary", "label": "y"}})
