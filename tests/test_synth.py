"""Synthetic patients: the fidelity and privacy metrics against hand-computed values and sdmetrics, the three
generators on real data, every output marked SYNTHETIC, and bad input named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medflow.cli import app
from medflow.data.builtin import load as load_dataset
from medflow.data.dataset import FeatureType
from medflow.data.sources.tabular import read_table
from medflow.errors import ConfigError, DataError
from medflow.synth import synthesize
from medflow.synth.fidelity import column_pairs, column_shapes, dcr_share, membership_auroc
from medflow.train.trainer import TrainConfig

N, C = FeatureType.NUMERIC, FeatureType.CATEGORICAL


def test_column_shapes_and_pairs_by_hand():
    real = pd.DataFrame({"x": [1.0, 2, 3, 4], "c": ["a", "a", "b", "b"], "y": [2.0, 4, 6, 8]})
    syn = pd.DataFrame({"x": [1.0, 2, 3, 10], "c": ["a", "b", "b", "b"], "y": [8.0, 6, 4, 2]})
    shapes = column_shapes(real, syn, {"x": N, "c": C, "y": N})
    assert shapes["x"] == pytest.approx(0.75)  # KS statistic 1/4: one of four values moved past the others
    assert shapes["c"] == pytest.approx(0.75)  # TVD 0.25: a 50/50 mix against 25/75
    assert shapes["y"] == pytest.approx(1.0)  # same values, other order
    # r(x, y) is 1 in the real rows and r([1,2,3,10], [8,6,4,2]) in the synthetic ones
    r_syn = np.corrcoef([1, 2, 3, 10], [8, 6, 4, 2])[0, 1]
    assert column_pairs(real, syn, {"x": N, "y": N}) == pytest.approx(1 - abs(1 - r_syn) / 2)


def test_dcr_and_membership_by_hand():
    train = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])  # nearest-neighbour distances all 1: cutoff 1
    syn = np.array([[0.0], [2.5], [10.0], [1.2]])  # one copy (0 < 1), the others at 0.5, 6 and 0.2
    d = dcr_share(train, syn)
    assert d["cutoff"] == pytest.approx(1.0)
    assert d["share"] == pytest.approx(3 / 4) and d["exact_copies"] == pytest.approx(1 / 4)
    # synthetic rows that copy the members: the attack tells members from non-members perfectly
    assert membership_auroc(train, train + 0.5, train) == pytest.approx(1.0)


def test_quality_matches_sdmetrics():
    from sdmetrics.reports.single_table import QualityReport

    rep = synthesize("breast_cancer", model="copula", seed=0)
    ds = load_dataset("breast_cancer")
    cols = rep["columns"]
    real = ds.frame[cols]
    meta = {"columns": {c: {"sdtype": "numerical" if ds.feature_types.get(c) == N else "categorical"}
                        for c in cols}}
    qr = QualityReport()
    qr.generate(real, rep["frame"][cols], meta, verbose=False)
    shapes = qr.get_properties().set_index("Property")["Score"]
    # medflow fits on the training patients; sdmetrics here compares with all real rows: close, not equal
    assert rep["column_shapes"] == pytest.approx(shapes["Column Shapes"], abs=0.02)
    assert rep["column_pairs"] == pytest.approx(shapes["Column Pair Trends"], abs=0.03)


def test_copula_on_breast_cancer_is_faithful_useful_and_private(tmp_path):
    rep = synthesize("breast_cancer", model="copula", n=400, output=tmp_path / "syn.parquet", seed=0)
    assert rep["quality"] > 0.9 and rep["tstr_auroc"] > 0.93 and rep["trtr_auroc"] > 0.98
    assert rep["dcr"]["share"] <= 0.03 and rep["dcr"]["exact_copies"] == 0
    assert rep["membership_auroc"] < 0.6
    ds = read_table(tmp_path / "syn.parquet", patient_id="patient_id")
    assert ds.synthetic and len(ds.frame) == 400 and ds.frame["patient_id"].iloc[0] == "SYN-000001"
    assert set(ds.frame["malignant"].unique()) == {0, 1}
    saved = json.loads((tmp_path / "syn.fidelity.json").read_text())
    assert saved["synthetic"] is True and saved["quality"] == pytest.approx(rep["quality"])
    assert "SYNTHETIC DATA" in (tmp_path / "syn.report.html").read_text()


def test_tvae_and_ctgan_learn_the_table(tmp_path):
    quick = TrainConfig(max_epochs=60, batch_size=128, lr=2e-3, patience=15, progress=False)
    tvae = synthesize("breast_cancer", model="tvae", n=400, seed=0, train=quick)
    assert tvae["tstr_auroc"] > 0.9 and tvae["quality"] > 0.75 and tvae["dcr"]["exact_copies"] == 0
    ctgan = synthesize("breast_cancer", model="ctgan", n=400, seed=0, params={"epochs": 150})
    assert ctgan["quality"] > 0.7 and ctgan["tstr_auroc"] > 0.85 and set(ctgan["frame"]["malignant"]) == {0, 1}
    # a table with missing values and a category: both come back, in the real proportions roughly
    frame = load_dataset("breast_cancer").frame.copy()
    frame.loc[frame.index % 5 == 0, "mean_area"] = np.nan
    frame["size"] = np.where(frame["mean_radius"] > 14, "large", "small")
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    rep = synthesize(csv, model="copula", n=1000, output=tmp_path / "out.csv", label="malignant", seed=1)
    out = rep["frame"]
    assert 0.1 < out["mean_area"].isna().mean() < 0.3 and set(out["size"]) == {"large", "small"}
    assert read_table(tmp_path / "out.csv").synthetic  # the CSV's synthetic column marks it


def test_bad_input_is_named(tmp_path):
    with pytest.raises(DataError, match=r"\['nope'\] are not in the data"):
        synthesize("breast_cancer", model="copula", columns=["mean_radius", "nope"])
    with pytest.raises(ConfigError, match="unknown generator"):
        synthesize("breast_cancer", model="gan9000")
    with pytest.raises(ConfigError, match="parquet"):
        synthesize("breast_cancer", model="copula", output=tmp_path / "x.xlsx")
    with pytest.raises(ConfigError, match="as_table"):
        synthesize(load_dataset("phantoms_2d"), model="copula")
    with pytest.raises(ConfigError, match="not a run directory"):
        synthesize(tmp_path / "missing.csv")


def test_cli_synthesize(tmp_path):
    out = tmp_path / "s.parquet"
    res = CliRunner().invoke(app, ["synthesize", "breast_cancer", "--model", "copula", "-n", "300", "-o", str(out),
                                   "--columns", "mean_radius,mean_texture,mean_area"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output and "TSTR" in res.output
    ds = read_table(out, patient_id="patient_id")
    assert ds.synthetic and list(ds.frame.columns) == ["patient_id", "mean_radius", "mean_texture", "mean_area",
                                                       "malignant"]
