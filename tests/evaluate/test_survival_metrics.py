"""The bound survival metrics equal scikit-survival's functions called directly; calibration is sane."""

import numpy as np
import pytest
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score

from medflow.evaluate.survival import structured, survival_calibration, survival_metrics


def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    t = rng.exponential(100 * np.exp(-z))
    c = rng.uniform(0, 250, n)
    y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    grid = np.linspace(5, 150, 20)
    surv = np.exp(-np.outer(np.exp(z), grid) / 100)  # the true survival curves
    return y, np.column_stack([z, surv]), {"grid": grid.tolist(), "horizons": [float(grid[5]), float(grid[10])]}


def test_bound_metrics_equal_sksurv():
    y, s, state = _data()
    m = {x.name: x for x in survival_metrics(state, y)}
    ref = structured(y)
    tau = float(np.quantile(y[:, 0], 0.9))
    assert m["c_uno"](y, s) == pytest.approx(concordance_index_ipcw(ref, ref, s[:, 0], tau=tau)[0])
    grid = np.asarray(state["grid"])
    assert m["ibs"](y, s) == pytest.approx(integrated_brier_score(ref, ref, s[:, 1:], grid))
    h = state["horizons"][0]
    assert m[f"auc@{h:g}"](y, s) == pytest.approx(cumulative_dynamic_auc(ref, ref, s[:, 0], [h])[0][0])
    assert 0.6 < m["c_harrell"](y, s) < 0.9


def test_true_curves_are_calibrated_and_shifted_ones_are_not():
    y, s, state = _data(n=3000)
    good = survival_calibration(y, s, state)
    bad = survival_calibration(y, np.column_stack([s[:, 0], s[:, 1:] ** 3]), state)
    for h in good:
        assert good[h]["ece"] < 0.04 < bad[h]["ece"]
