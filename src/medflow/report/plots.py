"""Plots for the report, returned as base64 PNG strings (embedded, so the HTML opens offline)."""

from __future__ import annotations

import base64
import io

import numpy as np

from medflow.evaluate.metrics import auprc, auroc
from medflow.evaluate.threshold import roc_points

__all__ = ["km_by_risk_plot", "survival_calibration_plot",
           "roc_plot", "pr_plot", "calibration_plot", "confusion_plot", "importance_plot", "scatter_plot",
           "history_plot", "decision_curve_plot", "case_box_plot"]


def _figure(width: float = 5.0, height: float = 4.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    return plt, fig, ax


def _encode(plt, fig) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    plt, fig, ax = _figure()
    for name, (y, s) in curves.items():
        fpr, tpr, _ = roc_points(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(y, s):.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, test split")
    ax.legend(fontsize=7, loc="lower right")
    return _encode(plt, fig)


def pr_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    plt, fig, ax = _figure()
    for name, (y, s) in curves.items():
        order = np.argsort(-s, kind="mergesort")
        tp = np.cumsum(y[order])
        precision = tp / np.arange(1, len(y) + 1)
        recall = tp / max(tp[-1], 1)
        ax.step(np.r_[0, recall], np.r_[1, precision], where="post", label=f"{name} (AP {auprc(y, s):.3f})")
    prevalence = float(np.mean(next(iter(curves.values()))[0])) if curves else 0
    ax.axhline(prevalence, ls="--", c="grey", lw=0.8)
    ax.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall, test split")
    ax.legend(fontsize=7, loc="lower left")
    return _encode(plt, fig)


def calibration_plot(curves: dict[str, dict]) -> str:
    plt, fig, ax = _figure()
    for name, c in curves.items():
        ax.plot(c["mean_predicted"], c["observed"], marker="o", ms=3, label=f"{name} (ECE {c['ece']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration, test split",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper left")
    return _encode(plt, fig)


def confusion_plot(matrix: list[list[int]], labels: list[str], title: str) -> str:
    plt, fig, ax = _figure(4, 3.5)
    m = np.asarray(matrix)
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set(xlabel="predicted", ylabel="observed", title=title)
    return _encode(plt, fig)


def importance_plot(values: dict[str, float], errors: dict[str, float] | None, title: str, top: int = 15) -> str:
    items = list(values.items())[:top][::-1]
    plt, fig, ax = _figure(5.5, 0.3 * len(items) + 1.2)
    ax.barh([k for k, _ in items], [v for _, v in items],
            xerr=[errors[k] for k, _ in items] if errors else None, color="#4477aa")
    ax.tick_params(axis="y", labelsize=7)
    ax.set(title=title)
    return _encode(plt, fig)


def scatter_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    plt, fig, ax = _figure()
    lo, hi = np.inf, -np.inf
    for name, (y, s) in curves.items():
        ax.scatter(y, s, s=8, alpha=0.6, label=name)
        lo, hi = min(lo, y.min(), s.min()), max(hi, y.max(), s.max())
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="observed", ylabel="predicted", title="Predicted vs observed, test split")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def history_plot(histories: dict[str, list[dict]]) -> str:
    plt, fig, ax = _figure(5.5, 3.5)
    for name, h in histories.items():
        epochs = [r["epoch"] for r in h]
        ax.plot(epochs, [r["train_loss"] for r in h], label=f"{name} train")
        ax.plot(epochs, [r["val_loss"] for r in h], ls="--", label=f"{name} valid")
    ax.set(xlabel="epoch", ylabel="loss", title="Training curves (fold 0)")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def km_by_risk_plot(time: np.ndarray, event: np.ndarray, risk: np.ndarray, title: str, unit: str) -> str:
    """Kaplan-Meier curves of the test patients split into tertiles of predicted risk."""
    from medflow.evaluate.survival import kaplan_meier

    plt, fig, ax = _figure()
    groups = np.array_split(np.argsort(risk), 3)
    for name, g in zip(("low risk", "middle", "high risk"), groups, strict=True):
        if len(g) and event[g].sum() >= 0:
            t, s = kaplan_meier(time[g], event[g])
            ax.step(np.r_[0, t], np.r_[1, s], where="post", label=f"{name} (n={len(g)})")
    ax.set(xlabel=f"time ({unit})", ylabel="survival probability", title=title, ylim=(0, 1.02))
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def survival_calibration_plot(cal: dict, model: str, unit: str) -> str:
    plt, fig, ax = _figure()
    for h, c in cal.items():
        ax.plot(c["mean_predicted"], c["observed"], marker="o", ms=3, label=f"at {h} {unit} (gap {c['ece']:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="predicted survival", ylabel="observed (Kaplan-Meier)", xlim=(0, 1), ylim=(0, 1),
           title=f"Calibration by risk decile ({model})")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def decision_curve_plot(thresholds: list[float], curves: dict[str, list[float]], treat_all: list[float],
                        title: str) -> str:
    """Net benefit against threshold probability, with treat-all and treat-none references."""
    plt, fig, ax = _figure(5.5, 4.0)
    th = np.asarray(thresholds)
    for name, nb in curves.items():
        ax.plot(th, nb, label=name, lw=1.2)
    ax.plot(th, treat_all, ls="--", c="grey", lw=0.9, label="treat all")
    ax.axhline(0, c="black", lw=0.8, label="treat none")
    top = max([max(v) for v in curves.values()] + [max(treat_all)] + [0.01])
    ax.set_ylim(-0.05 * top - 0.01, top * 1.1)
    ax.set(xlabel="threshold probability", ylabel="net benefit", title=title)
    ax.legend(fontsize=7, loc="best", framealpha=0.8)
    return _encode(plt, fig)


def case_box_plot(values: dict[str, np.ndarray], title: str) -> str:
    """One box per model of per-case values (e.g. segmentation Dice), cases as points."""
    plt, fig, ax = _figure(5.5, 3.6)
    names = list(values)
    data = [np.asarray(v, float)[np.isfinite(v)] for v in values.values()]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=20, fontsize=8)
    for i, v in enumerate(data, start=1):
        ax.scatter(np.full(len(v), i) + np.random.default_rng(i).uniform(-0.12, 0.12, len(v)), v, s=6, alpha=0.5)
    ax.set_title(title, fontsize=9)
    return _encode(plt, fig)
