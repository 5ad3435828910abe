"""Treatment effects on causallib's ACIC 2016 instances (true effects known), side by side with the anchor.

Usage: python benchmarks/bench_effects.py [--instances 1,...,10] [--models tarnet,dragonnet,...] [--epochs N]
       [--econml]

For each instance: the anchor's 5 folds (scikit-learn KFold(5, shuffle=True, random_state=0) over the 4,802
patients, as `../shared/anchors/causal/anchor.py`), out-of-sample sqrt(PEHE) and |ATE error| pooled over the
folds. In the same run: the anchor's own S- and T-learner (HistGradientBoostingRegressor, random_state=0) and
the difference in means, re-computed here with its exact code, and medflow's models through their
estimators (task, featurizer and Trainer as in a study; deep models stop early on 10% of each training fold).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import medflow as mf
from medflow.features import encode_targets, featurize, make_featurizer
from medflow.models.base import build_estimator
from medflow.registry import models as model_registry
from medflow.train.trainer import TrainConfig


def _anchor(x: np.ndarray, a: np.ndarray, y: np.ndarray, folds: list) -> dict[str, np.ndarray]:
    from sklearn.ensemble import HistGradientBoostingRegressor as HGB

    out = {"anchor_diff_in_means": np.zeros(len(y)), "anchor_s_learner_gbm": np.zeros(len(y)),
           "anchor_t_learner_gbm": np.zeros(len(y))}
    for tr, te in folds:
        out["anchor_diff_in_means"][te] = y[tr][a[tr] == 1].mean() - y[tr][a[tr] == 0].mean()
        s = HGB(random_state=0).fit(np.c_[x[tr], a[tr]], y[tr])
        out["anchor_s_learner_gbm"][te] = (s.predict(np.c_[x[te], np.ones(len(te))])
                                           - s.predict(np.c_[x[te], np.zeros(len(te))]))
        m1 = HGB(random_state=0).fit(x[tr][a[tr] == 1], y[tr][a[tr] == 1])
        m0 = HGB(random_state=0).fit(x[tr][a[tr] == 0], y[tr][a[tr] == 0])
        out["anchor_t_learner_gbm"][te] = m1.predict(x[te]) - m0.predict(x[te])
    return out


def _econml(x: np.ndarray, a: np.ndarray, y: np.ndarray, folds: list) -> dict[str, np.ndarray]:
    """econml's causal forest (DML) and DR-learner on the same folds, gradient-boosting nuisances (`.[bench]`)."""
    try:
        from econml.dml import CausalForestDML
        from econml.dr import DRLearner
    except ImportError:
        print("econml is not installed (pip install -e '.[bench]'): its reference is skipped", flush=True)
        return {}
    from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
    from sklearn.ensemble import HistGradientBoostingRegressor as HGBR

    out = {"econml_causal_forest": np.zeros(len(y)), "econml_dr_learner": np.zeros(len(y))}
    for tr, te in folds:
        cf = CausalForestDML(model_y=HGBR(random_state=0), model_t=HGBC(random_state=0), discrete_treatment=True,
                             n_estimators=200, cv=3, random_state=0)
        cf.fit(y[tr], a[tr], X=x[tr])
        out["econml_causal_forest"][te] = cf.effect(x[te])
        dr = DRLearner(model_propensity=HGBC(random_state=0), model_regression=HGBR(random_state=0),
                       model_final=HGBR(random_state=0), cv=3, random_state=0)
        dr.fit(y[tr], a[tr], X=x[tr])
        out["econml_dr_learner"][te] = dr.effect(x[te])
    return out


def _medflow(ds, models: list[str], folds: list, train: TrainConfig, seed: int) -> tuple[dict, dict]:
    task0 = mf.tasks.TreatmentEffect(treatment="treated", outcome="outcome", true_effect="true_effect")
    features = [c for c in ds.feature_types if c not in task0.label_columns]
    frame = ds.frame
    out = {m: np.zeros(len(frame)) for m in models}
    seconds = dict.fromkeys(models, 0.0)
    rng = np.random.default_rng(seed)
    for tr, te in folds:
        perm = rng.permutation(tr)
        stop, fit_rows = perm[: len(tr) // 10], perm[len(tr) // 10:]
        task = task0.model_copy(deep=True).fit(frame.iloc[tr])
        feat = make_featurizer(ds, features, frame.iloc[tr])
        xs = {k: featurize(feat, ds, frame.iloc[i]) for k, i in (("fit", fit_rows), ("stop", stop), ("all", tr),
                                                                  ("test", te))}
        ys = {k: encode_targets(feat, task, ds, frame.iloc[i]) for k, i in (("fit", fit_rows), ("stop", stop),
                                                                           ("all", tr))}
        for m in models:
            start = time.perf_counter()
            est = build_estimator(m, {}, task)
            if model_registry.get(m).family == "deep":
                est.fit(xs["fit"], ys["fit"], xs["stop"], ys["stop"], train, seed)
            else:  # meta-learners use every training row (they have no early stopping)
                est.fit(xs["all"], ys["all"], xs["stop"], ys["stop"], train, seed)
            out[m][te] = est.predict(xs["test"])[:, 2]
            seconds[m] += time.perf_counter() - start
    return out, seconds


def run(instances: list[int], models: list[str], epochs: int = 100, seed: int = 0,
        with_econml: bool = False) -> pd.DataFrame:
    from sklearn.model_selection import KFold

    train = TrainConfig(max_epochs=epochs, patience=15, batch_size=128, progress=False)
    rows = []
    for inst in instances:
        ds = mf.datasets.load(f"acic16_{inst}")
        f = ds.frame
        from causallib.datasets import load_acic16

        x = load_acic16(instance=inst)["X"].to_numpy(float)  # the anchor's own (dummy-coded) covariates
        a, y, truth = f["treated"].to_numpy(int), f["outcome"].to_numpy(float), f["true_effect"].to_numpy(float)
        folds = list(KFold(5, shuffle=True, random_state=0).split(x))
        preds = _anchor(x, a, y, folds)
        if with_econml:
            preds.update(_econml(x, a, y, folds))
        ours, seconds = _medflow(ds, models, folds, train, seed)
        preds.update(ours)
        for name, cate in preds.items():
            rows.append({"instance": inst, "model": name, "sqrt_pehe": float(np.sqrt(np.mean((cate - truth) ** 2))),
                         "ate_abs_err": float(abs(cate.mean() - truth.mean())), "true_ate": float(truth.mean()),
                         "seconds": seconds.get(name, float("nan"))})
        print(f"instance {inst}: " + ", ".join(f"{r['model']} {r['sqrt_pehe']:.3f}" for r in rows[-len(preds):]),
              flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> list[str]:
    wide = df.pivot(index="instance", columns="model", values="sqrt_pehe")
    order = list(dict.fromkeys(df["model"]))
    lines = ["| instance | " + " | ".join(order) + " |", "|---" * (len(order) + 1) + "|"]
    for inst, r in wide.iterrows():
        lines.append(f"| {inst} | " + " | ".join(f"{r[m]:.3f}" for m in order) + " |")
    mean = df.groupby("model", sort=False)[["sqrt_pehe", "ate_abs_err", "seconds"]].mean()
    lines.append("| **mean sqrt(PEHE)** | " + " | ".join(f"**{mean.loc[m, 'sqrt_pehe']:.3f}**" for m in order) + " |")
    lines.append("| mean abs ATE error | " + " | ".join(f"{mean.loc[m, 'ate_abs_err']:.3f}" for m in order) + " |")
    lines.append("| fit s per instance | " + " | ".join(
        "" if np.isnan(mean.loc[m, "seconds"]) else f"{mean.loc[m, 'seconds']:.1f}" for m in order) + " |")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", default="1,2,3,4,5,6,7,8,9,10")
    ap.add_argument("--models", default="s_learner,t_learner,x_learner,tarnet,dragonnet,cfrnet")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--out", help="also write the per-instance rows to this CSV")
    ap.add_argument("--econml", action="store_true", help="add econml's causal forest and DR-learner (slow: "
                    "minutes per instance on 2 cores; needs pip install -e '.[bench]')")
    args = ap.parse_args()
    df = run([int(i) for i in args.instances.split(",")], args.models.split(","), args.epochs,
             with_econml=args.econml)
    if args.out:
        df.to_csv(args.out, index=False)
    print("\n".join(table(df)))
