import numpy as np
import pandas as pd
import pytest
import torch

from medflow.errors import DataError
from medflow.tasks import Survival
from medflow.tasks.survival import DeepHitHead, breslow_cumulative_hazard, cox_partial_likelihood
from tests.conftest import make_frame

TASK = Survival(time="time", event="event")


@pytest.mark.parametrize("change,message", [
    ({"time": [5.0, -2.0, 3.0]}, r"time column 'time' is negative \(-2.0\) at row 2"),
    ({"time": [5.0, None, 3.0]}, "time column 'time' is empty at row 2"),
    ({"time": ["5", "soon", "3"]}, r"time column 'time' holds 'soon' at row 2"),
    ({"event": [1, 2, 0]}, "event column 'event' holds 2 at row 2; expected 1/0"),
    ({"event": [0, 0, 0]}, "every record is censored"),
])
def test_bad_survival_labels(change, message):
    frame = pd.DataFrame({"time": [5.0, 4.0, 3.0], "event": [1, 0, 1]})
    for k, v in change.items():
        frame[k] = v
    with pytest.raises(DataError, match=message):
        TASK.check(frame, "d.csv")


def test_boolean_events_and_fitted_grid():
    frame = make_frame(200, kind="survival")
    frame["event"] = frame["event"].astype(bool)
    task = Survival(time="time", event="event", horizons=[50]).fit(frame)
    TASK.check(frame, "d.csv")
    assert 50.0 in task.grid.tolist() and task.state["horizons"] == [50.0]
    assert task.default_metrics == ["c_harrell", "c_uno", "ibs", "auc@50"]
    assert set(task.encode(frame)[:, 1]) == {0.0, 1.0}


def test_cox_loss_matches_torchsurv():
    from torchsurv.loss.cox import neg_partial_log_likelihood

    g = torch.Generator().manual_seed(0)
    log_h = torch.randn(60, generator=g)
    time = torch.randint(1, 20, (60,), generator=g).float()  # many ties
    event = (torch.rand(60, generator=g) < 0.6).float()
    ours = cox_partial_likelihood(log_h, time, event)
    ref = neg_partial_log_likelihood(log_h, event.bool(), time, ties_method="breslow", reduction="sum") / event.sum()
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)


def test_breslow_with_equal_risks_is_nelson_aalen():
    from lifelines import NelsonAalenFitter

    rng = np.random.default_rng(0)
    time = rng.integers(1, 50, 200).astype(float)
    event = (rng.random(200) < 0.7).astype(float)
    times, cumhaz = breslow_cumulative_hazard(np.zeros(200), time, event)
    na = NelsonAalenFitter(nelson_aalen_smoothing=False).fit(time, event)
    ref = na.cumulative_hazard_.loc[times].to_numpy().ravel()
    assert np.allclose(cumhaz, ref)


def test_deephit_likelihood_part_matches_a_direct_computation():
    task = Survival(time="time", event="event").fit(pd.DataFrame({"time": [1.0, 5.0, 9.0], "event": [1, 1, 0]}))
    head = DeepHitHead(task, n_bins=4, alpha=1.0)  # alpha = 1: likelihood only
    out = torch.randn(3, head.output_dim, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([[1.0, 1.0], [5.0, 1.0], [9.0, 0.0]])
    pmf = torch.softmax(out, 1).numpy()
    cuts = np.array(head.state["cuts"])
    idx = np.minimum(np.searchsorted(cuts, target[:, 0].numpy(), side="right"), head.output_dim - 1)
    manual = -np.mean([np.log(pmf[0, idx[0]]), np.log(pmf[1, idx[1]]), np.log(pmf[2, idx[2]:].sum())])
    assert float(head.loss(out, target)) == pytest.approx(manual, rel=1e-5)
