"""External validation: a finished run's models on data from another site or period, unchanged.

Every metric with its patient-bootstrap CI (the run's thresholds and conformal quantiles, never refitted),
calibration-in-the-large and calibration slope, a drift summary of the inputs against the training data,
and optional recalibration fitted on part of the new patients and reported on the rest. The results go to
``RUN_DIR/external/<name>/`` and into the report, as a section separate from internal validation
(docs/evaluation.md).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from medflow.errors import DataError
from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.evaluator import (
    SUBGROUP_PREFIX,
    EvaluateConfig,
    SubgroupConfig,
    evaluate_predictions,
    prediction_table,
    subgroup_labels,
)

__all__ = ["external_validation", "external_name", "calibration_intercept_slope", "fit_recalibration",
           "apply_recalibration", "event_drift",
           "drift_summary"]

Recalibration = Literal["logistic", "isotonic", "linear"]
EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def _logistic_fit(x: np.ndarray | None, y: np.ndarray, offset: np.ndarray, iters: int = 50) -> np.ndarray:
    """Unpenalized logistic regression by Newton-Raphson: y ~ a (+ b x) + offset."""
    X = np.ones((len(y), 1)) if x is None else np.column_stack([np.ones(len(y)), x])
    beta = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ beta + offset)))
        w = np.maximum(p * (1 - p), 1e-9)
        step = np.linalg.solve(X.T @ (X * w[:, None]) + 1e-9 * np.eye(X.shape[1]), X.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def calibration_intercept_slope(y: np.ndarray, p: np.ndarray, kind: str = "binary") -> dict[str, float]:
    """Calibration-in-the-large (intercept with the prediction as offset; 0 is ideal), slope (1 is ideal),
    and the observed/expected ratio. Regression: mean residual, OLS slope of observed on predicted."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if kind == "regression":
        slope = float(np.polyfit(p, y, 1)[0]) if np.std(p) > 0 else float("nan")
        return {"citl": float(np.mean(y - p)), "slope": slope,
                "oe_ratio": float(np.mean(y) / np.mean(p)) if np.mean(p) else float("nan")}
    if len(np.unique(y)) < 2:
        return {"citl": float("nan"), "slope": float("nan"), "oe_ratio": float("nan")}
    lp = _logit(p)
    citl = float(_logistic_fit(None, y, lp)[0])
    slope = float(_logistic_fit(lp, y, np.zeros(len(y)))[1])
    return {"citl": citl, "slope": slope, "oe_ratio": float(y.mean() / max(p.mean(), EPS))}


def _calibration_ci(y: np.ndarray, p: np.ndarray, pid: np.ndarray, kind: str, n_boot: int, level: float,
                    seed: int) -> dict[str, dict[str, float]]:
    point = calibration_intercept_slope(y, p, kind)
    boots = [calibration_intercept_slope(y[i], p[i], kind) for i in patient_resamples(pid, n_boot, seed)]
    a = (1 - level) / 2
    out = {}
    for k, v in point.items():
        vals = np.array([b[k] for b in boots], dtype=float)
        vals = vals[np.isfinite(vals)]
        lo, hi = np.quantile(vals, [a, 1 - a]) if len(vals) else (np.nan, np.nan)
        out[k] = {"value": v, "low": float(lo), "high": float(hi)}
    return out


def fit_recalibration(y: np.ndarray, p: np.ndarray, method: Recalibration) -> dict[str, Any]:
    """A map from the model's prediction to a recalibrated one, as plain JSON."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if method == "linear":
        b, a = np.polyfit(p, y, 1)
        return {"method": "linear", "intercept": float(a), "slope": float(b)}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(p, y)
        return {"method": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    a, b = _logistic_fit(_logit(p), y, np.zeros(len(y)))
    return {"method": "logistic", "intercept": float(a), "slope": float(b)}


def apply_recalibration(fitted: dict[str, Any], p: np.ndarray) -> np.ndarray:
    """The recalibrated predictions."""
    p = np.asarray(p, dtype=float)
    if fitted["method"] == "linear":
        return fitted["intercept"] + fitted["slope"] * p
    if fitted["method"] == "isotonic":
        return np.interp(p, fitted["x"], fitted["y"])
    return 1 / (1 + np.exp(-(fitted["intercept"] + fitted["slope"] * _logit(p))))


def drift_summary(frame: pd.DataFrame, featurizer: Any, quality: dict | None) -> dict[str, Any]:
    """Each input column in the new data against the training data: standardized mean difference (numeric),
    share of categories never seen in training (categorical), missingness; flags large shifts."""
    state = getattr(featurizer, "state", None)
    if not state or not hasattr(featurizer, "feature_types"):
        return {"columns": [], "flagged": [], "note": "drift summary is available for tabular runs"}
    train_missing = {c["column"]: c["missing"] for c in (quality or {}).get("columns", [])}
    rows, flagged = [], []
    for col, kind in featurizer.feature_types.items():
        st, s = state[col], frame[col]
        row: dict[str, Any] = {"column": col, "type": kind.value, "missing_train": train_missing.get(col),
                               "missing_new": float(s.isna().mean())}
        if "mean" in st:
            v = pd.to_numeric(s, errors="coerce").astype(float)
            if kind.value == "datetime":
                v = pd.to_datetime(s, errors="coerce").astype("int64").where(s.notna()).astype(float) / 86_400e9
            m, sd = float(np.nanmean(v)) if v.notna().any() else float("nan"), float(np.nanstd(v))
            pooled = np.sqrt((st["std"] ** 2 + sd ** 2) / 2) or 1.0
            row.update(mean_train=st["mean"], mean_new=m, smd=(m - st["mean"]) / pooled)
            if abs(row["smd"]) > 0.25:
                flagged.append(f"{col}: standardized mean difference {row['smd']:+.2f}")
        elif "categories" in st:
            text = s.dropna().astype(str)
            unseen = float((~text.isin(st["categories"])).mean()) if len(text) else 0.0
            row.update(unseen_share=unseen, unseen_values=sorted(set(text) - set(st["categories"]))[:5])
            if unseen > 0.05:
                flagged.append(f"{col}: {unseen:.0%} of values are categories never seen in training")
        if row["missing_train"] is not None and row["missing_new"] - row["missing_train"] > 0.1:
            flagged.append(f"{col}: {row['missing_new']:.0%} missing (training {row['missing_train']:.0%})")
        rows.append(row)
    return {"columns": rows, "flagged": flagged}


def external_name(text: str) -> str:
    """A folder-safe name for an external data set."""
    import re

    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")
    return cleaned or "external"


def event_drift(x: Any, featurizer: Any, top: int = 20) -> dict[str, Any]:
    """Event inputs against training: the share of events whose code training never saw (<unknown>), and
    per numeric code (a lab) the mean of its values standardized with the training mean and sd, which is
    the standardized mean difference from training (0 there by construction); |SMD| > 0.25 is flagged."""
    pos = np.concatenate([np.arange(a, b) for a, b in zip(x.static_start, x.end, strict=True)]) if len(x) else \
        np.zeros(0, np.int64)
    codes = x.codes[pos]
    unknown = float((codes == 1).mean()) if len(codes) else 0.0
    rows, flagged = [], []
    has = x.has_value[pos]
    for code in x.numeric_codes.tolist():
        m = (codes == code) & has
        if m.sum() < 20:
            continue
        smd = float(x.values[pos][m].mean())
        rows.append({"column": x.code_names[code], "type": "event value", "n": int(m.sum()), "smd": smd,
                     "mean_train": featurizer.value_mean.get(x.code_names[code]),
                     "missing_train": None, "missing_new": 0.0})
        if abs(smd) > 0.25:
            flagged.append(f"{x.code_names[code]}: standardized mean difference {smd:+.2f} from training")
    rows.sort(key=lambda r: -abs(r["smd"]))
    if unknown > 0.05:
        flagged.insert(0, f"{unknown:.0%} of the events carry codes never seen in training (<unknown>)")
    return {"columns": rows[:top], "flagged": flagged, "unknown_code_share": unknown,
            "events_per_sample": float(len(codes) / max(len(x), 1))}


def _samples(frame: pd.DataFrame) -> Any:
    from medflow.data.ehr import samples_frame

    return samples_frame(frame)


def _patient_ids(run: Any, frame: pd.DataFrame) -> np.ndarray:
    for col in (run.config["data"].get("patient_id"), "subject_id"):
        if col and col in frame.columns:
            return frame[col].astype(str).to_numpy()
    return np.arange(len(frame)).astype(str)


def _recalibrate_part(pid: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the rows of the patients used to fit the recalibration (a seeded share of patients)."""
    uniq = np.unique(pid)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(uniq, size=max(1, int(round(fraction * len(uniq)))), replace=False)
    return np.isin(pid, chosen)


def external_validation(run: Any, data: Any, name: str, source: str, recalibrate: Recalibration | None = None,
                        fraction: float = 0.5, cfg: EvaluateConfig | None = None, seed: int = 0,
                        console: Any = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """Evaluate every model of `run` on `data` (a table or an event Dataset); returns results and predictions."""
    from medflow.features import encode_targets

    task = run.task
    is_events = getattr(data, "events", None) is not None
    is_dataset = hasattr(data, "modality") and hasattr(data, "frame")  # events, notes, images: a Dataset
    frame = data.frame if is_dataset else data
    cfg = cfg or EvaluateConfig(**run.config.get("evaluate", {}))
    task.check(frame, source)
    analysis = None
    if not is_dataset:  # the task's own steps on the new site (treatment effects: overlap, nuisances refitted there)
        frame, analysis = _prepare_external(run, frame, name, source, seed, console)
        data = frame
    # targets that are not columns (a span task's gold spans) come with the Dataset, as in training
    y = encode_targets(run.featurizer(), task, data, frame) if is_dataset else task.encode(frame)
    pid = (frame[data.patient_id].astype(str).to_numpy() if is_dataset and data.patient_id in frame.columns
           else _patient_ids(run, frame))
    rows = np.arange(len(frame))
    specs = [s for s in cfg.subgroup_specs() if s.column in frame.columns]
    subgroups = {SUBGROUP_PREFIX + s.label: subgroup_labels(frame, SubgroupConfig(**s.model_dump()), source)
                 for s in specs}
    parts = []
    for model in run.models:
        score = run.scores(data, model, source)
        t = prediction_table(task, score, y, pid, rows, "test", 0, model)
        for col, values in subgroups.items():
            t[col] = values.to_numpy()
        parts.append(t)
    preds = pd.concat(parts, ignore_index=True)
    internal = run.metrics.data["models"]
    fixed = {m: {"threshold": internal[m]["threshold"], "conformal": internal[m].get("conformal")}
             for m in run.models}
    result = evaluate_predictions(preds, task, cfg, seed, fixed=fixed, selected=run.metrics.selected_model)
    if analysis is not None:
        result["task_analysis"] = analysis
    result["external"] = {"name": name, "source": source, "n_records": int(len(frame)),
                          "n_patients": int(len(np.unique(pid))), "synthetic": bool(getattr(data, "synthetic", False))}
    if task.kind in ("binary", "regression"):
        for m in run.models:
            g = preds[preds["model"] == m]
            result["models"][m]["calibration_fit"] = _calibration_ci(
                g["y_true"].to_numpy(float), g["score"].to_numpy(float), g["patient_id"].to_numpy(), task.kind,
                min(cfg.n_bootstrap, 500), cfg.level, seed)
    if task.kind in ("binary", "multiclass"):
        counts = pd.Series(y).value_counts().sort_index()
        result["external"]["class_balance"] = {str(task.classes[int(k)]): int(v) for k, v in counts.items()}
    result["drift"] = (event_drift(run.featurizer().transform(data.events, _samples(frame)), run.featurizer())
                       if is_events else drift_summary(frame, run.featurizer(), _quality(run)))
    if recalibrate:
        result["recalibration"] = _recalibration(preds, task, cfg, recalibrate, fraction, seed,
                                                 {m: internal[m]["threshold"] for m in run.models})
    return result, preds


def _prepare_external(run: Any, frame: pd.DataFrame, name: str, source: str, seed: int,
                      console: Any) -> tuple[pd.DataFrame, dict | None]:
    """`Task.prepare` on the external table, with the run's feature columns and types."""
    from types import SimpleNamespace

    from rich.console import Console

    from medflow.data.dataset import Dataset

    feat = run.featurizer()
    types = dict(getattr(feat, "feature_types", {}) or {})
    if not types:
        return frame, None
    pid = run.config["data"].get("patient_id") or "__row__"
    work = frame.reset_index(drop=True).copy()
    if pid not in work.columns:
        work[pid] = np.arange(len(work)).astype(str)
    ds = Dataset(frame=work, name=name, source=source, patient_id=pid,
                 feature_types={c: t for c, t in types.items() if c in work.columns})
    cfg = SimpleNamespace(data=None, seed=seed, output_dir=str(run.path / "external"), name=name)
    new, analysis = run.task.prepare(ds, list(ds.feature_types), cfg, console or Console(stderr=True))
    out = new.frame
    return (out.drop(columns=[pid]) if pid == "__row__" else out), analysis


def _quality(run: Any) -> dict | None:
    from medflow.artifacts import read_json

    path = run.path / "quality.json"
    return read_json(path) if path.exists() else None


def _recalibration(preds: pd.DataFrame, task: Any, cfg: EvaluateConfig, method: Recalibration, fraction: float,
                   seed: int, thresholds: dict[str, float]) -> dict[str, Any]:
    """Fit the map on a share of the new patients; every metric before and after on the other patients.

    The decision threshold moves through the same map, so the decisions (and sensitivity, specificity)
    stay those of the run: recalibration changes calibration, not ranking."""
    if task.kind not in ("binary", "regression"):
        raise DataError(f"--recalibrate applies to binary and regression runs, not to {task.kind} runs.")
    if task.kind == "regression" and method != "linear":
        raise DataError(f"--recalibrate {method}: regression runs are recalibrated with 'linear'.")
    if task.kind == "binary" and method == "linear":
        raise DataError("--recalibrate linear: binary runs take 'logistic' (intercept and slope) or 'isotonic'.")
    fit_rows = _recalibrate_part(preds["patient_id"].to_numpy(), fraction, seed)
    out: dict[str, Any] = {"method": method, "fraction": fraction, "models": {}}
    report = preds[~fit_rows].copy()
    if report.empty or fit_rows.sum() == 0:
        raise DataError("--recalibrate needs patients on both sides: use a fraction between 0 and 1 and more data.")
    recal = report.copy()
    for m, g in preds[fit_rows].groupby("model", sort=False):
        fitted = fit_recalibration(g["y_true"].to_numpy(float), g["score"].to_numpy(float), method)
        mask = recal["model"] == m
        recal.loc[mask, "score"] = apply_recalibration(fitted, recal.loc[mask, "score"].to_numpy(float))
        out["models"][m] = {"map": fitted}
    n_boot = min(cfg.n_bootstrap, 500)
    light = cfg.model_copy(update={"n_bootstrap": n_boot, "subgroups": []})
    moved = {m: float(apply_recalibration(out["models"][m]["map"], np.array([thresholds[m]]))[0])
             for m in out["models"]}
    for label, frame, th in (("before", report, thresholds), ("after", recal, moved)):
        res = evaluate_predictions(frame.drop(columns=[c for c in frame.columns if c.startswith(SUBGROUP_PREFIX)]),
                                   task, light, seed, fixed={m: {"threshold": th[m]} for m in out["models"]})
        for m in out["models"]:
            g = frame[frame["model"] == m]
            out["models"][m][label] = {
                "metrics": res["models"][m]["metrics"],
                "calibration_fit": _calibration_ci(g["y_true"].to_numpy(float), g["score"].to_numpy(float),
                                                   g["patient_id"].to_numpy(), task.kind, n_boot, cfg.level, seed)}
    out["n_fit_patients"] = int(preds.loc[fit_rows, "patient_id"].nunique())
    out["n_report_patients"] = int(report["patient_id"].nunique())
    return out
