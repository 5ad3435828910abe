"""`medflow federate`: sites from files or from one dataset (non-IID), a merged featurizer, the federated model beside
pooled and site-alone models in one run directory with per-site metrics, and every bad input named."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from medflow.cli import app
from medflow.config import parse_config
from medflow.data.builtin import load as load_dataset
from medflow.data.dataset import FeatureType
from medflow.errors import ConfigError, DataError
from medflow.features.tabular import TabularFeaturizer
from medflow.federate import SitesConfig, federate, site_parts
from medflow.runs import load_run
from tests.conftest import make_frame

TRAIN = {"max_epochs": 30, "patience": 10, "batch_size": 32, "lr": 0.003, "progress": False}


def _cfg(tmp_path, **over):
    raw = {"name": "fed", "output_dir": str(tmp_path / "runs"), "data": {"dataset": "breast_cancer"},
           "task": {"kind": "binary", "label": "malignant"}, "models": ["mlp"], "train": TRAIN,
           "split": {"kind": "holdout", "test": 0.3, "valid": 0.2}, "evaluate": {"n_bootstrap": 50},
           "federated": {"rounds": 15, "sites": {"n": 3, "skew": 0.3}}}
    raw.update(over)
    return parse_config(raw, "fed")


def test_label_skewed_sites_differ_and_split_by_patient():
    ds = load_dataset("breast_cancer")
    sites = site_parts(ds.frame, ds.patient_id, "malignant", SitesConfig(n=3, skew=0.3), 0, "bc")
    prevalence = ds.frame.groupby(sites.to_numpy())["malignant"].mean()
    assert sorted(prevalence.index) == ["site_a", "site_b", "site_c"]
    assert prevalence.max() - prevalence.min() > 0.2  # non-IID: the case mix differs between sites
    assert (ds.frame.groupby(sites.to_numpy())["malignant"].nunique() == 2).all()  # each keeps both classes
    by_col = site_parts(ds.frame.assign(h=np.where(ds.frame["mean_radius"] > 14, "big", "small")), ds.patient_id,
                        "malignant", SitesConfig(column="h"), 0, "bc")
    assert set(by_col) == {"big", "small"}


def test_merged_featurizer_equals_pooled_statistics():
    frame = make_frame(n=300, seed=1)
    types = {"x1": FeatureType.NUMERIC, "cat": FeatureType.CATEGORICAL}
    parts = [frame.iloc[:100], frame.iloc[100:300]]
    merged = TabularFeaturizer.merge([(TabularFeaturizer(types).fit(p), len(p)) for p in parts])
    pooled = TabularFeaturizer(types).fit(frame)
    assert merged.state["x1"]["mean"] == pytest.approx(pooled.state["x1"]["mean"], abs=1e-9)
    assert merged.state["x1"]["std"] == pytest.approx(pooled.state["x1"]["std"], rel=1e-9)
    assert merged.state["cat"]["categories"] == pooled.state["cat"]["categories"]


def test_federated_run_beside_pooled_and_site_alone_models(tmp_path):
    run = federate(_cfg(tmp_path))
    m = run.metrics.data
    fed = m["federated"]
    assert m["selected_model"] == "mlp_fedavg" == fed["federated_model"]
    assert set(m["models"]) == {"mlp_fedavg", "mlp_pooled", "mlp_site_a_alone", "mlp_site_b_alone", "mlp_site_c_alone"}
    assert len(fed["history"]) == 15 and 1 <= fed["best_round"] <= 15
    for entry in m["models"].values():  # every model tested on every site's held-out patients, with CIs
        groups = entry["subgroups"]["site"]["groups"]
        assert set(groups) == {"site_a", "site_b", "site_c"}
        assert all(g["metrics"]["auroc"]["low"] <= g["metrics"]["auroc"]["value"] for g in groups.values())
    assert run.metrics.value("mlp_fedavg", "auroc") > 0.95
    assert run.metrics.value("mlp_fedavg", "auroc") > run.metrics.value("mlp_pooled", "auroc") - 0.03
    html = (run.path / "report.html").read_text()
    assert "Federated training" in html and "pooled (upper bound)" in html
    pred = load_run(run.path).predict(load_dataset("breast_cancer").frame.head(5))
    assert len(pred) == 5 and pred["model"].iloc[0] == "mlp_fedavg"


def _site_files(tmp_path):
    frame = load_dataset("breast_cancer").frame
    paths = []
    for i, part in enumerate(np.array_split(frame.sample(frac=1, random_state=0), 3)):
        p = tmp_path / f"hosp{i}.csv"
        part.to_csv(p, index=False)
        paths.append(p)
    return frame, paths


def test_cli_federates_site_files(tmp_path):
    _, paths = _site_files(tmp_path)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"name": "fedcli", "output_dir": str(tmp_path / "runs"),
                                     "data": {"patient_id": "patient_id"}, "task": {"kind": "binary",
                                                                                    "label": "malignant"},
                                     "models": ["mlp"], "train": TRAIN, "evaluate": {"n_bootstrap": 50}}))
    res = CliRunner().invoke(app, ["federate", str(study), "--sites", str(paths[0]), "--sites", str(paths[1]),
                                   "--sites", str(paths[2]), "--rounds", "5", "--strategy", "fedprox"])
    assert res.exit_code == 0, res.output
    run_dir = next((tmp_path / "runs" / "fedcli").iterdir())
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["federated"]["strategy"] == "fedprox" and set(m["federated"]["sites"]) == {"hosp0", "hosp1", "hosp2"}
    assert "mlp_fedprox" in res.output and "hosp1" in res.output  # the per-site table in the terminal


def test_bad_sites_are_named(tmp_path):
    frame, paths = _site_files(tmp_path)
    cfg = _cfg(tmp_path, data={"patient_id": "patient_id"})
    pd.read_csv(paths[1]).drop(columns=["mean_radius"]).to_csv(paths[1], index=False)
    with pytest.raises(DataError, match=r"hosp1\.csv.*mean_radius"):
        federate(cfg, sites=paths)
    frame[frame["malignant"] == 0].head(60).to_csv(paths[1], index=False)
    with pytest.raises(DataError, match="site 'hosp1'.*no positive or no negative"):
        federate(cfg, sites=paths)
    with pytest.raises(ConfigError, match="at least two"):
        federate(cfg, sites=paths[:1])
    with pytest.raises(ConfigError, match="holdout"):
        federate(_cfg(tmp_path, split={"kind": "kfold", "k": 3}))
    with pytest.raises(ConfigError, match="no deep model"):
        federate(_cfg(tmp_path, models=["logistic_regression"]))
    with pytest.raises(ConfigError, match="tables"):
        federate(_cfg(tmp_path, data={"dataset": "ehr_sim", "simulate": {"patients": 200}},
                      task={"kind": "binary", "label": "readmission_30d"}))


def test_event_data_federate_as_a_table_of_counts(tmp_path):
    cfg = _cfg(tmp_path, data={"dataset": "ehr_sim", "as_table": True, "simulate": {"patients": 600},
                               "sequence": {"min_count": 10}},
               task={"kind": "binary", "label": "readmission_30d"},
               federated={"rounds": 3, "sites": {"column": "race"}})
    run = federate(cfg)
    assert run.synthetic and set(run.metrics.data["federated"]["sites"]) >= {"W", "B"}
    feats = run.manifest["features"]
    assert "race" not in feats and any(f.startswith("count:ICD10CM//") for f in feats)


def test_loopback_deployment_equals_the_simulation(tmp_path):
    """`deployment: loopback`: a Flower SuperLink, one SuperNode process per site file (each reading only its own
    file) and `flwr run`, talking over 127.0.0.1. The sites' training state lives in Flower's context.state between
    messages (each runs in a fresh process); without dropout, whose masks come from each process's own random
    stream, the federated weights equal the in-process simulation's bit for bit."""
    from safetensors.torch import load_file

    frame = load_dataset("breast_cancer").frame
    paths = [tmp_path / "north.csv", tmp_path / "south.csv"]
    frame.iloc[:300].to_csv(paths[0], index=False)
    frame.iloc[300:].to_csv(paths[1], index=False)
    runs = {}
    for mode in ("simulation", "loopback"):
        cfg = _cfg(tmp_path / mode, data={"path": str(paths[0]), "patient_id": "patient_id"},
                   models=[{"name": "mlp", "params": {"hidden": 16, "dropout": 0.0}}],
                   federated={"rounds": 2, "deployment": mode})
        runs[mode] = federate(cfg, sites=[str(p) for p in paths])
    weights = [load_file(runs[m].path / "fold_0" / "mlp_fedavg" / "model.safetensors") for m in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(bool((weights[0][k] == weights[1][k]).all()) for k in weights[0])
    logs = runs["loopback"].path / "federated_loopback"
    assert {"superlink.log", "supernode_north.log", "supernode_south.log", "flwr_run.log"} <= {
        p.name for p in logs.iterdir()}
    assert not (logs / "result.pt").exists() and not (logs / "flwr_home").exists()
    hist = runs["loopback"].metrics.data["federated"]["history"]
    assert [h["round"] for h in hist] == [1, 2] and set(hist[0]["site_train_loss"]) == {"north", "south"}
    with pytest.raises(ConfigError, match="give the sites as files"):
        federate(_cfg(tmp_path, federated={"rounds": 2, "deployment": "loopback"}))
