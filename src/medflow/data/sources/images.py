"""Image file readers: DICOM (files, multi-frame, series), NIfTI, PNG/JPEG, NumPy, and MedMNIST-format `.npz`.

Every reader returns `(array, affine)` with the array channel-first, `(C, *spatial)`, float32, and the
affine (voxel -> world, 4x4) where the format has one (NIfTI, DICOM series), else None. Anything a reader
cannot use becomes a `DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from medflow.errors import DataError

__all__ = ["read_image", "read_dicom_series", "dicom_series", "read_npz", "IMAGE_SUFFIXES", "is_image_file",
           "canonical", "grid_distance", "resample_labels", "dicom_header", "SCANNER_COLUMNS", "dicom_modality"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom", ".nii", ".nii.gz", ".npy")
NPZ_SPLITS = {"train": "train", "val": "tuning", "test": "held_out"}  # MedMNIST split -> medflow source split


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(IMAGE_SUFFIXES)


def read_image(path: str | Path, series: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One image file, or a folder holding one DICOM series, as (C, *spatial) float32 and its affine; volumes with
    an affine (NIfTI, DICOM series) come in RAS orientation (`canonical`)."""
    p = Path(path)
    arr, affine = _read_any(p, series)
    if affine is not None and arr.ndim == 4 and affine.shape == (4, 4):
        return canonical(arr, affine)  # every 3-D image in one orientation (RAS); the affine keeps the world
    return arr, affine


def _read_any(p: Path, series: dict | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    if p.is_dir():
        return read_dicom_series(p, series)
    if not p.exists():
        raise DataError(f"{p}: image file not found.")
    name = p.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _read_nifti(p)
    if name.endswith((".dcm", ".dicom")):
        ds = _dcmread(p)
        try:  # pydicom parses elements on first access: a damaged one raises here
            return _pixels(ds, p), None
        except (NotImplementedError, struct.error, KeyError, IndexError, TypeError) as exc:
            raise DataError(f"{p}: a DICOM element cannot be read ({type(exc).__name__}: {exc}); the file may be "
                            "damaged.") from exc
    if name.endswith(".npy"):
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"{p}: not a readable .npy array ({exc}).") from exc
        return _channel_first(arr.astype(np.float32), p, channels_last=False), None
    if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
        return _read_picture(p), None
    raise DataError(f"{p}: unknown image format; medflow reads {', '.join(IMAGE_SUFFIXES)} and DICOM series folders.")


def _read_picture(p: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise DataError(f"{p}: not a readable image ({exc}); the file may be truncated or not an image.") from exc
    if mode in ("L", "I", "I;16", "F", "1"):
        return arr.astype(np.float32)[None]
    if mode == "RGB":
        return np.moveaxis(arr.astype(np.float32), -1, 0)
    channels = arr.shape[-1] if arr.ndim == 3 else 1
    raise DataError(f"{p}: has {channels} channel(s) (mode {mode}); medflow expects grayscale (1 channel) or RGB "
                    "(3). Convert it, e.g. drop the alpha channel of an RGBA PNG, or expand a palette image to RGB.")


def _read_nifti(p: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        arr = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises several types for damaged files
        raise DataError(f"{p}: not a readable NIfTI file ({type(exc).__name__}: {exc}).") from exc
    if arr.ndim == 4:  # NIfTI stores channels (e.g. modalities) on the 4th axis
        arr = np.moveaxis(arr, -1, 0)
    elif arr.ndim in (2, 3):
        arr = arr[None]
    else:
        raise DataError(f"{p}: a {arr.ndim}-D volume; medflow reads 2-D, 3-D and 4-D (channels last) NIfTI.")
    affine = np.asarray(img.affine, dtype=float)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{p}: the header's affine (qform / sform) is degenerate ({affine[:3, :3].round(4).tolist()}"
                        "): no voxel size or a repeated axis. Fix the header, e.g. with nibabel's set_qform.")
    return arr, affine


def _dcmread(p: Path, stop_before_pixels: bool = False) -> Any:
    import pydicom
    from pydicom.errors import BytesLengthException, InvalidDicomError

    try:
        return pydicom.dcmread(p, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, BytesLengthException, EOFError, OSError, ValueError, KeyError, NotImplementedError,
            RuntimeError, TypeError, IndexError, struct.error) as exc:  # what pydicom raises on damaged headers
        raise DataError(f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc}); it may be truncated "
                        "or not DICOM.") from exc


def _pixels(ds: Any, p: Path) -> np.ndarray:
    """Pixel data in modality units (Rescale Slope/Intercept applied), channel first."""
    from pydicom.pixels import apply_modality_lut

    if "PixelData" not in ds and "FloatPixelData" not in ds:
        kind = getattr(ds, "Modality", "unknown modality")
        raise DataError(f"{p}: has no pixel data (a {kind} object, SOP class {getattr(ds, 'SOPClassUID', '?')}); "
                        "list only image files.")
    try:
        arr = ds.pixel_array
    except Exception as exc:  # truncated pixel data, or a transfer syntax without a decoder installed
        raise DataError(f"{p}: its pixel data cannot be decoded ({type(exc).__name__}: {exc}). The file may be "
                        "truncated, or compressed with a syntax whose decoder is not installed.") from exc
    rgb = getattr(ds, "SamplesPerPixel", 1) > 1
    if not rgb:
        arr = apply_modality_lut(arr, ds)
    return _channel_first(np.asarray(arr, dtype=np.float32), p, channels_last=rgb)


def _channel_first(arr: np.ndarray, p: Path, channels_last: bool) -> np.ndarray:
    if channels_last:
        return np.moveaxis(arr, -1, 0)
    if arr.ndim in (2, 3):
        return arr[None]
    raise DataError(f"{p}: array of shape {arr.shape}; expected 2-D or 3-D pixels.")


def _pick_series(folder: Path, files: list, select: dict | None) -> list:
    """The slices of the one image series in `folder` (a patient's study may hold localizers, several sequences,
    dose reports): objects without pixels are skipped, and `select` (`modality`, `description`: a
    case-insensitive part of SeriesDescription, `uid`) picks among several image series."""
    import warnings

    images = [(f, ds) for f, ds in files if "PixelData" in ds or "FloatPixelData" in ds]
    others = sorted({f"{getattr(ds, 'Modality', '?')} ({f.name})" for f, ds in files
                     if "PixelData" not in ds and "FloatPixelData" not in ds})
    if others:
        warnings.warn(f"{folder}: skipped {len(others)} object(s) without pixel data: {', '.join(others[:5])}",
                      stacklevel=3)
    groups: dict[str, list] = {}
    for f, ds in images:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))

    def keep(ds: Any) -> bool:
        s = select or {}
        return ((not s.get("modality") or str(getattr(ds, "Modality", "")).upper() == s["modality"].upper())
                and (not s.get("description")
                     or s["description"].lower() in str(getattr(ds, "SeriesDescription", "")).lower())
                and (not s.get("uid") or str(getattr(ds, "SeriesInstanceUID", "")) == s["uid"]))

    chosen = {uid: items for uid, items in groups.items() if keep(items[0][1])}
    if len(chosen) == 1:
        return next(iter(chosen.values()))

    def describe(items: list) -> str:
        ds = items[0][1]
        return (f"{getattr(ds, 'Modality', '?')} '{getattr(ds, 'SeriesDescription', '')}' ({len(items)} files, "
                f"SeriesInstanceUID {getattr(ds, 'SeriesInstanceUID', '?')})")

    found = "; ".join(describe(items) for items in groups.values()) or "none"
    if not images:
        raise DataError(f"{folder}: no DICOM object with pixel data (found {', '.join(others) or 'nothing'}).")
    what = f"{len(chosen)} series match data.images.series {select}" if select else f"{len(groups)} image series"
    raise DataError(f"{folder}: {what}; series found: {found}. Pick one with data.images.series: {{modality: MR, "
                    "description: T1}} (or uid: ...), or put each series in its own folder.")


def read_dicom_series(folder: Path, series: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The slices of one DICOM series in a folder as (1, i, j, k) with the scanner's affine (`dicom_series`)."""
    slices, affine = dicom_series(folder, series)
    vol = np.concatenate([_pixels(ds, f) for f, ds in slices], axis=0)  # (k, j, i): slices of rows x columns
    return np.transpose(vol, (2, 1, 0))[None].astype(np.float32), affine  # (1, i, j, k), NIfTI's voxel order


def dicom_series(folder: Path, series: dict | None = None) -> tuple[list[tuple[Path, Any]], np.ndarray]:
    """One DICOM series' slices, checked and sorted along the slice normal, and its affine as dcm2niix and
    nibabel define it: voxel (column i, row j, slice k) -> RAS millimetres, from ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing and the slice positions (DICOM's LPS turned to NIfTI's RAS); oblique
    series keep their oblique affine. No pixel data is decoded."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: an empty folder; a DICOM series folder holds one file per slice.")
    slices = _pick_series(folder, [(f, _dcmread(f)) for f in files], series)
    first_f, first = slices[0]
    orient = np.asarray(getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    for f, ds in slices[1:]:
        for tag in ("Rows", "Columns"):
            if getattr(ds, tag, None) != getattr(first, tag, None):
                raise DataError(f"{folder}: slices of different sizes ({f.name}: {tag} {getattr(ds, tag, None)}, "
                                f"{first_f.name}: {getattr(first, tag, None)}); a series must share one size.")
        a, b = getattr(ds, "PixelSpacing", None), getattr(first, "PixelSpacing", None)
        if a is not None and b is not None and not np.allclose([float(v) for v in a], [float(v) for v in b]):
            raise DataError(f"{folder}: slices with different pixel spacing ({f.name}: {list(a)}, "
                            f"{first_f.name}: {list(b)}); resample them to one spacing first.")
        o = getattr(ds, "ImageOrientationPatient", None)
        if o is not None and not np.allclose(np.asarray(o, dtype=float), orient, atol=1e-4):
            raise DataError(f"{folder}: slices with different orientations ({f.name}: ImageOrientationPatient "
                            f"{[round(float(v), 4) for v in o]}, {first_f.name}: {[round(float(v), 4) for v in orient]}"
                            "); a series has one orientation (is this a localizer mixed in?).")
    row_dir, col_dir = orient[:3], orient[3:]  # along a row (column index grows), along a column (row index grows)
    normal = np.cross(row_dir, col_dir)
    has_pos = all(hasattr(ds, "ImagePositionPatient") for _, ds in slices)
    if has_pos:
        pos = {f: np.asarray(ds.ImagePositionPatient, dtype=float) for f, ds in slices}
        slices.sort(key=lambda item: float(np.dot(normal, pos[item[0]])))
        along = np.array([float(np.dot(normal, pos[f])) for f, _ in slices])
        gaps = np.diff(along)
        if len(gaps) and (gaps < 1e-4).any():
            i = int(np.argmax(gaps < 1e-4))
            raise DataError(f"{folder}: {slices[i][0].name} and {slices[i + 1][0].name} sit at the same slice "
                            f"position ({along[i]:.3f} mm along the normal); remove the duplicate slice.")
        if len(gaps) > 1 and gaps.max() > 1.5 * np.median(gaps):
            i = int(np.argmax(gaps))
            raise DataError(f"{folder}: a gap of {gaps[i]:.2f} mm between {slices[i][0].name} and "
                            f"{slices[i + 1][0].name}, over 1.5x the median slice spacing ({np.median(gaps):.2f} mm): "
                            "slices are missing from the series.")
    else:
        import warnings

        slices.sort(key=lambda item: float(getattr(item[1], "InstanceNumber", 0) or 0))
        warnings.warn(f"{folder}: no ImagePositionPatient; slices ordered by InstanceNumber, spacing from "
                      "SliceThickness, origin at 0: the volume's position in the scanner is unknown.", stacklevel=2)
    dr, dc = (float(v) for v in getattr(first, "PixelSpacing", [1.0, 1.0]))  # row spacing, column spacing
    if has_pos and len(slices) > 1:
        step = (pos[slices[-1][0]] - pos[slices[0][0]]) / (len(slices) - 1)
    else:
        step = normal * float(getattr(first, "SpacingBetweenSlices", None) or getattr(first, "SliceThickness", 1.0)
                              or 1.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row_dir * dc, col_dir * dr, step
    lps[:3, 3] = pos[slices[0][0]] if has_pos else 0.0
    return slices, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def canonical(arr: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (C, i, j, k) volume turned to the closest RAS orientation (axes permuted and flipped, no resampling,
    as nibabel's `as_closest_canonical` and MONAI's `Orientation("RAS")` do), with its affine updated."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return arr, affine
    out = np.stack([apply_orientation(c, ornt) for c in arr])
    return np.ascontiguousarray(out), affine @ inv_ornt_aff(ornt, arr.shape[1:])


def grid_distance(a: np.ndarray, shape_a: tuple, b: np.ndarray, shape_b: tuple) -> float:
    """The largest distance (mm) between corresponding corners of two voxel grids in world space."""
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * 3, indexing="ij")).reshape(3, -1)
    size_a, size_b = (np.array((list(s) + [1, 1, 1])[:3], float) - 1 for s in (shape_a, shape_b))
    ca = (a[:3, :3] @ (corners * size_a[:, None])) + a[:3, 3:]
    cb = (b[:3, :3] @ (corners * size_b[:, None])) + b[:3, 3:]
    return float(np.linalg.norm(ca - cb, axis=0).max())


def resample_labels(mask: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, shape: tuple) -> np.ndarray:
    """A (1, ...) label map resampled into another grid by nearest neighbour (voxels outside it are 0)."""
    from scipy.ndimage import affine_transform

    to_mask = np.linalg.inv(affine) @ target_affine  # target voxel -> mask voxel
    out = affine_transform(mask[0].astype(np.float32), to_mask[:3, :3], offset=to_mask[:3, 3], output_shape=shape,
                           order=0, mode="constant", cval=0.0)
    return out[None]


# scanner metadata kept as frame columns (subgroups, drift): acquisition facts, never the patient's identity; the
# acquisition date is kept as its year (a full date is a HIPAA identifier)
SCANNER_COLUMNS = {"modality": "Modality", "manufacturer": "Manufacturer",
                   "manufacturer_model": "ManufacturerModelName", "slice_thickness_mm": "SliceThickness", "kvp": "KVP",
                   "pixel_spacing_mm": "PixelSpacing", "acquisition_year": "AcquisitionDate"}


def dicom_header(path: Path) -> tuple[str | None, dict[str, Any]]:
    """A DICOM image's (or series') PatientID and scanner metadata; (None, {}) for other formats."""
    name = path.name.lower()
    if not (path.is_dir() or name.endswith((".dcm", ".dicom"))):
        return None, {}
    f = path if path.is_file() else next(p for p in sorted(path.iterdir()) if p.is_file())
    ds = _dcmread(f, stop_before_pixels=True)
    meta: dict[str, Any] = {}
    for column, tag in SCANNER_COLUMNS.items():
        try:
            value = getattr(ds, tag, None)
            if value in (None, ""):
                meta[column] = None
            elif column == "pixel_spacing_mm":
                meta[column] = float(value[0])
            elif column in ("slice_thickness_mm", "kvp"):
                meta[column] = float(value)
            elif column == "acquisition_year":
                meta[column] = int(str(value)[:4]) if str(value)[:4].isdigit() else None
            else:
                meta[column] = str(value).strip()
        except (ValueError, TypeError, IndexError):  # a malformed value is missing metadata, not a stop
            meta[column] = None
    pid = getattr(ds, "PatientID", None)
    return (str(pid) if pid else None), meta


def dicom_modality(path: Path) -> str | None:
    """The Modality of a DICOM file (SEG, RTSTRUCT, CT, ...); None for a folder or a file that is not DICOM."""
    if not path.is_file() or path.name.lower().endswith((".nii", ".nii.gz", ".png", ".jpg", ".jpeg", ".npy")):
        return None
    import pydicom

    try:
        return str(getattr(pydicom.dcmread(path, stop_before_pixels=True), "Modality", "")) or None
    except Exception:  # noqa: BLE001 - pydicom raises many types on a file that is not DICOM
        return None


def read_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A MedMNIST-format `.npz`: images, labels and the split of each (train / tuning / held_out).

    2-D images are (N, H, W) grayscale or (N, H, W, 3) RGB; 3-D are (N, D, H, W). Labels are (N,) or (N, 1)
    class indices, or (N, k) for several labels.
    """
    p = Path(path)
    try:
        return _npz_arrays(p, np.load(p, allow_pickle=False))
    except (ValueError, OSError, EOFError, NotImplementedError, zipfile.BadZipFile, zlib.error) as exc:  # damaged
        raise DataError(f"{p}: not a readable .npz file ({type(exc).__name__}: {exc}).") from exc


def _npz_arrays(p: Path, z: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    keys = set(z.files)
    present = [s for s in NPZ_SPLITS if f"{s}_images" in keys]
    if not present:
        raise DataError(f"{p}: no '<split>_images' arrays; a MedMNIST-format file holds train_images, "
                        f"train_labels, val_images, val_labels, test_images, test_labels. Keys found: {sorted(keys)}.")
    images, labels, splits = [], [], []
    for s in present:
        if f"{s}_labels" not in keys:
            raise DataError(f"{p}: has '{s}_images' but no '{s}_labels'; every images array needs its labels.")
        x, y = z[f"{s}_images"], z[f"{s}_labels"]
        if len(x) != len(y):
            raise DataError(f"{p}: '{s}_images' holds {len(x)} images but '{s}_labels' {len(y)} labels.")
        images.append(x)
        labels.append(y.reshape(len(y), -1))
        splits += [NPZ_SPLITS[s]] * len(x)
    shapes = {x.shape[1:] for x in images}
    if len(shapes) > 1:
        raise DataError(f"{p}: the splits' images have different shapes {sorted(shapes)}.")
    x = np.concatenate(images).astype(np.float32)
    x = np.moveaxis(x, -1, 1) if x.ndim == 4 and x.shape[-1] == 3 else x[:, None]
    return x, np.concatenate(labels), splits
