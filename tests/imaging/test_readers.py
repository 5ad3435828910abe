"""Image readers on real files (pydicom's wheel) and on files written here; every bad input names the file."""

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from medflow.data.images import ImageSource, read_image_dataset
from medflow.data.sources.images import read_image, read_npz
from medflow.errors import DataError

# only files inside pydicom's wheel: asking pydicom.data for any other file downloads it
DICOM = Path(pydicom.data.__file__).parent / "test_files"


def test_dicom_ct_in_hounsfield_units():
    arr, affine = read_image(DICOM / "CT_small.dcm")
    ds = pydicom.dcmread(DICOM / "CT_small.dcm")
    assert arr.shape == (1, 128, 128) and affine is None
    # rescale slope 1, intercept -1024: stored 128 is -896 HU
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.array_equal(arr[0], expected) and arr.min() == -896


def test_dicom_multiframe_and_rgb():
    dose, _ = read_image(DICOM / "rtdose.dcm")
    ds = pydicom.dcmread(DICOM / "rtdose.dcm")
    assert dose.shape == (1, int(ds.NumberOfFrames), ds.Rows, ds.Columns)
    rgb, _ = read_image(DICOM / "SC_rgb_rle_2frame.dcm")
    assert rgb.shape == (3, 2, 100, 100)


def test_dicom_truncated_and_without_pixels_are_named(tmp_path):
    with pytest.raises(DataError, match=r"MR_truncated\.dcm: its pixel data cannot be decoded"):
        read_image(DICOM / "MR_truncated.dcm")
    with pytest.raises(DataError, match=r"rtplan\.dcm: has no pixel data \(a RTPLAN object"):
        read_image(DICOM / "rtplan.dcm")
    with pytest.raises(DataError, match=r"junk\.dcm: not a readable DICOM file"):
        read_image(_write(tmp_path / "junk.dcm", b"not dicom at all"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _series(folder: Path, n: int = 4, shuffle: bool = True, **changes) -> Path:
    """A DICOM series from MR_small: slices at z = 0, 2, 4, ... written in scrambled order."""
    folder.mkdir(parents=True)
    order = [2, 0, 3, 1] if shuffle else list(range(n))
    for k in order:
        ds = pydicom.dcmread(DICOM / "MR_small.dcm")
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.InstanceNumber = 10 - k  # deliberately disagrees: position, not instance number, orders slices
        arr = ds.pixel_array.copy()
        arr[:] = 100 * k
        ds.PixelData = arr.tobytes()
        for key, (slice_k, value) in changes.items():
            if k == slice_k:
                setattr(ds, key, value)
        ds.save_as(folder / f"slice_{k}.dcm")
    return folder


def test_dicom_series_is_sorted_along_the_normal(tmp_path):
    vol, affine = read_image(_series(tmp_path / "s1"))
    assert vol.shape == (1, 64, 64, 4)  # (i, j, k): columns, rows, slices, as NIfTI orders voxels
    # MR_small's rescale is identity: slice k holds 100 k, in position order (slices along +z, superior)
    assert [float(vol[0, ..., k].mean()) for k in range(4)] == [0.0, 100.0, 200.0, 300.0]
    assert affine[2, 2] == pytest.approx(2.0) and affine[2, 3] == pytest.approx(0.0)


def test_dicom_series_with_mixed_spacing_or_size_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"s2: slices with different pixel spacing"):
        read_image(_series(tmp_path / "s2", PixelSpacing=(1, [0.5, 0.5])))
    folder = _series(tmp_path / "s3")
    small = pydicom.dcmread(DICOM / "CT_small.dcm")  # 128 x 128 among 64 x 64
    small.SeriesInstanceUID = pydicom.dcmread(folder / "slice_0.dcm").SeriesInstanceUID
    small.save_as(folder / "slice_9.dcm")
    with pytest.raises(DataError, match=r"s3: slices of different sizes"):
        read_image(folder)


def test_nifti_keeps_its_affine_and_channels(tmp_path):
    data = np.random.default_rng(0).normal(size=(8, 9, 10)).astype(np.float32)
    affine = np.diag([2.0, 1.5, 1.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    arr, aff = read_image(tmp_path / "v.nii.gz")
    assert arr.shape == (1, 8, 9, 10) and np.allclose(arr[0], data) and np.allclose(aff, affine)
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6, 2), np.float32), np.eye(4)), tmp_path / "two.nii")
    assert read_image(tmp_path / "two.nii")[0].shape == (2, 4, 5, 6)
    (tmp_path / "bad.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(DataError, match=r"bad\.nii\.gz: not a readable NIfTI"):
        read_image(tmp_path / "bad.nii.gz")


def test_png_channels(tmp_path):
    Image.fromarray(np.full((5, 6), 7, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "c.png")
    Image.fromarray(np.zeros((5, 6, 4), np.uint8), "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "g.png")[0].shape == (1, 5, 6) and read_image(tmp_path / "g.png")[0].max() == 7
    assert read_image(tmp_path / "c.png")[0].shape == (3, 5, 6)
    with pytest.raises(DataError, match=r"a\.png: has 4 channel\(s\) \(mode RGBA\).*drop the alpha"):
        read_image(tmp_path / "a.png")
    good = (tmp_path / "g.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")


def _npz(path: Path, shape=(28, 28), **drop) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 10), ("val", 4), ("test", 6)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 3, (n, 1))
    for key in drop:
        arrays.pop(key)
    np.savez(path, **arrays)
    return path


def test_medmnist_npz_2d_rgb_and_3d(tmp_path):
    x, y, splits = read_npz(_npz(tmp_path / "g.npz"))
    assert x.shape == (20, 1, 28, 28) and y.shape == (20, 1) and splits.count("held_out") == 6
    assert read_npz(_npz(tmp_path / "c.npz", (28, 28, 3)))[0].shape == (20, 3, 28, 28)
    assert read_npz(_npz(tmp_path / "v.npz", (28, 28, 28)))[0].shape == (20, 1, 28, 28, 28)
    ds = read_image_dataset(ImageSource(path=str(tmp_path / "g.npz")))
    assert ds.modality == "images" and len(ds) == 20 and set(ds.frame["source_split"]) == {"train", "tuning",
                                                                                           "held_out"}
    with pytest.raises(DataError, match=r"g2\.npz: has 'val_images' but no 'val_labels'"):
        read_npz(_npz(tmp_path / "g2.npz", val_labels=True))


def test_label_csv_and_class_folders(tmp_path):
    root = tmp_path / "imgs"
    for i, cls in enumerate(["benign", "malignant", "benign"]):
        (root / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 10 * i, np.uint8)).save(root / cls / f"im{i}.png")
    by_folder = read_image_dataset(ImageSource(path=str(root)))
    assert sorted(by_folder.frame["label"]) == ["benign", "benign", "malignant"]
    assert "each image is treated as its own patient" in by_folder.meta["patient_id_note"]
    pd.DataFrame({"file": ["benign/im0.png", "malignant/im1.png"], "pt": ["a", "a"], "y": [0, 1]}).to_csv(
        tmp_path / "labels.csv", index=False)
    ds = read_image_dataset(ImageSource(path=str(root), labels=str(tmp_path / "labels.csv"), image_column="file",
                                        patient_id="pt"))
    assert ds.patient_id == "pt" and ds.n_patients == 1 and list(ds.frame["y"]) == [0, 1]
    pd.DataFrame({"file": ["benign/im0.png", "benign/nope.png"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv row 2: image 'benign/nope\.png' not found"):
        read_image_dataset(ImageSource(path=str(root), labels=str(tmp_path / "bad.csv"), image_column="file"))
    with pytest.raises(DataError, match=r"no column 'image' naming the image files"):
        read_image_dataset(ImageSource(path=str(root), labels=str(tmp_path / "bad.csv")))


def test_dicom_folder_takes_patient_ids_from_the_tags(tmp_path):
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(DICOM / name, tmp_path / name)
    pd.DataFrame({"image": ["CT_small.dcm", "MR_small.dcm"], "y": [0, 1]}).to_csv(tmp_path / "l.csv", index=False)
    ds = read_image_dataset(ImageSource(path=str(tmp_path), labels=str(tmp_path / "l.csv")))
    expected = [str(pydicom.dcmread(DICOM / n).PatientID) for n in ("CT_small.dcm", "MR_small.dcm")]
    assert list(ds.frame["patient_id"]) == expected
    assert ds.summary()["distinct_shapes"] == 2  # 128^2 and 64^2: the featurizer resizes them to one size
