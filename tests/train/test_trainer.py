import pytest
import torch

from medflow.models.tabular import MLP
from medflow.train import Checkpoint, EarlyStopping, TrainConfig, Trainer
from medflow.train.callbacks import Callback


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    return x[:200], y[:200], x[200:], y[200:]


def _loss(out, y):
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


class Crash(Callback):
    """Simulates the process being killed after `epoch` (the checkpoint of that epoch is written)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, trainer):
        if trainer.state.epoch == self.epoch:
            raise KeyboardInterrupt


def _train(cfg, callbacks, seed=0):
    torch.manual_seed(seed)
    module = MLP(6, 1, hidden=16, depth=2, dropout=0.2)
    trainer = Trainer(cfg, seed=seed, callbacks=callbacks)
    trainer.fit(module, _loss, *_data())
    return module, trainer


def test_resume_gives_the_same_weights(tmp_path):
    cfg = TrainConfig(max_epochs=12, patience=100, batch_size=32, progress=False)
    reference, _ = _train(cfg, [EarlyStopping(patience=100), Checkpoint(tmp_path / "ref")])
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, [EarlyStopping(patience=100), Checkpoint(tmp_path / "run"), Crash(4)])
    torch.manual_seed(123)  # a fresh process would have different global RNG state; resume must restore it
    resumed, trainer = _train(cfg, [EarlyStopping(patience=100), Checkpoint(tmp_path / "run")])
    assert trainer.callbacks[1].resumed_from == 4
    for (k, a), (_, b) in zip(reference.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_same_seed_bit_identical_and_other_seed_differs():
    cfg = TrainConfig(max_epochs=5, progress=False)
    a, _ = _train(cfg, [], seed=0)
    b, _ = _train(cfg, [], seed=0)
    c, _ = _train(cfg, [], seed=1)
    wa, wb, wc = (m.net[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_early_stopping_stops_and_restores_best():
    cfg = TrainConfig(max_epochs=300, lr=0.05, patience=3, progress=False)
    stopper = EarlyStopping(patience=3)
    module, trainer = _train(cfg, [stopper])
    assert len(trainer.state.history) < 300
    best = min(h["val_loss"] for h in trainer.state.history)
    assert stopper.best == pytest.approx(best)
    x_valid, y_valid = _data()[2:]
    with torch.no_grad():
        module.eval()
        assert float(_loss(module(x_valid), y_valid)) == pytest.approx(best, rel=1e-5)


def test_cosine_schedule_decays_learning_rate():
    cfg = TrainConfig(max_epochs=10, lr=0.01, schedule="cosine", progress=False)
    _, trainer = _train(cfg, [])
    lrs = [h["lr"] for h in trainer.state.history]
    assert lrs[0] > lrs[5] > lrs[-1]


def test_length_bucketed_batches_cover_every_sample_once():
    """Inputs with sizes() are batched by similar length; each epoch still sees every sample once."""
    import numpy as np

    from medflow.train.trainer import TrainConfig, Trainer

    class Windows:
        def __init__(self, n):
            self.len = np.random.default_rng(0).integers(1, 300, n)

        def __len__(self):
            return len(self.len)

        def sizes(self):
            return self.len

    x = Windows(1000)
    trainer = Trainer(TrainConfig(batch_size=16), seed=0)
    batches = trainer._batches(x, len(x), 16)
    flat = np.concatenate([b.numpy() for b in batches])
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([np.ptp(x.len[b.numpy()]) for b in batches])
    assert spread < 0.25 * np.ptp(x.len)  # batches pad to similar lengths
    again = Trainer(TrainConfig(batch_size=16), seed=0)._batches(x, len(x), 16)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))  # seeded
