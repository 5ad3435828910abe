"""Image featurization: one spacing and spatial size, one channel count, intensities normalized (MONAI transforms).

With `data.images.spacing` ([mm, ...] or `auto`: the training images' median spacing, as nnU-Net does) each
image is first resampled to that voxel size (from its affine); with `intensity: ct` intensities are clipped to
the training voxels' 0.5-99.5 percentiles (inside the masks when there are masks) and z-scored with their mean
and sd (nnU-Net's CT scheme). Both are fitted on the training images only and saved with the run.

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

    def __init__(self, size: list[int] | None = None, intensity: str = "zscore", resize: bool = True,
                 spacing: list[float] | str | None = None) -> None:
        self.size = list(size) if size else None
        self.intensity = intensity
        self.resize = resize
        self.spacing = spacing  # None: as read; [mm, ...] or "auto" (the training images' median spacing)
        self.channels: int | None = None
        self.spatial_dims: int | None = None
        self.ct: dict[str, float] | None = None  # intensity "ct": the training voxels' clip bounds, mean and sd

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
        if self.spacing is not None:
            found = [_spacing(images.affines[i], self.spatial_dims) for i in ids if i in images.affines]
            if len(found) < len(ids):
                raise DataError(f"{images.source}: data.images.spacing resamples to millimetres, but "
                                f"{len(ids) - len(found)} training image(s) have no affine (PNG / JPEG / .npz); use "
                                "NIfTI or DICOM series, or drop data.images.spacing.")
            self.spacing = ([float(v) for v in np.median(found, axis=0)] if self.spacing == "auto"
                            else [float(v) for v in self.spacing])
            if len(self.spacing) != self.spatial_dims:
                raise DataError(f"data.images.spacing {self.spacing} has {len(self.spacing)} value(s) for "
                                f"{self.spatial_dims}-D images.")
            if self.size is None:  # the common shape after resampling
                self.size = [int(v) for v in self._resampled_shape(images, ids[0])]
        if self.intensity == "ct":
            self.ct = _ct_statistics([(self._resampled(images, i), self._resampled(images, i, order=0)[0]
                                       if i in images.masks else None) for i in ids])
        if self.size is None:
            self.size = [int(v) for v in common[1:]]
        elif len(self.size) != self.spatial_dims:
            raise DataError(f"data.images.size {self.size} has {len(self.size)} dimension(s), but the images are "
                            f"{self.spatial_dims}-D; give {self.spatial_dims} sizes.")
        return self

    def _resampled_shape(self, images: Any, i: str) -> tuple[int, ...]:
        a = images.get(i)
        if self.spacing is None or i not in images.affines:
            return tuple(a.shape[1:])
        own = _spacing(images.affines[i], self.spatial_dims)
        return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(a.shape[1:], own, self.spacing, strict=True))

    def _resampled(self, images: Any, i: str, source: str = "input", order: int = 1) -> np.ndarray:
        """The image (or with order 0 its mask) at the target spacing (MONAI `Resize` to the spacing's shape:
        trilinear / bilinear for images, nearest for masks); unchanged without data.images.spacing."""
        a = images.get(i, source) if order else images.masks[i][None]
        shape = self._resampled_shape(images, i)
        if shape == tuple(a.shape[1:]):
            return a
        from monai.transforms import Resize

        mode = "nearest" if order == 0 else ("bilinear" if self.spatial_dims == 2 else "trilinear")
        return np.asarray(Resize(shape, mode=mode)(a.astype(np.float32)), dtype=np.float32)

    def _target_shape(self, images: Any, ids: list[str], source: str) -> tuple[int, ...]:
        assert self.size is not None, "fit the featurizer first"
        if self.resize or not ids:
            return tuple(self.size)
        shapes = {self._resampled_shape(images, i) for i in ids}
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
            a = self._resampled(images, i, source)
            if a.shape[1:] != target:
                if resize is None:
                    from monai.transforms import Resize

                    resize = Resize(target, mode="area")
                    grow = Resize(target, mode="bilinear" if self.spatial_dims == 2 else "trilinear")
                shrink = np.prod(a.shape[1:]) >= np.prod(target)
                a = np.asarray((resize if shrink else grow)(a), dtype=np.float32)
            out[j] = a
        if self.intensity == "ct":
            assert self.ct is not None, "fit the featurizer first"
            return ((np.clip(out, self.ct["low"], self.ct["high"]) - self.ct["mean"]) / self.ct["sd"]).astype(
                np.float32)
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

            m = np.rint(self._resampled(images, i, source, order=0)[0]).astype(np.uint8)
            out[j] = resize_mask(m, target)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.name, "size": self.size, "intensity": self.intensity, "channels": self.channels,
                "spatial_dims": self.spatial_dims, "resize": self.resize, "spacing": self.spacing, "ct": self.ct}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageFeaturizer:
        f = cls(d["size"], d["intensity"], d.get("resize", True), d.get("spacing"))
        f.channels, f.spatial_dims, f.ct = d["channels"], d["spatial_dims"], d.get("ct")
        return f


def _spacing(affine: np.ndarray, dims: int) -> list[float]:
    """Voxel sizes (mm) along the array's axes: the lengths of the affine's columns."""
    return [float(np.linalg.norm(affine[:3, k])) for k in range(dims)]


def _ct_statistics(pairs: list[tuple[np.ndarray, np.ndarray | None]]) -> dict[str, float]:
    """nnU-Net's CT scheme, fitted on training images only: clip to the 0.5 and 99.5 percentiles of the voxels
    inside the masks (every voxel when there are none), then z-score with those voxels' mean and sd."""
    rng = np.random.default_rng(0)
    parts = []
    for a, mask in pairs:
        v = a[0]
        if mask is not None and mask.shape == v.shape and mask.any():
            v = v[mask > 0.5]
        v = v.ravel()
        parts.append(v if len(v) <= 100_000 else rng.choice(v, 100_000, replace=False))
    voxels = np.concatenate(parts).astype(np.float64)
    low, high = np.percentile(voxels, [0.5, 99.5])
    clipped = np.clip(voxels, low, high)
    return {"low": float(low), "high": float(high), "mean": float(clipped.mean()),
            "sd": float(clipped.std() or 1.0)}


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
