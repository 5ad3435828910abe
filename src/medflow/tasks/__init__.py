"""Task kinds: what is predicted, its labels, loss, metrics and the shape of its predictions.

`task_kinds` maps each kind's YAML name to its class; `task_from_dict` rebuilds a saved task (`task.json`).
"""

from typing import Any

from medflow.tasks.base import Binary, Multiclass, Regression, Task
from medflow.tasks.effects import TreatmentEffect
from medflow.tasks.multilabel import Multilabel
from medflow.tasks.segmentation import Segmentation
from medflow.tasks.spans import SpanExtraction
from medflow.tasks.survival import Survival

__all__ = ["Task", "Binary", "Multiclass", "Multilabel", "Regression", "Survival", "Segmentation", "TreatmentEffect",
           "SpanExtraction", "task_kinds", "task_from_dict"]

task_kinds: dict[str, type[Task]] = {
    cls.model_fields["kind"].default: cls
    for cls in (Binary, Multiclass, Multilabel, Regression, Survival, Segmentation, TreatmentEffect, SpanExtraction)}


def task_from_dict(d: dict[str, Any]) -> Task:
    """A saved task (`task.json`: its config and fitted state)."""
    cfg = dict(d["config"])
    return task_kinds[cfg["kind"]](**cfg).load_state(d["state"])
