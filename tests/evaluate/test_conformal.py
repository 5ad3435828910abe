"""Conformal sets and intervals: identical to crepes on the same scores; coverage holds on simulated data."""

import numpy as np
import pytest
from crepes import ConformalClassifier, ConformalRegressor

from medflow.evaluate.conformal import (
    ConformalConfig,
    apply_conformal,
    conformal_quantile,
    conformal_summary,
    fit_conformal,
)


def _classification(n, k=3, seed=0, rare=None):
    rng = np.random.default_rng(seed)
    w = np.ones(k) if rare is None else np.r_[np.ones(k - 1), rare]
    y = rng.choice(k, size=n, p=w / w.sum())
    boost = np.r_[np.full(k - 1, 1.5), 1.5 if rare is None else 0.7]  # the rare class is also harder
    logits = rng.normal(size=(n, k)) + boost[y][:, None] * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, p


def test_regression_intervals_match_crepes():
    rng = np.random.default_rng(0)
    y_cal, y_test = rng.normal(size=300), rng.normal(size=200)
    hat_cal, hat_test = y_cal + rng.normal(scale=0.5, size=300), y_test + rng.normal(scale=0.5, size=200)
    fitted = fit_conformal(y_cal, hat_cal, "regression", ConformalConfig(coverage=0.9))
    lo, hi = apply_conformal(fitted, hat_test, "regression")
    ref = ConformalRegressor().fit(y_cal - hat_cal).predict_int(hat_test, confidence=0.9)
    assert np.allclose(lo, ref[:, 0]) and np.allclose(hi, ref[:, 1])


@pytest.mark.parametrize("class_conditional", [False, True])
def test_classification_sets_match_crepes(class_conditional):
    y_cal, p_cal = _classification(400, seed=1)
    _, p_test = _classification(300, seed=2)
    cfg = ConformalConfig(coverage=0.9, class_conditional=class_conditional)
    sets = apply_conformal(fit_conformal(y_cal, p_cal, "multiclass", cfg), p_test, "multiclass")
    a_cal, a_test = 1 - p_cal[np.arange(len(y_cal)), y_cal], 1 - p_test
    # crepes' p-values; the set holds a class when p > 1 - coverage (Angelopoulos & Bates), where crepes'
    # predict_set uses >=, which differs only when (n + 1) * coverage is a whole number
    if class_conditional:  # one calibration per class, applied to that class's column
        pv = np.column_stack([ConformalClassifier().fit(a_cal[y_cal == j]).predict_p(
            a_test[:, [j]], smoothing=False)[:, 0] for j in range(3)])
    else:
        pv = ConformalClassifier().fit(a_cal).predict_p(a_test, smoothing=False)
    ref = pv > 0.1 + 1e-12
    assert np.array_equal(sets, ref.astype(bool))


def test_class_conditional_covers_the_rare_class():
    y, p = _classification(12_000, k=3, seed=3, rare=0.08)
    cal, test = slice(0, 6000), slice(6000, None)
    pid = np.arange(6000).astype(str)
    cov = {}
    for cc in (False, True):
        fitted = fit_conformal(y[cal], p[cal], "multiclass", ConformalConfig(coverage=0.9, class_conditional=cc))
        cov[cc] = conformal_summary(fitted, y[test], p[test], pid, "multiclass", seed=0)
    assert abs(cov[False]["coverage"]["value"] - 0.9) < 0.02  # marginal coverage holds either way
    assert abs(cov[True]["coverage"]["value"] - 0.9) < 0.02
    assert cov[False]["coverage_by_class"]["2"]["value"] < 0.85  # but the rare class is under-covered ...
    assert abs(cov[True]["coverage_by_class"]["2"]["value"] - 0.9) < 0.04  # ... unless calibrated per class
    c = cov[True]["coverage"]
    assert c["low"] <= c["value"] <= c["high"]


def test_quantile_is_the_finite_sample_rank_and_infinite_when_too_few():
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18.0  # ceil(20 * 0.9) = 18th smallest of 1..19
    assert conformal_quantile(np.arange(5), 0.9) == float("inf")  # n = 5 cannot certify 90%


def test_survival_sets_reach_coverage_under_censoring():
    rng = np.random.default_rng(4)
    n = 8000
    z = rng.normal(size=n)
    t, c = rng.exponential(100 * np.exp(-z)), rng.uniform(0, 300, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    grid = np.linspace(1, 300, 60)
    surv = np.exp(-grid[None, :] / (100 * np.exp(-z))[:, None])  # the true survival curves
    score = np.column_stack([z, surv])
    state = {"grid": grid.tolist(), "horizons": [50.0, 100.0]}
    half = n // 2
    fitted = fit_conformal(y[:half], score[:half], "survival", ConformalConfig(coverage=0.9), state)
    out = conformal_summary(fitted, y[half:], score[half:], np.arange(n - half).astype(str), "survival", 0,
                            grid=grid)
    for h in ("50", "100"):
        cov = out["horizons"][h]["coverage"]
        assert 0.87 < cov["value"] < 0.95, (h, cov)
