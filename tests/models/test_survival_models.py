import numpy as np
import pandas as pd
import pytest

from medflow.evaluate.metrics import get_metric
from medflow.models import build_estimator
from medflow.tasks import Survival
from medflow.train.trainer import TrainConfig


def _cohort(n=1500, seed=0):
    """Proportional hazards with known coefficients; continuous times (no ties)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    beta = np.array([0.8, -0.5, 0.3, 0.0])
    lp = x @ beta + 0.6 * x[:, 0] * x[:, 1]  # an interaction a deep model can use
    t = rng.exponential(200 * np.exp(-lp))
    c = rng.uniform(0, 600, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    return x.astype(np.float32), y, lp


def _task(y):
    return Survival(time="time", event="event").fit(pd.DataFrame({"time": y[:, 0], "event": y[:, 1]}))


def test_cox_ph_matches_lifelines():
    from lifelines import CoxPHFitter

    x, y, _ = _cohort(400)
    task = _task(y)
    est = build_estimator("cox_ph", {"alpha": 1e-9}, task).fit(x, y, x[:0], y[:0], TrainConfig(), seed=0)
    df = pd.DataFrame(x, columns=list("abcd")).assign(T=y[:, 0], E=y[:, 1])
    ref = CoxPHFitter().fit(df, "T", "E")
    assert np.allclose(est.model.coef_, ref.params_.to_numpy(), atol=1e-4)
    assert np.allclose(est.summary["se"], ref.standard_errors_.to_numpy(), rtol=0.02)


def test_deepsurv_recovers_the_ranking():
    x, y, lp = _cohort()
    task = _task(y[:1000])
    cfg = TrainConfig(max_epochs=80, patience=15, batch_size=128, lr=3e-3, progress=False)
    est = build_estimator("deepsurv", {"hidden": 32, "depth": 2, "dropout": 0.1}, task)
    est.fit(x[:1000], y[:1000], x[1000:1200], y[1000:1200], cfg, seed=0)
    c = get_metric("c_harrell")
    model_c = c(y[1200:], est.predict(x[1200:]))
    oracle_c = c(y[1200:], lp[1200:, None])
    assert model_c > oracle_c - 0.03, (model_c, oracle_c)


def test_deephit_learns_and_curves_are_valid():
    x, y, lp = _cohort()
    task = _task(y[:1000])
    cfg = TrainConfig(max_epochs=60, patience=15, batch_size=128, lr=3e-3, progress=False)
    est = build_estimator("deephit", {"hidden": 32}, task).fit(x[:1000], y[:1000], x[1000:1200], y[1000:1200], cfg, 0)
    p = est.predict(x[1200:])
    assert get_metric("c_harrell")(y[1200:], p) > get_metric("c_harrell")(y[1200:], lp[1200:, None]) - 0.06
    s = est.predict_survival(x[1200:], np.array([0.0, 50.0, 100.0, 1e6]))
    assert (s[:, 0] == 1).all() and (np.diff(s, axis=1) <= 1e-12).all()


def test_unpenalized_cox_is_refused_and_fit_failures_name_the_model():
    from medflow.errors import ConfigError, ModelError

    x, y, _ = _cohort(100)
    with pytest.raises(ConfigError, match=r"model 'cox_ph' params: alpha: Input should be greater than 0"):
        build_estimator("cox_ph", {"alpha": 0}, _task(y))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ModelError, match="model 'cox_ph' could not be fitted"):
        build_estimator("cox_ph", {}, _task(y)).fit(bad, y, x[:0], y[:0], TrainConfig(), 0)


@pytest.mark.parametrize("name", ["cox_ph", "random_survival_forest"])
def test_baselines_beat_no_skill(name):
    x, y, lp = _cohort(600)
    task = _task(y[:400])
    est = build_estimator(name, {}, task).fit(x[:400], y[:400], x[:0], y[:0], TrainConfig(), 0)
    assert get_metric("c_harrell")(y[400:], est.predict(x[400:])) > 0.68
