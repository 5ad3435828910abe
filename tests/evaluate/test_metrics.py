"""Every registered metric against scikit-learn, on several random draws, plus bad inputs."""

import numpy as np
import pytest
from sklearn import metrics as skm

from medflow.errors import ConfigError
from medflow.evaluate.metrics import get_metric, validate_binary
from medflow.registry import metrics as registry


def _binary(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 150)
    s = np.clip(0.3 * y + rng.random(150) * 0.7, 0, 1).round(2)  # ties on purpose
    return y, s


def _cm(y, s, t):
    return skm.confusion_matrix(y, (s >= t).astype(int), labels=[0, 1]).ravel()


BINARY_REF = {
    "auroc": lambda y, s, t: skm.roc_auc_score(y, s),
    "auprc": lambda y, s, t: skm.average_precision_score(y, s),
    "accuracy": lambda y, s, t: skm.accuracy_score(y, s >= t),
    "sensitivity": lambda y, s, t: skm.recall_score(y, s >= t),
    "specificity": lambda y, s, t: skm.recall_score(1 - y, s < t),
    "ppv": lambda y, s, t: skm.precision_score(y, s >= t),
    "npv": lambda y, s, t: skm.precision_score(1 - y, s < t),
    "f1": lambda y, s, t: skm.f1_score(y, s >= t),
    "brier": lambda y, s, t: skm.brier_score_loss(y, s),
    "log_loss": lambda y, s, t: skm.log_loss(y, np.clip(s, 1e-15, 1 - 1e-15)),
}
MULTI_REF = {
    "auroc_macro": lambda y, p: skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
    "auroc_micro": lambda y, p: skm.roc_auc_score(np.eye(p.shape[1])[y].ravel(), p.ravel()),
    "accuracy_mc": lambda y, p: skm.accuracy_score(y, p.argmax(1)),
    "f1_macro": lambda y, p: skm.f1_score(y, p.argmax(1), average="macro"),
    "log_loss_mc": lambda y, p: skm.log_loss(y, p),
}
REG_REF = {
    "rmse": lambda y, s: np.sqrt(skm.mean_squared_error(y, s)),
    "mae": skm.mean_absolute_error,
    "r2": skm.r2_score,
}


MULTILABEL_REF = {
    "auroc_labels": lambda y, p: skm.roc_auc_score(y, p, average="macro"),
    "auprc_labels": lambda y, p: skm.average_precision_score(y, p, average="macro"),
    "f1_labels": lambda y, p: skm.f1_score(y, (p >= 0.5).astype(int), average="macro"),
}


def test_every_registered_metric_has_a_reference():
    get_metric("auroc")  # registers all
    # dice_mean averages per-case MONAI Dice, checked by hand in tests/imaging/test_segmentation.py; the
    # treatment-effect metrics have no library reference and are checked by hand in tests/tasks/test_effects.py;
    # span_f1 (ratio of per-note span counts) is checked against nlp.tagger.span_scores in tests/test_spans_study.py
    effects = {"ate", "tau_risk", "sqrt_pehe", "ate_error", "factual_rmse", "qini"}
    assert set(registry.names()) == (set(BINARY_REF) | set(MULTI_REF) | set(REG_REF) | set(MULTILABEL_REF)
                                     | {"c_harrell", "dice_mean", "span_f1"} | effects)


@pytest.mark.parametrize("name", sorted(MULTILABEL_REF))
@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_metric_matches_sklearn(name, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random((160, 3)) < [0.5, 0.2, 0.7]).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random((160, 3)), 0, 1).round(2)
    assert get_metric(name)(y, p) == pytest.approx(MULTILABEL_REF[name](y, p), abs=1e-10)
    # a label with one class only is left out of the average (scikit-learn would fail or warn)
    y[:, 1] = 0
    if name != "f1_labels":
        keep = [0, 2]
        assert get_metric(name)(y, p) == pytest.approx(MULTILABEL_REF[name](y[:, keep], p[:, keep]), abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_harrell_c_matches_lifelines(seed):
    from lifelines.utils import concordance_index

    rng = np.random.default_rng(seed)
    time = rng.exponential(100, 120).round()  # ties in time on purpose
    event = rng.random(120) < 0.7
    risk = -time * (0.5 + rng.random(120)) + rng.normal(scale=30, size=120)
    y = np.column_stack([time, event])
    assert get_metric("c_harrell")(y, risk[:, None]) == pytest.approx(concordance_index(time, -risk, event), abs=1e-9)


@pytest.mark.parametrize("name", sorted(BINARY_REF))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metric_matches_sklearn(name, seed):
    y, s = _binary(seed)
    for t in (0.3, 0.5, 0.71):
        assert get_metric(name)(y, s, t) == pytest.approx(BINARY_REF[name](y, s, t), abs=1e-10)


@pytest.mark.parametrize("name", sorted(MULTI_REF))
def test_multiclass_metric_matches_sklearn(name):
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 200)
    p = rng.dirichlet(np.ones(4), 200) + 0.3 * np.eye(4)[y]
    p = p / p.sum(1, keepdims=True)
    assert get_metric(name)(y, p) == pytest.approx(MULTI_REF[name](y, p), abs=1e-10)


@pytest.mark.parametrize("name", sorted(REG_REF))
def test_regression_metric_matches_sklearn(name):
    rng = np.random.default_rng(1)
    y = rng.normal(size=100)
    s = y + rng.normal(scale=0.5, size=100)
    assert get_metric(name)(y, s) == pytest.approx(REG_REF[name](y, s), abs=1e-10)


def test_directions():
    assert get_metric("auroc").higher_is_better and not get_metric("brier").higher_is_better
    assert not get_metric("rmse").higher_is_better and get_metric("r2").higher_is_better


def test_auroc_undefined_with_one_class():
    assert np.isnan(get_metric("auroc")(np.ones(5), np.linspace(0, 1, 5)))


@pytest.mark.parametrize("y,s,msg", [
    (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), r"values \[2\] in `y_true`"),
    (np.array([0, 1, 1]), np.array([0.1, 1.5, 0.3]), "probabilities in"),
    (np.array([0, 1, 1]), np.array([0.1, 0.3]), "shape"),
])
def test_invalid_binary_inputs_rejected(y, s, msg):
    with pytest.raises(ConfigError, match=msg):
        validate_binary(y, s)


def test_unknown_metric_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'auroc'"):
        get_metric("aurco")
