"""Dataset-aware preparation: resampling to a target spacing (given, or the training images' median) and
nnU-Net's CT intensity scheme, fitted on training images only and saved with the run."""

import numpy as np
import pytest

from medflow.data.images import ImageData
from medflow.errors import DataError
from medflow.features.image import ImageFeaturizer


def _ct(n=4, seed=0):
    """CT-like volumes in HU at two spacings (1 mm and 2 mm slices), a bright organ inside each mask."""
    rng = np.random.default_rng(seed)
    arrays, affines, masks = {}, {}, {}
    for k in range(n):
        dz = 1.0 if k % 2 == 0 else 2.0
        depth = 24 if dz == 1.0 else 12
        vol = rng.normal(-800, 50, (16, 16, depth)).astype(np.float32)  # air around
        organ = np.zeros(vol.shape, np.uint8)
        organ[4:12, 4:12, depth // 4: 3 * depth // 4] = 1
        vol[organ > 0] = rng.normal(40, 20, organ.sum())  # soft tissue
        vol[0, 0, 0] = 3000  # a metal artefact: clipped by the percentiles
        arrays[f"c{k}"], masks[f"c{k}"] = vol[None], organ
        affines[f"c{k}"] = np.diag([0.8, 0.8, dz, 1.0])
    return ImageData(arrays, "memory:ct", affines, masks)


def test_auto_spacing_is_the_training_median_and_masks_follow():
    images = _ct()
    feat = ImageFeaturizer(intensity="ct", resize=False, spacing="auto").fit(images, ["c0", "c1", "c2"])
    assert feat.spacing == [0.8, 0.8, 1.0] and feat.size == [16, 16, 24]  # median of 1, 2, 1 mm
    x = feat.transform(images, ["c1", "c3"])  # 2 mm volumes resampled to 1 mm: 12 -> 24 slices
    assert x.shape == (2, 1, 16, 16, 24)
    m = feat.transform_masks(images, ["c1"])
    assert m.shape == (1, 16, 16, 24) and set(np.unique(m)) == {0, 1}
    assert m[0, 4:12, 4:12, 8:16].all() and not m[0, :, :, :4].any()  # the organ where it was, in mm
    # nnU-Net's CT scheme: statistics of the training voxels inside the masks, the artefact clipped
    assert 0 < feat.ct["mean"] < 80 and feat.ct["high"] < 3000
    organ = x[0, 0][m[0] > 0]
    assert abs(np.median(organ)) < 0.3 and x.max() <= (feat.ct["high"] - feat.ct["mean"]) / feat.ct["sd"] + 1e-5
    again = ImageFeaturizer.from_dict(feat.to_dict())
    assert np.array_equal(again.transform(images, ["c3"]), feat.transform(images, ["c3"]))


def test_given_spacing_and_images_without_geometry():
    images = _ct()
    feat = ImageFeaturizer(spacing=[1.6, 1.6, 2.0], resize=False).fit(images, ["c1", "c3"])
    assert feat.transform(images, ["c0"]).shape == (1, 1, 8, 8, 12)
    flat = ImageData({"a": np.zeros((1, 8, 8), np.float32)}, "memory:png")
    with pytest.raises(DataError, match="1 training image\\(s\\) have no affine"):
        ImageFeaturizer(spacing="auto").fit(flat, ["a"])
