"""(j) DP-SGD: medflow's Trainer with `train.privacy` beside the Opacus anchor (`../shared/anchors/privacy`), in one
run, on the anchor's data and folds: scikit-learn's breast cancer (569 real patients), 5 stratified folds
(random_state 0), standardized on the training fold, MLP 30-64-1, batch 64, 30 epochs, clip 1.0, delta 1e-5.

The anchor: Opacus's `make_private_with_epsilon` on a DataLoader with SGD (lr 0.5). medflow: the same network
trained by `Trainer` with `TrainConfig(privacy=...)` (AdamW, Poisson batches, the same accountant). Reports test
AUROC mean (sd) per setting and seconds per epoch, with the private/non-private time ratio.

    python benchmarks/bench_privacy.py
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

EPOCHS, BATCH, SETTINGS = 30, 64, (None, 8.0, 3.0, 1.0)


def _net(d: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(d, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))


def anchor(xtr, ytr, xte, yte, eps, seed) -> tuple[float, float]:
    """The anchor's own code path (Opacus PrivacyEngine on a DataLoader, SGD lr 0.5)."""
    from opacus import PrivacyEngine

    torch.manual_seed(seed)
    net = _net(xtr.shape[1])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    ds = torch.utils.data.TensorDataset(torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.float32))
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True)
    if eps is not None:
        net, opt, dl = PrivacyEngine().make_private_with_epsilon(module=net, optimizer=opt, data_loader=dl,
                                                                  epochs=EPOCHS, target_epsilon=eps, target_delta=1e-5,
                                                                  max_grad_norm=1.0)
    t0 = time.perf_counter()
    for _ in range(EPOCHS):
        for xb, yb in dl:
            if len(xb) == 0:
                continue
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(net(xb).squeeze(1), yb).backward()
            opt.step()
    sec = (time.perf_counter() - t0) / EPOCHS
    with torch.no_grad():
        p = net(torch.tensor(xte, dtype=torch.float32)).squeeze(1).numpy()
    return roc_auc_score(yte, p), sec


def medflow(xtr, ytr, xte, yte, eps, seed, lr: float = 0.01) -> tuple[float, float, float | None]:
    """medflow's Trainer: `TrainConfig(privacy=PrivacyConfig(epsilon=eps))`, no early stopping."""
    from medflow.train.privacy import PrivacyConfig
    from medflow.train.trainer import TrainConfig, Trainer

    torch.manual_seed(seed)
    net = _net(xtr.shape[1])
    cfg = TrainConfig(max_epochs=EPOCHS, batch_size=BATCH, lr=lr, schedule="constant", patience=EPOCHS,
                      progress=False, privacy=None if eps is None else PrivacyConfig(epsilon=eps))
    clock = _EpochClock()
    trainer = Trainer(cfg, seed=seed, callbacks=[clock])

    def loss(out, y):
        return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)

    state = trainer.fit(net, loss, torch.tensor(xtr, dtype=torch.float32), torch.tensor(ytr, dtype=torch.float32))
    sec = (clock.times[-1] - clock.start) / EPOCHS  # the epochs alone, as the anchor times them (setup excluded)
    with torch.no_grad():
        p = net(torch.tensor(xte, dtype=torch.float32)).squeeze(1).numpy()
    spent = state.privacy["epsilon_spent"] if state.privacy else None
    return roc_auc_score(yte, p), sec, spent


class _EpochClock:
    """Times the epochs from after the setup (the anchor starts its clock after make_private_with_epsilon)."""

    def __init__(self) -> None:
        self.start, self.times = 0.0, []

    def on_fit_start(self, trainer) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, trainer) -> None:
        self.times.append(time.perf_counter())

    def on_fit_end(self, trainer) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, sd: dict) -> None:
        pass


def run() -> list[dict]:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    data = load_breast_cancer(as_frame=True)
    x, y = data.data, data.target.to_numpy()
    rows = []
    for fold, (tr, te) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y)):
        sc = StandardScaler().fit(x.iloc[tr])
        xtr, xte = sc.transform(x.iloc[tr]), sc.transform(x.iloc[te])
        for eps in SETTINGS:
            a_auc, a_sec = anchor(xtr, y[tr], xte, y[te], eps, fold)
            m_auc, m_sec, spent = medflow(xtr, y[tr], xte, y[te], eps, fold)
            rows.append({"fold": fold, "epsilon": eps, "anchor_auroc": a_auc, "anchor_s": a_sec,
                         "medflow_auroc": m_auc, "medflow_s": m_sec, "epsilon_spent": spent})
    return rows


def markdown(rows: list[dict]) -> list[str]:
    lines = ["| setting | anchor (Opacus, SGD) AUROC | s/epoch | medflow Trainer AUROC | s/epoch | medflow "
             "private / non-private time | epsilon spent (max) |", "|---|---|---|---|---|---|---|"]
    base = {k: np.mean([r[k] for r in rows if r["epsilon"] is None]) for k in ("anchor_s", "medflow_s")}
    for eps in SETTINGS:
        rs = [r for r in rows if r["epsilon"] == eps]
        a, m = np.array([r["anchor_auroc"] for r in rs]), np.array([r["medflow_auroc"] for r in rs])
        ms = np.mean([r["medflow_s"] for r in rs])
        spent = max((r["epsilon_spent"] or 0) for r in rs)
        lines.append(f"| {'non-private' if eps is None else f'epsilon {eps:g}'} | {a.mean():.4f} ({a.std(ddof=1):.4f}) "
                     f"| {np.mean([r['anchor_s'] for r in rs]):.4f} | {m.mean():.4f} ({m.std(ddof=1):.4f}) | "
                     f"{ms:.4f} | {ms / base['medflow_s']:.2f}x | {'' if eps is None else f'{spent:.3f}'} |")
    return lines


if __name__ == "__main__":
    print("\n".join(markdown(run())))
