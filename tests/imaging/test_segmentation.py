"""Segmentation: Dice and HD95 against hand-computed values, masks read and checked, a study end to end."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medflow.config import parse_config
from medflow.data.images import ImageSource, phantom_dataset, read_image_dataset
from medflow.errors import DataError
from medflow.study import run_study
from medflow.tasks.segmentation import case_metrics


def test_dice_and_hd95_by_hand():
    true = np.zeros((1, 20, 20), np.uint8)
    true[0, 5:10, 5:10] = 1  # 25 voxels
    pred = np.zeros_like(true)
    pred[0, 5:10, 7:12] = 1  # shifted by 2 columns: overlap 5 x 3 = 15
    m = case_metrics(pred, true, 1)
    assert m[0, 1] == pytest.approx(2 * 15 / (25 + 25))
    # every boundary voxel of one square is within 2 voxels of the other's boundary, and the far edges are
    # exactly 2 apart: the 95th percentile of the surface distances is 2
    assert m[0, 2] == pytest.approx(2.0)
    # a label absent in truth and prediction has no Dice (NaN), and the mean leaves it out
    two = case_metrics(pred, true, 2)
    assert np.isnan(two[0, 2]) and two[0, 0] == pytest.approx(0.6)
    # predicted where nothing is true: Dice is undefined (MONAI's ignore_empty), HD95 too
    none = case_metrics(pred, np.zeros_like(true), 1)
    assert np.isnan(none[0, 1]) and np.isnan(none[0, 2])


def test_masks_are_read_and_checked(tmp_path):
    img = np.random.default_rng(0).normal(size=(10, 12, 8)).astype(np.float32)
    aff = np.diag([1.5, 1.5, 3.0, 1.0])
    nib.save(nib.Nifti1Image(img, aff), tmp_path / "a.nii.gz")
    mask = (img > 1).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, aff), tmp_path / "a_mask.nii.gz")
    nib.save(nib.Nifti1Image(mask[:, :, :4], aff), tmp_path / "small_mask.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "moved_mask.nii.gz")
    rows = {"ok": "a_mask.nii.gz", "shape": "small_mask.nii.gz", "affine": "moved_mask.nii.gz"}
    for name, m in rows.items():
        pd.DataFrame({"image": ["a.nii.gz"], "mask": [m]}).to_csv(tmp_path / f"{name}.csv", index=False)
    src = {k: ImageSource(path=str(tmp_path), labels=str(tmp_path / f"{k}.csv"), mask_column="mask") for k in rows}
    ds = read_image_dataset(src["ok"])
    assert np.array_equal(ds.images.masks["a.nii.gz"], mask)
    # off the image's grid: how far, in the scanner's millimetres (the far corner: 4 slices of 3 mm short)
    with pytest.raises(DataError, match=r"small_mask\.nii\.gz: the mask's grid \(\[10, 12, 4\] voxels\) is not its "
                                        r"image 'a\.nii\.gz''s \(\[10, 12, 8\] voxels\).* 12\.00 mm apart"):
        read_image_dataset(src["shape"])
    with pytest.raises(DataError, match=r"moved_mask\.nii\.gz: the mask's grid .* up to 15\.70 mm apart"):
        read_image_dataset(src["affine"])


def test_phantom_lesions_are_segmented_and_masks_written(tmp_path):
    cfg = parse_config({
        "name": "seg", "output_dir": str(tmp_path), "data": {"dataset": "phantoms_2d"},
        "task": {"kind": "segmentation", "labels": ["lesion"]},
        # half of BasicUNet's default widths at every level: the phantoms' lesions need no more
        "models": [{"name": "basic_unet", "params": {"features": [8, 8, 16, 32, 64, 8]}}],
        "split": {"kind": "holdout", "test": 0.3, "valid": 0.2},
        "train": {"max_epochs": 8, "patience": 8, "batch_size": 16, "progress": False},
        "evaluate": {"n_bootstrap": 200}})
    run = run_study(cfg)
    low, high = run.metrics.ci("basic_unet", "dice_lesion")
    assert run.metrics.value("basic_unet", "dice_lesion") > 0.7 and low > 0.6
    assert run.metrics.value("basic_unet", "hd95_lesion") < 5
    preds = run.predictions()
    test = preds[preds["split"] == "test"]
    assert {"case_dice_lesion", "case_hd95_lesion"} <= set(preds.columns) and "score" not in preds.columns
    written = sorted((run.path / "fold_0" / "basic_unet" / "test_outputs").glob("*.nii.gz"))
    assert len(written) == len(test)
    ds = phantom_dataset(300, 64, 2, seed=0)  # the built-in's own draw: masks to compare with
    first = nib.load(written[0])
    image_id = written[0].name[: -len(".nii.gz")]
    assert first.shape == (64, 64) and np.allclose(first.affine, np.eye(4))
    saved = np.asarray(first.dataobj)
    true = ds.images.masks[image_id]
    row = test[test["row"] == int(np.flatnonzero(ds.frame["image"] == image_id)[0])]
    if true.any():
        assert 2 * (saved.astype(bool) & true).sum() / (saved.astype(bool).sum() + true.sum()) == pytest.approx(
            float(row["case_dice_lesion"].iloc[0]), abs=1e-6)
    report = (run.path / "report.html").read_text()
    assert "Best, median and worst test cases by mean Dice" in report and "Dice per test case" in report
    expl = json.loads((run.path / "explanations.json").read_text())["basic_unet"]
    assert [e["case"] for e in expl["examples"]] == ["best", "median", "worst"]
    out = run.predict(phantom_dataset(6, 64, 2, seed=4))
    assert out["mask"].iloc[0].shape == (64, 64) and "voxels_lesion" in out.columns


def test_nifti_study_and_cli_masks_keep_the_affine(tmp_path):
    """NIfTI images + masks listed in a CSV -> a segmentation run -> `medflow predict -o masks/`."""
    import subprocess
    import sys

    ds = phantom_dataset(40, 32, 2, seed=2)
    rows = []
    for k, image in enumerate(ds.frame["image"]):
        aff = np.diag([0.8, 0.8, 1.0, 1.0])
        aff[:3, 3] = [k, 0, 0]
        nib.save(nib.Nifti1Image(ds.images.arrays[image][0], aff), tmp_path / f"{image}.nii.gz")
        nib.save(nib.Nifti1Image(ds.images.masks[image].astype(np.uint8), aff), tmp_path / f"{image}_m.nii.gz")
        rows.append({"image": f"{image}.nii.gz", "mask": f"{image}_m.nii.gz",
                     "patient": ds.frame["patient_id"].iloc[k]})
    pd.DataFrame(rows).to_csv(tmp_path / "list.csv", index=False)
    cfg = parse_config({
        "name": "nii", "output_dir": str(tmp_path / "runs"), "data": {"images": {
            "path": str(tmp_path), "labels": str(tmp_path / "list.csv"), "mask_column": "mask",
            "patient_id": "patient"}, "synthetic": True},
        "task": {"kind": "segmentation", "labels": ["lesion"]}, "models": [{"name": "unet", "params": {
            "channels": [8, 16, 32]}}], "split": {"kind": "holdout", "test": 0.3, "valid": 0.2},
        "train": {"max_epochs": 2, "batch_size": 8, "progress": False}, "evaluate": {"n_bootstrap": 50}})
    run = run_study(cfg)
    written = sorted((run.path / "fold_0" / "unet" / "test_outputs").glob("*.nii.gz"))
    one = nib.load(written[0])
    source = nib.load(tmp_path / written[0].name)  # the image P00004_0.nii.gz -> mask P00004_0.nii.gz
    assert np.allclose(one.affine, source.affine) and one.shape == source.shape
    r = subprocess.run([sys.executable, "-m", "medflow", "predict", str(run.path), str(tmp_path), "--labels",
                        str(tmp_path / "list.csv"), "-o", str(tmp_path / "masks")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "masks" / "predictions.csv")
    assert len(table) == len(rows) and {"mask_file", "voxels_lesion"} <= set(table.columns)
    first = nib.load(tmp_path / "masks" / table["mask_file"].iloc[0])
    assert np.allclose(first.affine, nib.load(tmp_path / rows[0]["image"]).affine) and first.shape == (32, 32)


def test_mni_template_is_read_from_the_nilearn_wheel():
    """The real MNI ICBM152 2009a template: the anchor's label shares and hemisphere split."""
    from medflow.data import builtin

    ds = builtin.load("mni_gm_wm")
    assert not ds.synthetic and ds.frame["source_split"].value_counts().to_dict() == {
        "train": 56, "tuning": 14, "held_out": 1}
    test = ds.images.masks["right_hemisphere"]
    assert test.shape == (97, 233, 189) and ds.images.arrays["right_hemisphere"].shape == (1, 97, 233, 189)
    share = np.bincount(test.ravel(), minlength=3) / test.size
    # the anchor measured outside 80.1%, GM 12.6%, WM 7.3% over the whole volume; one hemisphere is close
    assert abs(share[0] - 0.801) < 0.01 and abs(share[1] - 0.126) < 0.01 and abs(share[2] - 0.073) < 0.01
    crop = "left_x26_y32_z64"
    assert ds.images.arrays[crop].shape == (1, 64, 64, 64)
    assert np.allclose(ds.images.affines[crop][:3, 3] - ds.images.affines["left_x0_y0_z0"][:3, 3],
                       ds.images.affines["left_x0_y0_z0"][:3, :3] @ np.array([26, 32, 64]))
