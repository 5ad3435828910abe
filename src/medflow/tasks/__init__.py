"""Task kinds: each knows its label type, loss, output activation and default metrics."""

from medflow.tasks.base import Binary, Multiclass, Multilabel, Regression, Task
from medflow.tasks.effects import TreatmentEffect
from medflow.tasks.segmentation import Segmentation
from medflow.tasks.spans import SpanExtraction
from medflow.tasks.survival import Survival

__all__ = ["Task", "Binary", "Multiclass", "Multilabel", "Regression", "Survival", "Segmentation", "TreatmentEffect",
           "SpanExtraction"]
