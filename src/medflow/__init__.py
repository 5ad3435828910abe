"""medflow: a deep-learning workbench for healthcare research.

Heavy parts (torch, scikit-learn) load on first use, so `import medflow` and `medflow datasets` stay fast.

>>> import medflow as mf
>>> sorted(mf.datasets.describe()[0])
['name', 'size', 'source', 'task']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "datasets": ("medflow.data.builtin", None),
    "tasks": ("medflow.tasks", None),
    "splits": ("medflow.data.splits", None),
    "data": ("medflow.data", None),
    "Dataset": ("medflow.data.dataset", "Dataset"),
    "FeatureType": ("medflow.data.dataset", "FeatureType"),
    "read_table": ("medflow.data.sources.tabular", "read_table"),
    "Study": ("medflow.study", "Study"),
    "molgen": ("medflow.molgen", None),
    "pretrain": ("medflow.pretrain", None),  # the package is callable: mf.pretrain("pretrain.yaml")
    "Run": ("medflow.runs", "Run"),
    "load_run": ("medflow.runs", "load_run"),
    "start_service": ("medflow.serve.app", "serve"),  # `medflow.serve` is the package
    "MedflowError": ("medflow.errors", "MedflowError"),
    "DataError": ("medflow.errors", "DataError"),
    "ConfigError": ("medflow.errors", "ConfigError"),
    "ModelError": ("medflow.errors", "ModelError"),
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'medflow' has no attribute '{name}'")
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    value = getattr(value, attr) if attr else value
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
