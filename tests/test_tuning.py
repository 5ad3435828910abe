"""Nested hyper-parameter search: inner folds only see training and validation patients; results recorded."""

import json

import pytest

import medflow as mf
import medflow.study.tuning
from medflow.errors import ConfigError
from medflow.study import run_study
from tests.conftest import make_frame

FAST = {"max_epochs": 6, "patience": 3, "progress": False}


def _study(tmp_path, frame, kind, models):
    ds = mf.data.sources.tabular.dataset_from_frame(frame, "memory", "toy", patient_id="pid")
    task = mf.tasks.Regression(label="y") if kind == "regression" else mf.tasks.Binary(label="y")
    return mf.Study(dataset=ds, task=task, model=models, train=FAST, evaluate={"n_bootstrap": 50},
                    output_dir=tmp_path)


def test_nested_search_never_sees_the_test_patients_and_finds_a_sensible_penalty(tmp_path, monkeypatch):
    frame = make_frame(300, kind="regression", rows_per_patient=2)
    seen: list[set] = []
    real = medflow.study.tuning._inner_folds

    def spy(patient_ids, k, seed):
        seen.append(set(patient_ids.astype(str)))
        return real(patient_ids, k, seed)

    monkeypatch.setattr(medflow.study.tuning, "_inner_folds", spy)
    study = _study(tmp_path, frame, "regression", ["linear_regression"])
    from medflow.study.tuning import TuneConfig

    cfg = study.config.model_copy(update={"tune": TuneConfig(
        trials=8, inner_folds=3, space={"linear_regression": {"alpha": {"low": 1e-3, "high": 1e5, "log": True}}})})
    run = run_study(cfg, dataset=study.dataset)
    preds = run.predictions()
    test_patients = set(preds[preds.split == "test"]["patient_id"])
    assert len(seen) == 1 and not (seen[0] & test_patients)  # the test split stays untouched
    assert seen[0] == set(frame["pid"]) - test_patients  # train + valid patients, all of them
    t = run.metrics.data["tuning"]["linear_regression"]["0"]
    trials = json.loads((run.path / "fold_0" / "linear_regression" / "tuning.json").read_text())["trials"]
    assert len(trials) == 8 and t["metric"] == "rmse" and t["direction"] == "minimize"
    values = [tr["value"] for tr in trials]
    assert t["best_value"] == min(values) and max(values) > 2 * min(values)  # heavy shrinkage is much worse
    assert t["best_params"]["alpha"] < 100
    saved = json.loads((run.path / "fold_0" / "linear_regression" / "model.json").read_text())
    assert saved["params"]["alpha"] == t["best_params"]["alpha"]  # the outer fold trains the best parameters
    assert "Hyper-parameter search" in (run.path / "report.html").read_text()


def test_training_options_can_be_searched(tmp_path):
    from medflow.study.tuning import TuneConfig

    study = _study(tmp_path, make_frame(160), "binary", ["mlp", "logistic_regression"])
    cfg = study.config.model_copy(update={"tune": TuneConfig(trials=2, inner_folds=2, space={
        "mlp": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}, "hidden": [8, 32]}})})
    run = run_study(cfg, dataset=study.dataset)
    best = run.metrics.data["tuning"]["mlp"]["0"]
    assert set(best["best_params"]) == {"train.lr", "hidden"} and 8 <= best["best_params"]["hidden"] <= 32
    assert "logistic_regression" not in run.metrics.data["tuning"]


@pytest.mark.parametrize("space, message", [
    ({"gradient_boosting": {"max_iter": [10, 20]}}, "tune.space names model 'gradient_boosting', which is not"),
    ({"mlp": {"hiden": [8, 32]}}, "tune.space.mlp.hiden: 'hiden' is not a parameter of model 'mlp'; valid: hidden"),
    ({"mlp": {"train.lrr": [0.001, 0.01]}}, "'lrr' is not a parameter of train"),
    ({"mlp": {"dropout": [0.5, 0.1]}}, "needs low < high"),
    ({"mlp": {"hidden": "big"}}, "give \\[low, high\\]"),
])
def test_bad_search_spaces_are_named(tmp_path, space, message):
    from medflow.study.tuning import TuneConfig

    study = _study(tmp_path, make_frame(60), "binary", ["mlp"])
    cfg = study.config.model_copy(update={"tune": TuneConfig(trials=1, space=space)})
    with pytest.raises(ConfigError, match=message):
        run_study(cfg, dataset=study.dataset)


def test_default_search_spaces_are_valid_and_used_when_tune_names_none(tmp_path):
    from medflow.registry import models
    from medflow.study.tuning import TuneConfig, search_space
    from medflow.train.trainer import TrainConfig

    for name, spec in models.items():  # every registered default space names real parameters
        if spec.search:
            assert search_space(name, spec.search, list(spec.params.model_fields), list(TrainConfig.model_fields))
    study = _study(tmp_path, make_frame(160), "binary", ["mlp", "logistic_regression", "gradient_boosting"])
    cfg = study.config.model_copy(update={"tune": TuneConfig(trials=2, inner_folds=2)})
    run = run_study(cfg, dataset=study.dataset)
    tuned = run.metrics.data["tuning"]
    assert set(tuned) == {"mlp", "logistic_regression", "gradient_boosting"}
    assert "C" in tuned["logistic_regression"]["0"]["best_params"]
    assert "train.lr" in tuned["mlp"]["0"]["best_params"]


def test_sequence_models_tune_on_event_data(tmp_path):
    from medflow.config import parse_config

    cfg = parse_config({
        "name": "tune-ehr", "output_dir": str(tmp_path),
        "data": {"dataset": "ehr_sim", "simulate": {"patients": 300, "seed": 1}, "sequence": {"max_len": 32}},
        "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["gru"],
        "train": {"max_epochs": 1, "progress": False}, "evaluate": {"n_bootstrap": 50},
        "explain": {"max_records": 10, "n_repeats": 1, "examples": 1},
        "tune": {"trials": 1, "inner_folds": 2}})
    run = run_study(cfg)
    best = run.metrics.data["tuning"]["gru"]["0"]["best_params"]
    assert best["d"] in (32, 64, 128) and 1 <= best["layers"] <= 2
