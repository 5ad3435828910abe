"""Imaging benchmarks (SYNTHETIC phantoms, `data/simulate/phantoms.py`).

(a) Throughput: images per second, training and inference, for `small_cnn` and MONAI's DenseNet121 at 64x64
    and 128x128: medflow's Trainer (and `predict_outputs`) against a plain MONAI/PyTorch loop on the same
    network, data, optimizer (AdamW), batch size and shuffling, alternating repeats in this process (median).
(b) Classification on phantoms_2d through `run_study`: AUROC with patient-bootstrap CIs per image model.
(c) Transfer learning: small_cnn pretrained on phantoms_2d (contrast 0.25), trained on another "scanner"
    (contrast 0.15, noise 0.08) at 3 training sizes, from scratch vs fine-tuned (`init_from`, `freeze: none`)
    vs linear probe (`freeze: backbone`), all scored on one fixed test set of 150 target patients.

(d) MNI GM/WM segmentation (real template, right hemisphere held out): the same UNet through medflow's Trainer
    vs the anchor's plain MONAI loop (seconds per iteration), and Dice through `run_study` beside the
    two-threshold rule.

(e) Augmentation: small_cnn on the target domain at 3 training sizes without and with `train.augment: default`,
    paired AUROC difference on one fixed test set (patient bootstrap), mean of the scores of 2 seeds.

Usage: python benchmarks/bench_imaging.py [throughput|phantoms|transfer|augment|mni_speed|mni]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medflow.config import parse_config
from medflow.data.images import ImageData, image_dataset, phantom_dataset
from medflow.study import run_study
from medflow.train import TrainConfig, Trainer
from medflow.train.trainer import predict_outputs

torch.set_num_threads(2)


def _net(name: str, size: int) -> torch.nn.Module:
    from medflow.models.vision import SmallCNN, build_densenet121

    if name == "small_cnn":
        return SmallCNN(1, 1, [1, size, size])
    return build_densenet121(1, 1, [1, size, size])


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)


def _plain(name: str, x: torch.Tensor, y: torch.Tensor, bs: int, seed: int) -> tuple[float, float]:
    """One epoch of the loop a researcher writes with MONAI, then inference over the same images."""
    torch.manual_seed(seed)
    net = _net(name, x.shape[-1])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    net.train()
    for idx in torch.randperm(len(x), generator=g).split(bs):
        opt.zero_grad(set_to_none=True)
        _loss(net(x[idx]), y[idx]).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    train = time.perf_counter() - start
    net.eval()
    start = time.perf_counter()
    with torch.no_grad():
        torch.cat([net(x[i:i + 256]) for i in range(0, len(x), 256)])
    return train, time.perf_counter() - start


def _medflow(name: str, x: torch.Tensor, y: torch.Tensor, bs: int, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    net = _net(name, x.shape[-1])
    trainer = Trainer(TrainConfig(max_epochs=1, batch_size=bs, schedule="constant", progress=False), seed=seed)
    start = time.perf_counter()
    trainer.fit(net, _loss, x, y)
    train = time.perf_counter() - start
    start = time.perf_counter()
    predict_outputs(net, x, 256)
    return train, time.perf_counter() - start


def throughput(repeats: int = 3) -> list[dict]:
    rows = []
    for name, size, n in (("small_cnn", 64, 1024), ("small_cnn", 128, 512), ("densenet121", 64, 256),
                          ("densenet121", 128, 128)):
        ds = phantom_dataset(n // 2, size, 2, seed=1)
        x = torch.as_tensor(np.stack(list(ds.images.arrays.values()))[:n])
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)
        y = torch.as_tensor(ds.frame["malignant"].to_numpy()[:n], dtype=torch.float32)
        times: dict[str, list] = {"plain": [], "medflow": []}
        for r in range(repeats):
            for kind, fn in (("plain", _plain), ("medflow", _medflow)) if r % 2 == 0 else \
                    (("medflow", _medflow), ("plain", _plain)):
                times[kind].append(fn(name, x, y, 32, r))
        med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
        rows.append({"model": name, "size": size, "images": len(x),
                     "plain_train_ips": len(x) / med["plain"][0], "medflow_train_ips": len(x) / med["medflow"][0],
                     "plain_infer_ips": len(x) / med["plain"][1], "medflow_infer_ips": len(x) / med["medflow"][1]})
        print(rows[-1], flush=True)
    return rows


def phantoms(out: Path) -> dict:
    cfg = parse_config({
        "name": "bench-phantoms", "output_dir": str(out), "data": {"dataset": "phantoms_2d"},
        "task": {"kind": "binary", "label": "malignant"},
        "models": ["small_cnn", {"name": "resnet18", "params": {"widen_factor": 0.5}},
                   {"name": "densenet121", "params": {"init_features": 32, "growth_rate": 16}}],
        "split": {"kind": "holdout", "test": 0.3, "valid": 0.2},
        "train": {"max_epochs": 30, "patience": 30, "batch_size": 32, "progress": False},
        "evaluate": {"n_bootstrap": 1000}, "explain": {"max_records": 200, "examples": 4}})
    run = run_study(cfg)
    import json

    expl = json.loads((run.path / "explanations.json").read_text())
    return {"models": {m: {"auroc": run.metrics.data["models"][m]["metrics"]["auroc"],
                           "fit_s": run.metrics.data["fit_seconds"][m],
                           "pointing": expl[m].get("pointing_game")} for m in run.models},
            "selected": run.metrics.selected_model, "n_test": int((run.predictions()["split"] == "test").sum() / 3)}


def _domain(n: int, seed: int, prefix: str, split: str) -> tuple[dict, dict, pd.DataFrame]:
    ds = phantom_dataset(n, 64, 2, seed=seed, contrast=0.15, noise=0.08)
    f = ds.frame.copy()
    f["patient_id"] = prefix + f["patient_id"]
    f["image"] = prefix + f["image"]
    f["source_split"] = split
    arrays = {prefix + k: v for k, v in ds.images.arrays.items()}
    masks = {prefix + k: v for k, v in ds.images.masks.items()}
    return arrays, masks, f


def _target(n: int, test: tuple) -> tuple[pd.DataFrame, object]:
    """The target domain with `n` training patients, a quarter as many for validation, and the fixed test set."""
    tr = _domain(n, 10 + n, "S", "train")
    va = _domain(max(8, n // 4), 50 + n, "V", "tuning")
    frame = pd.concat([tr[2], va[2], test[2]], ignore_index=True)
    images = ImageData({**tr[0], **va[0], **test[0]}, "SYNTHETIC target domain",
                       masks={**tr[1], **va[1], **test[1]}, synthetic=True)
    return frame, image_dataset(images, frame, "patient_id", f"target-{n}", "target domain: contrast 0.15, noise 0.08")


def transfer(out: Path, sizes: tuple[int, ...] = (20, 50, 100)) -> list[dict]:
    from medflow.data import builtin

    pre = run_study(parse_config({
        "name": "pretrain", "output_dir": str(out), "data": {"dataset": "phantoms_2d"},
        "task": {"kind": "binary", "label": "malignant"}, "models": ["small_cnn"],
        "split": {"kind": "holdout", "test": 0.2, "valid": 0.2},
        "train": {"max_epochs": 30, "patience": 30, "batch_size": 32, "progress": False},
        "evaluate": {"n_bootstrap": 200}}), dataset=builtin.load("phantoms_2d"))
    test = _domain(150, 99, "T", "held_out")
    rows = []
    for n in sizes:
        frame, ds = _target(n, test)
        for variant, entry in (("scratch", {"name": "small_cnn"}),
                               ("fine-tuned", {"name": "small_cnn", "init_from": str(pre.path)}),
                               ("linear probe", {"name": "small_cnn", "init_from": str(pre.path),
                                                 "freeze": "backbone"})):
            run = run_study(parse_config({
                "name": f"transfer-{n}-{variant.replace(' ', '_')}", "output_dir": str(out),
                "data": {"images": {"path": "memory"}}, "task": {"kind": "binary", "label": "malignant"},
                "models": [entry], "split": {"kind": "holdout"},
                "train": {"max_epochs": 30, "patience": 30, "batch_size": 16, "progress": False},
                "evaluate": {"n_bootstrap": 1000}}), dataset=ds)
            m = run.metrics.data["models"]["small_cnn"]["metrics"]["auroc"]
            rows.append({"patients": n, "images": int((frame["source_split"] == "train").sum()),
                         "variant": variant, "auroc": m})
            print(rows[-1], flush=True)
    return rows


def augmentation(out: Path, sizes: tuple[int, ...] = (20, 50, 100), seeds: tuple[int, ...] = (0, 1)) -> list[dict]:
    """(e) small_cnn on the target phantom domain at 3 training sizes, without and with `train.augment: default`,
    scored on one fixed test set of 150 patients: AUROC of each and the paired difference (patient bootstrap
    over the same test patients, 1000 resamples), averaged over seeds."""
    from sklearn.metrics import roc_auc_score

    test = _domain(150, 99, "T", "held_out")
    rows = []
    for n in sizes:
        frame, ds = _target(n, test)
        scores = {}
        for variant, augment in (("none", None), ("default", "default")):
            for seed in seeds:
                run = run_study(parse_config({
                    "name": f"augment-{n}-{variant}-{seed}", "output_dir": str(out), "seed": seed,
                    "data": {"images": {"path": "memory"}}, "task": {"kind": "binary", "label": "malignant"},
                    "models": ["small_cnn"], "split": {"kind": "holdout"},
                    "train": {"max_epochs": 40, "patience": 40, "batch_size": 16, "progress": False,
                              "augment": augment},
                    "evaluate": {"n_bootstrap": 100}}), dataset=ds)
                p = run.predictions()
                p = p[(p["split"] == "test") & (p["model"] == "small_cnn")].sort_values("row")
                scores.setdefault(variant, []).append(p["score"].to_numpy())
                truth, pid = p["y_true"].to_numpy(), p["patient_id"].to_numpy()
        a, b = np.mean(scores["none"], axis=0), np.mean(scores["default"], axis=0)
        rng = np.random.default_rng(0)
        patients = np.unique(pid)
        rows_of = {q: np.flatnonzero(pid == q) for q in patients}
        diffs, auc = [], {"none": [], "default": []}
        for _ in range(1000):
            idx = np.concatenate([rows_of[q] for q in rng.choice(patients, len(patients))])
            if len(set(truth[idx])) < 2:
                continue
            auc["none"].append(roc_auc_score(truth[idx], a[idx]))
            auc["default"].append(roc_auc_score(truth[idx], b[idx]))
            diffs.append(auc["default"][-1] - auc["none"][-1])

        def ci(v, point):
            return {"value": float(point), "low": float(np.percentile(v, 2.5)), "high": float(np.percentile(v, 97.5))}

        rows.append({"patients": n, "images": int((frame["source_split"] == "train").sum()),
                     "none": ci(auc["none"], roc_auc_score(truth, a)),
                     "default": ci(auc["default"], roc_auc_score(truth, b)),
                     "difference": ci(diffs, roc_auc_score(truth, b) - roc_auc_score(truth, a))})
        print(rows[-1], flush=True)
    return rows


def _threshold_rule(ds) -> dict:
    """The anchor's baseline: two intensity thresholds chosen on the training crops to maximize mean Dice
    (the anchor's own Dice formula; the crops are pooled into one set of voxels)."""

    def dice(p: np.ndarray, t: np.ndarray, c: int) -> float:
        s = (p == c).sum() + (t == c).sum()
        return float(2 * ((p == c) & (t == c)).sum() / s) if s else float("nan")

    train = ds.frame[ds.frame["source_split"] == "train"]["image"]
    # every 7th voxel of the pooled crops: the thresholds are quantiles, so this changes them by under 0.001
    xtr = np.concatenate([ds.images.arrays[i].ravel()[::7] for i in train])
    ytr = np.concatenate([ds.images.masks[i].ravel()[::7] for i in train])
    best, pick = -1.0, (0.0, 0.0)
    qs = np.quantile(xtr, np.linspace(0.3, 0.99, 60))
    for lo in qs:
        for hi in qs[qs > lo]:
            p = (xtr > lo).astype(np.uint8) + (xtr > hi)
            m = (dice(p, ytr, 1) + dice(p, ytr, 2)) / 2
            if m > best:
                best, pick = m, (lo, hi)
    x, y = ds.images.arrays["right_hemisphere"][0], ds.images.masks["right_hemisphere"]
    p = (x > pick[0]).astype(np.uint8) + (x > pick[1])
    return {"dice_gm": dice(p, y, 1), "dice_wm": dice(p, y, 2)}


def mni_speed(iters: int = 56, repeats: int = 2) -> dict:
    """Seconds per training iteration: the anchor's plain MONAI loop (UNet, Adam, DiceCE, batch 2 of 64^3 crops
    drawn at random; here from the dataset's training crops, so both read the same data) against medflow's
    Trainer on the same crops, network and loss."""
    from monai.losses import DiceCELoss

    from medflow.data import builtin
    from medflow.models.vision import build_unet
    from medflow.tasks.segmentation import Segmentation

    ds = builtin.load("mni_gm_wm")
    train = ds.frame[ds.frame["source_split"] == "train"]["image"].tolist()
    x = torch.as_tensor(np.stack([ds.images.arrays[i] for i in train]))
    y = torch.as_tensor(np.stack([ds.images.masks[i] for i in train]).astype(np.int64))
    task = Segmentation(labels=["gm", "wm"]).fit(ds.frame)

    def plain(seed: int) -> float:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = build_unet(1, 3, [1, 64, 64, 64])
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        start = time.perf_counter()
        for _ in range(iters):
            idx = rng.integers(0, len(train), 2)
            xb, yb = x[idx], y[idx].unsqueeze(1)
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
        return (time.perf_counter() - start) / iters

    def medflow(seed: int) -> float:
        torch.manual_seed(seed)
        net = build_unet(1, 3, [1, 64, 64, 64])
        epochs = max(1, iters // (len(train) // 2))
        trainer = Trainer(TrainConfig(max_epochs=epochs, batch_size=2, schedule="constant", grad_clip=None,
                                      weight_decay=0.0, progress=False), seed=seed)
        start = time.perf_counter()
        trainer.fit(net, task.loss, x, y)
        return (time.perf_counter() - start) / (epochs * (len(train) // 2))

    runs: dict[str, list] = {"plain": [], "medflow": []}
    for r in range(repeats):
        order = (("plain", plain), ("medflow", medflow)) if r % 2 == 0 else (("medflow", medflow), ("plain", plain))
        for k, fn in order:
            runs[k].append(fn(r))
    out = {k: statistics.median(v) for k, v in runs.items()}
    out["ratio"] = out["medflow"] / out["plain"]
    print(out, flush=True)
    return out


def mni_dice(out: Path, epochs: int = 75, stride: int = 16, lr: float = 3e-3) -> dict:
    """GM/WM Dice on the held-out right hemisphere through `run_study` (sliding-window inference), beside the
    two-threshold rule fitted on the same training crops (a stride-16 grid: 288 training crops, 144
    iterations/epoch; the defaults, lr 3e-3 for 75 epochs, take ~23 min on 2 cores)."""
    from medflow.data.images import mni_dataset

    ds = mni_dataset(stride=stride)
    per_epoch = int((ds.frame["source_split"] == "train").sum()) // 2
    start = time.perf_counter()
    run = run_study(parse_config({
        "name": "bench-mni", "output_dir": str(out), "data": {"dataset": "mni_gm_wm"},
        "task": {"kind": "segmentation", "labels": ["gm", "wm"]}, "models": ["unet"],
        "split": {"kind": "holdout"},
        "train": {"max_epochs": epochs, "patience": epochs, "batch_size": 2, "lr": lr, "progress": False},
        "evaluate": {"n_bootstrap": 50}}), dataset=ds)
    m = run.metrics.data["models"]["unet"]["metrics"]
    res = {"unet": {"dice_gm": m["dice_gm"]["value"], "dice_wm": m["dice_wm"]["value"],
                    "hd95_gm": m["hd95_gm"]["value"], "hd95_wm": m["hd95_wm"]["value"]},
           "iterations": epochs * per_epoch, "wall_s": time.perf_counter() - start,
           "threshold_rule": _threshold_rule(ds)}
    print(res, flush=True)
    return res


def main(which: str | None = None) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if which in (None, "throughput"):
            results["throughput"] = throughput()
        if which in (None, "phantoms"):
            results["phantoms"] = phantoms(Path(tmp))
            print(results["phantoms"], flush=True)
        if which in (None, "transfer"):
            results["transfer"] = transfer(Path(tmp))
        if which in (None, "augment"):
            results["augment"] = augmentation(Path(tmp))
        if which in (None, "mni_speed"):
            results["mni_speed"] = mni_speed()
        if which in (None, "mni"):
            results["mni"] = mni_dice(Path(tmp))
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
