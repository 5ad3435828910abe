"""medflow's survival metrics equal scikit-survival's (the reference implementation) on data with tied times,
tied risks, heavy censoring and events past the horizon, while fitting the censoring distribution once."""

import numpy as np
import pytest
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)

from medflow.evaluate.survival import _auc_at, _ibs, _uno, c_harrell, concordance, structured


def _data(n, seed, censor=0.4, ties=True):
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    t = rng.exponential(50 * np.exp(-risk))
    if ties:
        t, risk = np.ceil(t / 5) * 5, np.round(risk, 1)  # tied times and tied risks
    event = rng.random(n) > censor
    return np.c_[t + 1, event.astype(float)], risk


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equal_to_scikit_survival(seed):
    ref, _ = _data(400, 100 + seed)
    y, risk = _data(150, seed, censor=0.2 + 0.15 * seed, ties=seed % 2 == 0)
    y = y[y[:, 0] < ref[:, 0].max()]
    risk = risk[: len(y)]
    grid = np.unique(np.quantile(ref[:, 0], np.linspace(0.05, 0.8, 12)))
    curves = np.exp(-np.outer(np.exp(risk), grid) / 60)
    s = np.c_[risk, curves]
    expected = concordance_index_censored(y[:, 1] > 0.5, y[:, 0], risk)[0]
    assert c_harrell(y, s) == pytest.approx(expected, abs=1e-12)
    tau = float(np.quantile(ref[:, 0], 0.9))
    assert _uno(ref)(y, s) == pytest.approx(concordance_index_ipcw(structured(ref), structured(y), risk, tau=tau)[0],
                                            abs=1e-12)
    mask = (grid >= y[:, 0].min()) & (grid < y[:, 0].max())
    ibs = integrated_brier_score(structured(ref), structured(y), curves[:, mask], grid[mask])
    assert _ibs(ref, grid)(y, s) == pytest.approx(ibs, abs=1e-12)
    horizon = float(np.median(y[:, 0]))
    auc = cumulative_dynamic_auc(structured(ref), structured(y), risk, [horizon])[0][0]
    assert _auc_at(ref, horizon)(y, s) == pytest.approx(auc, abs=1e-12)


def test_weights_and_edge_cases():
    y, risk = _data(60, 9)
    w = np.random.default_rng(0).random(60)
    from sksurv.metrics import _estimate_concordance_index

    expected = _estimate_concordance_index(y[:, 1] > 0.5, y[:, 0], risk, w)[0]
    assert concordance(y[:, 1] > 0.5, y[:, 0], risk, w) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(concordance(np.zeros(5, bool), np.arange(5.0), np.arange(5.0)))  # no event: no comparable pair
    far = np.array([[1e6, 1.0], [2e6, 1.0], [3.0, 0.0]])
    assert np.isnan(_uno(y)(far, np.c_[np.arange(3.0)]))  # beyond the reference's follow-up: undefined, not an error
