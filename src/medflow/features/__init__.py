"""Featurizers, one module per modality, all with fit / transform / to_dict / from_dict.

Each modality is one entry in the `featurizers` registry (`FeaturizerKind`): how to fit its featurizer on a
fold's training rows, how to turn rows of a Dataset into model inputs, and how to load a saved one. The
study, the tuner and the saved run look a featurizer up by the Dataset's `modality` (or a saved
featurizer's `version`), never by an `if` on the modality, so a new modality is one registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from medflow.registry import Registry

__all__ = ["FeaturizerKind", "featurizers", "kind_of", "featurizer_from_dict", "make_featurizer", "featurize",
           "input_names", "encode_targets", "merge_featurizers"]


@dataclass(frozen=True)
class FeaturizerKind:
    """A modality's featurizer: `fit(ds, features, train_frame, data_cfg)`, `apply(feat, ds, frame)`, `load(d)`."""

    modality: str
    version: str
    fit: Callable[[Any, list[str], Any, Any], Any]
    apply: Callable[[Any, Any, Any], Any]
    load: Callable[[dict[str, Any]], Any]
    targets: Callable[[Any, Any, Any], Any] | None = None  # targets that are not frame columns (masks, spans)
    targets_kind: str | None = None  # what `targets` gives: a task's `targets_from` ("masks", "spans")
    # one featurizer from several fitted on disjoint record sets: [(featurizer, n_records)] (federated sites)
    merge: Callable[[list[tuple[Any, int]]], Any] | None = None
    # records of this modality are not table rows: what to pass to `Run.predict` instead (None: a table)
    records_hint: str | None = None


featurizers: Registry = Registry("featurizer")


def _tabular_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer({c: ds.feature_types[c] for c in features}).fit(train)


def _tabular_load(d: dict[str, Any]) -> Any:
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer.from_dict(d)


def _events_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.data.ehr import samples_frame
    from medflow.features.codes import EventFeaturizer

    seq = getattr(data, "sequence", None)  # the YAML's data.sequence; without one, the featurizer's defaults
    feat = EventFeaturizer() if seq is None else EventFeaturizer(seq.min_count, seq.max_len, seq.lookback_days)
    return feat.fit(ds.events, samples_frame(train))


def _events_apply(feat: Any, ds: Any, frame: Any) -> Any:
    from medflow.data.ehr import samples_frame

    return feat.transform(ds.events, samples_frame(frame))


def _events_load(d: dict[str, Any]) -> Any:
    from medflow.features.codes import EventFeaturizer

    return EventFeaturizer.from_dict(d)


def _image_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.features.image import ImageFeaturizer

    src = getattr(data, "images", None)  # the YAML's data.images, else the options the dataset was built with
    opts = src.model_dump() if src is not None else ds.meta.get("images_config") or {}
    return ImageFeaturizer(opts.get("size"), opts.get("intensity", "zscore"), opts.get("resize", True),
                           opts.get("spacing")).fit(ds.images, train["image"].tolist())


def _image_apply(feat: Any, ds: Any, frame: Any) -> Any:
    return feat.transform(ds.images, frame["image"].tolist(), ds.source)


def _image_load(d: dict[str, Any]) -> Any:
    from medflow.features.image import ImageFeaturizer

    return ImageFeaturizer.from_dict(d)


def _mol_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.features.molecule import MoleculeFeaturizer

    matrix = getattr(data, "mol_features", None)
    return MoleculeFeaturizer(ds.molecules.smiles_column, matrix, ds.molecules.protein_column).fit(
        train, ds.source, ds.molecules.cache)


def _mol_apply(feat: Any, ds: Any, frame: Any) -> Any:
    return feat.transform(frame, ds.source, ds.molecules.cache if ds.molecules is not None else None)


def _mol_load(d: dict[str, Any]) -> Any:
    from medflow.features.molecule import MoleculeFeaturizer

    return MoleculeFeaturizer.from_dict(d)


def _text_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.features.text import TextFeaturizer

    opts = getattr(data, "text_features", None)
    kw = opts.model_dump() if opts is not None else {}
    feat = TextFeaturizer(ds.text.text_column, **kw).fit(train)
    given = (ds.meta.get("text_config") or {}).get("id_column")
    feat.record_columns = list(dict.fromkeys([ds.patient_id, given or "note_id", "note_id"]))
    return feat


def _text_load(d: dict[str, Any]) -> Any:
    from medflow.features.text import TextFeaturizer

    return TextFeaturizer.from_dict(d)


def _text_spans(feat: Any, ds: Any, frame: Any) -> Any:
    """The gold spans of the frame's notes (an object array of span lists), for a span task."""
    import numpy as np

    from medflow.errors import ConfigError

    spans = ds.text.spans
    if spans is None:
        raise ConfigError(f"{ds.source}: a span task needs gold spans; these notes have none. Read notes from JSONL "
                          "({\"text\": ..., \"spans\": [{start, end, label}]}) or a BRAT folder, or use the built-in "
                          "synthetic_notes.")
    out = np.empty(len(frame), dtype=object)
    out[:] = [list(spans.get(str(i), [])) for i in frame["note_id"]]
    return out


def _mm_fit(ds: Any, features: list[str], train: Any, data: Any) -> Any:
    from medflow.features.multimodal import fit_parts

    return fit_parts(ds, train, data, featurizers.get)


def _mm_apply(feat: Any, ds: Any, frame: Any) -> Any:
    from medflow.features.multimodal import apply_parts

    return apply_parts(feat, ds, frame, featurizers.get)


def _mm_load(d: dict[str, Any]) -> Any:
    from medflow.features.multimodal import MultimodalFeaturizer

    return MultimodalFeaturizer({k: featurizer_from_dict(p["state"]) for k, p in d["parts"].items()},
                                {k: p["kind"] for k, p in d["parts"].items()},
                                {k: p.get("join", {}) for k, p in d["parts"].items()})


def _tabular_merge(parts: list[tuple[Any, int]]) -> Any:
    from medflow.features.tabular import TabularFeaturizer

    return TabularFeaturizer.merge(parts)


for _kind in (FeaturizerKind("tabular", "tabular-v1", _tabular_fit, lambda f, ds, frame: f.transform(frame),
                             _tabular_load, merge=_tabular_merge),
              FeaturizerKind("events", "codes-v1", _events_fit, _events_apply, _events_load,
                             records_hint="this run reads event histories; predict on an event Dataset, e.g. "
                                          "run.predict(mf.data.event_dataset(mf.data.read_meds(path), cohort=...))."),
              FeaturizerKind("images", "image-v1", _image_fit, _image_apply, _image_load,
                             lambda f, ds, frame: f.transform_masks(ds.images, frame["image"].tolist(), ds.source),
                             targets_kind="masks",
                             records_hint="this run reads images; predict on an image Dataset, e.g. run.predict("
                                          "mf.data.read_image_dataset(mf.data.ImageSource(path='scans/')))."),
              FeaturizerKind("molecules", "mol-v1", _mol_fit, _mol_apply, _mol_load),
              FeaturizerKind("text", "text-v1", _text_fit, lambda f, ds, frame: f.transform(frame, ds.source),
                             _text_load, _text_spans, targets_kind="spans"),
              FeaturizerKind("multimodal", "multimodal-v1", _mm_fit, _mm_apply, _mm_load,
                             records_hint="this run reads several modalities per patient; predict on a multimodal "
                                          "Dataset, e.g. run.predict(mf.data.join_modalities(samples, sources)).")):
    featurizers.register(_kind.modality)(_kind)


def kind_of(feat: Any) -> FeaturizerKind:
    """The registry entry of a fitted featurizer (by its saved version; tabular featurizers carry `version`)."""
    version = getattr(feat, "name", None) or getattr(feat, "version", None)
    for _, kind in featurizers.items():
        if kind.version == version:
            return kind
    return featurizers.get("tabular")


def featurizer_from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a saved featurizer of any modality from its `featurizer.json`."""
    version = d.get("version")
    for _, kind in featurizers.items():
        if kind.version == version:
            return kind.load(d)
    return _tabular_load(d)  # tabular featurizers saved before versions were written


def make_featurizer(ds: Any, features: list[str], train: Any, data: Any = None) -> Any:
    """The featurizer of the dataset's modality, fitted on the training rows only.

    `data` is the study's `data:` section (event windows: `data.sequence`; images: `data.images`).
    """
    return featurizers.get(ds.modality).fit(ds, features, train, data)


def merge_featurizers(ds: Any, parts: list[tuple[Any, int]]) -> Any:
    """One featurizer from per-site featurizers and their training record counts (federated training)."""
    kind = featurizers.get(ds.modality)
    if kind.merge is None:
        from medflow.errors import ConfigError

        raise ConfigError(f"federated training needs a featurizer that merges site summaries; {ds.modality} data "
                          "have none yet (tables do).")
    return kind.merge(parts)


def featurize(feat: Any, ds: Any, frame: Any) -> Any:
    """Model inputs for rows of a dataset: a matrix (tables), event windows (events), an image array (images),
    molecular graphs with fingerprints and descriptors (molecules), token windows with TF-IDF (text)."""
    return featurizers.get(ds.modality).apply(feat, ds, frame)


def encode_targets(feat: Any, task: Any, ds: Any, frame: Any) -> Any:
    """Model targets for rows: the task's encoding of its label columns, or, for tasks whose targets are not
    columns (segmentation: `targets_from = "masks"`; spans: "spans"), what the modality's featurizer prepares."""
    if getattr(task, "targets_from", "labels") == "labels":
        return task.encode(frame)
    kind = featurizers.get(ds.modality)
    if kind.targets is None or kind.targets_kind != task.targets_from:
        from medflow.errors import ConfigError

        raise ConfigError(f"a {task.kind} task needs {task.targets_from}, which {ds.modality} data do not have.")
    return kind.targets(feat, ds, frame)


def input_names(est: Any, feat: Any, x: Any) -> list[str]:
    """The name of each input column a model sees (count features when a tabular model reads events)."""
    if est.spec.inputs == "tabular" and hasattr(x, "matrix_names"):
        return x.matrix_names()
    return feat.output_sources
