"""DeepHit with competing risks on a simulated cohort where each cause has its own driver."""

import numpy as np
import pandas as pd
import pytest

from medflow.errors import DataError
from medflow.evaluate.survival import survival_metrics
from medflow.models import build_estimator
from medflow.tasks import Survival
from medflow.train.trainer import TrainConfig


def _cohort(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    t1 = rng.exponential(100 * np.exp(-1.2 * x[:, 0]))  # cause 1 driven by x0
    t2 = rng.exponential(100 * np.exp(-1.2 * x[:, 1]))  # cause 2 driven by x1
    c = rng.uniform(0, 150, n)
    t = np.minimum(np.minimum(t1, t2), c)
    cause = np.where(t == c, 0, np.where(t1 < t2, 1, 2))
    return x, np.column_stack([t, cause]).astype(float)


def test_deephit_learns_cause_specific_risks():
    x, y = _cohort()
    frame = pd.DataFrame({"time": y[:, 0], "event": y[:, 1]})
    task = Survival(time="time", event="event", competing_risks=True)
    task.check(frame, "sim")
    task.fit(frame.iloc[:800])
    assert task.causes == [1, 2] and task.default_metrics[-2:] == ["c_cause_1", "c_cause_2"]
    cfg = TrainConfig(max_epochs=60, patience=15, batch_size=128, lr=3e-3, progress=False)
    est = build_estimator("deephit", {"hidden": 32, "n_bins": 20}, task)
    est.fit(x[:800], y[:800], x[800:1000], y[800:1000], cfg, seed=0)
    p = est.predict(x[1000:])
    g = len(task.grid)
    assert p.shape == (200, 1 + g + 2)
    metrics = {m.name: m for m in survival_metrics(task.state, y)}
    c1, c2 = metrics["c_cause_1"](y[1000:], p), metrics["c_cause_2"](y[1000:], p)
    oracle = np.column_stack([np.zeros(200), np.zeros((200, g)), x[1000:, 0], x[1000:, 1]])  # the true drivers
    o1, o2 = metrics["c_cause_1"](y[1000:], oracle), metrics["c_cause_2"](y[1000:], oracle)
    assert c1 > o1 - 0.08 and c2 > o2 - 0.08 and min(c1, c2) > 0.65, (c1, o1, c2, o2)
    # each cause's predicted incidence follows its own driver, not the other one
    r1, r2 = p[:, 1 + g], p[:, 2 + g]
    assert np.corrcoef(r1, x[1000:, 0])[0, 1] > 0.5 > np.corrcoef(r1, x[1000:, 1])[0, 1]
    assert np.corrcoef(r2, x[1000:, 1])[0, 1] > 0.5 > np.corrcoef(r2, x[1000:, 0])[0, 1]
    cif = est.head.cif(est.outputs(x[1000:]), np.array([0.0, 30.0, 60.0, 1e6]))
    assert (cif[:, :, 0] == 0).all() and (np.diff(cif, axis=2) >= -1e-12).all()
    assert (cif.sum(axis=1) <= 1 + 1e-9).all()


def test_cause_codes_need_the_option():
    frame = pd.DataFrame({"time": [1.0, 2.0, 3.0], "event": [0, 1, 2]})
    with pytest.raises(DataError, match="set task.competing_risks: true"):
        Survival(time="time", event="event").check(frame, "d.csv")
    with pytest.raises(DataError, match=r"holds 1.5 at row 2; expected 0 = censored or a cause code"):
        Survival(time="time", event="event", competing_risks=True).check(frame.assign(event=[0, 1.5, 2]), "d.csv")
