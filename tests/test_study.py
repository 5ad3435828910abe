"""The Python API end to end: fit, reproducibility, atomic run directory, resume, predict."""

import json

import numpy as np
import pandas as pd
import pytest

import medflow as mf
from medflow.errors import DataError, ModelError
from tests.conftest import make_frame

FAST = {"max_epochs": 12, "patience": 5, "progress": False}


def _study(tmp_path, frame, models=("mlp", "logistic_regression"), **kw):
    from medflow.data.sources.tabular import dataset_from_frame  # mf.data.sources may be imported without it

    ds = dataset_from_frame(frame, "memory", "toy", patient_id="pid")
    return mf.Study(dataset=ds, task=mf.tasks.Binary(label="y"), model=list(models), train=FAST,
                    evaluate={"n_bootstrap": 100, "subgroups": ["sex"]}, output_dir=tmp_path, **kw)


def test_fit_writes_a_complete_run_directory(tmp_path):
    run = _study(tmp_path, make_frame(300, rows_per_patient=2)).fit()
    names = {p.name for p in run.path.iterdir()}
    assert {"study.yaml", "manifest.json", "metrics.json", "predictions.parquet", "report.html", "quality.json",
            "explanations.json", "fold_0"} <= names
    assert "checkpoints" not in names and not run.path.name.endswith(".incomplete")
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["splits"][0]["test"]["patients"] == 30
    preds = run.predictions()
    test_patients = set(preds[preds.split == "test"].patient_id)
    assert len(test_patients) == 30  # two rows each, kept together
    m = run.metrics.data["models"]["mlp"]["metrics"]["auroc"]
    assert m["low"] <= m["value"] <= m["high"] and m["value"] > 0.7
    assert "sex" in run.metrics.data["models"]["mlp"]["subgroups"]


def test_same_seed_identical_metrics(tmp_path):
    frame = make_frame(200)
    a = _study(tmp_path / "a", frame).fit().metrics.data
    b = _study(tmp_path / "b", frame).fit().metrics.data
    a.pop("fit_seconds"), b.pop("fit_seconds")
    assert a == b


def test_predict_raw_records_reproduces_test_predictions(tmp_path):
    frame = make_frame(200)
    run = _study(tmp_path, frame).fit()
    loaded = mf.load_run(run.path)
    preds = loaded.predictions()
    test = preds[(preds.split == "test") & (preds.model == "mlp")]
    out = loaded.predict(frame.iloc[test["row"]].drop(columns=["y"]), model="mlp")
    assert np.allclose(out["probability"].to_numpy(), test["score"].to_numpy(), atol=1e-6)
    with pytest.warns(UserWarning, match=r"ignoring column\(s\) not used by the model: \['extra'\]"):
        loaded.predict(frame.head(2).assign(extra=1))
    with pytest.raises(DataError, match=r"missing feature column\(s\) \['x1'\]"):
        loaded.predict(frame.head(2).drop(columns=["x1"]))
    explained = loaded.predict(frame.head(2), explain=True)
    assert explained["explanation"].iloc[0][0]["feature"] in {"x1", "x2", "cat", "sex"}
    assert explained["explanation_method"].iloc[0] in {"integrated_gradients", "feature_ablation"}


def test_failed_run_leaves_no_complete_directory(tmp_path, monkeypatch):
    import medflow.study as study_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(study_mod, "evaluate_predictions", boom)
    with pytest.raises(RuntimeError):
        _study(tmp_path, make_frame(120)).fit()
    dirs = list((tmp_path / "toy").iterdir())
    assert len(dirs) == 1 and dirs[0].name.endswith(".incomplete")
    assert not (dirs[0] / "manifest.json").exists()
    with pytest.raises(ModelError, match="the run is incomplete"):
        mf.load_run(dirs[0])
    monkeypatch.undo()
    run = _study(tmp_path, make_frame(120)).fit(resume=dirs[0])  # resume finishes it, reusing saved models
    assert run.path.name == dirs[0].name[: -len(".incomplete")]


def test_kfold_and_multiclass_and_regression(tmp_path):
    frame = make_frame(240, kind="multiclass")
    ds = mf.data.sources.tabular.dataset_from_frame(frame, "memory", "mc", patient_id="pid")
    run = mf.Study(dataset=ds, task=mf.tasks.Multiclass(label="y"), model=["mlp", "gradient_boosting"],
                   split=mf.splits.KFold(k=3), train=FAST, evaluate={"n_bootstrap": 60}, output_dir=tmp_path).fit()
    preds = run.predictions()
    assert sorted(preds[(preds.split == "test") & (preds.model == "mlp")]["row"]) == list(range(240))
    assert run.metrics.value("mlp", "auroc_macro") > 0.75
    out = run.predict(frame.head(3))
    assert {"probability_low", "probability_mid", "probability_high", "prediction"} <= set(out.columns)
    reg = make_frame(200, kind="regression")
    ds = mf.data.sources.tabular.dataset_from_frame(reg, "memory", "reg", patient_id="pid")
    run = mf.Study(dataset=ds, task=mf.tasks.Regression(label="y"), model=["mlp", "linear_regression"],
                   train=FAST, evaluate={"n_bootstrap": 60}, output_dir=tmp_path).fit()
    assert run.metrics.value("linear_regression", "r2") > 0.8


def test_breast_cancer_public_api(tmp_path):
    ds = mf.datasets.load("breast_cancer")
    run = mf.Study(dataset=ds, task=mf.tasks.Binary(label="malignant"), model="mlp", train=FAST,
                   evaluate={"n_bootstrap": 100}, output_dir=tmp_path, seed=0).fit()
    assert run.metrics.value("mlp", "auroc") > 0.95
    table = run.metrics.table()
    assert "(" in table.loc["mlp", "auroc"]
    assert pd.api.types.is_float_dtype(run.predict(ds.records[:5])["probability"])


def test_featurizer_state_comes_from_training_rows_only(tmp_path):
    frame = make_frame(200)
    run = _study(tmp_path, frame, models=("logistic_regression",)).fit()
    preds = run.predictions()
    held_out = set(preds["row"])
    train_rows = [i for i in range(len(frame)) if i not in held_out]
    state = json.loads((run.path / "fold_0" / "featurizer.json").read_text())["state"]
    x1 = frame["x1"].iloc[train_rows]
    assert state["x1"]["mean"] == pytest.approx(x1.mean())
    assert state["x1"]["mean"] != pytest.approx(frame["x1"].mean())


def test_synthetic_data_is_labelled_everywhere(tmp_path):
    frame = make_frame(150)
    ds = mf.data.sources.tabular.dataset_from_frame(frame, "memory", "sim", patient_id="pid", synthetic=True)
    run = mf.Study(dataset=ds, task=mf.tasks.Binary(label="y"), model="logistic_regression",
                   evaluate={"n_bootstrap": 60}, output_dir=tmp_path).fit()
    assert "SYNTHETIC DATA" in (run.path / "report.html").read_text()
    assert json.loads((run.path / "manifest.json").read_text())["synthetic"] is True
    assert run.predict(frame.head(2))["synthetic"].all()


def test_survival_horizon_beyond_follow_up_is_warned_and_not_reported(tmp_path):
    from rich.console import Console

    frame = make_frame(200, kind="survival")
    ds = mf.data.sources.tabular.dataset_from_frame(frame, "memory", "surv", patient_id="pid")
    console = Console(record=True, width=200)
    run = mf.Study(dataset=ds, task=mf.tasks.Survival(time="time", event="event", horizons=[40, 10_000]),
                   model=["cox_ph"], evaluate={"n_bootstrap": 50}, output_dir=tmp_path).fit(console=console)
    assert "task.horizons 10000 are at or beyond the longest follow-up" in console.export_text().replace("\n", " ")
    m = run.metrics.data["models"]["cox_ph"]
    assert np.isnan(m["metrics"]["auc@10000"]["value"]) and not np.isnan(m["metrics"]["auc@40"]["value"])
    assert "10000" not in m["calibration"] and "40" in m["calibration"]
    assert "n/a" in (run.path / "report.html").read_text()
    curve = run.predict(frame.head(2))["survival_curve"].iloc[0]
    assert len(curve) == len(run.task.grid)


def test_survival_kfold_folds_share_the_time_grid(tmp_path):
    frame = make_frame(240, kind="survival")
    ds = mf.data.sources.tabular.dataset_from_frame(frame, "memory", "kf", patient_id="pid")
    run = mf.Study(dataset=ds, task=mf.tasks.Survival(time="time", event="event"), model=["cox_ph"],
                   split=mf.splits.KFold(k=3), evaluate={"n_bootstrap": 50}, output_dir=tmp_path).fit()
    grids = [json.loads((run.path / f"fold_{i}" / "task.json").read_text())["state"]["grid"] for i in range(3)]
    assert grids[0] == grids[1] == grids[2]
    ibs = run.metrics.data["models"]["cox_ph"]["metrics"]["ibs"]
    assert 0 < ibs["value"] < 0.25


def test_deep_models_stop_on_validation_patients_that_selection_never_uses(tmp_path):
    run = _study(tmp_path, make_frame(300, rows_per_patient=2)).fit()
    split = run.manifest["splits"][0]
    n_stop, n_sel = split["early_stopping"]["patients"], split["valid"]["patients"]
    assert n_stop + n_sel == 15 and abs(n_stop - n_sel) <= 2  # 15 validation patients, halved within each class
    preds = run.predictions()
    valid = preds[(preds.split == "valid") & (preds.model == "mlp")]
    assert valid["patient_id"].nunique() == n_sel and valid["y_true"].nunique() == 2  # unseen, both classes
    assert run.metrics.data["selection"]["n_valid_patients"] == n_sel
    baselines = _study(tmp_path / "b", make_frame(300, rows_per_patient=2), models=("logistic_regression",)).fit()
    assert "early_stopping" not in baselines.manifest["splits"][0]  # nothing stops early: no split needed
