"""Image featurization: one spatial size, one channel count, intensities normalized per image (MONAI transforms).

`ImageFeaturizer.fit` learns from the training images only: the channel count, the number of spatial
dimensions, and the target size (the configured `size`, else the training images' most common shape).
`transform` stacks the images of the given rows into one float32 array `(n, C, *size)`: images of another
size are resized with MONAI's `Resize` (area interpolation when shrinking, trilinear/bilinear when
enlarging), then each image is normalized on its own (`zscore`: MONAI `NormalizeIntensity`, channel-wise;
`minmax`: `ScaleIntensity` to [0, 1]), so scanner gain differences do not reach the model. The decoded,
prepared array is the cache the Trainer batches from: each image is decoded once per run and resized once
per fold, never per epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.errors import DataError

__all__ = ["ImageFeaturizer"]


class ImageFeaturizer:
    """Fitted image preparation; `to_dict` / `from_dict` round-trip it through `featurizer.json`."""

    name = "image-v1"

    def __init__(self, size: list[int] | None = None, intensity: str = "zscore", resize: bool = True) -> None:
        self.size = list(size) if size else None
        self.intensity = intensity
        self.resize = resize
        self.channels: int | None = None
        self.spatial_dims: int | None = None

    @property
    def output_sources(self) -> list[str]:
        return ["image"]

    def fit(self, images: Any, ids: list[str]) -> ImageFeaturizer:
        shapes: dict[tuple[int, ...], int] = {}
        for i in ids:
            s = images.get(i, images.source).shape
            shapes[s] = shapes.get(s, 0) + 1
        if not shapes:
            raise DataError(f"{images.source}: no training images.")
        common = max(shapes, key=shapes.get)
        self.channels, self.spatial_dims = int(common[0]), len(common) - 1
        if self.size is None:
            self.size = [int(v) for v in common[1:]]
        elif len(self.size) != self.spatial_dims:
            raise DataError(f"data.images.size {self.size} has {len(self.size)} dimension(s), but the images are "
                            f"{self.spatial_dims}-D; give {self.spatial_dims} sizes.")
        return self

    def _target_shape(self, images: Any, ids: list[str], source: str) -> tuple[int, ...]:
        assert self.size is not None, "fit the featurizer first"
        if self.resize or not ids:
            return tuple(self.size)
        shapes = {images.get(i, source).shape[1:] for i in ids}
        if len(shapes) > 1:
            raise DataError(f"{source}: images of {len(shapes)} sizes {sorted(shapes)[:3]} with data.images.resize "
                            "false; stack only images of one size (e.g. training patches), or allow resizing.")
        return next(iter(shapes))

    def transform(self, images: Any, ids: list[str], source: str = "input") -> np.ndarray:
        target = self._target_shape(images, ids, source)
        out = np.empty((len(ids), self.channels, *target), dtype=np.float32)
        resize = None
        for j, i in enumerate(ids):
            a = images.get(i, source)
            if a.ndim - 1 != self.spatial_dims or a.shape[0] != self.channels:
                raise DataError(f"{source}: image '{i}' has shape {a.shape} (channels first); the model was "
                                f"trained on {self.channels}-channel {self.spatial_dims}-D images.")
            if a.shape[1:] != target:
                if resize is None:
                    from monai.transforms import Resize

                    resize = Resize(target, mode="area")
                    grow = Resize(target, mode="bilinear" if self.spatial_dims == 2 else "trilinear")
                shrink = np.prod(a.shape[1:]) >= np.prod(target)
                a = np.asarray((resize if shrink else grow)(a), dtype=np.float32)
            out[j] = a
        return _normalize(out, self.intensity)

    def transform_masks(self, images: Any, ids: list[str], source: str = "input") -> np.ndarray:
        """The rows' masks (label maps), prepared like their images: resized (nearest) to the same size."""
        target = self._target_shape(images, ids, source)
        out = np.empty((len(ids), *target), dtype=np.int64)
        for j, i in enumerate(ids):
            if i not in images.masks:
                raise DataError(f"{source}: image '{i}' has no mask; a segmentation task needs one per image "
                                "(data.images.mask_column).")
            from medflow.data.images import resize_mask

            out[j] = resize_mask(images.masks[i], target)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.name, "size": self.size, "intensity": self.intensity, "channels": self.channels,
                "spatial_dims": self.spatial_dims, "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageFeaturizer:
        f = cls(d["size"], d["intensity"], d.get("resize", True))
        f.channels, f.spatial_dims = d["channels"], d["spatial_dims"]
        return f


def _normalize(x: np.ndarray, how: str) -> np.ndarray:
    """Per image and channel, vectorized over the batch (what MONAI's NormalizeIntensity / ScaleIntensity do
    channel-wise on one image; `tests/features/test_image.py` checks the match)."""
    if how == "none" or not len(x):
        return x
    axes = tuple(range(2, x.ndim))
    if how == "zscore":
        mean = x.mean(axis=axes, keepdims=True)
        std = x.std(axis=axes, keepdims=True)
        return (x - mean) / np.where(std > 0, std, 1.0)
    lo, hi = x.min(axis=axes, keepdims=True), x.max(axis=axes, keepdims=True)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)
