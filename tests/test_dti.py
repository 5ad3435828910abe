"""Drug-target interaction: protein tokens and composition by hand, the simulator's rule, a YAML study holding out
unseen targets (the two-tower model against a drug-only one), prediction and screening against one target, and
bad protein input."""

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import medflow as mf
from medflow.cli import app
from medflow.data.molecules import MoleculeSource, read_molecules
from medflow.data.simulate.dti import simulate_dti
from medflow.errors import ConfigError, DataError
from medflow.features.molecule import MoleculeFeaturizer, protein_composition, protein_tokens


def test_protein_tokens_and_composition_by_hand():
    tokens, lengths, which = protein_tokens(["ACDA", "MKX", "ACDA"], max_len=3)
    assert tokens.tolist() == [[1, 2, 3], [11, 9, 21]]  # A C D; M K X (X: the first non-standard letter)
    assert lengths.tolist() == [3, 3] and which.tolist() == [0, 1, 0]
    comp = protein_composition(tokens, lengths)
    assert comp.shape == (2, 420)
    assert comp[0, :3].tolist() == pytest.approx([1 / 3] * 3)  # A, C, D a third each
    assert comp[0, 20 + 0 * 20 + 1] == pytest.approx(0.5) and comp[0, 20 + 1 * 20 + 2] == pytest.approx(0.5)  # AC, CD
    assert comp[1, 10] == pytest.approx(0.5) and comp[1, 20 + 10 * 20 + 8] == pytest.approx(1.0)  # M of M, K; MK


def test_batch_runs_each_target_once():
    frame = pd.DataFrame({"smiles": ["CCO", "c1ccccc1", "CCN", "CCO"], "protein": ["MKV", "ACDEF", "MKV", "ACDEF"]})
    x = MoleculeFeaturizer(protein_column="protein").fit(frame).transform(frame)
    b = x.batch(np.array([0, 2, 3]))
    assert b["protein"].shape == (2, 5)  # two distinct targets, padded to the longer one
    assert b["protein_of"].tolist() == [0, 0, 1]
    assert x.to_matrix().shape[1] == 2048 + x.shape[1] + 420


def test_simulator_follows_its_rule():
    f = simulate_dti(n_drugs=80, n_targets=12, families=3, density=0.3, seed=5)
    assert 0.33 < float((f["pKd"] - f["true_pKd"]).std()) < 0.47  # the stated noise, 0.4
    per_target = f.groupby("target_id").size()
    assert len(per_target) == 12 and per_target.between(10, 40).all()
    assert f.groupby("target_id")["protein"].nunique().eq(1).all()
    assert set(f["protein"].str.cat()) <= set("ACDEFGHIKLMNPQRSTVWY")
    # targets differ in what they reward: the same drug's true affinity varies across targets
    spread = f.groupby("drug_id")["true_pKd"].agg(["std", "size"])
    assert spread.loc[spread["size"] >= 3, "std"].median() > 0.5


@pytest.fixture(scope="module")
def dti_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dti")
    frame = simulate_dti(n_drugs=100, n_targets=48, families=6, density=0.25, seed=3)  # 1,200 pairs
    frame.drop(columns=["true_pKd"]).to_csv(out / "pairs.csv", index=False)
    small = {"hidden": 128, "ffn_hidden": 128, "descriptors": True}
    cfg = {"name": "dti", "output_dir": str(out / "runs"),
           "data": {"molecules": {"path": str(out / "pairs.csv"), "protein_column": "protein",
                                  "id_column": "pair_id"}},
           "task": {"kind": "regression", "label": "pKd"},
           "split": {"kind": "group", "column": "target_id", "test": 0.25, "valid": 0.15},
           "models": [{"name": "dti", "params": {**small, "filters": 32}}, {"name": "mpnn", "params": small}],
           "train": {"max_epochs": 40, "patience": 10, "progress": False}, "evaluate": {"n_bootstrap": 200},
           "explain": {"max_records": 20, "examples": 2, "n_repeats": 1}}
    (out / "dti.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(out / "dti.yaml")])
    assert res.exit_code == 0, res.output
    return mf.load_run(next((out / "runs" / "dti").iterdir())), frame, out


def test_unseen_targets_need_the_target_tower(dti_run):
    run, frame, _ = dti_run
    preds = run.predictions()
    by_pair = frame.set_index("pair_id")
    parts = {p: set(by_pair.loc[preds[(preds.split == p) & (preds.model == "dti")]["patient_id"], "target_id"])
             for p in ("valid", "test")}
    train = set(frame["target_id"]) - parts["valid"] - parts["test"]
    assert parts["test"] and not (parts["test"] & train) and not (parts["test"] & parts["valid"])
    m = run.metrics.data["models"]
    test_sd = float(by_pair.loc[preds[(preds.split == "test") & (preds.model == "dti")]["patient_id"], "pKd"].std())
    # the drug-only D-MPNN cannot know what an unseen target rewards; the two towers read it from the sequence
    assert m["dti"]["metrics"]["rmse"]["value"] < 0.8 * test_sd
    assert m["dti"]["metrics"]["rmse"]["high"] < m["mpnn"]["metrics"]["rmse"]["low"]
    assert run.manifest["data"]["protein_column"] == "protein"


def test_predict_and_screen_against_one_target(dti_run):
    run, frame, out = dti_run
    target = frame[frame["target_id"] == frame["target_id"].iloc[0]]
    p = run.predict(target[["smiles", "protein"]].head(5), model="dti")
    assert len(p) == 5 and np.isfinite(p["prediction"]).all() and (p["interval_low_90%"] < p["prediction"]).all()
    with pytest.raises(DataError, match=r"row 2, column 'protein': protein sequence has 'J' at position 3"):
        run.predict([{"smiles": "CCO", "protein": "MKV"}, {"smiles": "CCO", "protein": "MKJ"}], model="dti")
    lib = target.drop_duplicates("smiles")
    (out / "lib.smi").write_text("\n".join(f"{s} {d}" for s, d in zip(lib["smiles"], lib["drug_id"], strict=True)))
    (out / "target.fasta").write_text(">T\n" + target["protein"].iloc[0][:60] + "\n" + target["protein"].iloc[0][60:])
    res = CliRunner().invoke(app, ["screen", str(run.path), str(out / "lib.smi"), "--model", "dti", "--protein",
                                   str(out / "target.fasta"), "-o", str(out / "ranked.csv")])
    assert res.exit_code == 0, res.output
    ranked = pd.read_csv(out / "ranked.csv").merge(lib[["smiles", "true_pKd"]], on="smiles")
    assert len(ranked) == len(lib)
    assert ranked["score"].corr(ranked["true_pKd"], method="spearman") > 0.5  # a target it trained on
    res = CliRunner().invoke(app, ["screen", str(run.path), str(out / "lib.smi"), "--model", "dti"])
    assert res.exit_code == 1 and "--protein" in str(res.exception)


def test_bad_protein_input(tmp_path):
    f = pd.DataFrame({"smiles": ["CCO", "CCN", "c1ccccc1"], "protein": ["MKV", "MK1V", ""], "y": [1.0, 2.0, 3.0]})
    f.to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(DataError, match=r"2 invalid rows .*row 2: 'CCN' \(protein sequence has '1' at position 3.*"
                                        r"row 3: 'c1ccccc1' \(empty protein sequence\)"):
        read_molecules(MoleculeSource(path=str(tmp_path / "p.csv"), protein_column="protein"))
    ds = read_molecules(MoleculeSource(path=str(tmp_path / "p.csv"), protein_column="protein", on_invalid="drop"))
    assert len(ds.frame) == 1 and ds.molecules.summary()["invalid_smiles_dropped"] == 2
    with pytest.raises(DataError, match="protein column 'target' is missing"):
        read_molecules(MoleculeSource(path=str(tmp_path / "p.csv"), protein_column="target"))
    x = MoleculeFeaturizer().fit(f).transform(f)  # no protein column: the two-tower model says what it needs
    est = mf.models.build_estimator("dti", {"hidden": 16, "ffn_hidden": 16}, mf.tasks.Regression(label="y"))
    from medflow.train.trainer import TrainConfig

    with pytest.raises(ConfigError, match="protein_column"):
        est.fit(x, f["y"].to_numpy(), x, f["y"].to_numpy(), TrainConfig(max_epochs=1, progress=False), seed=0)


def test_served_pairs_name_a_bad_target(dti_run, tmp_path):
    from fastapi.testclient import TestClient

    from medflow.serve import ServiceConfig, Store, create_app

    run, frame, _ = dti_run
    cfg = ServiceConfig(db=str(tmp_path / "svc.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("chem")
    pair = {"smiles": frame["smiles"].iloc[0], "protein": frame["protein"].iloc[0]}
    with TestClient(create_app([run.path], cfg)) as client:
        auth = {"Authorization": f"Bearer {key}"}
        schema = client.get("/models", headers=auth).json()
        r = client.post("/models/dti/predict", headers=auth, json={"records": [pair]})
        assert r.status_code == 200, r.text
        expected = run.predict([pair])["prediction"].iloc[0]
        assert r.json()["predictions"][0]["prediction"] == pytest.approx(expected, rel=1e-6)
        r = client.post("/models/dti/predict", headers=auth, json={"records": [pair, {**pair, "protein": "MK7"}]})
        assert r.status_code == 422 and "records[1].protein" in r.text and "'7' at position 3" in r.text
        r = client.post("/models/dti/predict", headers=auth, json={"records": [{"smiles": "CCO"}]})
        assert r.status_code == 422 and "records[0].protein" in r.text
    assert "protein" in str(schema)
