"""Built-in datasets: real data that ships inside installed packages (no download).

The datasets themselves are registered in `builtin_tabular.py` and `builtin_survival.py`; this module
loads and lists them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from medflow.data.dataset import Dataset
from medflow.registry import datasets

__all__ = ["load", "describe", "frame_of"]


def _register() -> None:
    import medflow.data.builtin_effects  # noqa: F401  (acic16_1..10, nhefs, te_sim)
    import medflow.data.builtin_images  # noqa: F401  (phantoms_2d, phantoms_3d)
    import medflow.data.builtin_molecules  # noqa: F401  (freesolv, solubility)
    import medflow.data.builtin_multimodal  # noqa: F401  (multimodal_sim)
    import medflow.data.builtin_survival  # noqa: F401  (gbsg2, veterans, flchain, ...)
    import medflow.data.builtin_tabular  # noqa: F401  (breast_cancer, diabetes, ehr_sim)
    import medflow.data.builtin_text  # noqa: F401  (iu_reports, padchest_reports, synthetic_notes)


def load(name: str) -> Dataset:
    """Load a registered dataset by name, e.g. ``load("breast_cancer")``."""
    _register()
    factory: Callable[[], Dataset] = datasets.get(name)
    return factory()


def describe() -> list[dict[str, str]]:
    """One row per registered dataset: name, task, size and source, for `medflow datasets`."""
    _register()
    rows = []
    for name, factory in datasets.items():
        info = getattr(factory, "info", {})
        rows.append({"name": name, **info})
    return rows


def frame_of(name: str) -> pd.DataFrame:
    """The raw table of a built-in dataset (handy for writing it to CSV in examples and tests)."""
    return load(name).frame
