"""train.augment: MONAI random transforms on training batches only, masks moved with their images by nearest
neighbour, deterministic per (seed, epoch) so a resumed run draws what the uninterrupted one drew."""

import numpy as np
import pytest
import torch
from torch import nn

from medflow.errors import ConfigError
from medflow.train.augment import Augmenter, AugmentSpec
from medflow.train.trainer import TrainConfig, Trainer


def _images(n=6, size=16, dims=2, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(n, 1, *([size] * dims))), dtype=torch.float32)
    y = torch.zeros((n, *([size] * dims)), dtype=torch.long)
    y[(slice(None), slice(2, 7), slice(3, 9), *([slice(1, 5)] if dims == 3 else []))] = 1
    y[(slice(None), slice(9, 13), slice(10, 14), *([slice(8, 12)] if dims == 3 else []))] = 2
    return x, y


def test_masks_move_with_their_images_and_keep_their_labels():
    x, y = _images()
    x = y[:, None].float() * 10  # an image that is its mask: any spatial move shows in both the same way
    aug = Augmenter([AugmentSpec(name="flip", prob=1.0, spatial_axis=0), AugmentSpec(name="rotate90", prob=1.0)],
                    x, y, seed=3)
    aug.start_epoch(0)
    ax, ay = aug(x, y)
    assert not torch.equal(ay, y) and torch.equal(ax[:, 0].round().long(), ay * 10)
    affine = Augmenter([AugmentSpec(name="affine", prob=1.0, rotate_range=0.5, scale_range=0.2),
                        AugmentSpec(name="gaussian_noise", prob=1.0, std=0.5)], x, y, seed=3)
    affine.start_epoch(0)
    bx, by = affine(x, y)
    assert set(torch.unique(by).tolist()) <= {0, 1, 2} and by.dtype == torch.long  # nearest: labels stay labels
    assert not torch.equal(by, y) and not torch.allclose(bx, x)


def test_deterministic_per_seed_and_epoch_and_3d_defaults():
    x, y = _images(dims=3, size=12)
    draws = []
    for _ in range(2):
        aug = Augmenter("default", x, y, seed=11)
        aug.start_epoch(4)
        draws.append(aug(x, y))
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    aug.start_epoch(5)
    assert not torch.equal(aug(x, y)[0], draws[0][0])
    labels = torch.zeros(len(x), dtype=torch.long)  # classification: targets pass through
    cls = Augmenter("default", x, labels, seed=0)
    cls.start_epoch(0)
    assert torch.equal(cls(x, labels)[1], labels) and not cls.segmentation


class _Spy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16 * 16, 1)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.lin(x.flatten(1)).squeeze(1)


def test_only_training_batches_are_augmented():
    x, _ = _images(n=8)
    y = torch.arange(8, dtype=torch.float32) % 2
    spy = _Spy()
    cfg = TrainConfig(max_epochs=1, batch_size=8, progress=False,
                      augment=[AugmentSpec(name="flip", prob=1.0, spatial_axis=1)])
    trainer = Trainer(cfg, seed=0)
    trainer.fit(spy, nn.functional.binary_cross_entropy_with_logits, x, y, x, y)
    seen = torch.cat(spy.seen)
    flipped = torch.flip(x, dims=[3])
    assert all(any(torch.equal(s, f) for f in flipped) for s in seen)  # every training image was flipped
    out = trainer.predict_outputs(x)  # validation and prediction read the images as they are
    assert torch.allclose(out, spy.lin(x.flatten(1)).squeeze(1).detach())


def test_bad_augment_settings_are_named():
    x, y = _images()
    with pytest.raises(ConfigError, match="unknown transform 'spin'"):
        Augmenter([AugmentSpec(name="spin")], x, y, seed=0)
    with pytest.raises(ConfigError, match="transforms images .* a tensor of shape \\[6, 3\\]"):
        Augmenter("default", torch.zeros(6, 3), torch.zeros(6), seed=0)
    with pytest.raises(ConfigError, match="RandFlipd\\).*unexpected keyword"):
        Augmenter([AugmentSpec(name="flip", angle=3)], x, y, seed=0)
    cfg = TrainConfig.model_validate({"augment": [{"name": "RandGaussianSmoothd", "prob": 0.2, "sigma_x": [0.5, 1]}]})
    Augmenter(cfg.augment, x, y, seed=0)  # any MONAI random dictionary transform, with its own parameters
