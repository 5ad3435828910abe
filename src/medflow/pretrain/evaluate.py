"""Held-out figures of a pretraining, each beside the reference a model without history would reach.

* next_code: perplexity of the next code (and top-1 / top-10 accuracy); the reference is the perplexity under the
  pretraining codes' frequencies (add-one smoothed).
* motor: mean time-to-event negative log-likelihood per (event, code) pair; the reference is the same
  likelihood under one piecewise-constant hazard per code and piece, fitted on the pretraining windows (the
  maximum-likelihood events / exposure): the network beats it only by reading the history.

CIs are 95% percentile intervals of a bootstrap over held-out patients (a patient's windows drawn together).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medflow.features.windows import MIN_TIME
from medflow.train.trainer import predict_outputs

__all__ = ["held_out_figures", "code_counts", "motor_rates", "bootstrap_figures"]

def _positions(x: Any, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """The event positions of every window after its first (the codes predicted), in chunks of windows."""
    pos, valid = [], []
    for i in range(0, len(x), chunk):
        p, v = x.positions(np.arange(i, min(i + chunk, len(x))))
        pos.append(p[:, 1:].ravel())
        valid.append(v[:, 1:].ravel())
    return np.concatenate(pos), np.concatenate(valid)


def code_counts(x: Any, cache: Any, timed_only: bool = False) -> np.ndarray:
    """How often each code id occurs in the windows of `x` (after each window's first event)."""
    pos, valid = _positions(x)
    p = pos[valid]
    codes = np.asarray(cache.flat["codes"])[p]
    if timed_only:
        codes = codes[np.asarray(cache.flat["times"])[p] != MIN_TIME]
    return np.bincount(codes, minlength=cache.featurizer.n_codes)


def _bootstrap(scores: np.ndarray, subject: np.ndarray, seed: int, n_boot: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Per-patient sums of the window scores, and their totals over `n_boot` resamples of patients."""
    _, group = np.unique(subject, return_inverse=True)
    per = np.zeros((group.max() + 1, scores.shape[1]))
    np.add.at(per, group, scores)
    rng = np.random.default_rng(seed)
    return per, per[rng.integers(0, len(per), size=(n_boot, len(per)))].sum(axis=1)


def _figure(values: np.ndarray, point: float) -> dict[str, float]:
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return {"value": float(point), "low": float(lo), "high": float(hi)}


@torch.no_grad()
def _motor_stats(module: Any, x: Any, max_windows: int = 5000,
                 batch: int = 256) -> tuple[np.ndarray, np.ndarray, float]:
    """Observed next occurrences and days at risk per (task code, piece) over the first `max_windows` windows."""
    from medflow.models.timeline import motor_targets

    k, p = len(module.task_codes), len(module.starts)
    events, exposure, pairs = np.zeros((k, p)), np.zeros((k, p)), 0.0
    for i in range(0, min(len(x), max_windows), batch):
        b = x.batch(np.arange(i, min(i + batch, len(x), max_windows)))
        exp_, piece, observed, usable = motor_targets(b, module.task_codes, module.starts)
        exposure += exp_[usable].sum(0).double().numpy()
        obs = observed[usable]
        np.add.at(events, (np.nonzero(obs.numpy())[1], piece[usable][obs].numpy()), 1)
        pairs += float(usable.sum()) * k
    return events, exposure, pairs


def motor_rates(module: Any, x_train: Any) -> np.ndarray:
    """Piecewise-constant hazards per (task code, piece): events / days at risk in the training windows (smoothed,
    so a piece never seen has a small finite hazard). The time-to-event head starts from them (its bias), and
    they are the reference the held-out likelihood is compared with."""
    events, exposure, _ = _motor_stats(module, x_train)
    return (events + 0.5) / (exposure + 1.0)


def _motor_reference(module: Any, rate: np.ndarray, x_hold: Any) -> float:
    """Held-out time-to-event NLL per pair under the constant hazards `rate`."""
    e_ho, x_ho, pairs = _motor_stats(module, x_hold, max_windows=len(x_hold))
    return float(-(e_ho * np.log(rate) - rate * x_ho).sum() / max(pairs, 1.0))


def held_out_figures(module: Any, objective: str, x_train: Any, x_hold: Any, cache: Any, seed: int,
                     rates: np.ndarray | None = None) -> dict[str, Any]:
    """The held-out figures (with CIs) and a one-line summary for the console."""
    scores = predict_outputs(module, x_hold).numpy()
    subject = cache.windows["subject_id"][cache.windows["holdout"]]
    per, boot = _bootstrap(scores, subject, seed)
    total = per.sum(axis=0)
    n, bn = max(total[1], 1.0), np.maximum(boot[:, 1], 1.0)
    out: dict[str, Any] = {"patients": int(len(per)), "windows": len(x_hold)}
    if objective == "motor":
        out["nll"] = _figure(boot[:, 0] / bn, total[0] / n)
        out["reference_nll"] = _motor_reference(module, rates if rates is not None else motor_rates(module, x_train),
                                                x_hold)
        out["pairs"], out["events"] = int(total[1]), int(total[2])
        out["summary"] = (f"held-out time-to-event NLL per (event, code) {out['nll']['value']:.4f} (constant hazards "
                          f"per code: {out['reference_nll']:.4f}), {out['events']:,} next occurrences observed")
        return out
    out.update(bootstrap_figures(scores, subject, seed))
    pos, valid = _positions(x_train)
    train = np.bincount(np.asarray(cache.flat["codes"])[pos[valid]], minlength=cache.featurizer.n_codes)
    pos, valid = _positions(x_hold)
    hold = np.bincount(np.asarray(cache.flat["codes"])[pos[valid]], minlength=cache.featurizer.n_codes)
    p = (train + 1) / (train.sum() + len(train))
    out["reference_perplexity"] = float(np.exp(-(hold * np.log(p)).sum() / max(hold.sum(), 1)))
    out["summary"] = (f"held-out next-code perplexity {out['perplexity']['value']:.2f} (code frequencies alone: "
                      f"{out['reference_perplexity']:.2f}), top-1 accuracy {out['next_code_accuracy']['value']:.3f}, "
                      f"top-10 {out['next_code_top10']['value']:.3f}")
    return out


def bootstrap_figures(scores: np.ndarray, group: np.ndarray, seed: int) -> dict[str, Any]:
    """Perplexity, top-1 and top-10 accuracy from per-window [NLL sum, predictions, top-1 hits, top-10 hits], each
    with a 95% CI from a bootstrap over `group` (patients, or notes)."""
    per, boot = _bootstrap(scores, group, seed)
    total = per.sum(axis=0)
    n, bn = max(total[1], 1.0), np.maximum(boot[:, 1], 1.0)
    return {"perplexity": _figure(np.exp(boot[:, 0] / bn), np.exp(total[0] / n)),
            "next_code_accuracy": _figure(boot[:, 2] / bn, total[2] / n),
            "next_code_top10": _figure(boot[:, 3] / bn, total[3] / n),
            "predicted_codes": int(total[1]), "patients": int(len(per))}
