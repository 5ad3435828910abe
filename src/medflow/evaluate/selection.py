"""Model selection on validation predictions that does not chase noise in a small validation split.

Every model is scored on the validation rows of every fold pooled together (for k-fold, each fold's
validation part, scored by that fold's model), with a patient-bootstrap CI. The best model is the one
with the best point estimate; with ``rule: simplest_within_ci`` (the default) the selected model is the
simplest one whose paired bootstrap difference from the best includes zero, because a small validation
split cannot tell those models apart and the simpler model is the safer bet (docs/evaluation.md). The
test split is never looked at.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medflow.evaluate.bootstrap import patient_resamples
from medflow.evaluate.metrics import Metric

__all__ = ["SelectionConfig", "select_model", "validation_events", "complexity_of"]


class SelectionConfig(BaseModel):
    """How the reported model is chosen on the validation predictions (YAML: `evaluate.selection:`)."""

    model_config = ConfigDict(extra="forbid")
    rule: Literal["simplest_within_ci", "best"] = "simplest_within_ci"
    min_events: int = Field(100, ge=1, description="warn when the pooled validation rows hold fewer events "
                                                   "(minority-class records; events for survival)")


def complexity_of(model: str) -> int:
    """The registry's complexity rank of a model (3, an MLP's, for names the registry does not know).

    Models register when `medflow.models` is first imported: by whoever built, trained or loaded them (a study,
    a run), which is everyone who selects among them; evaluate reads the registry and never imports the models.
    """
    from medflow.registry import models

    return models.get(model).complexity if model in models else 3


def validation_events(y: np.ndarray, task_kind: str) -> int | None:
    """Events that carry the information in a validation split: minority-class records, or observed events."""
    if task_kind == "survival":
        return int(np.asarray(y)[:, 1].sum())
    if task_kind in ("binary", "multiclass"):
        return int(np.unique(np.asarray(y), return_counts=True)[1].min()) if len(y) else 0
    return None


def _aligned(valid: pd.DataFrame, models: list[str]) -> dict[str, pd.DataFrame]:
    """Each model's validation rows in one order, (fold, row), so resamples pair them."""
    if "fold" not in valid.columns:
        valid = valid.assign(fold=0)
    if "row" not in valid.columns:
        valid = valid.assign(row=valid.groupby("model").cumcount())
    out = {m: g.sort_values(["fold", "row"]) for m, g in valid.groupby("model", sort=False)}
    keys = out[models[0]][["fold", "row"]].to_numpy()
    for m in models:
        if not np.array_equal(out[m][["fold", "row"]].to_numpy(), keys):
            raise ValueError(f"model '{m}' was validated on other rows than '{models[0]}'")
    return out


def select_model(valid: pd.DataFrame, metric: Metric, task_kind: str, truth, scores, cfg: SelectionConfig,
                 n_boot: int, level: float, seed: int) -> dict[str, Any]:
    """Choose the model to report; returns the choice, the rule's reasoning and every model's validation score.

    `truth(frame)` and `scores(frame)` turn prediction rows into what `metric` takes.
    """
    models = list(dict.fromkeys(valid["model"]))
    rows = _aligned(valid, models)
    base = rows[models[0]]
    y, pid = truth(base), base["patient_id"].astype(str).to_numpy()
    s = {m: scores(rows[m]) for m in models}
    point = {m: metric(y, s[m]) for m in models}
    samples = patient_resamples(pid, n_boot, seed)
    boot = {m: np.array([metric(y[i], s[m][i]) for i in samples], dtype=float) for m in models}
    sign = 1.0 if metric.higher_is_better else -1.0
    finite = [m for m in models if np.isfinite(point[m])]
    best = max(finite, key=lambda m: sign * point[m]) if finite else models[0]
    alpha = (1 - level) / 2
    table: dict[str, dict[str, Any]] = {}
    for m in models:
        ok = ~np.isnan(boot[m])
        lo, hi = np.quantile(boot[m][ok], [alpha, 1 - alpha]) if ok.any() else (np.nan, np.nan)
        diff = sign * (boot[best] - boot[m])
        diff = diff[~np.isnan(diff)]
        dlo, dhi = np.quantile(diff, [alpha, 1 - alpha]) if len(diff) else (np.nan, np.nan)
        table[m] = {"value": point[m], "low": float(lo), "high": float(hi), "complexity": complexity_of(m),
                    "diff_from_best": float(sign * (point[best] - point[m])) if np.isfinite(point[m]) else None,
                    "diff_low": float(dlo), "diff_high": float(dhi),
                    "tied_with_best": bool(m == best or (np.isfinite(point[m]) and dlo <= 0))}
    tied = [m for m in models if table[m]["tied_with_best"]]
    if cfg.rule == "best" or len(tied) == 1:
        selected = best
    else:
        selected = min(tied, key=lambda m: (table[m]["complexity"], -sign * point[m]))
    pct = int(round(level * 100))
    if selected == best:
        reason = f"{selected} has the best pooled validation {metric.name} ({point[best]:.3f})"
        others = [m for m in tied if m != best]
        if others:
            reason += f"; {', '.join(others)} within its {pct}% CI but not simpler"
    else:
        reason = (f"{selected} is the simplest model whose validation {metric.name} ({point[selected]:.3f}) is "
                  f"within the {pct}% CI of the best, {best} ({point[best]:.3f}; paired bootstrap difference "
                  f"{table[selected]['diff_low']:.3f} to {table[selected]['diff_high']:.3f})")
    n_events = validation_events(y, task_kind)
    warning = None
    if n_events is not None and n_events < cfg.min_events:
        warning = (f"the validation predictions hold only {n_events} events (fewer than evaluate.selection."
                   f"min_events = {cfg.min_events}): the choice of model is uncertain. Use split: {{kind: kfold}} "
                   "(validation pooled over folds) or a larger split.valid.")
    return {"selected": selected, "best_on_validation": best, "rule": cfg.rule, "reason": reason,
            "metric": metric.name, "n_valid_rows": int(len(base)), "n_valid_patients": int(len(np.unique(pid))),
            "n_valid_events": n_events, "n_folds": int(base["fold"].nunique()), "warning": warning,
            "models": table}
