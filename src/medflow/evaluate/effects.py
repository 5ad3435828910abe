"""Treatment effects: the effect metrics, the AIPW estimate and the evaluation of effect models.

Targets of a treatment-effect task are rows ``[t, y, true_effect, e_hat, mu0_hat, mu1_hat, sign]``
(`tasks.effects`); predictions are ``[mu0, mu1, cate]``. When the true effect is unknown (real data) an
effect model is scored with the doubly robust (AIPW) pseudo-outcome

    phi = mu1_hat - mu0_hat + t (y - mu1_hat) / e_hat - (1 - t) (y - mu0_hat) / (1 - e_hat),

whose conditional mean given the covariates is the true CATE when either the propensity or the outcome
regressions are right. The nuisances are fitted once per study by K-fold cross-fitting over patients
(`tasks/nuisances.py`), so every model is scored on the same pseudo-outcomes. ``tau_risk`` = mean (phi - cate)^2
ranks models by their distance to the true CATE up to a constant that does not depend on the model (Kennedy
2023; Saito & Yasui 2020).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.conformal import conformal_quantile
from medflow.evaluate.metric import metric_function

__all__ = ["pseudo_outcome", "effect_evaluation", "smd", "aipw_ate", "CLIP", "NUISANCE_COLUMNS"]

CLIP = 0.01  # propensities are clipped to [CLIP, 1 - CLIP] inside the pseudo-outcome
NUISANCE_COLUMNS = ("_te_propensity", "_te_mu0", "_te_mu1")  # added to the frame by `tasks.nuisances.prepare_effects`


def pseudo_outcome(y: np.ndarray) -> np.ndarray:
    """The doubly robust pseudo-outcome of each row of a target matrix (see the module docstring)."""
    y = np.asarray(y, dtype=float)
    t, out, e, m0, m1 = y[:, 0], y[:, 1], np.clip(y[:, 3], CLIP, 1 - CLIP), y[:, 4], y[:, 5]
    return m1 - m0 + t * (out - m1) / e - (1 - t) * (out - m0) / (1 - e)


def _sign(y: np.ndarray) -> float:
    return float(y[0, 6]) if y.shape[1] > 6 and len(y) else 1.0


@metric_function("ate", "ATE (estimated)", higher_is_better=True)
def ate(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Average of the predicted CATE over the records: the model's estimate of the average effect."""
    return float(np.mean(np.asarray(s, float)[:, 2]))


@metric_function("tau_risk", "DR tau-risk", higher_is_better=False)
def tau_risk(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Mean squared distance of the CATE to the doubly robust pseudo-outcome (lower is better)."""
    return float(np.mean((pseudo_outcome(y) - np.asarray(s, float)[:, 2]) ** 2))


@metric_function("sqrt_pehe", "sqrt(PEHE)", higher_is_better=False)
def sqrt_pehe(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Root mean squared error of the CATE against the true individual effect (simulations only)."""
    truth = np.asarray(y, float)[:, 2]
    return float(np.sqrt(np.mean((np.asarray(s, float)[:, 2] - truth) ** 2))) if np.isfinite(truth).all() else math.nan


@metric_function("ate_error", "|ATE error|", higher_is_better=False)
def ate_error(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Absolute error of the estimated average effect against the true one (simulations only)."""
    truth = np.asarray(y, float)[:, 2]
    return float(abs(np.mean(np.asarray(s, float)[:, 2]) - np.mean(truth))) if np.isfinite(truth).all() else math.nan


@metric_function("factual_rmse", "factual RMSE", higher_is_better=False)
def factual_rmse(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """RMSE of the predicted outcome under the treatment each patient received (Brier root for binary)."""
    y, s = np.asarray(y, float), np.asarray(s, float)
    factual = np.where(y[:, 0] > 0.5, s[:, 1], s[:, 0])
    return float(np.sqrt(np.mean((factual - y[:, 1]) ** 2)))


def uplift_curve(y: np.ndarray, s: np.ndarray, points: int = 21) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Benefit gained by treating the top share of patients ranked by predicted benefit.

    The gain of treating a set is estimated by the sum of its doubly robust pseudo-outcomes (in benefit
    units, divided by n), so the curve is valid in observational data too; `random` is the line of
    treating the same share at random. Returns (share, gain, random).
    """
    sign = _sign(y)
    benefit, phi = sign * np.asarray(s, float)[:, 2], sign * pseudo_outcome(y)
    order = np.argsort(-benefit, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(phi[order])]) / len(phi)
    share = np.linspace(0, 1, points)
    gain = cum[np.round(share * len(phi)).astype(int)]
    return share, gain, share * cum[-1]


@metric_function("qini", "Qini (DR)", higher_is_better=True)
def qini(y: np.ndarray, s: np.ndarray, threshold: float = 0.5) -> float:
    """Area between the uplift curve and the random line (benefit units per patient; higher is better)."""
    share, gain, rand = uplift_curve(y, s, points=101)
    return float(np.trapezoid(gain - rand, share))


# -- study-level: nuisances, overlap, balance, reference estimates ----------------------------------------


def smd(x: np.ndarray, t: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    """Standardized mean difference of each column between arms (weighted means; pooled unweighted sd)."""
    w = np.ones(len(t)) if w is None else w
    mean = [np.average(x[t == a], axis=0, weights=w[t == a]) for a in (1, 0)]
    sd = np.sqrt((x[t == 1].var(axis=0) + x[t == 0].var(axis=0)) / 2)
    return (mean[0] - mean[1]) / np.where(sd > 0, sd, 1.0)


def aipw_ate(phi: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """AIPW estimate of the ATE (mean pseudo-outcome) with its influence-function CI."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2)
    est, se = float(np.mean(phi)), float(np.std(phi, ddof=1) / np.sqrt(len(phi)))
    return {"value": est, "low": est - z * se, "high": est + z * se, "se": se}


# -- per-model extras: uplift, CATE calibration, intervals ------------------------------------------------
def cate_calibration(y: np.ndarray, s: np.ndarray, pid: np.ndarray, bins: int, seed: int) -> dict[str, Any]:
    """Predicted against observed effect (mean pseudo-outcome, bootstrap CI) within quantile bins of the CATE."""
    cate, phi = np.asarray(s, float)[:, 2], pseudo_outcome(y)
    bins = max(2, min(bins, len(cate) // 20 or 2))
    edges = np.quantile(cate, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, cate, side="right") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        sel = idx == b
        if not sel.any():
            continue
        boots = [phi[sel][i].mean() for i in patient_resamples(pid[sel], 200, seed) if len(i)]
        lo, hi = np.quantile(boots, [0.025, 0.975])
        truth = np.asarray(y, float)[sel, 2]
        rows.append({"predicted": float(cate[sel].mean()), "observed": float(phi[sel].mean()), "low": float(lo),
                     "high": float(hi), "n": int(sel.sum()),
                     "true": float(truth.mean()) if np.isfinite(truth).all() else None})
    return {"bins": rows}


def effect_evaluation(task: Any, valid_y: np.ndarray, valid_s: np.ndarray, test_y: np.ndarray, test_s: np.ndarray,
                      pid: np.ndarray, cfg: Any, seed: int) -> dict[str, Any]:
    """The treatment-effect entries of a model in metrics.json: uplift curve, CATE calibration by quantile,
    the CATE distribution, the recommended share, and a conformal interval for the individual effect."""
    share, gain, rand = uplift_curve(test_y, test_s)
    cate = np.asarray(test_s, float)[:, 2]
    counts, edges = np.histogram(cate, bins=30)
    out: dict[str, Any] = {
        "uplift": {"share": share.tolist(), "gain": gain.tolist(), "random": rand.tolist()},
        "cate_calibration": cate_calibration(test_y, test_s, pid, cfg.calibration_bins // 2, seed),
        "cate_hist": {"edges": edges.tolist(), "counts": counts.tolist()},
        "recommended_share": float(np.mean(task.sign * cate > task.benefit_threshold)),
    }
    if len(valid_y):
        # split conformal on |phi - cate|: an interval that covers the patient's pseudo-outcome with the stated
        # probability; its mean is the true effect, so the interval is conservative for the CATE itself
        level = cfg.conformal.coverage
        qhat = conformal_quantile(np.abs(pseudo_outcome(valid_y) - np.asarray(valid_s, float)[:, 2]), level)
        phi, truth = pseudo_outcome(test_y), np.asarray(test_y, float)[:, 2]
        out["interval"] = {"coverage": level, "qhat": float(qhat), "n_calibration": int(len(valid_y)),
                           "test_coverage_pseudo": float(np.mean(np.abs(phi - cate) <= qhat)),
                           "test_coverage_true": (float(np.mean(np.abs(truth - cate) <= qhat))
                                                  if np.isfinite(truth).all() else None)}
    return out
