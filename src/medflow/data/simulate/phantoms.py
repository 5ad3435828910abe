"""SYNTHETIC imaging phantoms with known ground truth: an organ with texture and noise, and a lesion of one of
two kinds (or none), with its mask.

Each image shows an elliptical "organ" (smooth low-frequency texture) on a dark background, with
Gaussian noise and a per-image intensity scale (scanner variation). A lesion, when present, is:

* **cyst** (benign): round, smooth-edged, homogeneous;
* **tumor** (malignant): lobulated (its radius varies with angle, 3-6 lobes) and heterogeneous inside.

Both kinds have the same mean contrast (`contrast`), so shape and texture, not brightness, tell them
apart: a model must look at the lesion. Patients have 1-3 images (follow-ups) with the same finding and a
nearby lesion position, so splitting images instead of patients would leak. `finding` is the label
(normal / cyst / tumor), `malignant` its binary form, and `mask` the lesion mask (for segmentation and for
checking that explanations point at the lesion).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["simulate_phantoms", "FINDINGS"]

FINDINGS = ("normal", "cyst", "tumor")


def _grid(size: int, dims: int) -> list[np.ndarray]:
    axes = [np.linspace(-1, 1, size, dtype=np.float32)] * dims
    return np.meshgrid(*axes, indexing="ij")


def _image(rng: np.random.Generator, size: int, dims: int, finding: str, center: np.ndarray, radius: float,
           contrast: float, noise: float) -> tuple[np.ndarray, np.ndarray]:
    g = _grid(size, dims)
    axes = rng.uniform(0.6, 0.85, dims)
    organ = sum((gi / a) ** 2 for gi, a in zip(g, axes, strict=True)) <= 1.0
    texture = gaussian_filter(rng.normal(0, 1, (size,) * dims), sigma=size / 10)
    img = organ * (0.5 + 0.08 * texture / (texture.std() + 1e-8))
    mask = np.zeros((size,) * dims, bool)
    if finding != "normal":
        d = [gi - c for gi, c in zip(g, center, strict=True)]
        r = np.sqrt(sum(di ** 2 for di in d))
        if finding == "tumor":
            theta = np.arctan2(d[1], d[0])
            lobes, phase = int(rng.integers(3, 7)), rng.uniform(0, 2 * np.pi)
            wobble = 0.45 * np.sin(lobes * theta + phase)
            if dims == 3:
                wobble = wobble + 0.25 * np.sin(lobes * np.arctan2(d[2], d[0]) + phase)
            mask = r <= radius * (1 + wobble)
            blobs = gaussian_filter(rng.normal(0, 1, mask.shape), 1.0)
            inside = np.clip(1 + 0.4 * blobs / (blobs.std() + 1e-8), 0.3, None)
        else:
            mask = r <= radius
            inside = np.ones(mask.shape)
        mask &= organ
        img = img + contrast * mask * inside
        img = gaussian_filter(img, 0.6)  # partial-volume blur at the edges
    img = img * rng.uniform(0.8, 1.2) + rng.normal(0, noise, img.shape)
    return img.astype(np.float32), mask


def simulate_phantoms(n_patients: int = 300, size: int = 64, dims: int = 2, seed: int = 0,
                      contrast: float = 0.25, noise: float = 0.06,
                      shares: tuple[float, float, float] = (0.4, 0.3, 0.3)) -> dict[str, Any]:
    """Simulate phantoms; returns {"images": (n, 1, *S) float32, "masks": (n, *S) bool, "frame": records}.

    The frame (a dict of columns) holds `patient_id`, `image`, `finding`, `malignant` and `lesion_voxels`.
    """
    if dims not in (2, 3):
        raise ValueError("dims must be 2 or 3")
    rng = np.random.default_rng(seed)
    images, masks, rows = [], [], []
    for p in range(n_patients):
        finding = FINDINGS[int(rng.choice(3, p=np.asarray(shares) / sum(shares)))]
        center = rng.uniform(-0.3, 0.3, dims)
        radius = rng.uniform(0.12, 0.22)
        for k in range(int(rng.integers(1, 4))):
            c = center + rng.normal(0, 0.03, dims)
            img, mask = _image(rng, size, dims, finding, c, radius * rng.uniform(0.9, 1.1), contrast, noise)
            images.append(img[None])
            masks.append(mask)
            rows.append({"patient_id": f"P{p:05d}", "image": f"P{p:05d}_{k}", "finding": finding,
                         "malignant": int(finding == "tumor"), "lesion_voxels": int(mask.sum())})
    frame = {k: [r[k] for r in rows] for k in rows[0]}
    return {"images": np.stack(images), "masks": np.stack(masks), "frame": frame}
