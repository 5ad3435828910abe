import numpy as np
import pandas as pd
import pytest

from medflow.evaluate.bootstrap import bootstrap_ci, patient_resamples
from medflow.evaluate.calibration import expected_calibration_error, reliability
from medflow.evaluate.evaluator import EvaluateConfig, evaluate_predictions
from medflow.evaluate.metrics import get_metric
from medflow.evaluate.threshold import sensitivity_threshold, youden_threshold


def test_resamples_draw_whole_patients():
    pid = np.array(["a", "a", "a", "b", "c", "c"])
    for idx in patient_resamples(pid, 50, seed=0):
        drawn = pid[idx]
        for p in set(drawn):
            assert (drawn == p).sum() % (pid == p).sum() == 0  # all rows of a patient, every time


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (100, 1600):
        y = rng.integers(0, 2, n)
        s = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
        ci = bootstrap_ci([get_metric("auroc")], y, s, np.arange(n), n_boot=300, seed=1)["auroc"]
        assert ci["low"] <= ci["value"] <= ci["high"]
        widths.append(ci["high"] - ci["low"])
    assert widths[1] < widths[0] / 2.5


def test_bootstrap_is_seeded():
    y, s = np.array([0, 1] * 30), np.linspace(0, 1, 60)
    a = bootstrap_ci([get_metric("auroc")], y, s, np.arange(60), n_boot=100, seed=7)
    b = bootstrap_ci([get_metric("auroc")], y, s, np.arange(60), n_boot=100, seed=7)
    assert a == b


def test_youden_and_sensitivity_thresholds():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.4, 0.8, 0.9])
    t = youden_threshold(y, s)
    assert t == 0.8 or t == 0.4
    assert get_metric("sensitivity")(y, s, sensitivity_threshold(y, s, 1.0)) == 1.0
    assert sensitivity_threshold(y, s, 1.0) == 0.4


def test_ece_zero_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.3, 0, 1)) > 0.2
    assert sum(reliability(y, p)["count"]) == 20000


def _preds(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("valid", "test"):
        y = rng.integers(0, 2, n)
        group = rng.choice(["F", "M"], n)
        noise = np.where(group == "F", 0.2, 0.9)  # the model is much worse for M
        s = np.clip(y * (1 - noise) + noise * rng.random(n), 0, 1)
        rows.append(pd.DataFrame({"patient_id": [f"{split}{i}" for i in range(n)], "split": split, "model": "m",
                                  "y_true": y, "score": s, "subgroup:sex": group}))
    return pd.concat(rows, ignore_index=True)


def _task():
    from medflow.tasks import Binary

    return Binary(label="y").fit(pd.DataFrame({"y": [0, 1]}))


def test_subgroups_match_fairlearn_and_flag_the_gap():
    from fairlearn.metrics import MetricFrame
    from sklearn.metrics import roc_auc_score

    preds = _preds()
    cfg = EvaluateConfig(n_bootstrap=100, subgroups=["sex"])
    res = evaluate_predictions(preds, _task(), cfg, 0)
    sub = res["models"]["m"]["subgroups"]["sex"]
    test = preds[preds.split == "test"]
    mf = MetricFrame(metrics=roc_auc_score, y_true=test.y_true, y_pred=test.score,
                     sensitive_features=test["subgroup:sex"])
    for level in ("F", "M"):
        assert sub["groups"][level]["metrics"]["auroc"]["value"] == pytest.approx(mf.by_group[level])
    assert sub["gaps"]["auroc"]["worst"] == "M"
    assert sub["largest_gap"] in sub["gaps"] and sub["gaps"][sub["largest_gap"]]["gap"] >= sub["gaps"]["auroc"]["gap"]


def test_threshold_comes_from_validation_not_test():
    preds = _preds()
    res = evaluate_predictions(preds, _task(), EvaluateConfig(n_bootstrap=50), 0)
    valid = preds[preds.split == "valid"]
    assert res["models"]["m"]["threshold"] == youden_threshold(valid.y_true.to_numpy(), valid.score.to_numpy())


def test_subgroup_bands_are_readable_and_left_closed():
    from medflow.evaluate.evaluator import SubgroupConfig, subgroup_labels

    frame = pd.DataFrame({"age": [30, 40, 54.9, 55, None], "sex": ["F", "M", None, "F", "M"]})
    bands = subgroup_labels(frame, SubgroupConfig(column="age", bins=[0, 40, 55, 120]), "d.csv")
    assert bands.tolist() == ["0-40", "40-55", "40-55", "55-120", "missing"]
    assert subgroup_labels(frame, SubgroupConfig(column="sex"), "d.csv").tolist() == ["F", "M", "missing", "F", "M"]
    q = subgroup_labels(pd.DataFrame({"r": np.arange(90.0)}), SubgroupConfig(column="r", quantiles=3), "d.csv")
    assert q.nunique() == 3 and q.value_counts().min() == 30
