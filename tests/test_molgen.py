"""Molecule generation: SMILES tokens and generation metrics by hand, a generator trained from YAML on real
molecules (run directory, report, metrics), sampling from the run, steering toward another run's prediction,
and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import medflow as mf
from medflow.cli import app
from medflow.errors import ConfigError
from medflow.molgen import MoleculeGenerator, generation_metrics, sample_molecules, smiles_tokens, steer


def test_smiles_tokens_by_hand():
    assert smiles_tokens("c1ccc(Cl)cc1[C@@H](N)Br") == ["c", "1", "c", "c", "c", "(", "Cl", ")", "c", "c", "1",
                                                        "[C@@H]", "(", "N", ")", "Br"]
    assert smiles_tokens("C%12CC%12") == ["C", "%12", "C", "C", "%12"]
    assert smiles_tokens("CCJ") is None  # a letter no SMILES token covers


def test_generation_metrics_by_hand():
    m = generation_metrics(["CCO", "OCC", "C1CC", "c1ccccc1", "CCN", ""], ["CCO", "c1ccccc1O"])
    assert (m["sampled"], m["valid"], m["distinct"], m["novel"]) == (6, 4, 3, 2)
    assert m["validity"]["value"] == pytest.approx(4 / 6) and m["uniqueness"]["value"] == pytest.approx(3 / 4)
    assert m["novelty"]["value"] == pytest.approx(2 / 3)  # benzene and ethylamine are new; ethanol is not
    assert m["scaffold_novelty"]["value"] == 0.0  # benzene's scaffold is phenol's; acyclic ones share ''
    for k in ("validity", "uniqueness", "novelty"):
        assert m[k]["low"] <= m[k]["value"] <= m[k]["high"]
    assert 0 < m["internal_diversity"]["value"] <= 1
    assert m["properties"]["mw"]["generated_mean"] == pytest.approx((46.069 + 78.114 + 45.085) / 3, abs=0.01)


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    """A small LSTM trained on 316 real molecules (every 4th of RDKit's solubility set) from YAML."""
    out = tmp_path_factory.mktemp("gen")
    frame = mf.datasets.load("solubility").frame
    frame[["smiles", "SOL"]].iloc[::4].to_csv(out / "mols.csv", index=False)
    cfg = {"name": "tiny", "data": {"molecules": {"path": str(out / "mols.csv")}},
           "generator": {"hidden": 128, "layers": 1, "augment": 4},
           "train": {"max_epochs": 40, "patience": 40, "lr": 0.01, "batch_size": 64}, "sample": 300,
           "output_dir": str(out / "runs")}
    (out / "gen.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["generate", str(out / "gen.yaml")])
    assert res.exit_code == 0, res.output
    return next((out / "runs" / "tiny").iterdir()), out


def test_trained_generator_writes_molecules_like_its_training_set(generator_run):
    run, _ = generator_run
    assert {"generator.json", "generator.safetensors", "manifest.json", "metrics.json", "samples.csv", "report.html",
            "training.smi"} <= {p.name for p in run.iterdir()}
    m = json.loads((run / "metrics.json").read_text())
    assert m["validity"]["value"] > 0.4 and m["uniqueness"]["value"] > 0.8 and m["novelty"]["value"] > 0.5
    assert m["internal_diversity"]["value"] > 0.8
    samples = pd.read_csv(run / "samples.csv")
    assert len(samples) == 300 and samples["generated"].all()
    assert samples["valid"].sum() == m["valid"]
    html = (run / "report.html").read_text()
    assert "GENERATED MOLECULES" in html and "novelty" in html and "data:image/png;base64" in html


def test_sampling_is_seeded_and_written(generator_run, tmp_path):
    run, _ = generator_run
    gen = MoleculeGenerator.load(run)
    assert gen.sample(50, seed=3) == gen.sample(50, seed=3) != gen.sample(50, seed=4)
    res = CliRunner().invoke(app, ["generate", str(run), "-n", "120", "-o", str(tmp_path / "new.csv"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "new.csv")
    summary = json.loads((tmp_path / "new.summary.json").read_text())
    assert len(out) == 120 and summary["sampled"] == 120 and summary["valid"] == out["valid"].sum()
    novel = out[out["novel"]]
    training = set((run / "training.smi").read_text().split())
    assert not set(novel["canonical_smiles"]) & training


def test_steering_moves_the_predicted_property(generator_run):
    run, out = generator_run
    prop = mf.Study(dataset="solubility", task=mf.tasks.Regression(label="SOL"), seed=0, output_dir=out / "prop",
                    model={"name": "random_forest", "params": {"n_estimators": 30}},
                    data={"mol_features": ["descriptors"]},
                    evaluate={"n_bootstrap": 50}, explain={"max_records": 10, "n_repeats": 1}).fit()
    from medflow.screen import molecule_scorer

    score = molecule_scorer(prop)
    gen = MoleculeGenerator.load(run)
    _, history = steer(gen, score, n=300, rounds=2, keep=0.2, goal="min", epochs=3, seed=0)
    assert len(history) == 3 and history[0]["distinct"] > 50
    assert history[-1]["mean_score"] < history[0]["mean_score"] - 0.3  # less soluble, as asked
    frame, metrics = sample_molecules(run, 100, 0, mf.molgen.SteerConfig(run=str(prop.path), goal="max", rounds=1))
    assert "score" in frame.columns and len(metrics["steering"]["history"]) == 2
    assert np.isnan(frame.loc[~frame["valid"], "score"]).all()


def test_bad_generator_input(generator_run, tmp_path):
    run, _ = generator_run
    with pytest.raises(ConfigError, match="a generator learns from molecules"):
        mf.molgen.train_generator({"data": {"dataset": "breast_cancer"}}, output=tmp_path / "g")
    (tmp_path / "bad.yaml").write_text("data: {dataset: solubility}\ngenrator: {}\n")
    res = CliRunner().invoke(app, ["generate", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 1 and "genrator" in str(res.exception)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not a generator run"):
        mf.molgen.train_generator({"data": {"dataset": "freesolv"}, "train": {"max_epochs": 1}}, output=tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
    table_run = mf.Study(dataset="breast_cancer", task=mf.tasks.Binary(label="malignant"), model="logistic_regression",
                         output_dir=tmp_path / "t", evaluate={"n_bootstrap": 50}).fit()
    res = CliRunner().invoke(app, ["generate", str(run), "-n", "10", "--steer", str(table_run.path)])
    assert res.exit_code == 1 and "steering needs a run trained on molecules" in str(res.exception)
