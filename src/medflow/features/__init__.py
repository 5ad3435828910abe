"""Featurizers, one module per modality, all with fit / transform / to_dict / from_dict."""

from __future__ import annotations

from typing import Any

__all__ = ["featurizer_from_dict"]


def featurizer_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a saved featurizer of any modality from its `featurizer.json`."""
    if d.get("version") == "codes-v1":
        from medflow.features.codes import EventFeaturizer

        return EventFeaturizer.from_dict(d)
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer.from_dict(d)
