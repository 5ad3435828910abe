"""Data augmentation for images: MONAI random transforms applied on the fly to training batches only.

    train:
      augment: default                       # the task kind's MONAI-style defaults (below)
      augment: [{name: flip, prob: 0.5, spatial_axis: 0}, {name: rotate90, prob: 0.5},
                {name: affine, prob: 0.3, rotate_range: 0.26, scale_range: 0.1},
                {name: gaussian_noise, prob: 0.2, std: 0.05}, {name: RandAdjustContrastd, prob: 0.2}]

Names are medflow's short ones (`SHORT`) or any MONAI dictionary transform (`RandFlipd`, `Rand3DElasticd`, ...),
with that transform's own parameters. Spatial transforms move a segmentation mask with its image, interpolated by
nearest neighbour (`mode` is set per key); intensity transforms touch the image only. Validation and test images
are never augmented (the Trainer augments only the batches it trains on). The random state is re-seeded from
(seed, epoch) at each epoch, so a run is deterministic and a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from medflow.errors import ConfigError

__all__ = ["AugmentSpec", "Augmenter", "defaults", "SHORT"]

# short name -> (MONAI dictionary transform, spatial: moves the mask too, default parameters)
SHORT: dict[str, tuple[str, bool, dict]] = {
    "flip": ("RandFlipd", True, {}),
    "rotate90": ("RandRotate90d", True, {}),
    "affine": ("RandAffined", True, {"rotate_range": 0.26, "scale_range": 0.1, "padding_mode": "zeros"}),
    "elastic": ("Rand{d}DElasticd", True, {"sigma_range": (5, 7), "magnitude_range": (50, 150)}),
    "gaussian_noise": ("RandGaussianNoised", False, {"std": 0.05}),
    "intensity_shift": ("RandShiftIntensityd", False, {"offsets": 0.1}),
    "intensity_scale": ("RandScaleIntensityd", False, {"factors": 0.1}),
    "contrast": ("RandAdjustContrastd", False, {"gamma": (0.7, 1.5)}),
}
INTERPOLATING = {"RandAffined", "Rand2DElasticd", "Rand3DElasticd", "RandRotated", "RandZoomd"}


class AugmentSpec(BaseModel):
    """One random transform: a short name or a MONAI dictionary transform, its probability and parameters."""

    model_config = ConfigDict(extra="allow")
    name: str
    prob: float = Field(0.5, ge=0, le=1)


def defaults(segmentation: bool, dims: int) -> list[AugmentSpec]:
    """What a MONAI / nnU-Net user expects: flips and 90-degree turns in-plane, a mild affine, intensity jitter."""
    flips = [AugmentSpec(name="flip", prob=0.5, spatial_axis=a) for a in range(dims)] if segmentation else [
        AugmentSpec(name="flip", prob=0.5, spatial_axis=dims - 1)]
    return [*flips, AugmentSpec(name="rotate90", prob=0.3 if segmentation else 0.25,
                                spatial_axes=(dims - 2, dims - 1)),
            AugmentSpec(name="affine", prob=0.2, rotate_range=0.26 if dims == 2 else (0.26, 0.0, 0.0),
                        scale_range=0.1),
            AugmentSpec(name="intensity_scale", prob=0.3, factors=0.1),
            AugmentSpec(name="intensity_shift", prob=0.3, offsets=0.1),
            AugmentSpec(name="gaussian_noise", prob=0.15, std=0.05)]


def _build(spec: AugmentSpec, dims: int, segmentation: bool) -> Any:
    import monai.transforms as mt

    params = dict(spec.model_extra or {})
    if spec.name in SHORT:
        cls_name, spatial, base = SHORT[spec.name]
        cls_name = cls_name.format(d=dims)
        params = {**base, **params}
    else:
        cls_name = spec.name
        spatial = not cls_name.startswith(("RandGaussian", "RandShiftIntensity", "RandScaleIntensity",
                                           "RandAdjustContrast", "RandBiasField", "RandGibbs", "RandHistogram",
                                           "RandStdShiftIntensity", "RandKSpace", "RandRicianNoise",
                                           "RandCoarse"))
    cls = getattr(mt, cls_name, None)
    if cls is None or not cls_name.startswith("Rand") or not cls_name.endswith("d"):
        raise ConfigError(f"train.augment: unknown transform '{spec.name}'; use one of {', '.join(SHORT)} or a MONAI "
                          "random dictionary transform such as RandFlipd, RandAffined, Rand3DElasticd.")
    keys = ["image", "label"] if segmentation and spatial else ["image"]
    if cls_name in INTERPOLATING and "mode" not in params:
        params["mode"] = ("bilinear", "nearest") if len(keys) == 2 else "bilinear"
    try:
        return cls(keys=keys, prob=spec.prob, **params)
    except TypeError as exc:
        raise ConfigError(f"train.augment: {spec.name} ({cls_name}): {exc}") from exc


class Augmenter:
    """Applies the transforms to each record of a training batch: (images, targets) -> (images, targets)."""

    def __init__(self, specs: list[AugmentSpec] | str, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() not in (4, 5) or not x.is_floating_point():
            kind = type(x).__name__ if not isinstance(x, torch.Tensor) else f"a tensor of shape {list(x.shape)}"
            raise ConfigError(f"train.augment transforms images (batch, channels, 2-D or 3-D); this model's inputs "
                              f"are {kind}. Remove train.augment for this study.")
        from monai.transforms import Compose

        self.dims = x.dim() - 2
        self.segmentation = y.dim() == x.dim() - 1 and tuple(y.shape[1:]) == tuple(x.shape[2:])
        if isinstance(specs, str):
            if specs != "default":
                raise ConfigError(f"train.augment: '{specs}'; give 'default' or a list of transforms.")
            specs = defaults(self.segmentation, self.dims)
        self.transforms = [_build(s, self.dims, self.segmentation) for s in specs]
        self.compose = Compose(self.transforms)
        self.seed = seed

    def start_epoch(self, epoch: int) -> None:
        self.compose.set_random_state(seed=int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0]))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i in range(len(x)):
            item = {"image": x[i]}
            if self.segmentation:
                item["label"] = y[i][None].float()
            out = self.compose(item)
            xs.append(torch.as_tensor(np.asarray(out["image"]), dtype=x.dtype))
            if self.segmentation:
                ys.append(torch.as_tensor(np.asarray(out["label"])[0]).round().to(y.dtype))
        return torch.stack(xs), (torch.stack(ys) if self.segmentation else y)
