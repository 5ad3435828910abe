"""Treatment effects: nuisance cross-fitting, overlap, balance, reference ATEs and effect metrics.

Targets of a treatment-effect task are rows ``[t, y, true_effect, e_hat, mu0_hat, mu1_hat, sign]``
(`tasks.effects`); predictions are ``[mu0, mu1, cate]``. When the true effect is unknown (real data) an
effect model is scored with the doubly robust (AIPW) pseudo-outcome

    phi = mu1_hat - mu0_hat + t (y - mu1_hat) / e_hat - (1 - t) (y - mu0_hat) / (1 - e_hat),

whose conditional mean given the covariates is the true CATE when either the propensity or the outcome
regressions are right. The nuisances are fitted once per study by K-fold cross-fitting over patients (each
patient's estimates come from models that never saw that patient), so every model is scored on the same
pseudo-outcomes. ``tau_risk`` = mean (phi - cate)^2 ranks models by their distance to the true CATE up to a
constant that does not depend on the model (Kennedy 2023; Saito & Yasui 2020).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from medflow.errors import DataError
from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.conformal import conformal_quantile
from medflow.evaluate.metric import metric_function

__all__ = ["pseudo_outcome", "prepare_effects", "effect_evaluation", "smd", "aipw_ate", "CLIP", "NUISANCE_COLUMNS"]

CLIP = 0.01  # propensities are clipped to [CLIP, 1 - CLIP] inside the pseudo-outcome
NUISANCE_COLUMNS = ("_te_propensity", "_te_mu0", "_te_mu1")  # added to the frame by `prepare_effects`


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
def _patient_folds(pids: np.ndarray, k: int, seed: int) -> np.ndarray:
    uniq = np.unique(pids)
    fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % k, strict=True))
    return np.array([fold_of[p] for p in pids])


def _nuisances(task: Any, ds: Any, features: list[str], data_cfg: Any, t: np.ndarray, y: np.ndarray,
               seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-fitted propensity and outcome regressions (scikit-learn histogram gradient boosting)."""
    from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
    from sklearn.ensemble import HistGradientBoostingRegressor as HGBR
    from threadpoolctl import threadpool_limits

    from medflow.features import featurize, make_featurizer

    frame = ds.frame
    folds = _patient_folds(frame[ds.patient_id].astype(str).to_numpy(), task.nuisance_folds, seed)
    e, m0, m1 = np.zeros(len(frame)), np.zeros(len(frame)), np.zeros(len(frame))
    kw = {"random_state": seed, "max_iter": 200, "early_stopping": True}
    with threadpool_limits(1, user_api="openmp"):
        for k in range(task.nuisance_folds):
            tr, te = folds != k, folds == k
            if not te.any():
                continue
            feat = make_featurizer(ds, features, frame[tr], data_cfg)
            x_tr, x_te = featurize(feat, ds, frame[tr]), featurize(feat, ds, frame[te])
            e[te] = HGBC(**kw).fit(x_tr, t[tr]).predict_proba(x_te)[:, 1]
            for arm, out in ((0, m0), (1, m1)):
                sel = t[tr] == arm
                if task.outcome_kind == "binary" and len(np.unique(y[tr][sel])) > 1:
                    out[te] = HGBC(**kw).fit(x_tr[sel], y[tr][sel]).predict_proba(x_te)[:, 1]
                elif task.outcome_kind == "binary":
                    out[te] = float(y[tr][sel][0])
                else:
                    out[te] = HGBR(**kw).fit(x_tr[sel], y[tr][sel]).predict(x_te)
    return e, m0, m1


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


def _ipw_ate(t: np.ndarray, y: np.ndarray, e: np.ndarray, pid: np.ndarray, seed: int) -> dict[str, float]:
    ec = np.clip(e, CLIP, 1 - CLIP)

    def est(i: np.ndarray) -> float:
        w1, w0 = t[i] / ec[i], (1 - t[i]) / (1 - ec[i])
        return float(np.sum(w1 * y[i]) / np.sum(w1) - np.sum(w0 * y[i]) / np.sum(w0))

    boots = [est(i) for i in patient_resamples(pid, 300, seed)]
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"value": est(np.arange(len(t))), "low": float(lo), "high": float(hi)}


def _diff_in_means(t: np.ndarray, y: np.ndarray) -> dict[str, float]:
    a, b = y[t == 1], y[t == 0]
    d, se = float(a.mean() - b.mean()), float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {"value": d, "low": d - 1.96 * se, "high": d + 1.96 * se}


def _overlap(e: np.ndarray, t: np.ndarray, bound: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    qs = [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]
    edges = np.linspace(0, 1, 41)
    arms = {}
    for arm, name in ((1, "treated"), (0, "control")):
        v = e[t == arm]
        arms[name] = {"n": int(len(v)), "quantiles": dict(zip(map(str, qs), np.quantile(v, qs).tolist(), strict=True)),
                      "outside": float(np.mean((v < bound) | (v > 1 - bound))),
                      "hist": np.histogram(v, edges)[0].tolist()}
    return {"bound": bound, "arms": arms, "edges": edges.tolist(),
            "outside": float(np.mean((e < bound) | (e > 1 - bound))),
            "propensity_auroc": float(roc_auc_score(t, e))}


def _overlap_text(ov: dict[str, Any]) -> str:
    lines = [f"{'arm':<8}{'n':>7}  propensity min / 5% / 25% / median / 75% / 95% / max   outside"]
    for name, a in ov["arms"].items():
        q = " / ".join(f"{v:.3f}" for v in a["quantiles"].values())
        lines.append(f"{name:<8}{a['n']:>7}  {q}   {a['outside']:.1%}")
    return "\n".join(lines)


def _refusal_figure(ov: dict[str, Any], cfg: Any) -> Path | None:
    """The propensity histograms of a refused study, written whole next to the runs."""
    try:
        from datetime import UTC, datetime

        from medflow.artifacts import atomic_write_bytes
        from medflow.report.effects_plots import overlap_png

        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.output_dir) / cfg.name / f"overlap-refused-{stamp}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, overlap_png(ov))
        return path
    except OSError:
        return None


def prepare_effects(task: Any, ds: Any, features: list[str], cfg: Any, console: Any) -> tuple[Any, dict]:
    """Cross-fit the nuisances, check overlap (refuse or trim), and measure balance and reference ATEs.

    Returns the dataset with the nuisance columns added (and trimmed rows removed) and the analysis that the
    run saves as `effects.json` and the report draws.
    """
    import dataclasses

    from medflow.features import featurize, make_featurizer

    frame = ds.frame
    t, y = task.treatment_codes(frame, ds.source), frame[task.outcome].astype(float).to_numpy()
    console.print(f"treatment effect: cross-fitting propensity and outcome models ({task.nuisance_folds} folds) ...")
    e, m0, m1 = _nuisances(task, ds, features, cfg.data, t, y, cfg.seed)
    before = _overlap(e, t, task.overlap_bound)
    keep = np.ones(len(t), dtype=bool)
    if task.trim is not None:
        keep = (e >= task.trim[0]) & (e <= task.trim[1])
        for arm, name in ((1, "treated"), (0, "control")):
            if (keep & (t == arm)).sum() < task.min_arm:
                raise DataError(f"{ds.source}: trimming propensities to {list(task.trim)} leaves "
                                f"{int((keep & (t == arm)).sum())} {name} patient(s), fewer than task.min_arm = "
                                f"{task.min_arm}; the arms barely overlap. Widen task.trim or revisit the cohort.")
    after = _overlap(e[keep], t[keep], task.overlap_bound)
    if after["outside"] > task.max_without_overlap:
        fig = _refusal_figure(after, cfg)
        raise DataError(
            f"{ds.source}: poor overlap between arms of '{task.treatment}': {after['outside']:.1%} of patients have a "
            f"cross-fitted propensity below {task.overlap_bound} or above {1 - task.overlap_bound} (task."
            f"max_without_overlap = {task.max_without_overlap:.0%}); propensity AUROC "
            f"{after['propensity_auroc']:.3f}.\n"
            + _overlap_text(after) + (f"\nFigure: {fig}" if fig else "")
            + "\nEffects there would be extrapolated, not estimated. Restrict the cohort to patients who could have "
            "received either arm, set task.trim (e.g. [0.05, 0.95]) to drop the rest, or check for a covariate that "
            "decides the treatment (an instrument, or a post-treatment variable).")
    out = frame.loc[keep].copy()
    for col, values in zip(NUISANCE_COLUMNS, (e, m0, m1), strict=True):
        out[col] = values[keep]
    new = dataclasses.replace(ds, frame=out.reset_index(drop=True))
    t, y, e, m0, m1 = t[keep], y[keep], e[keep], m0[keep], m1[keep]
    pid = out[ds.patient_id].astype(str).to_numpy()
    feat = make_featurizer(new, features, new.frame, cfg.data)
    x = np.asarray(featurize(feat, new, new.frame), dtype=float)
    ec = np.clip(e, CLIP, 1 - CLIP)
    w = t / ec + (1 - t) / (1 - ec)
    names = feat.output_names
    raw, weighted = smd(x, t), smd(x, t, w)
    phi = pseudo_outcome(np.column_stack([t, y, np.full(len(t), np.nan), e, m0, m1]))
    analysis: dict[str, Any] = {
        "treatment": task.treatment, "outcome": task.outcome, "outcome_kind": task.outcome_kind,
        "n": int(len(t)), "n_treated": int(t.sum()), "n_trimmed": int((~keep).sum()),
        "trim": list(task.trim) if task.trim else None, "overlap_before_trim": before, "overlap": after,
        "balance": sorted(({"column": n, "smd": float(a), "smd_weighted": float(b)} for n, a, b in
                           zip(names, raw, weighted, strict=True)), key=lambda r: -abs(r["smd"])),
        "reference": {"difference_in_means": _diff_in_means(t, y), "ipw": _ipw_ate(t, y, e, pid, cfg.seed),
                      "aipw": aipw_ate(phi)},
        "nuisance": {"model": "histogram gradient boosting (scikit-learn)", "folds": task.nuisance_folds,
                     "clip": CLIP},
    }
    if task.true_effect:
        analysis["true_ate"] = float(out[task.true_effect].astype(float).mean())
    if ds.meta.get("published_effect"):
        analysis["published"] = ds.meta["published_effect"]
    return new, analysis


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
