"""Model selection: the small-validation failure found on real data, planted, must not recur."""

import numpy as np
import pandas as pd

import medflow.models  # noqa: F401  (registers the models: selection reads their complexity ranks)
from medflow.evaluate.evaluator import EvaluateConfig, evaluate_predictions
from medflow.tasks import Binary


def _task():
    return Binary(label="y").fit(pd.DataFrame({"y": [0, 1]}))


def _rows(model, split, fold, y, s, offset=0):
    n = len(y)
    return pd.DataFrame({"patient_id": [f"{split}{fold}-{i + offset}" for i in range(n)], "row": np.arange(n) + offset,
                         "fold": fold, "split": split, "model": model, "y_true": y, "score": s})


def _planted(n_valid=150, n_events=12, n_test=2000, seed=2, folds=1):
    """Logistic regression is the true model; the MLP looks a little better on a small validation split
    (by chance: its scores nudge the few validation events up) and is clearly worse on the test split."""
    rng = np.random.default_rng(seed)
    parts = []
    for fold in range(folds):
        y = np.r_[np.ones(n_events), np.zeros(n_valid - n_events)].astype(int)
        z = 1.2 * y + rng.normal(size=n_valid) - 2
        lr = 1 / (1 + np.exp(-z))
        mlp = 1 / (1 + np.exp(-(z + 0.4 * y + rng.normal(scale=0.6, size=n_valid))))  # noisier, nudged up
        parts += [_rows("mlp", "valid", fold, y, mlp),
                  _rows("logistic_regression", "valid", fold, y, lr)]
        yt = (rng.random(n_test) < 0.08).astype(int)
        lrt = 1 / (1 + np.exp(-(1.2 * yt + rng.normal(size=n_test) - 2)))
        mlpt = 1 / (1 + np.exp(-(0.6 * yt + rng.normal(size=n_test) - 2)))
        parts += [_rows("mlp", "test", fold, yt, mlpt, 10_000), _rows("logistic_regression", "test", fold, yt, lrt,
                                                                        10_000)]
    return pd.concat(parts, ignore_index=True)


def test_small_validation_no_longer_picks_the_worse_complex_model():
    preds = _planted()
    cfg = EvaluateConfig(n_bootstrap=300)
    m = evaluate_predictions(preds, _task(), cfg, seed=0)
    sel = m["selection"]
    assert sel["best_on_validation"] == "mlp"  # the old rule (argmax on validation) would report the MLP ...
    assert m["selected_model"] == "logistic_regression"  # ... the new one the simpler model, tied within the CI
    assert sel["models"]["logistic_regression"]["tied_with_best"]
    assert "simplest" in sel["reason"] and "logistic_regression" in sel["reason"]
    test_auc = {k: v["metrics"]["auroc"]["value"] for k, v in m["models"].items()}
    assert test_auc["logistic_regression"] > test_auc["mlp"] + 0.05  # and it is the better model on test
    assert sel["n_valid_events"] == 12 and "only 12 events" in sel["warning"]

    best = evaluate_predictions(preds, _task(), EvaluateConfig(n_bootstrap=300, selection={"rule": "best"}), seed=0)
    assert best["selected_model"] == "mlp"


def test_a_clearly_better_complex_model_is_still_selected():
    rng = np.random.default_rng(1)
    n = 1500
    parts = []
    for split in ("valid", "test"):
        y = (rng.random(n) < 0.3).astype(int)
        good = 1 / (1 + np.exp(-(2.5 * y + rng.normal(size=n) - 1)))
        weak = 1 / (1 + np.exp(-(0.5 * y + rng.normal(size=n) - 1)))
        parts += [_rows("mlp", split, 0, y, good), _rows("logistic_regression", split, 0, y, weak)]
    m = evaluate_predictions(pd.concat(parts, ignore_index=True), _task(), EvaluateConfig(n_bootstrap=200), seed=0)
    assert m["selected_model"] == "mlp" and m["selection"]["best_on_validation"] == "mlp"
    assert not m["selection"]["models"]["logistic_regression"]["tied_with_best"]
    assert m["selection"]["warning"] is None  # 450 events: enough


def test_selection_pools_every_folds_validation_rows():
    m = evaluate_predictions(_planted(folds=3), _task(), EvaluateConfig(n_bootstrap=100), seed=0)
    sel = m["selection"]
    assert sel["n_folds"] == 3 and sel["n_valid_patients"] == 450 and sel["n_valid_events"] == 36
