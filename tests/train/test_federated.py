"""Federated training with Flower on the Trainer: one site equals centralized training, FedAvg is the record-weighted
mean of the sites' updates, FedProx pulls sites toward the global model, and per-site DP-SGD keeps its ledger."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from medflow.errors import ConfigError
from medflow.train.federated import FederatedConfig, Site, federated_fit
from medflow.train.privacy import PrivacyConfig
from medflow.train.trainer import TrainConfig, Trainer


def _loss(out, y):
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(1), y)


def _module():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))


def _data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).float()


CFG = TrainConfig(max_epochs=6, batch_size=32, lr=1e-2, progress=False)


def test_one_site_is_centralized_training():
    x, y = _data()
    central = _module()
    Trainer(CFG, seed=0).fit(central, _loss, x[:200], y[:200])  # 6 epochs, no early stopping
    res = federated_fit(_module(), _loss, [Site("all", x[:200], y[:200], x[200:], y[200:])], CFG,
                        FederatedConfig(rounds=3, local_epochs=2), seed=0)
    for a, b in zip(central.state_dict().values(), res.state_dict.values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert [h["round"] for h in res.history] == [1, 2, 3] and 1 <= res.best_round <= 3


def test_fedavg_is_the_record_weighted_mean_of_site_updates():
    x, y = _data(400)
    sites = [Site("a", x[:100], y[:100], x[300:350], y[300:350]), Site("b", x[100:300], y[100:300], x[350:], y[350:])]
    res = federated_fit(_module(), _loss, sites, CFG, FederatedConfig(rounds=1, local_epochs=2), seed=3)
    # each site by hand: the same seeds (seed + 1000 * site index) and schedule (rounds * local epochs)
    updates = []
    for i, s in enumerate(sites):
        m = copy.deepcopy(_module())
        t = Trainer(CFG.model_copy(update={"max_epochs": 2}), seed=3 + 1000 * i)
        t.setup(m, _loss, len(s.x_train))
        for _ in range(2):
            t.train_epoch(s.x_train, s.y_train)
        updates.append(m.state_dict())
    for k, v in res.state_dict.items():
        assert torch.allclose(v, (100 * updates[0][k] + 200 * updates[1][k]) / 300, atol=1e-6)


def test_fedprox_keeps_sites_nearer_the_global_model():
    x, y = _data(400, seed=5)
    y_b = 1 - y  # two sites whose labels disagree: without the proximal term they pull far apart
    sites = [Site("a", x[:200], y[:200], x[:50], y[:50]), Site("b", x[200:], y_b[200:], x[200:250], y_b[200:250])]

    def drift(mu):
        res = federated_fit(_module(), _loss, sites, CFG, FederatedConfig(rounds=2, local_epochs=3,
                                                                          strategy="fedprox", proximal_mu=mu), 0)
        return max(h["site_train_loss"]["a"] for h in res.history), res

    loss_free, _ = drift(0.0)
    loss_prox, _ = drift(50.0)
    # the strong pull keeps site a from fitting its own labels as well as it could alone
    assert loss_prox > loss_free + 0.01


def test_dp_per_site_keeps_each_sites_ledger():
    x, y = _data(400)
    cfg = CFG.model_copy(update={"privacy": PrivacyConfig(epsilon=3.0), "lr": 0.05})
    sites = [Site("a", x[:150], y[:150], x[300:350], y[300:350]), Site("b", x[150:300], y[150:300], x[350:], y[350:])]
    res = federated_fit(_module(), _loss, sites, cfg, FederatedConfig(rounds=3, local_epochs=2), seed=0)
    assert set(res.privacy) == {"a", "b"}
    for p in res.privacy.values():  # 3 rounds x 2 local epochs: the ledger spans all rounds, within the target
        assert 2.0 < p["epsilon_spent"] <= 3.0 + 1e-6
        assert p["steps"] == 6 * round(1 / p["sample_rate"])
    with pytest.raises(ConfigError, match="FedProx"):
        federated_fit(_module(), _loss, sites, cfg, FederatedConfig(rounds=1, strategy="fedprox"), seed=0)
