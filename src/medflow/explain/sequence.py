"""Explanations for models of event histories.

Per event: RETAIN's own decomposition (alpha_i * w . (beta_i * v_i): the events' contributions add up
to the logit minus the bias); for the other sequence models Integrated Gradients (Captum) on the code
embedding layer, summed over embedding dimensions, from an all-padding baseline. Per record, events are
also summed per code and per visit (events at the same time stamp... grouped by calendar day before the
prediction time). Models that read count features (logistic regression, gradient boosting, an MLP on
counts) are explained with the tabular methods on those features.

Global importance of a code for a sequence model: the drop in the primary metric when every
occurrence of the code in the test windows is replaced by the unknown code (code occlusion).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from medflow.features.codes import PAD, UNKNOWN, US_PER_DAY, EventTensors
from medflow.models.base import DeepEstimator, Estimator

__all__ = ["event_attributions", "code_occlusion_importance", "explain_events"]


def _forward(est: DeepEstimator, keys: list[str]) -> Callable:
    """The model as a function of the code tensor first (what Captum attributes), other batch fields after."""
    module = est.explain_module().eval()

    def f(codes: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return module({"codes": codes, **dict(zip(keys, rest, strict=True))})

    return f


def event_attributions(est: Estimator, x: EventTensors, n_steps: int = 24) -> tuple[np.ndarray, np.ndarray, str]:
    """(attribution per event position n x L, valid mask n x L, method name) for a sequence model."""
    assert isinstance(est, DeepEstimator)
    module = est.module.eval()
    b = x.batch(np.arange(len(x)))
    if hasattr(module, "contributions") and est.task.kind != "multiclass":
        _, contrib = module.contributions(b)
        return contrib.numpy(), b["mask"].numpy(), "retain_contributions"
    from captum.attr import LayerIntegratedGradients

    keys = [k for k in b if k != "codes"]
    f = _forward(est, keys)
    rest = tuple(b[k] for k in keys)
    target = 0
    if est.task.kind == "multiclass":
        target = torch.as_tensor(est.predict(x).argmax(axis=1))
    lig = LayerIntegratedGradients(f, module.embed.codes)
    attr = lig.attribute(b["codes"], baselines=torch.full_like(b["codes"], PAD), additional_forward_args=rest,
                         target=target, n_steps=n_steps)
    return attr.sum(-1).detach().numpy() * b["mask"].numpy(), b["mask"].numpy(), "integrated_gradients"


def code_occlusion_importance(predict: Callable[[EventTensors], np.ndarray], x: EventTensors, y: np.ndarray,
                              codes: list[int], names: list[str], metric: Callable, higher_is_better: bool
                              ) -> dict[str, dict[str, float]]:
    """Metric drop when all occurrences of each code are replaced by the unknown code."""
    base = metric(y, predict(x))
    out = {}
    for c in codes:
        xc = x.subset(np.arange(len(x)))
        xc.codes = np.where(x.codes == c, UNKNOWN, x.codes)
        xc._matrix = None
        score = metric(y, predict(xc))
        out[names[c]] = {"mean": float(base - score if higher_is_better else score - base), "sd": 0.0}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["mean"]))


def explain_events(est: Estimator, x_test: EventTensors, y_test: np.ndarray, metric: Any, max_records: int,
                   examples: int, top_codes: int = 12) -> dict[str, Any]:
    """explanations.json entry of a sequence model: global code importance and example patients' events."""
    x = x_test.subset(np.arange(min(max_records, len(x_test))))
    attr, valid, method = event_attributions(est, x)
    pos, _ = x.positions(np.arange(len(x)))
    codes = np.where(valid, x.codes[pos], PAD)
    names = x.code_names
    total = np.zeros(x.n_codes)
    np.add.at(total, codes[valid], np.abs(attr[valid]))
    count = np.bincount(codes[valid], minlength=x.n_codes)
    mean_abs = {names[c]: float(total[c] / len(x)) for c in np.argsort(-total) if count[c] and c > UNKNOWN}
    top = [c for c in np.argsort(-total)[:top_codes] if count[c] and c > UNKNOWN]
    keep = np.arange(min(len(x_test), 1000))
    importance = code_occlusion_importance(est.predict, x_test.subset(keep), y_test[keep], top, names, metric,
                                           metric.higher_is_better)
    out_examples = []
    for i in range(min(examples, len(x))):
        v = valid[i]
        t = x.times[pos[i][v]]
        days = np.where(t == -(2**62), np.nan, (x.pred_time[i] - t) / US_PER_DAY)
        per_code: dict[str, float] = {}
        for c, a in zip(codes[i][v], attr[i][v], strict=True):
            per_code[names[c]] = per_code.get(names[c], 0.0) + float(a)
        visits: dict[str, float] = {}
        for d, a in zip(days, attr[i][v], strict=True):
            key = "static" if np.isnan(d) else f"day -{int(d)}"
            visits[key] = visits.get(key, 0.0) + float(a)
        order = np.argsort(-np.abs(attr[i][v]))[:10]
        out_examples.append({
            "row": i, "attributions": per_code, "visits": visits,
            "events": [{"code": names[codes[i][v][j]], "days_before": None if np.isnan(days[j]) else float(days[j]),
                        "attribution": float(attr[i][v][j])} for j in order]})
    return {"method": method, "permutation_importance": importance, "importance_method": "code_occlusion",
            "mean_abs_attribution": mean_abs, "examples": out_examples}
