"""Image datasets: images (files, DICOM series, a MedMNIST `.npz`, or the phantom simulator) + labels -> Dataset.

The Dataset's frame holds one row per image (`image`: its id, the patient id, the labels, and the source's
split when it declares one, e.g. a MedMNIST file's train / val / test); `Dataset.images` holds the
decoded arrays, channel first, once (the featurizer resizes and normalizes them per fold). Patient splits,
tasks, the evaluator and the report then work on the frame as for any other modality.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.dataset import Dataset, FeatureType
from medflow.data.sources.images import (
    IMAGE_SUFFIXES,
    SCANNER_COLUMNS,
    dicom_header,
    grid_distance,
    is_image_file,
    read_image,
    read_npz,
    resample_labels,
)
from medflow.errors import DataError

__all__ = ["ImageData", "ImageSource", "image_dataset", "read_image_dataset", "phantom_dataset", "IMAGE_COLUMN",
           "resize_mask"]

IMAGE_COLUMN = "image"


class SeriesSelect(BaseModel):
    """YAML `data.images.series:` the series to read when a patient's folder holds several."""

    model_config = ConfigDict(extra="forbid")
    modality: str | None = None
    description: str | None = Field(None, description="a case-insensitive part of SeriesDescription")
    uid: str | None = Field(None, description="the SeriesInstanceUID")


class ImageSource(BaseModel):
    """The YAML's `data.images:` section: where the images are, where their labels are, how to prepare them."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="a folder of images (class sub-folders, or files a label CSV lists), or a .npz")
    labels: str | None = Field(None, description="CSV: one row per image, its file (relative to path) and labels")
    image_column: str = "image"
    patient_id: str | None = Field(None, description="label CSV column naming the patient (default: DICOM "
                                   "PatientID, else each image is its own patient)")
    size: list[int] | None = Field(None, description="resize every image to this spatial size (default: the "
                                   "training images' most common size)")
    intensity: Literal["zscore", "minmax", "ct", "none"] = Field(
        "zscore", description="per image (zscore, minmax), or ct: clip to the training voxels' 0.5-99.5 percentiles "
                              "and z-score with their statistics (nnU-Net's CT scheme)")
    spacing: list[float] | Literal["auto"] | None = Field(
        None, description="resample to this voxel size in mm (auto: the training images' median spacing)")
    resize: bool = Field(True, description="false: keep each image's size (segmentation of large volumes: "
                         "train on patches, infer whole volumes with sliding windows)")
    mask_column: str | None = Field(None, description="label CSV column naming each image's mask file "
                                    "(segmentation: a label map, 0 = background)")
    series: SeriesSelect | None = Field(None, description="which DICOM series of a study folder to read: "
                                        "{modality: MR, description: T1} or {uid: ...}; others are skipped")
    resample_masks: bool = Field(False, description="resample a mask drawn on another grid into its image's grid "
                                 "(nearest neighbour); by default a mask off the image's grid is an error")
    time_column: str | None = Field(None, description="multimodal studies: label CSV column with each image's time "
                                    "(a sample reads the latest image at or before its prediction time)")


def resize_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map (spatial dims only) at another size, nearest neighbour (MONAI `Resize`), labels kept as uint8."""
    if tuple(mask.shape) == tuple(shape):
        return np.asarray(mask)
    from monai.transforms import Resize

    return np.rint(np.asarray(Resize(tuple(shape), mode="nearest")(mask[None].astype(np.float32)))[0]).astype(np.uint8)


@dataclass
class ImageData:
    """Decoded images by id, channel first (C, *spatial), with affines where the format has them."""

    arrays: dict[str, np.ndarray]
    source: str
    affines: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    synthetic: bool = False

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def spatial_dims(self) -> int:
        return next(iter(self.arrays.values())).ndim - 1

    def shapes(self) -> dict[tuple[int, ...], int]:
        out: dict[tuple[int, ...], int] = {}
        for a in self.arrays.values():
            out[a.shape] = out.get(a.shape, 0) + 1
        return out

    def get(self, image_id: str, source: str = "input") -> np.ndarray:
        if image_id not in self.arrays:
            raise DataError(f"{source}: no image with id '{image_id}'.")
        return self.arrays[image_id]

    def fingerprint(self) -> bytes:
        h = hashlib.sha256()
        for k in sorted(self.arrays):
            h.update(k.encode())
            h.update(np.ascontiguousarray(self.arrays[k]).tobytes())
        return h.digest()

    def summary(self) -> dict[str, Any]:
        shapes = self.shapes()
        common = max(shapes, key=shapes.get)
        return {"images": len(self), "spatial_dims": self.spatial_dims, "channels": int(common[0]),
                "most_common_shape": list(common[1:]), "distinct_shapes": len(shapes)}


def image_dataset(images: ImageData, frame: pd.DataFrame, patient_id: str, name: str, description: str = "",
                  label_hint: str | None = None, config: dict | None = None) -> Dataset:
    """A Dataset over `images`: `frame` holds one row per image with its id in the `image` column."""
    frame = frame.reset_index(drop=True)
    frame[IMAGE_COLUMN] = frame[IMAGE_COLUMN].astype(str)
    types = {c: (FeatureType.NUMERIC if frame[c].dtype.kind in "if" else FeatureType.CATEGORICAL)
             for c in frame.columns if c != patient_id}
    if images.synthetic and "SYNTHETIC" not in description:
        description = "SYNTHETIC images. " + description
    return Dataset(frame=frame, name=name, patient_id=patient_id, feature_types=types, source=images.source,
                   synthetic=images.synthetic, description=description, label_hint=label_hint,
                   meta={"kind": "images", "images_config": config or {}}, images=images)


def phantom_dataset(n_patients: int = 300, size: int = 64, dims: int = 2, seed: int = 0, **kw: Any) -> Dataset:
    """SYNTHETIC phantoms (`data.simulate.phantoms`) as an image Dataset; label columns `finding`, `malignant`."""
    from medflow.data.simulate.phantoms import simulate_phantoms

    sim = simulate_phantoms(n_patients, size, dims, seed, **kw)
    frame = pd.DataFrame(sim["frame"])
    ids = frame[IMAGE_COLUMN].tolist()
    images = ImageData(dict(zip(ids, sim["images"], strict=True)), f"builtin:phantoms_{dims}d",
                       masks=dict(zip(ids, sim["masks"], strict=True)), synthetic=True)
    desc = (f"{len(frame)} simulated {dims}-D phantom images ({size}^{dims}) of {n_patients} patients: normal, cyst "
            "(round, smooth) or tumor (lobulated, heterogeneous), same mean contrast; lesion masks known.")
    return image_dataset(images, frame.drop(columns=["lesion_voxels"]), "patient_id", f"phantoms_{dims}d", desc,
                         "malignant")


MNI_FILES = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


def mni_dataset(patch: int = 64, stride: int = 32) -> Dataset:
    """Grey/white-matter segmentation of the real MNI ICBM152 2009a T1 template (nilearn's wheel), split by
    hemisphere as `../shared/anchors/imaging` does: training and tuning cases are `patch`^3 crops of the left
    hemisphere (x < 90) on a grid of `stride`, the test case the whole right hemisphere (x >= 100), predicted with
    sliding windows. Labels: 1 grey matter where p_gm >= p_wm, 2 white matter, inside p_gm + p_wm > 0.5.
    The T1 is z-scored over the whole volume once (as the anchor does), so the featurizer leaves intensities
    alone. One brain: cases are regions, not patients; the tuning crops (the top row of the grid) overlap
    training crops, the test hemisphere overlaps nothing.
    """
    import importlib.util

    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise DataError("dataset 'mni_gm_wm' reads the MNI template inside nilearn's wheel: pip install nilearn.")
    folder = Path(spec.origin).parent / "datasets" / "data"
    vol = {k: np.asarray(nib.load(folder / MNI_FILES.format(k)).dataobj, dtype=np.float32) for k in ("t1", "gm", "wm")}
    gm, wm = vol["gm"] / 255.0, vol["wm"] / 255.0  # the maps are stored 0-255
    brain = (gm + wm) > 0.5
    label = np.zeros(gm.shape, np.uint8)
    label[brain & (gm >= wm)] = 1
    label[brain & (wm > gm)] = 2
    t1 = (vol["t1"] - vol["t1"].mean()) / vol["t1"].std()
    affine = np.asarray(nib.load(folder / MNI_FILES.format("t1")).affine, dtype=float)
    right = slice(100, t1.shape[0])  # the left hemisphere is x < 90: crops start at 0 and 26

    def starts(n: int) -> list[int]:
        return sorted({*range(0, n - patch + 1, stride), n - patch})

    arrays, masks, affines, rows = {}, {}, {}, []
    top = starts(t1.shape[2])[-1]
    for x in starts(90):
        for y in starts(t1.shape[1]):
            for z in starts(t1.shape[2]):
                k = f"left_x{x}_y{y}_z{z}"
                sl = (slice(x, x + patch), slice(y, y + patch), slice(z, z + patch))
                arrays[k], masks[k] = t1[sl][None].copy(), label[sl].copy()
                shift = np.eye(4)
                shift[:3, 3] = [x, y, z]
                affines[k] = affine @ shift
                rows.append({"image": k, "patient_id": k, "region": "left hemisphere",
                             "source_split": "tuning" if z == top else "train"})
    arrays["right_hemisphere"], masks["right_hemisphere"] = t1[right][None].copy(), label[right].copy()
    shift = np.eye(4)
    shift[0, 3] = right.start
    affines["right_hemisphere"] = affine @ shift
    rows.append({"image": "right_hemisphere", "patient_id": "right_hemisphere", "region": "right hemisphere",
                 "source_split": "held_out"})
    images = ImageData(arrays, "builtin:mni_gm_wm", affines, masks)
    desc = (f"MNI ICBM152 2009a T1 template (real, one brain, {t1.shape[0]}x{t1.shape[1]}x{t1.shape[2]}): "
            f"{len(rows) - 1} training/tuning crops of {patch}^3 from the left hemisphere, the right hemisphere as "
            "the test case; grey/white matter from the template's probability maps.")
    ds = image_dataset(images, pd.DataFrame(rows), "patient_id", "mni_gm_wm", desc,
                       config={"resize": False, "intensity": "none"})
    ds.meta["patient_id_note"] = "one brain: cases are regions (crops, a hemisphere), not patients"
    return ds


def read_image_dataset(src: ImageSource, synthetic: bool = False) -> Dataset:
    """The image Dataset `data.images` describes: a `.npz`, a folder with a label CSV, or class sub-folders."""
    root = Path(src.path)
    if not root.exists():
        raise DataError(f"{root}: data.images.path not found.")
    if root.suffix.lower() == ".npz":
        return _from_npz(root, src, synthetic)
    if not root.is_dir():
        raise DataError(f"{root}: data.images.path must be a folder of images or a MedMNIST-format .npz file.")
    if src.labels:
        frame, files = _from_csv(root, Path(src.labels), src.image_column)
    else:
        frame, files = _from_folders(root)
    arrays, affines, pids, headers = {}, {}, {}, {}
    for image_id, path in _progress(files, f"reading {len(files)} images"):
        arrays[image_id], affine = read_image(path, src.series.model_dump(exclude_none=True) if src.series else None)
        if affine is not None:
            affines[image_id] = affine
        pids[image_id], headers[image_id] = dicom_header(path)
    _check_consistent(arrays, files)
    frame = _scanner_columns(frame, headers)
    masks = _read_masks(root, frame, src, arrays, affines) if src.mask_column else {}
    images = ImageData(arrays, str(root), affines, masks, synthetic=synthetic)
    pid, note = _patient_column(frame, src, pids)
    desc = f"{len(frame)} images from {root}" + (f"; {note}" if note else "")
    ds = image_dataset(images, frame, pid, root.name, desc, config=src.model_dump())
    if note:
        ds.meta["patient_id_note"] = note
    return ds


def _read_masks(root: Path, frame: pd.DataFrame, src: ImageSource, arrays: dict, affines: dict) -> dict:
    """Each image's mask (label map): same spatial shape and, where both have one, the same affine."""
    from medflow.data.dicom_seg import is_seg, seg_mask
    from medflow.data.rtstruct import is_rtstruct, rtstruct_mask
    from medflow.data.sources.images import read_image

    col = src.mask_column
    if col not in frame.columns:
        raise DataError(f"{src.labels}: data.images.mask_column names column '{col}', which is not there; columns "
                        f"are {list(frame.columns)}.")
    masks = {}
    for i, (image_id, value) in enumerate(zip(frame[IMAGE_COLUMN], frame[col].astype(str), strict=True)):
        path = root / value
        if not path.exists():
            raise DataError(f"{src.labels} row {i + 1}: mask '{value}' not found under {root}.")
        image_path = root / image_id
        pick = src.series.model_dump(exclude_none=True) if src.series else None
        if image_path.is_dir() and is_seg(path):  # a DICOM SEG on the image's series (PACS, viewer export)
            m, affine = seg_mask(path, image_path, pick)[None], affines.get(image_id)
        elif image_path.is_dir() and is_rtstruct(path):  # RTSTRUCT contours, rasterized onto the series
            m, affine = rtstruct_mask(path, image_path, pick)[0][None], affines.get(image_id)
        else:
            m, affine = read_image(path)
        if m.shape[0] != 1:
            raise DataError(f"{path}: a mask of {m.shape[0]} channels; a mask is one label map (0 = background).")
        image_affine = affines.get(image_id)
        same_grid = m.shape[1:] == arrays[image_id].shape[1:] and (
            affine is None or image_affine is None or np.allclose(affine, image_affine, atol=1e-3))
        if not same_grid and affine is not None and image_affine is not None:
            gap = grid_distance(affine, m.shape[1:], image_affine, arrays[image_id].shape[1:])
            if not src.resample_masks:
                raise DataError(f"{path}: the mask's grid ({list(m.shape[1:])} voxels) is not its image '{image_id}''s "
                                f"({list(arrays[image_id].shape[1:])} voxels): their corners lie up to {gap:.2f} mm "
                                "apart in the scanner's space. Set data.images.resample_masks: true to resample the "
                                "mask into the image grid (nearest neighbour), or export it on the image's grid.")
            m = resample_labels(m, affine, image_affine, arrays[image_id].shape[1:])
        elif not same_grid:
            raise DataError(f"{path}: mask of shape {list(m.shape[1:])}, but its image '{image_id}' is "
                            f"{list(arrays[image_id].shape[1:])}, and one of them has no affine to place it in the "
                            "scanner's space; a mask is one label map of the image's size.")
        if not np.allclose(m, np.rint(m)) or m.min() < 0:
            raise DataError(f"{path}: mask values must be non-negative integer labels (0 = background).")
        masks[image_id] = np.rint(m[0]).astype(np.uint8)
    return masks


def _progress(items: list, text: str) -> Any:
    if len(items) < 500:
        return items
    from rich.progress import track

    return track(items, description=text, transient=True)


def _from_npz(path: Path, src: ImageSource, synthetic: bool) -> Dataset:
    from medflow.data.ehr import SPLIT_COLUMN

    x, y, splits = read_npz(path)
    ids = [f"{i:06d}" for i in range(len(x))]
    frame = pd.DataFrame({IMAGE_COLUMN: ids, "patient_id": ids, SPLIT_COLUMN: splits})
    if y.shape[1] == 1:
        frame["label"] = y[:, 0].astype(np.int64)
    else:
        for j in range(y.shape[1]):
            frame[f"label_{j}"] = y[:, j].astype(np.int64)
    images = ImageData(dict(zip(ids, x, strict=True)), str(path), synthetic=synthetic)
    note = "a MedMNIST-format file has no patient ids: each image is treated as its own patient"
    ds = image_dataset(images, frame, "patient_id", path.stem,
                       f"{len(x)} images from {path} ({', '.join(sorted(set(splits)))} splits); {note}",
                       "label", config=src.model_dump())
    ds.meta["patient_id_note"] = note
    return ds


def _from_csv(root: Path, csv: Path, column: str) -> tuple[pd.DataFrame, list[tuple[str, Path]]]:
    if not csv.exists():
        raise DataError(f"{csv}: data.images.labels file not found.")
    frame = pd.read_csv(csv)
    if column not in frame.columns:
        raise DataError(f"{csv}: no column '{column}' naming the image files; columns are {list(frame.columns)}. "
                        "Set data.images.image_column.")
    files = []
    for i, value in enumerate(frame[column].astype(str)):
        path = root / value
        if not path.exists():
            raise DataError(f"{csv} row {i + 1}: image '{value}' not found under {root}.")
        files.append((value, path))
    dup = frame[column].astype(str).duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0]) + 1
        raise DataError(f"{csv} row {row}: image '{frame[column].iloc[row - 1]}' is listed twice.")
    frame = frame.rename(columns={column: IMAGE_COLUMN}).astype({IMAGE_COLUMN: str})
    return frame, files


def _from_folders(root: Path) -> tuple[pd.DataFrame, list[tuple[str, Path]]]:
    """Class sub-folders (`root/<class>/<image>`): the folder name is the label; else unlabeled images."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = sorted(f for f in root.rglob("*") if is_image_file(f))
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}); give a folder of images in class "
                        "sub-folders, or a label CSV under data.images.labels.")
    ids = [str(f.relative_to(root)) for f in files]
    frame = pd.DataFrame({IMAGE_COLUMN: ids})
    if subdirs and all(f.parent != root for f in files):
        frame["label"] = [f.relative_to(root).parts[0] for f in files]
    return frame, list(zip(ids, files, strict=True))


def _scanner_columns(frame: pd.DataFrame, headers: dict[str, dict]) -> pd.DataFrame:
    """The scanner metadata as columns beside the labels (a column the label CSV already has is kept)."""
    if not any(headers.values()):
        return frame
    for column in SCANNER_COLUMNS:
        if column not in frame.columns:
            values = [headers.get(i, {}).get(column) for i in frame[IMAGE_COLUMN]]
            if any(v is not None for v in values):
                frame[column] = values
    return frame


def _patient_column(frame: pd.DataFrame, src: ImageSource, pids: dict[str, str | None]) -> tuple[str, str]:
    if src.patient_id:
        if src.patient_id not in frame.columns:
            raise DataError(f"{src.labels or src.path}: data.images.patient_id names column '{src.patient_id}', "
                            f"which is not there; columns are {list(frame.columns)}.")
        return src.patient_id, ""
    if "patient_id" in frame.columns:
        return "patient_id", ""
    known = [pids.get(i) for i in frame[IMAGE_COLUMN]]
    if all(known):
        frame["patient_id"] = known
        return "patient_id", "patient ids from the DICOM PatientID tag"
    frame["patient_id"] = frame[IMAGE_COLUMN]
    return "patient_id", ("no patient ids: each image is treated as its own patient; if patients have several "
                          "images, name the patient column under data.images.patient_id, or splits will leak")


def _check_consistent(arrays: dict[str, np.ndarray], files: list[tuple[str, Path]]) -> None:
    where = dict(files)
    first_id = next(iter(arrays))
    c0, d0 = arrays[first_id].shape[0], arrays[first_id].ndim
    for k, a in arrays.items():
        if a.ndim != d0:
            raise DataError(f"{where[k]}: a {a.ndim - 1}-D image among {d0 - 1}-D ones ({where[first_id]}); "
                            "a study uses images of one dimensionality.")
        if a.shape[0] != c0:
            raise DataError(f"{where[k]}: has {a.shape[0]} channel(s), but {where[first_id]} has {c0}; convert "
                            "the images to one channel count (grayscale or RGB).")
