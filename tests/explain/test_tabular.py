import numpy as np

from medflow.evaluate.metrics import auroc
from medflow.explain.tabular import attributions, permutation_importance
from medflow.models import build_estimator
from medflow.tasks import Binary
from medflow.train.trainer import TrainConfig


def _fit(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4)).astype(np.float32)
    y = (x[:, 0] * 2 + rng.normal(scale=0.3, size=400) > 0).astype(int)
    import pandas as pd
    task = Binary(label="y").fit(pd.DataFrame({"y": y}))
    cfg = TrainConfig(max_epochs=40, patience=10, progress=False)
    est = build_estimator(name, {}, task).fit(x[:300], y[:300], x[300:350], y[300:350], cfg, seed=0)
    return est, x[350:], y[350:]


def test_integrated_gradients_complete_and_find_the_signal():
    est, x, _ = _fit("mlp")
    names, attr = attributions(est, x, ["a", "b", "b", "c"], n_steps=64)
    assert names == ["a", "b", "c"] and attr.shape == (len(x), 3)
    logits = est.outputs(x)[:, 0] - est.outputs(np.zeros_like(x))[:, 0]
    assert np.allclose(attr.sum(axis=1), logits, atol=0.05)  # IG completeness
    assert np.abs(attr).mean(axis=0).argmax() == 0


def test_feature_ablation_for_baselines():
    est, x, _ = _fit("logistic_regression")
    names, attr = attributions(est, x, ["a", "b", "c", "d"])
    assert np.abs(attr).mean(axis=0).argmax() == 0


def test_permutation_importance_ranks_the_informative_feature_first():
    est, x, y = _fit("gradient_boosting")
    imp = permutation_importance(est.predict, x, y, ["a", "b", "c", "d"], auroc, True, n_repeats=3)
    assert list(imp)[0] == "a" and imp["a"]["mean"] > 0.2
