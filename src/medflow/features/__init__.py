"""Featurizers, one module per modality, all with fit / transform / to_dict / from_dict."""

from __future__ import annotations

from typing import Any

__all__ = ["featurizer_from_dict", "make_featurizer", "featurize", "input_names"]


def featurizer_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a saved featurizer of any modality from its `featurizer.json`."""
    if d.get("version") == "codes-v1":
        from medflow.features.codes import EventFeaturizer

        return EventFeaturizer.from_dict(d)
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer.from_dict(d)


def make_featurizer(ds: Any, features: list[str], train: Any, sequence: Any = None) -> Any:
    """The featurizer of the dataset's modality, fitted on the training rows only.

    `sequence` holds the event-window options (`data.sequence`: min_count, max_len, lookback_days).
    """
    if ds.events is not None:
        from medflow.data.ehr import samples_frame
        from medflow.features.codes import EventFeaturizer

        seq = sequence
        return EventFeaturizer(seq.min_count, seq.max_len, seq.lookback_days).fit(ds.events, samples_frame(train))
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer({c: ds.feature_types[c] for c in features}).fit(train)


def featurize(feat: Any, ds: Any, frame: Any) -> Any:
    """Model inputs for rows of a dataset: a matrix (tables) or event windows (event data)."""
    if ds.events is not None:
        from medflow.data.ehr import samples_frame

        return feat.transform(ds.events, samples_frame(frame))
    return feat.transform(frame)


def input_names(est: Any, feat: Any, x: Any) -> list[str]:
    """The name of each input column a model sees (count features when a tabular model reads events)."""
    if est.spec.inputs == "tabular" and hasattr(x, "matrix_names"):
        return x.matrix_names()
    return feat.output_sources
