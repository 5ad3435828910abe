"""Treatment effects before training: cross-fitted nuisances, the overlap check (refuse or trim), balance and
reference ATEs (`TreatmentEffect.prepare`).

The propensity and the two outcome regressions are fitted once per study by K-fold cross-fitting over patients
(each patient's estimates come from models that never saw that patient), so every effect model is later scored
on the same doubly robust pseudo-outcomes (`evaluate/effects.py`). A study whose propensities leave too many
patients without overlap is refused, with the propensity histograms drawn next to the runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medflow.errors import DataError
from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.effects import CLIP, NUISANCE_COLUMNS, aipw_ate, pseudo_outcome, smd

__all__ = ["prepare_effects"]


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
