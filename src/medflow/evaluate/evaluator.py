"""Evaluate a run's predictions: metrics with patient-bootstrap CIs, threshold, calibration, subgroups.

The input is the predictions table a run writes (`predictions.parquet`), so `medflow evaluate`
can recompute everything from a finished run with other options.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from medflow.errors import ConfigError, DataError
from medflow.evaluate.bootstrap import bootstrap_ci
from medflow.evaluate.calibration import reliability
from medflow.evaluate.conformal import ConformalConfig, conformal_summary, fit_conformal
from medflow.evaluate.decision import DecisionCurveConfig, decision_curve
from medflow.evaluate.metrics import Metric, get_metric
from medflow.evaluate.selection import SelectionConfig, select_model
from medflow.evaluate.threshold import sensitivity_threshold, youden_threshold

__all__ = ["ThresholdConfig", "SubgroupConfig", "EvaluateConfig", "evaluate_predictions", "subgroup_labels",
           "score_matrix", "prediction_table", "SUBGROUP_PREFIX"]

SUBGROUP_PREFIX = "subgroup:"
BOUNDED = {"c_harrell", "c_uno", "auroc", "auprc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
           "auroc_macro", "auroc_micro", "accuracy_mc", "f1_macro", "r2"}


class ThresholdConfig(BaseModel):
    """How the binary decision threshold is chosen on the validation split."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["youden", "sensitivity", "fixed"] = "youden"
    value: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _needs_value(self) -> ThresholdConfig:
        if self.method in ("sensitivity", "fixed") and self.value is None:
            raise ValueError(f"threshold.method '{self.method}' needs threshold.value in (0, 1)")
        return self


class SubgroupConfig(BaseModel):
    """A sensitive attribute: a column, optionally cut into bands by `bins` or `quantiles`."""

    model_config = ConfigDict(extra="forbid")
    column: str
    name: str | None = None
    bins: list[float] | None = None
    quantiles: int | None = Field(None, ge=2, le=10)

    @property
    def label(self) -> str:
        return self.name or self.column


class EvaluateConfig(BaseModel):
    """Evaluation options (the YAML's `evaluate:` section)."""

    model_config = ConfigDict(extra="forbid")
    n_bootstrap: int = Field(1000, ge=50, le=100_000)
    level: float = Field(0.95, gt=0.5, lt=1)
    threshold: ThresholdConfig = ThresholdConfig()
    subgroups: list[str | SubgroupConfig] = []
    calibration_bins: int = Field(10, ge=2, le=50)
    min_subgroup_size: int = Field(10, ge=1)
    selection: SelectionConfig = SelectionConfig()
    conformal: ConformalConfig = ConformalConfig()
    decision_curve: DecisionCurveConfig = DecisionCurveConfig()

    def subgroup_specs(self) -> list[SubgroupConfig]:
        return [SubgroupConfig(column=s) if isinstance(s, str) else s for s in self.subgroups]


def subgroup_labels(frame: pd.DataFrame, spec: SubgroupConfig, source: str) -> pd.Series:
    """Subgroup label per record: the column's value, or its band."""
    if spec.column not in frame.columns:
        raise DataError(f"{source}: evaluate.subgroups names column '{spec.column}', which is not in the data; "
                        f"columns are {list(frame.columns)}.")
    col = frame[spec.column]
    if spec.bins is not None:
        return _band_labels(pd.cut(col.astype(float), bins=spec.bins, include_lowest=True, right=False))
    if spec.quantiles is not None:
        return _band_labels(pd.qcut(col.astype(float), q=spec.quantiles, duplicates="drop"))
    if pd.api.types.is_float_dtype(col) and col.nunique() > 10:
        raise ConfigError(f"subgroup column '{spec.column}' is continuous; give bins: [...] or quantiles: N.")
    return col.astype(str).where(col.notna(), "missing")


def _band_labels(bands: pd.Series) -> pd.Series:
    """Readable, sortable band names such as '12.25-14.77'; values outside every band are 'missing'."""
    def name(iv: object) -> str:
        return "missing" if not isinstance(iv, pd.Interval) else f"{iv.left:.4g}-{iv.right:.4g}"

    return bands.astype(object).map(name)


def prediction_table(task: Any, score: np.ndarray, y: np.ndarray, patient_ids: np.ndarray, rows: np.ndarray,
                     part: str, fold: int, model: str) -> pd.DataFrame:
    """Rows of a predictions table (the layout of predictions.parquet) for one model, fold and split."""
    out = pd.DataFrame({"patient_id": np.asarray(patient_ids).astype(str), "row": rows, "fold": fold,
                        "split": part, "model": model})
    if hasattr(task, "case_columns"):  # segmentation, spans: one row per case with its metrics or counts (the
        values = task.case_values(score, y)  # masks / spans themselves go to disk beside the model)
        out["y_true"] = 0
        for j, col in enumerate(task.case_columns()):
            out[col] = values[:, j]
        return out
    if getattr(task, "table_layout", "") == "matrix":
        # any number of target and prediction columns (treatment effects: [t, y, truth, nuisances], [mu0, mu1, cate])
        out["y_true"] = y[:, 0]
        for j in range(y.shape[1]):
            out[f"target_{j}"] = y[:, j]
        for j in range(score.shape[1]):
            out[f"out_{j}"] = score[:, j]
        return out
    if task.kind == "multilabel":  # one truth and one probability column per label
        out["y_true"] = np.nansum(y, axis=1)
        for j in range(y.shape[1]):
            out[f"label_{j}"], out[f"prob_{j}"] = y[:, j], score[:, j]
        return out
    if task.kind == "survival":
        out["time"], out["event"], out["y_true"] = y[:, 0], y[:, 1], y[:, 1]
        out["score"] = score[:, 0]
        g = len(task.grid)
        for j in range(g):
            out[f"surv_{j}"] = score[:, 1 + j]
        for j, cause in enumerate(task.causes if score.shape[1] > 1 + g else []):
            out[f"cause_{cause}"] = score[:, 1 + g + j]
    else:
        out["y_true"] = y
    if task.kind == "multiclass":
        for j in range(score.shape[1]):
            out[f"prob_{j}"] = score[:, j]
    elif task.kind != "survival":
        out["score"] = score
    return out


def score_matrix(frame: pd.DataFrame, task_kind: str) -> np.ndarray:
    """The prediction column(s) of a predictions table, as the metric functions take them."""
    if "out_0" in frame.columns:  # the matrix layout (see prediction_table)
        return frame[sorted((c for c in frame.columns if c.startswith("out_")), key=lambda c: int(c[4:]))].to_numpy(
            dtype=float)
    if task_kind == "survival":
        cols = sorted((c for c in frame.columns if c.startswith("surv_")), key=lambda c: int(c[5:]))
        causes = sorted((c for c in frame.columns if c.startswith("cause_")), key=lambda c: int(c[6:]))
        return frame[["score", *cols, *causes]].to_numpy(dtype=float)
    if task_kind in ("multiclass", "multilabel"):
        cols = sorted((c for c in frame.columns if c.startswith("prob_")), key=lambda c: int(c[5:]))
        return frame[cols].to_numpy(dtype=float)
    cases = [c for c in frame.columns if c.startswith("case_")]
    if cases:  # per-case metric columns (segmentation, spans), in the order the task wrote them
        return frame[cases].to_numpy(dtype=float)
    return frame["score"].to_numpy(dtype=float)


def _threshold(valid: pd.DataFrame, cfg: ThresholdConfig) -> float:
    y, s = valid["y_true"].to_numpy(), valid["score"].to_numpy(dtype=float)
    if cfg.method == "fixed":
        return float(cfg.value)
    if cfg.method == "sensitivity":
        return sensitivity_threshold(y, s, float(cfg.value))
    return youden_threshold(y, s)


def _confusion(y: np.ndarray, s: np.ndarray, task_kind: str, threshold: float, k: int) -> list[list[int]]:
    pred = (s >= threshold).astype(int) if task_kind == "binary" else s.argmax(axis=1)
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (y.astype(int), pred), 1)
    return m.tolist()


def truth(frame: pd.DataFrame, task_kind: str) -> np.ndarray:
    """The targets of a predictions table: labels, or [time, event] for survival."""
    if "target_0" in frame.columns:  # the matrix layout (see prediction_table)
        cols = sorted((c for c in frame.columns if c.startswith("target_")), key=lambda c: int(c[7:]))
        return frame[cols].to_numpy(dtype=float)
    if task_kind == "survival":
        return frame[["time", "event"]].to_numpy(dtype=float)
    if task_kind == "multilabel":
        cols = sorted((c for c in frame.columns if c.startswith("label_")), key=lambda c: int(c[6:]))
        return frame[cols].to_numpy(dtype=float)
    return frame["y_true"].to_numpy()


def _calibration(y: np.ndarray, s: np.ndarray, task_kind: str, bins: int, state: dict) -> dict[str, Any] | None:
    if task_kind == "survival":
        from medflow.evaluate.survival import survival_calibration

        return survival_calibration(y, s, state)
    if task_kind == "binary":
        return reliability(y, s, bins)
    if task_kind == "multiclass":  # top-label calibration: confidence against correctness
        return reliability((s.argmax(axis=1) == y).astype(float), s.max(axis=1), bins)
    return None


def metrics_for(task: Any, preds: pd.DataFrame) -> list[Metric]:
    """The task's default metrics; survival ones are bound to its grid and a censoring reference sample."""
    if task.kind == "survival":
        from medflow.evaluate.survival import survival_metrics

        first = preds[preds["model"] == preds["model"].iloc[0]].drop_duplicates("row")
        return survival_metrics(task.state, truth(first, "survival"))
    if hasattr(task, "metric_list"):
        return task.metric_list()
    return [get_metric(n) for n in task.default_metrics]


CONFORMAL_KINDS = ("binary", "multiclass", "regression", "survival")


def evaluate_predictions(preds: pd.DataFrame, task: Any, cfg: EvaluateConfig, seed: int,
                         fixed: dict[str, dict] | None = None, selected: str | None = None) -> dict[str, Any]:
    """Metrics with CIs on the test rows of each model, threshold from its validation rows.

    External validation passes `fixed`: per model the run's own threshold and conformal sets, applied
    unchanged, and `selected`, the model the run selected (nothing is chosen on external data).
    """
    task_kind, primary = task.kind, task.primary_metric
    metrics = metrics_for(task, preds)
    sg_cols = [c for c in preds.columns if c.startswith(SUBGROUP_PREFIX)]
    out: dict[str, Any] = {"models": {}, "primary_metric": primary, "level": cfg.level,
                           "n_bootstrap": cfg.n_bootstrap, "threshold_method": cfg.threshold.model_dump()}
    for model, g in preds.groupby("model", sort=False):
        valid, test = g[g["split"] == "valid"], g[g["split"] == "test"]
        if test.empty:
            raise DataError(f"predictions for model '{model}' have no test rows.")
        given = (fixed or {}).get(model, {})
        if given.get("threshold") is not None:
            threshold = float(given["threshold"])
        else:
            threshold = _threshold(valid, cfg.threshold) if task_kind == "binary" and not valid.empty else 0.5
        y, s = truth(test, task_kind), score_matrix(test, task_kind)
        pid = test["patient_id"].astype(str).to_numpy()
        entry: dict[str, Any] = {
            "threshold": threshold, "n_test": int(len(test)), "n_test_patients": int(len(np.unique(pid))),
            "metrics": bootstrap_ci(metrics, y, s, pid, threshold, cfg.n_bootstrap, cfg.level, seed),
        }
        if task_kind in ("binary", "multiclass"):
            k = 2 if task_kind == "binary" else s.shape[1]
            entry["confusion"] = _confusion(y, s, task_kind, threshold, k)
        entry["calibration"] = _calibration(y, s, task_kind, cfg.calibration_bins, task.state)
        entry["decision_curve"] = decision_curve(y, s, task_kind, cfg.decision_curve, task.state)
        entry.update(task.evaluate_extra(truth(valid, task_kind) if not valid.empty else np.empty((0, y.shape[-1])),
                                         score_matrix(valid, task_kind) if not valid.empty else np.empty((0, 1)),
                                         y, s, pid, cfg, seed))
        entry["subgroups"] = {c[len(SUBGROUP_PREFIX):]: _subgroups(test, c, metrics, primary, task_kind,
                                                                  threshold, cfg, seed) for c in sg_cols}
        if given.get("conformal"):
            entry["conformal"] = {**given["conformal"], "test": _coverage(given["conformal"], test, task, seed)}
        elif not valid.empty and fixed is None and task_kind in CONFORMAL_KINDS:
            fitted = fit_conformal(truth(valid, task_kind), score_matrix(valid, task_kind), task_kind,
                                   cfg.conformal, task.state)
            entry["conformal"] = {**fitted, "test": _coverage(fitted, test, task, seed)}
        out["models"][model] = entry
    if fixed is not None:
        out["selected_model"] = selected if selected in out["models"] else next(iter(out["models"]))
        out["selection"] = {"selected": out["selected_model"], "rule": "fixed", "warning": None,
                            "reason": f"{out['selected_model']} was selected on the run's own validation data"}
        return out
    valid = preds[preds["split"] == "valid"]
    if valid.empty:
        out["selected_model"] = next(iter(out["models"]))
        out["selection"] = {"selected": out["selected_model"], "rule": "none", "warning": None,
                            "reason": "no validation split, so no selection: the first model listed is reported"}
        return out
    sel = select_model(valid, get_metric(primary), task_kind, lambda f: truth(f, task_kind),
                       lambda f: score_matrix(f, task_kind), cfg.selection, cfg.n_bootstrap, cfg.level, seed)
    for model, row in sel["models"].items():
        out["models"][model]["valid_" + primary] = row["value"]
    out["selected_model"], out["selection"] = sel["selected"], sel
    return out


def _coverage(fitted: dict, test: pd.DataFrame, task: Any, seed: int) -> dict:
    """Empirical coverage of calibrated conformal sets on the test rows."""
    kind, state = task.kind, task.state
    grid = np.asarray(state["grid"], dtype=float) if kind == "survival" else None
    return conformal_summary(fitted, truth(test, kind), score_matrix(test, kind),
                             test["patient_id"].astype(str).to_numpy(), kind, seed, state.get("classes"), grid)


def _subgroups(test: pd.DataFrame, col: str, metrics, primary: str, task_kind: str, threshold: float,
               cfg: EvaluateConfig, seed: int) -> dict[str, Any]:
    groups = {}
    for level, g in test.groupby(col, sort=True):
        y, s = truth(g, task_kind), score_matrix(g, task_kind)
        groups[str(level)] = {"n": int(len(g)),
                              "metrics": bootstrap_ci(metrics, y, s, g["patient_id"].astype(str).to_numpy(),
                                                      threshold, cfg.n_bootstrap, cfg.level, seed)}
    sized = {k: v for k, v in groups.items() if v["n"] >= cfg.min_subgroup_size}
    gaps = {}
    for m in metrics:
        vals = {k: v["metrics"][m.name]["value"] for k, v in sized.items()
                if not np.isnan(v["metrics"][m.name]["value"])}
        if len(vals) >= 2:
            best = max(vals, key=vals.get) if m.higher_is_better else min(vals, key=vals.get)
            worst = min(vals, key=vals.get) if m.higher_is_better else max(vals, key=vals.get)
            gaps[m.name] = {"gap": abs(vals[best] - vals[worst]), "best": best, "worst": worst}
    bounded = {k: v for k, v in gaps.items() if k in BOUNDED} or gaps
    flagged = max(bounded, key=lambda k: bounded[k]["gap"]) if bounded else None
    return {"groups": groups, "gaps": gaps, "largest_gap": flagged}
