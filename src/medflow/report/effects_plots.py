"""Plots of a treatment-effect run: propensity overlap, balance, CATE distribution, uplift, CATE calibration."""

from __future__ import annotations

import base64

import numpy as np

from medflow.report.plots import _encode, _figure

__all__ = ["overlap_plot", "overlap_png", "balance_plot", "cate_hist_plot", "uplift_plot", "cate_calibration_plot"]


def _overlap_axes(ov: dict, label: str = ""):
    plt, fig, ax = _figure(5.5, 3.6)
    edges = np.asarray(ov["edges"])
    mid, width = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
    for name, colour, sign in (("treated", "#c0392b", 1), ("control", "#2c7fb8", -1)):
        counts = np.asarray(ov["arms"][name]["hist"], dtype=float)
        share = counts / max(counts.sum(), 1)
        ax.bar(mid, sign * share, width=width, color=colour, alpha=0.75, label=f"{name} (n={ov['arms'][name]['n']})")
    for b in (ov["bound"], 1 - ov["bound"]):
        ax.axvline(b, ls="--", c="grey", lw=0.8)
    ax.axhline(0, c="black", lw=0.6)
    ax.set(xlabel="cross-fitted propensity of treatment", ylabel="share of arm (control drawn downward)",
           title=f"Overlap{' (' + label + ')' if label else ''}: {ov['outside']:.1%} outside "
                 f"[{ov['bound']:g}, {1 - ov['bound']:g}]", xlim=(0, 1))
    ax.legend(fontsize=7)
    return plt, fig


def overlap_plot(ov: dict, label: str = "") -> str:
    return _encode(*_overlap_axes(ov, label))


def overlap_png(ov: dict) -> bytes:
    """The overlap figure as PNG bytes (written beside the runs when a study is refused for poor overlap)."""
    return base64.b64decode(overlap_plot(ov))


def balance_plot(rows: list[dict], top: int = 20) -> str:
    rows = rows[:top][::-1]
    plt, fig, ax = _figure(5.5, max(2.5, 0.22 * len(rows) + 1))
    y = np.arange(len(rows))
    ax.scatter([abs(r["smd"]) for r in rows], y, label="unweighted", c="#c0392b", s=14)
    ax.scatter([abs(r["smd_weighted"]) for r in rows], y, label="IPW-weighted", c="#2c7fb8", s=14, marker="s")
    ax.axvline(0.1, ls="--", c="grey", lw=0.8)
    ax.set_yticks(y, [r["column"][:28] for r in rows], fontsize=7)
    ax.set(xlabel="|standardized mean difference|", title="Covariate balance (0.1 = common bound)")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def cate_hist_plot(hists: dict[str, dict], unit: str) -> str:
    plt, fig, ax = _figure()
    for name, h in hists.items():
        edges = np.asarray(h["edges"])
        ax.stairs(h["counts"], edges, label=name)
    ax.axvline(0, c="grey", lw=0.8)
    ax.set(xlabel=f"predicted individual effect (CATE){unit}", ylabel="test patients",
           title="Distribution of predicted effects")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def uplift_plot(curves: dict[str, dict]) -> str:
    plt, fig, ax = _figure()
    for name, c in curves.items():
        ax.plot(c["share"], c["gain"], label=name)
    first = next(iter(curves.values()))
    ax.plot(first["share"], first["random"], ls="--", c="grey", label="treat at random")
    ax.set(xlabel="share treated (highest predicted benefit first)", ylabel="benefit per patient of the cohort (DR)",
           title="Uplift (Qini) curve, test split")
    ax.legend(fontsize=7)
    return _encode(plt, fig)


def cate_calibration_plot(bins: list[dict], model: str) -> str:
    plt, fig, ax = _figure()
    p = np.array([b["predicted"] for b in bins])
    o = np.array([b["observed"] for b in bins])
    err = np.array([[b["observed"] - b["low"] for b in bins], [b["high"] - b["observed"] for b in bins]])
    ax.errorbar(p, o, yerr=err, fmt="o", capsize=3, label="observed (DR, 95% CI)")
    if all(b.get("true") is not None for b in bins):
        ax.scatter(p, [b["true"] for b in bins], marker="x", c="green", label="true mean effect (simulation)")
    lo, hi = min(p.min(), o.min()), max(p.max(), o.max())
    ax.plot([lo, hi], [lo, hi], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="mean predicted effect in the bin", ylabel="effect in the bin",
           title=f"CATE calibration by quantile ({model})")
    ax.legend(fontsize=7)
    return _encode(plt, fig)
