"""Trainer overhead: seconds per epoch of medflow's Trainer against a hand-written PyTorch loop.

Both train the same MLP with the same AdamW, gradient clipping, batch size, shuffling and a
validation pass each epoch, on the same tensors, in this process, alternating repeats so that
machine noise hits both alike. Reported: the median seconds per epoch and their ratio.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
import torch
from torch import nn

from medflow.models.tabular import MLP
from medflow.train import Checkpoint, EarlyStopping, TrainConfig, Trainer


def _data(name: str) -> tuple[torch.Tensor, ...]:
    if name == "breast_cancer":
        from sklearn.datasets import load_breast_cancer

        x, y = load_breast_cancer(return_X_y=True)
        x = (x - x.mean(0)) / x.std(0)
        y = (y == 0).astype(np.float32)
    else:  # a larger simulated table (known logistic model), to measure throughput rather than overhead
        rng = np.random.default_rng(0)
        x = rng.normal(size=(50_000, 40))
        y = (rng.random(50_000) < 1 / (1 + np.exp(-x[:, :5].sum(1)))).astype(np.float32)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y)
    n = int(len(x) * 0.8)
    return x[:n], y[:n], x[n:], y[n:]


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def plain_loop(xtr, ytr, xva, yva, epochs: int, bs: int, seed: int) -> float:
    """The reference: the loop a researcher would write by hand."""
    torch.manual_seed(seed)
    model = MLP(xtr.shape[1], 1, hidden=128, depth=2, dropout=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), bs):
            idx = perm[i:i + bs]
            opt.zero_grad(set_to_none=True)
            loss = _loss(model(xtr[idx]), ytr[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        model.eval()
        with torch.no_grad():
            float(_loss(model(xva), yva))
    return (time.perf_counter() - start) / epochs


def medflow_trainer(xtr, ytr, xva, yva, epochs: int, bs: int, seed: int, checkpoint: bool) -> float:
    torch.manual_seed(seed)
    model = MLP(xtr.shape[1], 1, hidden=128, depth=2, dropout=0.1)
    cfg = TrainConfig(max_epochs=epochs, batch_size=bs, patience=10_000, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks = [EarlyStopping(patience=10_000)] + ([Checkpoint(tmp)] if checkpoint else [])
        start = time.perf_counter()
        Trainer(cfg, seed=seed, callbacks=callbacks).fit(model, _loss, xtr, ytr, xva, yva)
        return (time.perf_counter() - start) / epochs


def run(repeats: int = 5) -> list[dict]:
    rows = []
    for name, epochs, bs in (("breast_cancer", 60, 64), ("simulated_50k", 3, 256)):
        data = _data(name)
        times: dict[str, list[float]] = {"plain": [], "trainer": [], "trainer+checkpoint": []}
        for r in range(repeats):
            times["plain"].append(plain_loop(*data, epochs, bs, r))
            times["trainer"].append(medflow_trainer(*data, epochs, bs, r, checkpoint=False))
            times["trainer+checkpoint"].append(medflow_trainer(*data, epochs, bs, r, checkpoint=True))
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"data": name, "rows": len(data[0]), "epochs": epochs, "batch_size": bs,
                     "plain_s_per_epoch": med["plain"], "trainer_s_per_epoch": med["trainer"],
                     "trainer_ckpt_s_per_epoch": med["trainer+checkpoint"],
                     "ratio": med["trainer"] / med["plain"],
                     "ratio_with_checkpoint": med["trainer+checkpoint"] / med["plain"]})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
