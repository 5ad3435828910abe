"""A run's scores to the columns of its prediction table, and those columns to JSON-ready rows.

`Run.predict` gathers the columns in an ordered dict (the task's prediction columns, the conformal set or
interval, the ensemble's spread, survival at the horizons, the explanation) and makes one DataFrame at the end;
`Run.predict_rows` turns the same dict into plain rows without a DataFrame (the service answers from these: a
DataFrame built and read back cost more than the model on a few records).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["score_columns", "put_before", "survival_columns", "json_rows"]


def score_columns(task: Any, entry: dict[str, Any], score: np.ndarray, model: str, synthetic: bool,
                  ids: dict[str, Any] | None = None) -> dict[str, Any]:
    """The prediction columns of `score` (one row per record) for `task`; `entry` is the model's metrics.json
    entry (its threshold and conformal calibration); `ids` columns come first."""
    out: dict[str, Any] = dict(ids or {})
    kind = task.kind
    classes = task.classes if kind in ("binary", "multiclass", "multilabel") else []  # read once: a property
    if kind == "binary":
        t = entry["threshold"]
        out["probability"] = score
        out["prediction"] = np.where(score >= t, classes[1], classes[0])
        out["threshold"] = np.full(len(score), t)
    elif kind == "multiclass":
        for j, c in enumerate(classes):
            out[f"probability_{c}"] = score[:, j]
        out["prediction"] = [classes[j] for j in score.argmax(axis=1)]
    elif kind == "multilabel":  # each label's probability, and the labels at or above 0.5
        for j, c in enumerate(classes):
            out[f"probability_{c}"] = score[:, j]
        out["prediction"] = [[c for c, p in zip(classes, row, strict=True) if p >= 0.5] for row in score]
    elif kind == "regression":
        out["prediction"] = score
    elif hasattr(task, "prediction_columns"):  # e.g. treatment effects: CATE, its interval, the recommendation
        out.update(task.prediction_columns(score, entry))
    _conformal(out, task, classes, entry.get("conformal"), score)
    out["model"] = [model] * len(score)
    if synthetic:
        out["synthetic"] = [True] * len(score)
    return out


def _conformal(out: dict[str, Any], task: Any, classes: list, fitted: dict[str, Any] | None,
               score: np.ndarray) -> None:
    """The conformal prediction set (classification, survival at the horizons) or interval (regression)."""
    if not fitted:
        return
    from medflow.evaluate.conformal import apply_conformal

    pct = f"{fitted['coverage']:.0%}"
    if task.kind == "regression":
        out[f"interval_low_{pct}"], out[f"interval_high_{pct}"] = apply_conformal(fitted, score, task.kind)
    elif task.kind in ("binary", "multiclass"):
        sets = apply_conformal(fitted, score, task.kind)
        out[f"prediction_set_{pct}"] = [[c for c, keep in zip(classes, r, strict=True) if keep] for r in sets.tolist()]
    elif task.kind == "survival":
        sets = apply_conformal(fitted, score, task.kind, np.asarray(task.state["grid"], dtype=float))
        for h, r in sets.items():  # status sets: "event" and/or "no event" by the horizon
            out[f"event_by_{h}_set_{pct}"] = [[lab for lab, keep in zip(("no event", "event"), row, strict=True)
                                               if keep] for row in r]


def put_before(out: dict[str, Any], before: str, new: dict[str, Any]) -> None:
    """Insert `new` columns just before column `before` (at the end when there is none), in place."""
    keys = list(out)
    i = keys.index(before) if before in out else len(keys)
    rebuilt = {**{k: out[k] for k in keys[:i]}, **new, **{k: out[k] for k in keys[i:]}}
    out.clear()
    out.update(rebuilt)


def survival_columns(out: dict[str, Any], task: Any, score: np.ndarray, at: np.ndarray | None, hs: list,
                     cif: np.ndarray | None = None) -> dict[str, Any]:
    """Risk, survival at each horizon and cumulative incidence of each cause (before `model`), and the whole
    curve on the task's grid (last); returns the table's attrs (the grid and its time unit)."""
    new = {"risk": score[:, 0], **{f"survival_at_{h:g}": at[:, j] for j, h in enumerate(hs)}}
    if cif is not None:  # competing risks
        new.update({f"cif_{cause}_at_{h:g}": cif[:, i, j] for i, cause in enumerate(task.causes)
                    for j, h in enumerate(hs)})
    put_before(out, "model", new)
    out["survival_curve"] = [row.tolist() for row in score[:, 1:1 + len(task.grid)]]
    return {"grid": task.state["grid"], "time_unit": task.time_unit}


def json_rows(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Columns (arrays, lists or Series of length `n`) to rows of plain Python values: numpy scalars as Python
    numbers, NaN and infinity as None, timestamps as ISO text, nested lists and dicts likewise."""
    plain = {}
    for name, values in columns.items():
        arr = values.to_numpy() if isinstance(values, pd.Series) else values
        if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "fiub":
            vals = arr.tolist()  # Python numbers already; only non-finite floats need a look
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                vals = [None if not math.isfinite(v) else v for v in vals]
        elif isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind == "U":
            vals = arr.tolist()
        elif isinstance(arr, np.ndarray) and arr.dtype.kind == "M":  # tolist() would give integers
            vals = [None if pd.isna(x) else x.isoformat() for x in pd.to_datetime(arr)]
        else:
            vals = [plain_value(v) for v in (arr.tolist() if isinstance(arr, np.ndarray) else arr)]
        plain[name] = vals
    return [{k: v[i] for k, v in plain.items()} for i in range(n)]


def plain_value(v: Any) -> Any:
    """One value as JSON can hold it (see `json_rows`)."""
    if type(v) in (str, int, bool) or v is None:  # the common cases first
        return v
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    if isinstance(v, list | tuple | np.ndarray):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {k: plain_value(x) for k, x in v.items()}
    return v
