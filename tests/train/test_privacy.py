"""DP-SGD on the Trainer (Opacus): the accountant's epsilon stays within the target, is recorded per epoch and
in the saved model, the private model still learns the signal, and layers Opacus cannot handle are refused."""

from __future__ import annotations

import pytest

from medflow.config import parse_config
from medflow.errors import ConfigError
from medflow.study import run_study
from tests.conftest import make_frame


def _study(tmp_path, models, privacy):
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / "d.csv"
    make_frame(n=400, seed=4).to_csv(csv, index=False)
    return parse_config({
        "name": "dp", "output_dir": str(tmp_path / "runs"), "data": {"path": str(csv), "patient_id": "pid"},
        "task": {"kind": "binary", "label": "y"}, "models": models,
        "split": {"kind": "holdout", "test": 0.25, "valid": 0.2}, "evaluate": {"n_bootstrap": 50},
        "train": {"max_epochs": 20, "patience": 20, "batch_size": 32, "lr": 0.01, "progress": False,
                  "privacy": privacy}}, "dp")


def test_private_mlp_spends_at_most_its_epsilon_and_learns(tmp_path):
    run = run_study(_study(tmp_path, ["mlp"], {"epsilon": 3.0, "delta": 1e-5, "max_grad_norm": 1.0}))
    est = run.estimator("mlp")
    p = est.privacy
    assert p["epsilon_target"] == 3.0 and 2.5 < p["epsilon_spent"] <= 3.0 + 1e-6
    assert p["noise_multiplier"] > 0.5 and p["steps"] == 20 * round(1 / p["sample_rate"])
    eps = [h["epsilon"] for h in est.history]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(p["epsilon_spent"])  # spent grows epoch by epoch
    assert run.metrics.value("mlp", "auroc") > 0.8  # the planted signal (x1, category a) survives the noise
    assert not any(hasattr(prm, "grad_sample") and prm.grad_sample is not None
                   for prm in est.module.parameters())  # Opacus detached: a plain module is saved and served


def test_smaller_epsilon_means_more_noise(tmp_path):
    a = run_study(_study(tmp_path / "a", ["mlp"], {"epsilon": 8.0})).estimator("mlp").privacy
    b = run_study(_study(tmp_path / "b", ["mlp"], {"epsilon": 1.0})).estimator("mlp").privacy
    assert b["noise_multiplier"] > 2 * a["noise_multiplier"] and b["epsilon_spent"] <= 1.0 + 1e-6


def test_batchnorm_models_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="cannot be trained with DP-SGD.*BatchNorm"):
        run_study(_study(tmp_path, ["resnet_mlp"], {"epsilon": 3.0}))
    with pytest.raises(ConfigError, match="epsilon"):
        _study(tmp_path, ["mlp"], {"epsilon": -1})


def test_private_and_non_private_twins_on_the_same_folds(tmp_path):
    """One model twice (a label tells them apart): metrics, privacy ledger and the report side by side."""
    cfg = _study(tmp_path, ["mlp", {"name": "mlp", "label": "mlp_dp", "privacy": {"epsilon": 3.0}},
                            "logistic_regression"], None)
    run = run_study(cfg)
    assert set(run.models) == {"mlp", "mlp_dp", "logistic_regression"}
    assert run.estimator("mlp").privacy is None and run.estimator("mlp_dp").privacy["epsilon_spent"] <= 3.0 + 1e-6
    assert set(run.metrics.data["privacy"]) == {"mlp_dp"}
    assert run.manifest["models"] == {"mlp": "deep", "mlp_dp": "deep", "logistic_regression": "baseline"}
    html = run.report().read_text()
    assert "Differential privacy" in html and "mlp_dp (DP-SGD)" in html
    pred = run.predict(make_frame(n=5, seed=8)[["x1", "x2", "cat", "sex"]], model="mlp_dp")
    assert pred["model"].eq("mlp_dp").all() and pred["probability"].between(0, 1).all()
    with pytest.raises(ConfigError, match="give repeats a label"):
        run_study(_study(tmp_path / "dup", ["mlp", {"name": "mlp", "privacy": {"epsilon": 3.0}}], None))
    with pytest.raises(ConfigError, match="not a deep model"):
        run_study(_study(tmp_path / "lr", [{"name": "logistic_regression", "privacy": {"epsilon": 3.0}}], None))


def test_bad_privacy_budgets_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"delta 0\.01 is not below 1/n"):
        run_study(_study(tmp_path / "d", ["mlp"], {"epsilon": 3.0, "delta": 0.01}))
    with pytest.raises(ConfigError, match="epsilon"):
        _study(tmp_path / "e", ["mlp"], {"epsilon": 0})


def test_recurrent_layers_train_privately_as_opacus_layers_and_come_back_plain():
    import torch
    from torch import nn

    from medflow.train.privacy import PrivacyConfig
    from medflow.train.trainer import TrainConfig, Trainer

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 8, batch_first=True)
            self.head = nn.Linear(8, 1)

        def forward(self, x):
            return self.head(self.rnn(x)[1][-1])

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).float()
    torch.manual_seed(0)
    net = Net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    cfg = TrainConfig(max_epochs=3, batch_size=50, lr=0.01, progress=False, privacy=PrivacyConfig(epsilon=3.0))
    state = Trainer(cfg, seed=0).fit(net, lambda o, t: nn.functional.binary_cross_entropy_with_logits(o[:, 0], t),
                                     x, y)
    assert 2.0 < state.privacy["epsilon_spent"] <= 3.0 + 1e-6
    assert type(net.rnn) is nn.GRU  # the plain layer is back, with the privately trained weights
    assert set(net.state_dict()) == set(before)
    assert not torch.equal(net.state_dict()["rnn.weight_hh_l0"], before["rnn.weight_hh_l0"])
