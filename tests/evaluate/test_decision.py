"""Decision curves: net benefit identical to dcurves (binary and survival at a horizon)."""

import numpy as np
import pandas as pd
from dcurves import dca

from medflow.evaluate.decision import DecisionCurveConfig, decision_curve, net_benefit
from medflow.evaluate.survival import km_at


def test_binary_net_benefit_matches_dcurves():
    rng = np.random.default_rng(0)
    n = 800
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(int)
    th = np.round(np.arange(0.01, 0.99, 0.01), 2)
    ref = dca(data=pd.DataFrame({"y": y, "p": p}), outcome="y", modelnames=["p"], thresholds=th)
    ours = net_benefit(y, p, th)
    assert np.allclose(ours, ref[ref.model == "p"]["net_benefit"].to_numpy(), atol=1e-10)
    curve = decision_curve(y, p, "binary", DecisionCurveConfig())
    assert np.allclose(curve["treat_all"][:98], ref[ref.model == "all"]["net_benefit"].to_numpy(), atol=1e-10)
    low, high = curve["useful_range"]  # a calibrated model is useful over a wide range, from low thresholds on
    assert low <= 0.05 and high >= 0.5


def test_survival_net_benefit_matches_dcurves():
    rng = np.random.default_rng(1)
    n = 600
    z = rng.normal(size=n)
    t, c = rng.exponential(10 * np.exp(-z)), rng.uniform(0, 25, n)
    time, event = np.minimum(t, c), (t <= c).astype(int)
    grid = np.linspace(0.5, 20, 40)
    surv = np.exp(-grid[None, :] / (10 * np.exp(-z))[:, None])
    h = 5.0
    state = {"grid": grid.tolist(), "horizons": [h]}
    curve = decision_curve(np.column_stack([time, event]), np.column_stack([z, surv]), "survival",
                           DecisionCurveConfig(low=0.05, high=0.9, step=0.05), state)
    j = int(np.searchsorted(grid, h, side="right")) - 1
    risk = 1 - surv[:, j]
    th = np.asarray(curve["thresholds"])
    ref = dca(data=pd.DataFrame({"time": time, "event": event, "risk": risk}), outcome="event",
              modelnames=["risk"], thresholds=th, time=h, time_to_outcome_col="time")
    assert np.allclose(curve["horizons"]["5"]["model"], ref[ref.model == "risk"]["net_benefit"].to_numpy(),
                       atol=1e-8)
    assert np.allclose(curve["horizons"]["5"]["treat_all"], ref[ref.model == "all"]["net_benefit"].to_numpy(),
                       atol=1e-8)


def test_kaplan_meier_matches_lifelines():
    from lifelines import KaplanMeierFitter

    rng = np.random.default_rng(2)
    time, event = rng.exponential(5, 300).round(1), rng.integers(0, 2, 300)
    km = KaplanMeierFitter().fit(time, event)
    for t in (1.0, 3.3, 7.0):
        assert abs(km_at(time, event, t) - float(km.survival_function_at_times(t).iloc[0])) < 1e-10
