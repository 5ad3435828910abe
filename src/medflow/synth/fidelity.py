"""How good and how private synthetic records are, measured against real training and held-out records.

Fidelity (the definitions of sdmetrics' QualityReport, computed here without it; tests compare the two):
* column shapes: per column, 1 - Kolmogorov-Smirnov statistic (numeric) or 1 - total variation distance
  (categorical, missing as a category); their mean;
* column pair trends: per pair of numeric columns 1 - |r_real - r_synthetic| / 2 (Pearson); any other pair
  1 - total variation distance of the two-way frequency table, numeric columns cut into 10 bins on the real
  values; their mean over the pairs with a real relation to keep (|r_real| > 0.5, or Cramer's V of the real
  table > 0.3: sdmetrics 0.32's defaults; pairs of unrelated columns would score near 1 whatever the generator);
* quality: the mean of the two.
Utility: TSTR, a logistic regression trained on the synthetic rows and tested on the real held-out rows, beside
TRTR, the same model trained on the real training rows (AUROC for a binary label).
Privacy, on one-hot and standardized records (scaled on the real training rows):
* DCR share: the share of synthetic rows closer to their nearest real training row than the 5th percentile of
  the real training rows' distances to their own nearest neighbour (copies and near-copies);
* membership inference: an attacker scores each record by minus its distance to the nearest synthetic row;
  AUROC of telling training records (members) from held-out records (non-members), 0.5 = no signal.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from scipy.stats.contingency import association
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from medflow.data.dataset import FeatureType
from medflow.synth.transform import as_float

__all__ = ["fidelity_report", "column_shapes", "column_pairs", "dcr_share", "membership_auroc", "tstr"]

NUMERIC = (FeatureType.NUMERIC, FeatureType.DATETIME)


def _cat(s: pd.Series) -> pd.Series:
    return s.astype(object).where(s.notna(), "__missing__").astype(str)


def _tv(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    idx = pa.index.union(pb.index)
    return float(0.5 * (pa.reindex(idx, fill_value=0) - pb.reindex(idx, fill_value=0)).abs().sum())


def column_shapes(real: pd.DataFrame, syn: pd.DataFrame, types: dict[str, FeatureType]) -> dict[str, float]:
    out = {}
    for col, kind in types.items():
        if kind in NUMERIC:
            r, s = as_float(real[col], kind), as_float(syn[col], kind)
            r, s = r[~np.isnan(r)], s[~np.isnan(s)]
            out[col] = 1 - float(ks_2samp(r, s).statistic) if len(r) and len(s) else 0.0
        else:
            out[col] = 1 - _tv(_cat(real[col]), _cat(syn[col]))
    return out


def _binned(real: pd.Series, syn: pd.Series, kind: FeatureType) -> tuple[pd.Series, pd.Series]:
    r, s = as_float(real, kind), as_float(syn, kind)
    ok = r[~np.isnan(r)]
    edges = np.histogram_bin_edges(ok, bins=10) if len(ok) else np.array([0.0, 1.0])
    cut = lambda v: pd.Series(np.where(np.isnan(v), -1, np.digitize(v, edges[1:-1])).astype(str))  # noqa: E731
    return cut(r), cut(s)


def column_pairs(real: pd.DataFrame, syn: pd.DataFrame, types: dict[str, FeatureType], max_pairs: int = 2000,
                 seed: int = 0, min_correlation: float = 0.5, min_association: float = 0.3) -> float:
    """Mean pair-trend similarity over related pairs; over a seeded sample of `max_pairs` pairs when there are
    more; NaN when no pair is related."""
    cols = list(types)
    pairs = list(combinations(cols, 2))
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), max_pairs, replace=False)]
    disc = {}
    for col, kind in types.items():
        disc[col] = _binned(real[col], syn[col], kind) if kind in NUMERIC else \
            (_cat(real[col]).reset_index(drop=True), _cat(syn[col]).reset_index(drop=True))
    scores = []
    for a, b in pairs:
        if types[a] in NUMERIC and types[b] in NUMERIC:
            ra = pd.DataFrame({"a": as_float(real[a], types[a]), "b": as_float(real[b], types[b])}).dropna()
            sa = pd.DataFrame({"a": as_float(syn[a], types[a]), "b": as_float(syn[b], types[b])}).dropna()
            rr, rs = ra["a"].corr(ra["b"]), sa["a"].corr(sa["b"])
            if np.isnan(rr) or abs(rr) <= min_correlation:
                continue
            scores.append(1 - abs(rr - (0.0 if np.isnan(rs) else rs)) / 2)
        else:
            table = pd.crosstab(disc[a][0], disc[b][0]).to_numpy()
            if min(table.shape) < 2 or association(table, method="cramer") <= min_association:
                continue
            r = disc[a][0] + "\0" + disc[b][0]
            s = disc[a][1] + "\0" + disc[b][1]
            scores.append(1 - _tv(r, s))
    return float(np.mean(scores)) if scores else float("nan")


class _Encoder:
    """One-hot categoricals and standardized numerics (median-imputed), fitted on the real training rows."""

    def __init__(self, frame: pd.DataFrame, types: dict[str, FeatureType]) -> None:
        self.types = types
        self.num = {c: (np.nanmedian(v), np.nanstd(v) or 1.0) for c, k in types.items() if k in NUMERIC
                    for v in [as_float(frame[c], k)]}
        self.cats = {c: sorted(_cat(frame[c]).unique()) for c, k in types.items() if k not in NUMERIC}

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        parts = []
        for c, (med, sd) in self.num.items():
            v = as_float(frame[c], self.types[c])
            parts.append(((np.where(np.isnan(v), med, v) - med) / sd)[:, None])
        for c, cats in self.cats.items():
            v = _cat(frame[c]).to_numpy()
            parts.append((v[:, None] == np.asarray(cats)[None, :]).astype(float))
        return np.hstack(parts) if parts else np.zeros((len(frame), 0))


def dcr_share(train: np.ndarray, syn: np.ndarray) -> dict[str, float]:
    nn_real = NearestNeighbors(n_neighbors=2).fit(train)
    d_rr = nn_real.kneighbors(train)[0][:, 1]
    d_sr = nn_real.kneighbors(syn, n_neighbors=1)[0][:, 0]
    cut = float(np.quantile(d_rr, 0.05))
    return {"share": float((d_sr < cut).mean()), "cutoff": cut, "median_synthetic": float(np.median(d_sr)),
            "median_real": float(np.median(d_rr)), "exact_copies": float((d_sr < 1e-9).mean())}


def membership_auroc(members: np.ndarray, non_members: np.ndarray, syn: np.ndarray) -> float:
    """AUROC of a distance-to-closest-synthetic-record attack over all members and non-members."""
    nn_syn = NearestNeighbors(n_neighbors=1).fit(syn)
    d = np.r_[nn_syn.kneighbors(members)[0][:, 0], nn_syn.kneighbors(non_members)[0][:, 0]]
    y = np.r_[np.ones(len(members)), np.zeros(len(non_members))]
    return float(roc_auc_score(y, -d))


def tstr(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> float:
    """AUROC on the real held-out rows of a logistic regression fitted on (train_x, train_y); NaN when the
    training labels have one class."""
    if len(np.unique(train_y)) < 2:
        return float("nan")
    model = LogisticRegression(max_iter=5000).fit(train_x, train_y)
    return float(roc_auc_score(test_y, model.predict_proba(test_x)[:, 1]))


def fidelity_report(train: pd.DataFrame, holdout: pd.DataFrame, syn: pd.DataFrame, types: dict[str, FeatureType],
                    label: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Every fidelity, utility and privacy figure of `syn` against the real `train` rows it was fitted on and the
    real `holdout` rows it never saw. `types` covers every generated column, the label included."""
    shapes = column_shapes(train, syn, types)
    pairs = column_pairs(train, syn, types, seed=seed)
    shape_mean = float(np.mean(list(shapes.values())))
    features = {c: k for c, k in types.items() if c != label}
    enc = _Encoder(train, features)
    xt, xh, xs = enc(train), enc(holdout), enc(syn)
    quality = shape_mean if np.isnan(pairs) else (shape_mean + pairs) / 2
    out: dict[str, Any] = {"quality": quality, "column_shapes": shape_mean, "column_pairs": pairs,
                           "per_column": shapes, "dcr": dcr_share(xt, xs),
                           "membership_auroc": membership_auroc(xt, xh, xs),
                           "n_train": len(train), "n_holdout": len(holdout), "n_synthetic": len(syn)}
    if label is not None and train[label].nunique() == 2:
        positive = sorted(train[label].dropna().unique().tolist(), key=str)[-1]
        y = lambda f: (f[label] == positive).to_numpy().astype(int)  # noqa: E731
        out["tstr_auroc"] = tstr(xs, y(syn), xh, y(holdout))
        out["trtr_auroc"] = tstr(xt, y(train), xh, y(holdout))
        out["label"] = label
    return out
