"""Data: the Dataset, readers, built-in datasets, splits and quality checks.

Names load on first use, so event preprocessing (`data.sources.meds`, `data.cohort`) never imports pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Dataset", "FeatureType", "read_table", "sources", "ImageSource", "ImageData", "read_image_dataset",
           "image_dataset", "phantom_dataset", "MoleculeSource", "read_molecules", "TextSource", "read_notes",
           "notes_dataset", "read_omop", "simulate_omop", "convert_to_meds", "event_dataset", "CohortTable", "Rollup",
           "join_modalities", "TableSource", "simulated_multimodal", "write_multimodal"]

_LAZY = {"Dataset": ("medflow.data.dataset", "Dataset"), "FeatureType": ("medflow.data.dataset", "FeatureType"),
         "read_table": ("medflow.data.sources.tabular", "read_table"),
         **{n: ("medflow.data.images", n) for n in ("ImageSource", "ImageData", "read_image_dataset", "image_dataset",
                                                    "phantom_dataset")},
         **{n: ("medflow.data.molecules", n) for n in ("MoleculeSource", "read_molecules")},
         **{n: ("medflow.data.text", n) for n in ("TextSource", "read_notes", "notes_dataset")},
         "read_omop": ("medflow.data.sources.omop", "read_omop"),
         "simulate_omop": ("medflow.data.simulate.omop", "simulate_omop"),
         "convert_to_meds": ("medflow.data.convert", "convert_to_meds"),
         "event_dataset": ("medflow.data.ehr", "event_dataset"),
         "CohortTable": ("medflow.data.omop_cohort", "CohortTable"), "Rollup": ("medflow.data.rollup", "Rollup"),
         **{n: ("medflow.data.multimodal", n) for n in ("join_modalities", "TableSource")},
         "simulated_multimodal": ("medflow.data.builtin_multimodal", "simulated_multimodal"),
         "write_multimodal": ("medflow.data.simulate.multimodal_files", "write_multimodal")}


def __getattr__(name: str) -> Any:
    if name == "sources":  # `mf.data.sources.tabular...` as before: the table readers come with it
        importlib.import_module("medflow.data.sources.tabular")
        return importlib.import_module("medflow.data.sources")
    if name not in _LAZY:
        raise AttributeError(f"module 'medflow.data' has no attribute '{name}'")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
