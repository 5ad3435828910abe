"""Images through the whole flow: featurizer, study (YAML and Python), Grad-CAM, predict, transfer learning."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from medflow.config import parse_config
from medflow.data.images import ImageData, phantom_dataset
from medflow.errors import ConfigError, DataError
from medflow.features.image import ImageFeaturizer
from medflow.study import run_study
from tests.conftest import run_cli

TRAIN = {"max_epochs": 12, "patience": 4, "batch_size": 32, "progress": False}


def test_featurizer_resizes_and_normalizes_like_monai():
    from monai.transforms import NormalizeIntensity, Resize

    rng = np.random.default_rng(0)
    arrays = {"a": rng.normal(5, 3, (2, 16, 16)).astype(np.float32),
              "b": rng.normal(1, 2, (2, 32, 32)).astype(np.float32),
              "c": rng.normal(0, 1, (2, 16, 16)).astype(np.float32)}
    images = ImageData(arrays, "mem")
    feat = ImageFeaturizer().fit(images, ["a", "c"])  # fitted on training ids only: b's size is not the target
    assert feat.size == [16, 16] and feat.channels == 2
    x = feat.transform(images, ["a", "b"])
    assert x.shape == (2, 2, 16, 16)
    ref_a = NormalizeIntensity(channel_wise=True)(arrays["a"].copy())  # MONAI normalizes in place
    ref_b = NormalizeIntensity(channel_wise=True)(Resize((16, 16), mode="area")(arrays["b"].copy()))
    assert np.allclose(x[0], np.asarray(ref_a), atol=1e-5) and np.allclose(x[1], np.asarray(ref_b), atol=1e-4)
    again = ImageFeaturizer.from_dict(json.loads(json.dumps(feat.to_dict())))
    assert np.array_equal(again.transform(images, ["a", "b"]), x)
    with pytest.raises(DataError, match=r"image 'g' has shape \(1, 16, 16\).*trained on 2-channel 2-D"):
        feat.transform(ImageData({"g": np.zeros((1, 16, 16), np.float32)}, "mem"), ["g"])


def _phantom_cfg(tmp_path, **over):
    raw = {"name": "ph", "output_dir": str(tmp_path), "data": {"dataset": "phantoms_2d"},
           "task": {"kind": "binary", "label": "malignant"}, "models": ["small_cnn"],
           "split": {"kind": "holdout", "test": 0.3, "valid": 0.2}, "train": TRAIN,
           "evaluate": {"n_bootstrap": 200}, "explain": {"max_records": 200, "examples": 4}}
    raw.update(over)
    return parse_config(raw)


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory):
    # 30 full epochs: Grad-CAM localizes only once the model is trained well (docs/imaging.md)
    return run_study(_phantom_cfg(tmp_path_factory.mktemp("runs"), train={**TRAIN, "max_epochs": 30,
                                                                          "patience": 30}))


def test_small_cnn_learns_phantoms_and_grad_cam_points_at_the_lesion(phantom_run):
    run = phantom_run
    assert run.synthetic and run.manifest["data"]["images"] > 500
    low, _ = run.metrics.ci("small_cnn", "auroc")
    assert run.metrics.value("small_cnn", "auroc") > 0.85 and low > 0.75
    # patient-level split: no patient's images on both sides
    preds = run.predictions()
    sides = preds.groupby("patient_id")["split"].nunique()
    assert (sides == 1).all()
    expl = json.loads((run.path / "explanations.json").read_text())["small_cnn"]
    pg = expl["pointing_game"]
    assert pg["n"] >= 20 and pg["low"] > pg["chance"] and pg["value"] > 3 * pg["chance"]
    report = (run.path / "report.html").read_text()
    assert "Grad-CAM (MONAI)" in report and "Pointing game" in report and "SYNTHETIC" in report


def test_predict_new_images_with_grad_cam(phantom_run):
    ds = phantom_dataset(30, 64, 2, seed=11)
    out = phantom_run.predict(ds, explain=True)
    assert list(out.columns[:2]) == ["patient_id", "image"] and len(out) == len(ds)
    from medflow.evaluate.metrics import auroc

    assert auroc(ds.frame["malignant"].to_numpy(), out["probability"].to_numpy()) > 0.8
    assert out["explanation"].iloc[0]["map"].shape == (64, 64)
    assert out["synthetic"].all()
    with pytest.raises(DataError, match="this run reads images"):
        phantom_run.predict([{"x": 1}])


def test_image_model_on_a_table_and_table_model_on_images_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"model 'small_cnn' reads images but builtin:breast_cancer holds tabular"):
        run_study(_phantom_cfg(tmp_path, data={"dataset": "breast_cancer"}, task={"kind": "binary",
                                                                                   "label": "malignant"}))
    with pytest.raises(ConfigError, match=r"model 'mlp' reads tabular but builtin:phantoms_2d holds images.*"
                                          r"small_cnn"):
        run_study(_phantom_cfg(tmp_path, models=["mlp"]))


def test_multiclass_3d_phantoms(tmp_path):
    from medflow.data import builtin

    ds = builtin.load("phantoms_3d")
    cfg = _phantom_cfg(tmp_path, data={"dataset": "phantoms_3d"}, task={"kind": "multiclass", "label": "finding"},
                       models=[{"name": "small_cnn", "params": {"channels": [8, 16]}}],
                       train={**TRAIN, "max_epochs": 8, "patience": 8},  # macro AUROC 0.85 at 8 epochs
                       explain={"max_records": 24, "examples": 2})  # Grad-CAM in 3-D; localization is tested in 2-D
    run = run_study(cfg, dataset=ds)
    assert run.metrics.value("small_cnn", "auroc_macro") > 0.75
    e = json.loads((run.path / "explanations.json").read_text())["small_cnn"]
    assert len(e["examples"][0]["peak"]) == 3


def test_transfer_learning_freezes_the_backbone(tmp_path, phantom_run):
    from medflow.models.transfer import Init

    target = phantom_dataset(40, 64, 2, seed=5, contrast=0.35)  # another "scanner": stronger contrast
    entry = {"name": "small_cnn", "init_from": str(phantom_run.path), "freeze": "backbone"}
    cfg = _phantom_cfg(tmp_path, models=[entry], name="ft")
    run = run_study(cfg, dataset=target)
    report = run.metrics.data["transfer"]["small_cnn"]
    assert report["tensors_copied"] == report["tensors_total"]  # same classes: the head is copied too
    head = sum(p.numel() for p in torch.nn.Linear(32, 1).parameters())
    assert report["trainable_parameters"] == head
    src, dst = phantom_run.estimator("small_cnn").module, run.estimator("small_cnn").module
    conv = "features.0.conv.weight"
    assert torch.equal(src.state_dict()[conv], dst.state_dict()[conv])  # frozen: unchanged by training
    assert not torch.equal(src.state_dict()["head.weight"], dst.state_dict()["head.weight"])
    # a three-class target keeps the backbone and starts a fresh head
    init = Init(str(phantom_run.path), "small_cnn", phantom_run.estimator("small_cnn").module.state_dict(), "none")
    from medflow.models.vision import SmallCNN

    m = SmallCNN(1, 3, [1, 64, 64])
    init.apply(m)
    assert init.report["tensors_copied"] == init.report["tensors_total"] - 2
    with pytest.raises(ConfigError, match="not a deep model; init_from"):
        run_study(_phantom_cfg(tmp_path, data={"dataset": "breast_cancer"}, task={"kind": "binary",
                  "label": "malignant"}, models=[{"name": "logistic_regression", "init_from": str(tmp_path)}]))
    with pytest.raises(ConfigError, match="init_from .*nowhere: no such run directory"):
        run_study(_phantom_cfg(tmp_path, models=[{"name": "small_cnn", "init_from": str(tmp_path / "nowhere")}]))


def test_init_from_a_checkpoint_file_or_monai_bundle(tmp_path, phantom_run):
    """Weights from elsewhere: a wrapped PyTorch file with a DataParallel prefix, safetensors, a MONAI bundle; a
    checkpoint of another architecture names its missing and unexpected keys; an unreadable file is named."""
    from safetensors.torch import save_file

    from medflow.models.transfer import Init, load_checkpoint
    from medflow.models.vision import SmallCNN

    state = phantom_run.estimator("small_cnn").module.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text("{}")
    (bundle / "models").mkdir()
    torch.save(state, bundle / "models" / "model.pt")
    for source in (tmp_path / "w.pt", tmp_path / "w.safetensors", bundle):
        m = SmallCNN(1, 1, [1, 64, 64])
        init = Init(str(source), "checkpoint", load_checkpoint(source), "none")
        init.apply(m)
        assert init.report["tensors_copied"] == init.report["tensors_total"], source
        assert all(torch.equal(m.state_dict()[k], v) for k, v in state.items())
    entry = {"name": "small_cnn", "init_from": str(bundle), "freeze": "backbone"}
    run = run_study(_phantom_cfg(tmp_path, models=[entry], name="bundle", train={**TRAIN, "max_epochs": 2}))
    assert run.metrics.data["transfer"]["small_cnn"]["source"] == str(bundle)
    wrong = {"conv1.weight": torch.zeros(3, 3), "fc.weight": torch.zeros(2, 2)}
    torch.save(wrong, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"missing key\(s\) \[.*\], 2 unexpected \[conv1.weight, fc.weight\]"):
        Init("other.pt", "checkpoint", load_checkpoint(tmp_path / "other.pt"), "none").apply(
            SmallCNN(1, 1, [1, 64, 64]))
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="broken.pt: not a readable weights file"):
        load_checkpoint(tmp_path / "broken.pt")


def test_cli_png_folders_to_predictions_and_overlays(tmp_path):
    ds = phantom_dataset(80, 32, 2, seed=3)
    root = tmp_path / "pngs"
    for image, finding in zip(ds.frame["image"], ds.frame["finding"], strict=True):
        a = ds.images.arrays[image][0]
        a = (255 * (a - a.min()) / (a.max() - a.min())).astype(np.uint8)
        (root / finding).mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(root / finding / f"{image}.png")
    labels = pd.DataFrame({"file": [f"{f}/{i}.png" for i, f in zip(ds.frame["image"], ds.frame["finding"],
                                                                    strict=True)],
                           "patient": ds.frame["patient_id"], "finding": ds.frame["finding"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    study = {"name": "png", "output_dir": str(tmp_path / "runs"),
             "data": {"images": {"path": "pngs", "labels": "labels.csv", "image_column": "file",
                                 "patient_id": "patient"}, "synthetic": True},
             "task": {"kind": "multiclass", "label": "finding"}, "models": ["small_cnn"],
             "split": {"kind": "holdout", "test": 0.25, "valid": 0.2}, "train": {**TRAIN, "max_epochs": 3},
             "evaluate": {"n_bootstrap": 50}, "explain": {"max_records": 20, "examples": 3}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    cli = [sys.executable, "-m", "medflow"]
    r = subprocess.run(cli + ["run", str(tmp_path / "study.yaml")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run_dir = next((tmp_path / "runs" / "png").iterdir())
    r = run_cli("predict", run_dir, root / "tumor", "-o", tmp_path / "out.csv", "--explain", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    n_tumor = int((ds.frame["finding"] == "tumor").sum())
    assert len(out) == n_tumor and {"probability_tumor", "prediction", "explanation"} <= set(out.columns)
    assert len(list((tmp_path / "out_gradcam").glob("*.png"))) == n_tumor
    bad = tmp_path / "bad.csv"
    labels.assign(file=lambda d: d["file"].str.replace(".png", ".jpg")).head(3).to_csv(bad, index=False)
    study["data"]["images"]["labels"] = str(bad)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(study))
    r = run_cli("run", tmp_path / "bad.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "bad.csv row 1: image" in r.stderr and "not found" in r.stderr
    assert not list((tmp_path / "runs" / "png").glob("*.incomplete"))


def test_medmnist_npz_study_uses_the_files_splits(tmp_path):
    ds = phantom_dataset(120, 28, 2, seed=8)
    x = np.stack([ds.images.arrays[i][0] for i in ds.frame["image"]])
    x = (255 * (x - x.min()) / (x.max() - x.min())).astype(np.uint8)
    y = ds.frame["finding"].map({"normal": 0, "cyst": 1, "tumor": 2}).to_numpy()[:, None]
    n = len(x)
    cut = [0, int(n * 0.6), int(n * 0.75), n]
    np.savez(tmp_path / "phantommnist.npz", **{f"{s}_images": x[a:b] for s, a, b in
                                               zip(("train", "val", "test"), cut, cut[1:], strict=False)},
             **{f"{s}_labels": y[a:b] for s, a, b in zip(("train", "val", "test"), cut, cut[1:], strict=False)})
    cfg = _phantom_cfg(tmp_path, data={"images": {"path": str(tmp_path / "phantommnist.npz")}, "synthetic": True},
                       task={"kind": "multiclass", "label": "label"}, train={**TRAIN, "max_epochs": 3})
    run = run_study(cfg)
    preds = run.predictions()
    assert (preds["split"] == "test").sum() == n - cut[2]  # the file's own test images, no others
    assert "has no patient ids: each image is treated as its own patient" in run.manifest["patient_id_note"]


def test_multilabel_findings_on_images(tmp_path):
    """Two labels per image at once: any lesion, and malignant (a tumor); one logit each."""
    ds = phantom_dataset(200, 48, 2, seed=6)
    ds.frame["lesion"] = (ds.frame["finding"] != "normal").astype(int)
    cfg = _phantom_cfg(tmp_path, task={"kind": "multilabel", "labels": ["lesion", "malignant"]},
                       train={**TRAIN, "max_epochs": 20, "patience": 20})
    run = run_study(cfg, dataset=ds)
    low, _ = run.metrics.ci("small_cnn", "auroc_labels")
    assert run.metrics.value("small_cnn", "auroc_labels") > 0.8 and low > 0.7
    out = run.predict(phantom_dataset(10, 48, 2, seed=12))
    assert {"probability_lesion", "probability_malignant"} <= set(out.columns)
    assert all(set(p) <= {"lesion", "malignant"} for p in out["prediction"])
    assert "ROC per label" in (run.path / "report.html").read_text()
    with pytest.raises(DataError, match="label 'finding' holds 'cyst'"):
        run_study(_phantom_cfg(tmp_path, task={"kind": "multilabel", "labels": ["finding", "malignant"]}),
                  dataset=ds)
