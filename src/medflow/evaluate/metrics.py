"""Metrics as pure NumPy functions, registered with their direction.

Each function takes ``(y_true, y_score, threshold)``: for binary tasks ``y_score`` is the
probability of the positive class, for multiclass an ``(n, k)`` probability matrix, for
regression the predicted value. They are written in NumPy (not by calling scikit-learn)
because the bootstrap calls them thousands of times; the test battery checks each against
scikit-learn's implementation.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from medflow.errors import ConfigError
from medflow.evaluate.metric import Metric, metric_function
from medflow.registry import metrics

__all__ = ["Metric", "get_metric", "validate_binary"]

EPS = 1e-15


def get_metric(name: str) -> Metric:
    """Look up a registered metric by name (the package's `__init__` has registered every metric module)."""
    return metrics.get(name)


_SPAN_METRICS = {"span_precision": "precision (strict, all labels)", "span_recall": "recall (strict, all labels)",
                 "span_lenient_f1": "F1 (lenient: overlap, all labels)",
                 "assertion_accuracy": "assertion accuracy (strictly matched spans)",
                 "relation_accuracy": "attributes linked to their drug (strictly matched spans)"}


def metric_info(name: str) -> tuple[str, bool]:
    """Display name and direction of a metric, including the bound survival ones (auc@<h>, ibs, c_uno)."""
    if name.startswith("auc@"):
        return f"AUC at {name[4:]}", True
    if name.startswith("c_cause_"):
        return f"C-index (cause {name[8:]})", True
    if name == "dice_mean":
        return "Dice (mean over labels)", True
    if name.startswith("dice_"):
        return f"Dice {name[5:]}", True
    if name.startswith("hd95_"):
        return f"HD95 {name[5:]} (voxels)", False
    if name in _SPAN_METRICS:  # span extraction's metrics bound to the task's labels (tasks.spans)
        return _SPAN_METRICS[name], True
    if name.startswith("span_f1_"):
        return f"F1 {name[8:]} (strict)", True
    from medflow.evaluate.survival import BOUND_METRICS

    if name in BOUND_METRICS:
        return BOUND_METRICS[name]
    m = get_metric(name)
    return m.display, m.higher_is_better


def validate_binary(y_true: np.ndarray, y_score: np.ndarray) -> None:
    """Reject targets outside {0, 1} and scores outside [0, 1], saying what arrived."""
    y_true = np.asarray(y_true)
    bad = np.setdiff1d(np.unique(y_true), [0, 1])
    if bad.size:
        raise ConfigError(f"Detected the values {bad[:5].tolist()} in `y_true`, but expected only [0, 1].")
    s = np.asarray(y_score, dtype=float)
    if s.shape != y_true.shape:
        raise ConfigError(f"`y_score` has shape {s.shape} but `y_true` has shape {y_true.shape}.")
    if np.isnan(s).any() or (s < 0).any() or (s > 1).any():
        raise ConfigError("`y_score` must hold probabilities in [0, 1] with no NaN.")


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _confusion(y: np.ndarray, s: np.ndarray, t: float) -> tuple[int, int, int, int]:
    pred = s >= t
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    return tp, fp, fn, tn


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@metric_function("auroc", "AUROC", True)
def auroc(y, s, t=0.5):
    return _auroc(np.asarray(y), np.asarray(s, dtype=float))


@metric_function("auprc", "AUPRC", True)
def auprc(y, s, t=0.5):
    """Average precision, as scikit-learn defines it (step-wise, no interpolation)."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    if y.sum() == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@metric_function("accuracy", "Accuracy", True, True)
def accuracy(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return (tp + tn) / len(y)


@metric_function("sensitivity", "Sensitivity", True, True)
def sensitivity(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return _ratio(tp, tp + fn)


@metric_function("specificity", "Specificity", True, True)
def specificity(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return _ratio(tn, tn + fp)


@metric_function("ppv", "PPV", True, True)
def ppv(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return _ratio(tp, tp + fp)


@metric_function("npv", "NPV", True, True)
def npv(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return _ratio(tn, tn + fn)


@metric_function("f1", "F1", True, True)
def f1(y, s, t=0.5):
    tp, fp, fn, tn = _confusion(np.asarray(y), np.asarray(s), t)
    return _ratio(2 * tp, 2 * tp + fp + fn)


@metric_function("brier", "Brier score", False)
def brier(y, s, t=0.5):
    return float(np.mean((np.asarray(s, dtype=float) - np.asarray(y)) ** 2))


@metric_function("log_loss", "Log-loss", False)
def log_loss(y, s, t=0.5):
    p = np.clip(np.asarray(s, dtype=float), EPS, 1 - EPS)
    y = np.asarray(y)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _onehot(y: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=int)[np.asarray(y, dtype=int)]


@metric_function("auroc_macro", "AUROC (macro)", True)
def auroc_macro(y, p, t=0.5):
    p = np.asarray(p, dtype=float)
    oh = _onehot(y, p.shape[1])
    values = [_auroc(oh[:, j], p[:, j]) for j in range(p.shape[1])]
    return float(np.mean(values))  # NaN when a class is absent, as the bootstrap expects


@metric_function("auroc_micro", "AUROC (micro)", True)
def auroc_micro(y, p, t=0.5):
    p = np.asarray(p, dtype=float)
    return _auroc(_onehot(y, p.shape[1]).ravel(), p.ravel())


@metric_function("accuracy_mc", "Accuracy", True)
def accuracy_mc(y, p, t=0.5):
    return float(np.mean(np.asarray(p).argmax(axis=1) == np.asarray(y)))


@metric_function("f1_macro", "F1 (macro)", True)
def f1_macro(y, p, t=0.5):
    p = np.asarray(p)
    y = np.asarray(y)
    pred = p.argmax(axis=1)
    scores = []
    for j in range(p.shape[1]):
        tp = np.sum((pred == j) & (y == j))
        denom = np.sum(pred == j) + np.sum(y == j)
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


@metric_function("log_loss_mc", "Log-loss", False)
def log_loss_mc(y, p, t=0.5):
    p = np.clip(np.asarray(p, dtype=float), EPS, 1)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(y, dtype=int)])))


@metric_function("rmse", "RMSE", False)
def rmse(y, s, t=0.5):
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(s, dtype=float)) ** 2)))


@metric_function("mae", "MAE", False)
def mae(y, s, t=0.5):
    return float(np.mean(np.abs(np.asarray(y, dtype=float) - np.asarray(s, dtype=float))))


@metric_function("r2", "R²", True)
def r2(y, s, t=0.5):
    y = np.asarray(y, dtype=float)
    ss_res = np.sum((y - np.asarray(s, dtype=float)) ** 2)
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1 - ss_res / ss_tot) if ss_tot else float("nan")


def known_metrics() -> list[str]:
    return metrics.names()


@metric_function("dice_mean", "Dice (mean over labels)", True)
def dice_mean(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Segmentation: the mean over cases of each case's mean Dice (column 0 of the per-case metric matrix that
    `tasks.segmentation.case_metrics` writes; cases without any labelled structure are NaN and left out)."""
    v = np.asarray(y_score, float)
    v = v[:, 0] if v.ndim == 2 else v
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


@metric_function("span_f1", "F1 (strict, all labels)", True)
def span_f1(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Span extraction: micro F1 over all labels, strict match, from the per-note counts that
    `nlp.tagger.note_counts` writes (columns 0-3: gold matched, predictions matched, gold, predictions)."""
    tpg, tpp, ng, npred = np.asarray(y_score, float)[:, :4].sum(axis=0)
    if not ng:
        return float("nan")
    r, p = tpg / ng, (tpp / npred if npred else 0.0)
    return float(2 * p * r / (p + r)) if p + r else 0.0


def _per_label(fn, y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Mean over labels of a binary metric, each on its observed records (a masked label is NaN where it is
    missing), over the labels with both classes present (else NaN)."""
    y, s = np.asarray(y_true, float), np.asarray(y_score, float)
    vals = []
    for j in range(y.shape[1]):
        seen = ~np.isnan(y[:, j])
        yj = y[seen, j]
        if 0 < yj.sum() < len(yj):
            vals.append(fn(yj, s[seen, j]))
    return float(np.mean(vals)) if vals else float("nan")


@metric_function("auroc_labels", "AUROC (macro over labels)", True)
def auroc_labels(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Multilabel: each label's AUROC, averaged (scikit-learn's `roc_auc_score(average="macro")`)."""
    return _per_label(auroc, y_true, y_score)


@metric_function("auprc_labels", "AUPRC (macro over labels)", True)
def auprc_labels(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Multilabel: each label's AUPRC (average precision), averaged."""
    return _per_label(auprc, y_true, y_score)


@metric_function("f1_labels", "F1 at 0.5 (macro over labels)", True, uses_threshold=True)
def f1_labels(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Multilabel: each label's F1 with the label predicted where its probability is at least 0.5, averaged."""
    def f1(y: np.ndarray, s: np.ndarray) -> float:
        p = s >= 0.5
        tp = float((p & (y == 1)).sum())
        denom = float(p.sum() + (y == 1).sum())
        return 2 * tp / denom if denom else float("nan")

    return _per_label(f1, y_true, y_score)
