"""Segmentation: a label map per image (2-D or 3-D), several labels, MONAI's DiceCE loss and metrics.

The targets are the images' masks (`ImageData.masks`, prepared by the image featurizer exactly as the
images are), not a frame column. A segmentation run's predictions table holds **one row per case** with
that case's metrics (`case_dice_<label>`, `case_hd95_<label>`, computed with MONAI's `compute_dice` and
`compute_hausdorff_distance(percentile=95)`), so the evaluator's patient bootstrap gives the CIs, model
selection and subgroups unchanged; the predicted masks themselves go to `masks/` in the run directory.
A label absent from both the truth and the prediction of a case has no Dice there (NaN, left out of the
mean); one present in only one of them scores 0 Dice and no HD95.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from medflow.errors import DataError
from medflow.evaluate.metric import Metric
from medflow.tasks.base import Task

__all__ = ["Segmentation", "case_metrics", "mask_in_image_space", "nifti_bytes", "mask_file_name"]


def case_metrics(pred: np.ndarray, true: np.ndarray, n_labels: int, spacing: Any = None) -> np.ndarray:
    """Per case: [mean Dice, Dice of labels 1..K, HD95 of labels 1..K] from label maps (n, *spatial)."""
    import warnings

    from monai.metrics import compute_dice, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    k = n_labels + 1
    with warnings.catch_warnings():  # empty masks (no lesion, none predicted) are expected: NaN, said in the docs
        warnings.simplefilter("ignore")
        return _case_metrics(pred, true, k, spacing, one_hot, compute_dice, compute_hausdorff_distance)


def _case_metrics(pred, true, k, spacing, one_hot, compute_dice, compute_hausdorff_distance) -> np.ndarray:
    p = one_hot(torch.as_tensor(pred[:, None], dtype=torch.long), k)
    t = one_hot(torch.as_tensor(true[:, None], dtype=torch.long), k)
    dice = compute_dice(p, t, include_background=False, ignore_empty=True).numpy()
    present = (p[:, 1:].flatten(2).any(-1) & t[:, 1:].flatten(2).any(-1)).numpy()
    if present.any():
        hd = compute_hausdorff_distance(p, t, include_background=False, percentile=95, spacing=spacing).numpy()
    else:
        hd = np.full(dice.shape, np.nan)
    hd = np.where(present, hd, np.nan)
    mean = np.nanmean(dice, axis=1) if dice.size else np.zeros(len(pred))
    return np.column_stack([mean, dice, hd]).astype(float)


def _column_mean(j: int):
    def fn(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
        v = np.asarray(s, float)[:, j]
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    return fn


class Segmentation(Task):
    """Segment `labels` (mask values 1..K; 0 is background) in each image."""

    kind: Literal["segmentation"] = "segmentation"
    labels: list[str] = ["lesion"]
    primary_metric: ClassVar[str] = "dice_mean"
    monitor_metric: ClassVar[str] = "loss"
    targets_from: ClassVar[str] = "masks"

    @property
    def label_columns(self) -> list[str]:
        return []

    @property
    def classes(self) -> list[Any]:
        return ["background", *self.labels]

    def check(self, frame: pd.DataFrame, source: str) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise DataError(f"{source}: task.labels must name each mask value 1..K once, got {self.labels}.")

    def fit(self, frame: pd.DataFrame) -> Segmentation:
        self._state = {"classes": self.classes}
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        raise DataError("a segmentation task's targets are the images' masks (data.images.mask_column, or a "
                        "built-in with masks), not a frame column.")

    def strata(self, frame: pd.DataFrame) -> pd.Series | None:
        return None

    @property
    def output_dim(self) -> int:
        return len(self.labels) + 1

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from monai.losses import DiceCELoss

        if not hasattr(self, "_loss_fn"):
            object.__setattr__(self, "_loss_fn", DiceCELoss(to_onehot_y=True, softmax=True))
        return self._loss_fn(outputs, target.long().unsqueeze(1))

    def predict_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        return np.asarray(outputs).argmax(axis=1).astype(np.uint8)

    def metric_list(self) -> list[Metric]:
        """Mean Dice, then Dice and HD95 per label: means over cases of the per-case columns."""
        k = len(self.labels)
        from medflow.evaluate.metrics import get_metric

        out = [get_metric("dice_mean")]  # the primary metric, registered for model selection
        out += [Metric(f"dice_{lab}", _column_mean(1 + j), True, f"Dice {lab}") for j, lab in enumerate(self.labels)]
        out += [Metric(f"hd95_{lab}", _column_mean(1 + k + j), False, f"HD95 {lab} (voxels)")
                for j, lab in enumerate(self.labels)]
        return out

    def write_outputs(self, directory: Any, ds: Any, frame: pd.DataFrame, predictions: np.ndarray) -> None:
        """Predicted masks as `<image>.nii.gz` in the input's space (its size and affine)."""
        from pathlib import Path

        from medflow.artifacts import atomic_write_bytes

        for image_id, mask in zip(frame["image"].astype(str), predictions, strict=True):
            shape = ds.images.arrays[image_id].shape[1:]
            data = nifti_bytes(mask_in_image_space(mask, shape), ds.images.affines.get(image_id))
            atomic_write_bytes(Path(directory) / mask_file_name(image_id), data)

    def dataset_predictions(self, folds: Any, ds: Any) -> pd.DataFrame:
        """One row per image with its label map (`mask`, in the image's own size; the fold models' class
        probabilities averaged) and the voxels of each label."""
        probs = np.mean([est.probabilities(x) for est, x in folds], axis=0)
        labels = probs.argmax(axis=1).astype(np.uint8)
        ids = [c for c in ds.id_columns if c in ds.frame.columns]
        out = ds.frame[ids].reset_index(drop=True).copy()
        out["mask"] = [mask_in_image_space(m, ds.images.arrays[i].shape[1:])
                       for m, i in zip(labels, ds.frame["image"], strict=True)]
        for j, lab in enumerate(self.labels, start=1):
            out[f"voxels_{lab}"] = [int((m == j).sum()) for m in out["mask"]]
        return out

    def case_values(self, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
        """Per case: mean Dice, Dice and HD95 of each label (the columns of `case_columns`)."""
        return case_metrics(pred, true, len(self.labels))

    def case_columns(self) -> list[str]:
        return (["case_dice_mean"] + [f"case_dice_{lab}" for lab in self.labels]
                + [f"case_hd95_{lab}" for lab in self.labels])


def mask_in_image_space(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A predicted label map brought back to its image's size (nearest neighbour) when the featurizer resized."""
    from medflow.data.images import resize_mask

    return resize_mask(mask, shape).astype(np.uint8)


def mask_file_name(image_id: str) -> str:
    """`scans/a_01.dcm` -> `scans_a_01.nii.gz`: the image's id without its format suffix, as a NIfTI name."""
    from medflow.data.sources.images import IMAGE_SUFFIXES

    name = str(image_id).replace("/", "_").replace("\\", "_")
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name + ".nii.gz"


def nifti_bytes(mask: np.ndarray, affine: np.ndarray | None) -> bytes:
    """A label map as gzipped NIfTI bytes with the image's affine (identity when the image had none)."""
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), np.eye(4) if affine is None else affine)
    return gzip.compress(img.to_bytes(), compresslevel=6)
