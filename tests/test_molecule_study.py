"""Molecules through the whole flow: YAML and Python studies on real FreeSolv, the report, predictions on raw SMILES,
ensembles with uncertainty, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import medflow as mf
from medflow.cli import app
from medflow.errors import DataError

FAST = {"max_epochs": 40, "patience": 15, "progress": False, "batch_size": 50, "warmup_epochs": 2}


@pytest.fixture(scope="module")
def freesolv_run(tmp_path_factory):
    """mpnn (a two-member ensemble) and a random forest on FreeSolv, scaffold split, through the Python API."""
    out = tmp_path_factory.mktemp("runs")
    study = mf.Study(dataset="freesolv", task=mf.tasks.Regression(label="expt"), seed=0, output_dir=out,
                     model=[{"name": "mpnn", "params": {"descriptors": True}, "ensemble": 2},
                            {"name": "random_forest", "params": {"n_estimators": 100}}],
                     split=mf.splits.Scaffold(), train=FAST, evaluate={"n_bootstrap": 200},
                     explain={"max_records": 40, "examples": 3, "n_repeats": 1})
    return study.fit()


def test_real_freesolv_is_learned(freesolv_run):
    m = freesolv_run.metrics.data["models"]
    sd = float(mf.datasets.load("freesolv").frame["expt"].std())  # 3.85 kcal/mol
    for name in ("mpnn", "random_forest"):
        rmse = m[name]["metrics"]["rmse"]
        assert rmse["low"] <= rmse["value"] <= rmse["high"]
        assert rmse["value"] < 0.7 * sd, name  # unseen scaffolds, yet far better than predicting the mean
    assert freesolv_run.manifest["data"]["smiles_column"] == "smiles"


def test_scaffolds_do_not_cross_parts(freesolv_run):
    preds = freesolv_run.predictions()
    frame = mf.datasets.load("freesolv").frame.set_index("mol_id")
    parts = {p: set(frame.loc[preds[(preds.split == p) & (preds.model == "mpnn")]["patient_id"], "scaffold"])
             for p in ("valid", "test")}
    train = set(frame["scaffold"]) - parts["valid"] - parts["test"]
    assert not (parts["test"] & parts["valid"]) and not (parts["test"] & train)


def test_atom_attributions_add_up_and_are_drawn(freesolv_run):
    expl = json.loads((freesolv_run.path / "explanations.json").read_text())["mpnn"]
    assert expl["method"] == "atom_integrated_gradients" and expl["figure"]
    for ex in expl["examples"]:  # completeness: atoms + descriptors = output - baseline
        total = ex["atom_total"] + ex["descriptor_total"]
        assert total == pytest.approx(ex["output"] - ex["baseline"], rel=0.05, abs=0.02)
        assert len(ex["atoms"]) > 0
    assert len(expl["mean_abs_attribution"]) > 0
    html = (freesolv_run.path / "report.html").read_text()
    assert "atom attributions mpnn" in html and "Integrated Gradients" in html
    rf = json.loads((freesolv_run.path / "explanations.json").read_text())["random_forest"]
    assert any(k.startswith("other features (") for k in rf["permutation_importance"])  # 2,265 inputs screened


def test_predict_raw_smiles_with_uncertainty(freesolv_run):
    out = freesolv_run.predict([{"smiles": "CCO"}, {"smiles": "c1ccccc1"}, {"smiles": "OCC(O)CO"}], model="mpnn")
    assert list(out["prediction"].round(6)) == list(out["prediction"].round(6))
    assert (out["uncertainty"] > 0).all()
    assert out["prediction"].iloc[2] < out["prediction"].iloc[1]  # glycerol hydrates far better than benzene
    rf = freesolv_run.predict([{"smiles": "CCO"}], model="random_forest")
    assert "uncertainty" not in rf.columns
    with pytest.raises(DataError, match=r"row 2: 'C1CC' \(RDKit cannot parse"):
        freesolv_run.predict([{"smiles": "CCO"}, {"smiles": "C1CC"}])


def test_yaml_csv_with_invalid_rows_dropped_and_reported(tmp_path):
    frame = mf.datasets.load("freesolv").frame[["smiles", "expt"]].iloc[::3].reset_index(drop=True)
    frame.loc[5, "smiles"] = "C1CC"
    frame.loc[9, "smiles"] = "C(C)(C)(C)(C)C"
    frame.to_csv(tmp_path / "mols.csv", index=False)
    cfg = {"name": "mols", "output_dir": str(tmp_path / "runs"), "data": {"molecules": {
        "path": str(tmp_path / "mols.csv"), "on_invalid": "drop"}}, "task": {"kind": "regression", "label": "expt"},
        "split": {"kind": "scaffold"}, "models": [{"name": "gin", "params": {"hidden": 32, "layers": 2}}],
        "train": {**FAST, "max_epochs": 3}, "evaluate": {"n_bootstrap": 50}, "explain": {"max_records": 5}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "study.yaml")])
    assert result.exit_code == 0, result.output
    assert "molecules (SMILES in 'smiles')" in result.output
    run_dir = next((tmp_path / "runs" / "mols").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["data"]["invalid_smiles_dropped"] == 2
    assert [b["row"] for b in manifest["data"]["invalid"]] == [6, 10]
    assert "2 molecule(s) with invalid SMILES were left out" in (run_dir / "report.html").read_text()
    cfg["data"]["molecules"]["on_invalid"] = "fail"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "study.yaml")])
    assert result.exit_code == 1 and "2 invalid SMILES" in str(result.exception) and "row 6" in str(result.exception)


def test_wrong_model_for_molecules_is_named():
    with pytest.raises(mf.errors.ConfigError, match="model 'gru' reads events but builtin:freesolv holds molecules.*"
                                                   "choose a model for molecules: .*gin, .*mpnn, random_forest"):
        mf.Study(dataset="freesolv", task=mf.tasks.Regression(label="expt"), model="gru").fit()
    with pytest.raises(mf.errors.ConfigError, match="ensemble .* applies to torch models"):
        mf.Study(dataset="freesolv", task=mf.tasks.Regression(label="expt"),
                 model=[{"name": "random_forest", "ensemble": 3}]).fit()


def test_ensemble_members_differ_and_average():
    from medflow.features.molecule import MoleculeFeaturizer
    from medflow.models import build_estimator
    from medflow.train.trainer import TrainConfig

    frame = mf.datasets.load("freesolv").frame.iloc[:200]
    x = MoleculeFeaturizer().fit(frame).transform(frame)
    task = mf.tasks.Regression(label="expt").fit(frame)
    y = frame["expt"].to_numpy()
    est = build_estimator("mpnn", {"hidden": 32, "ffn_hidden": 32}, task)
    est.ensemble = 3
    est.fit(x[:150], y[:150], x[150:], y[150:], TrainConfig(max_epochs=3, progress=False), seed=0)
    members = [np.asarray(task.predict_from_outputs(m(x.batch(np.arange(150, 200))).detach().numpy()))
               for m in est.module.members]
    assert not np.allclose(members[0], members[1])
    assert np.allclose(est.predict(x[150:]), np.mean(members, axis=0), atol=1e-5)  # regression: outputs are linear
    assert np.allclose(est.predict_spread(x[150:]), np.std(members, axis=0), atol=1e-5)
    assert pd.Series(est.history[0]).notna().all()


def test_cli_predict_with_atom_explanations(freesolv_run, tmp_path):
    pd.DataFrame({"smiles": ["CCO", "c1ccccc1O"], "note": ["a", "b"]}).to_csv(tmp_path / "new.csv", index=False)
    result = CliRunner().invoke(app, ["predict", str(freesolv_run.path), str(tmp_path / "new.csv"), "-o",
                                      str(tmp_path / "out.csv"), "--model", "mpnn", "--explain"])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv")
    atoms = [json.loads(e) for e in out["explanation"]]
    assert {a["atom"] for a in atoms[0]} == {"C0", "C1", "O2"}  # ethanol's three heavy atoms, by RDKit index
    assert len(atoms[1]) == 7 and "uncertainty" in out.columns
    assert out["explanation_method"].iloc[0] == "integrated_gradients"


def test_served_over_http_with_smiles_checked(freesolv_run, tmp_path):
    from fastapi.testclient import TestClient

    from medflow.serve import ServiceConfig, Store, create_app

    cfg = ServiceConfig(db=str(tmp_path / "svc.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("chem")
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app([freesolv_run.path], cfg)) as client:
        name = client.get("/models", headers=auth).json()[0]["name"]
        r = client.post(f"/models/{name}/predict", headers=auth,
                        json={"records": [{"smiles": "CCO"}, {"smiles": "OCC(O)CO"}], "explain": True})
        assert r.status_code == 200, r.text
        got = [p["prediction"] for p in r.json()["predictions"]]
        expected = freesolv_run.predict([{"smiles": "CCO"}, {"smiles": "OCC(O)CO"}])["prediction"]
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        r = client.post(f"/models/{name}/predict", headers=auth,
                        json={"records": [{"smiles": "CCO"}, {"smiles": "C1CC"}, {"smi": "C"}]})
        assert r.status_code == 422
        fields = {p["field"] for p in r.json()["problems"]}
        assert "records[1].smiles" in fields and any(f.startswith("records[2]") for f in fields)
        schema = client.get("/openapi.json").json()
        assert "smiles" in json.dumps(schema)


def test_cli_predict_sdf_and_smi(freesolv_run, tmp_path):
    from rdkit import Chem

    w = Chem.SDWriter(str(tmp_path / "new.sdf"))
    for s in ("CCO", "c1ccccc1O"):
        w.write(Chem.MolFromSmiles(s))
    w.close()
    (tmp_path / "new.smi").write_text("CCO ethanol\nOCC(O)CO glycerol\n")
    for name in ("new.sdf", "new.smi"):
        result = CliRunner().invoke(app, ["predict", str(freesolv_run.path), str(tmp_path / name), "-o",
                                          str(tmp_path / f"{name}.csv"), "--model", "mpnn"])
        assert result.exit_code == 0, result.output
        out = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(out["mol_id"]) == ["mol-1", "mol-2"] and out["smiles"].iloc[0] == "CCO"
        assert np.isfinite(out["prediction"]).all()
    (tmp_path / "bad.smi").write_text("CCO\nC1CC\n")
    result = CliRunner().invoke(app, ["predict", str(freesolv_run.path), str(tmp_path / "bad.smi"), "-o",
                                      str(tmp_path / "bad.csv")])
    assert result.exit_code == 1 and "row 2: 'C1CC'" in str(result.exception)
    assert not (tmp_path / "bad.csv").exists()  # nothing half-written
