"""Grad-CAM for image models (MONAI's `GradCAM` on the module's last convolutional feature map).

For a binary model the map is the gradient-weighted activation of the logit (evidence for the positive
class); for a multiclass model, of the predicted class. The study explains example test images of every
true class (the most confident correct ones and the errors) in one overlay figure for the report. Where the
data carry lesion masks (the phantoms), it also scores the maps with the *pointing game* (Zhang et al.
2018): the share of lesion-bearing test images whose map peaks inside the lesion (dilated by one voxel),
so an explanation's faithfulness to the known truth is a number, not an impression.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medflow.models.base import DeepEstimator

__all__ = ["grad_cam", "pointing_game", "explain_images", "cam_peak", "cam_figure", "view_slice",
           "explain_segmentation"]


def grad_cam(est: DeepEstimator, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Grad-CAM maps (n, *spatial), each scaled to [0, 1], at the input's resolution."""
    from monai.visualize import GradCAM

    module = est.module.eval()
    layer = getattr(module, "cam_layer", None)
    if layer is None:
        raise ValueError(f"model '{est.spec.name}' names no layer for Grad-CAM (cam_layer)")
    # MONAI's default post-processing maps (min, max) to (1, 0), flipping the map (documented there): scale to
    # (0, 1) per image instead, so high means evidence
    cam = GradCAM(nn_module=module, target_layers=layer, postprocessing=_unit_scale)
    binary = est.head.output_dim == 1 if hasattr(est.head, "output_dim") else True
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size])).requires_grad_(True)
        with torch.enable_grad():
            m = cam(xb, class_idx=0 if binary else None)
        out.append(m.detach().numpy()[:, 0])
    return np.concatenate(out) if out else np.zeros((0, *x.shape[2:]), np.float32)


def _unit_scale(m: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, m.ndim))
    lo, hi = m.amin(dim=dims, keepdim=True), m.amax(dim=dims, keepdim=True)
    return (m - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))


def cam_peak(cam: np.ndarray) -> list[int]:
    """The voxel where a map peaks (index per spatial axis)."""
    return [int(v) for v in np.unravel_index(int(np.argmax(cam)), cam.shape)]


def pointing_game(cams: np.ndarray, masks: list[np.ndarray | None], tolerance: float = 0.05) -> dict[str, Any] | None:
    """Share of images with a lesion whose map peaks inside it, with a Wilson 95% CI, and the share a random point
    would reach. The lesion is widened by `tolerance` x the image's largest side (Zhang et al. allow 15 pixels at
    224: about 7%), since Grad-CAM maps are upsampled from a coarse feature grid."""
    from scipy.ndimage import binary_dilation

    hits, chance = [], []
    for cam, mask in zip(cams, masks, strict=True):
        if mask is None or not mask.any():
            continue
        if mask.shape != cam.shape:
            from medflow.data.images import resize_mask

            mask = resize_mask(mask, cam.shape) > 0
        wide = binary_dilation(mask, iterations=max(1, round(tolerance * max(cam.shape))))
        hits.append(bool(wide[tuple(cam_peak(cam))]))
        chance.append(float(wide.mean()))
    if not hits:
        return None
    n, k = len(hits), sum(hits)
    p, z = k / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": n,
            "chance": float(np.mean(chance)), "tolerance": tolerance}


def _pick(y: np.ndarray, pred: np.ndarray, conf: np.ndarray, classes: list, per_class: int) -> list[int]:
    rows: list[int] = []
    for c in range(len(classes)):
        right = np.flatnonzero((y == c) & (pred == c))
        wrong = np.flatnonzero((y == c) & (pred != c))
        rows += right[np.argsort(-conf[right])][:per_class].tolist() + wrong[np.argsort(-conf[wrong])][:1].tolist()
    return rows


def explain_images(est: DeepEstimator, x: np.ndarray, y: np.ndarray, max_records: int, examples: int,
                   ids: list[str], masks: list[np.ndarray | None] | None = None) -> dict[str, Any]:
    """explanations.json entry of an image model: example overlays and, with masks, the pointing game."""
    n = min(max_records, len(x))
    x, y = x[:n], np.asarray(y[:n]).astype(int)
    if y.ndim == 2:  # multilabel: explain the most probable label; an image's "class" is its first true label
        y = np.where(y.any(axis=1), y.argmax(axis=1), -1)
    prob = np.asarray(est.predict(x))
    classes = list(est.task.classes)
    if prob.ndim == 1:
        pred, conf = (prob >= 0.5).astype(int), np.where(prob >= 0.5, prob, 1 - prob)
    else:
        pred, conf = prob.argmax(1), prob.max(1)
    cams = grad_cam(est, x)
    explained = (y == 1) if prob.ndim == 1 else (pred == y)
    rows = _pick(y, pred, conf, classes, max(1, examples // max(1, len(classes))))
    shown = [{"row": int(i), "image": ids[i], "true": str(classes[y[i]]), "predicted": str(classes[pred[i]]),
              "confidence": float(conf[i]), "correct": bool(y[i] == pred[i]), "peak": cam_peak(cams[i])}
             for i in rows]
    return {"method": "grad_cam", "layer": est.module.cam_layer, "examples": shown,
            "figure": cam_figure([x[i, 0] for i in rows], [cams[i] for i in rows],
                                 [f"{e['image']}\ntrue {e['true']}, pred {e['predicted']} ({e['confidence']:.2f})"
                                  for e in shown]),
            # the map explains the positive class (binary) or the predicted class: score it on the images where
            # that class is the true one, so it should point at their lesion
            "pointing_game": pointing_game(cams[explained], [masks[i] for i in np.flatnonzero(explained)])
            if masks is not None else None}


def view_slice(image: np.ndarray, cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D views of an image and its map: the image itself, or for volumes the slice through the map's peak."""
    if image.ndim == 2:
        return image, cam
    k = cam_peak(cam)[0]
    return image[k], cam[k]


def cam_figure(images: list[np.ndarray], cams: list[np.ndarray], titles: list[str], cols: int = 4) -> str:
    """Overlays (image in grey, Grad-CAM in colour) as one base64 PNG for the report."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(images))
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), dpi=80, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, cam, title in zip(axes.ravel(), images, cams, titles, strict=False):
        im, c = view_slice(img, cam)
        ax.imshow(im, cmap="gray")
        ax.imshow(c, cmap="jet", alpha=0.35, vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def explain_segmentation(est: DeepEstimator, x: np.ndarray, y: np.ndarray, ids: list[str]) -> dict[str, Any]:
    """explanations.json entry of a segmentation model: the best, median and worst test cases by mean Dice,
    the image with the true (green) and predicted (red) outlines."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medflow.tasks.segmentation import case_metrics

    pred = est.predict(x)
    dice = case_metrics(pred, np.asarray(y), len(est.task.labels))[:, 0]
    order = np.argsort(np.where(np.isnan(dice), np.inf, dice))
    valid = order[np.isfinite(dice[order])]
    if not len(valid):
        return {"method": "mask_overlays", "examples": [], "figure": None}
    picks = {"best": int(valid[-1]), "median": int(valid[len(valid) // 2]), "worst": int(valid[0])}
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3), dpi=80)
    for ax, (what, i) in zip(axes, picks.items(), strict=True):
        img, truth, guess = x[i, 0], np.asarray(y[i]), pred[i]
        if img.ndim == 3:  # volumes: the slice with the most true foreground
            k = int(np.argmax((truth > 0).reshape(truth.shape[0], -1).sum(1)))
            img, truth, guess = img[k], truth[k], guess[k]
        ax.imshow(img, cmap="gray")
        for lab in range(1, len(est.task.labels) + 1):
            if (truth == lab).any():
                ax.contour(truth == lab, levels=[0.5], colors="lime", linewidths=1)
            if (guess == lab).any():
                ax.contour(guess == lab, levels=[0.5], colors="red", linewidths=1)
        ax.set_title(f"{what}: {ids[i]}\nDice {dice[i]:.3f}", fontsize=8)
        ax.axis("off")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return {"method": "mask_overlays", "figure": base64.b64encode(buf.getvalue()).decode(),
            "examples": [{"case": what, "image": ids[i], "dice": float(dice[i])} for what, i in picks.items()]}
