"""Multimodal featurization: each modality keeps its own featurizer (the one its kind registers), fitted on the
training samples that have the modality; `MultiInputs` holds each modality's model inputs for the samples that have
it and, per sample, where its row is (-1: missing).

`MultiInputs.batch(idx)` gives the fusion models a dict: `present` (batch x modalities, bool) and, per modality, the
batch of its present samples in that modality's own form (a tensor, or its featurizer's batch dict), or None when no
sample of the batch has it. `to_matrix()` gives tabular models one row per sample: each modality's matrix (count
features, TF-IDF, block-averaged pixels, the table's columns) with zeros where it is missing and a presence column
per modality, which is how a gradient-boosted model reads several modalities (HAIM's design).

The registry of featurizer kinds is handed in (`lookup`), so this module does not import `features/__init__`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from medflow.errors import DataError

__all__ = ["MultimodalFeaturizer", "MultiInputs", "fit_parts", "apply_parts", "MATRIX_TEXT_FEATURES"]

MATRIX_TEXT_FEATURES = 2000  # TF-IDF columns of a note modality in the tabular view (the fusion models read tokens)
_POOLED = 8  # block-averaged pixels per spatial side in the tabular view of an image modality


class MultimodalFeaturizer:
    """One fitted featurizer per modality (`parts`, by modality name) and the kind of each (`kinds`)."""

    name = "multimodal-v1"

    def __init__(self, parts: dict[str, Any], kinds: dict[str, str], joins: dict[str, dict] | None = None) -> None:
        self.parts, self.kinds = parts, kinds
        self.joins = joins or {}  # per modality: how a sample reads it and whether on time (what a service rebuilds)
        # and the width of its tabular view (`MultiInputs.to_matrix` for records that all lack it)

    @property
    def output_sources(self) -> list[str]:
        return list(self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.name, "parts": {k: {"kind": self.kinds[k], "state": f.to_dict(),
                                                    "join": self.joins.get(k, {})} for k, f in self.parts.items()}}

    def width(self, name: str) -> int:
        return int(self.joins.get(name, {}).get("matrix_width", 0))


def _sample_positions(frame: Any, source: str) -> np.ndarray:
    from medflow.data.multimodal import SAMPLE

    if SAMPLE not in frame.columns:
        raise DataError(f"{source}: these records are not a multimodal dataset's samples; predict on a Dataset "
                        "that `join_modalities` (data: with several modalities) made.")
    return frame[SAMPLE].to_numpy()


def fit_parts(ds: Any, train: Any, data: Any, lookup: Callable[[str], Any]) -> MultimodalFeaturizer:
    """Each modality's featurizer, fitted on the training samples that have it."""
    pos = _sample_positions(train, ds.source)
    parts, kinds, joins = {}, {}, {}
    for name, m in ds.modalities.parts.items():
        rows = m.rows[pos]
        rows = rows[rows >= 0]
        if not len(rows):
            raise DataError(f"{m.source}: no training sample has modality '{name}', so it cannot be learned; drop it "
                            "from data:, or check its patient ids and times.")
        kind = m.data.modality
        features = list(m.data.feature_types) if kind == "tabular" else []
        part_data = data
        if kind == "text" and data is not None and hasattr(data, "text_features"):
            tf = data.text_features
            part_data = data.model_copy(update={"text_features": tf.model_copy(
                update={"tfidf_features": min(tf.tfidf_features, MATRIX_TEXT_FEATURES)})})
        part = lookup(kind)
        parts[name] = part.fit(m.data, features, m.data.frame.iloc[rows], part_data)
        kinds[name] = kind
        some = part.apply(parts[name], m.data, m.data.frame.iloc[rows[:2]])
        joins[name] = {"how": m.how, "timed": m.timed, "matrix_width": int(_matrix(some, name)[0].shape[1])}
    return MultimodalFeaturizer(parts, kinds, joins)


def apply_parts(feat: MultimodalFeaturizer, ds: Any, frame: Any, lookup: Callable[[str], Any]) -> MultiInputs:
    """The samples' inputs per modality; a modality the data lack is missing for every sample."""
    pos = _sample_positions(frame, ds.source)
    parts, index = {}, {}
    for name, f in feat.parts.items():
        m = ds.modalities.parts.get(name)
        rows = m.rows[pos] if m is not None else np.full(len(pos), -1)
        present = rows >= 0
        idx = np.full(len(pos), -1, dtype=np.int64)
        idx[present] = np.arange(int(present.sum()))
        parts[name] = lookup(feat.kinds[name]).apply(f, m.data, m.data.frame.iloc[rows[present]]) \
            if present.any() else None
        index[name] = idx
    return MultiInputs(parts, index, dict(feat.kinds), {k: feat.width(k) for k in feat.parts})


class MultiInputs:
    """Model inputs of n samples over several modalities (see the module docstring)."""

    def __init__(self, parts: dict[str, Any], index: dict[str, np.ndarray], kinds: dict[str, str],
                 widths: dict[str, int] | None = None) -> None:
        self.parts, self.index, self.kinds = parts, index, kinds
        self.widths = widths or {}  # each modality's tabular width, for a part no sample here has
        self.names = list(parts)
        self._matrix: np.ndarray | None = None
        self._matrix_names: list[str] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.index.values())))

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), len(self.names))

    def present(self) -> np.ndarray:
        """Samples x modalities: which sample has which modality."""
        return np.stack([self.index[k] >= 0 for k in self.names], axis=1)

    def input_layout(self) -> dict[str, Any]:
        """What the fusion models build their encoders from: per modality its kind, width and one record's shape."""
        out = {}
        for k in self.names:
            p = self.parts[k]
            if p is None:
                raise DataError(f"modality '{k}' has no sample in the training data; it cannot be learned.")
            out[k] = {"kind": self.kinds[k], "in_dim": int(p.shape[1]), "input_shape": [int(v) for v in p.shape[1:]]}
        return {"modalities": out}

    def subset(self, idx: Any) -> MultiInputs:
        idx = np.asarray(idx)
        return MultiInputs(self.parts, {k: v[idx] for k, v in self.index.items()}, self.kinds, self.widths)

    def __getitem__(self, idx: Any) -> MultiInputs:
        return self.subset(np.arange(len(self))[idx])

    def without(self, names: list[str]) -> MultiInputs:
        """The same samples with modalities `names` removed (marked missing everywhere): the ablation's input."""
        return MultiInputs(self.parts, {k: (np.full_like(v, -1) if k in names else v) for k, v in self.index.items()},
                           self.kinds, self.widths)

    def batch(self, idx: Any) -> dict[str, Any]:
        import torch

        idx = np.asarray(idx)
        out: dict[str, Any] = {"present": torch.from_numpy(np.stack([self.index[k][idx] >= 0 for k in self.names],
                                                                    axis=1))}
        for k in self.names:
            rows = self.index[k][idx]
            rows = rows[rows >= 0]
            part = self.parts[k]
            if not len(rows):
                out[k] = None
            elif hasattr(part, "batch"):
                out[k] = part.batch(rows)
            else:
                out[k] = torch.as_tensor(np.ascontiguousarray(part[rows]), dtype=torch.float32)
        return out

    def to_matrix(self) -> np.ndarray:
        """One row per sample: every modality's features (zeros where missing) and a presence column each."""
        if self._matrix is not None:
            return self._matrix
        cols, names = [], []
        for k in self.names:
            rows = self.index[k]
            m, mnames = _matrix(self.parts[k], k, self.widths.get(k, 0))
            full = np.zeros((len(rows), m.shape[1]), dtype=np.float32)
            full[rows >= 0] = m[rows[rows >= 0]] if len(m) else 0
            cols += [full, (rows >= 0).astype(np.float32)[:, None]]
            names += [f"{k}:{n}" for n in mnames] + [f"{k}:present"]
        self._matrix, self._matrix_names = np.ascontiguousarray(np.concatenate(cols, axis=1)), names
        return self._matrix

    def matrix_names(self) -> list[str]:
        self.to_matrix()
        assert self._matrix_names is not None
        return self._matrix_names


def _matrix(part: Any, name: str, width: int = 0) -> tuple[np.ndarray, list[str]]:
    if part is None:  # no record here has the modality: zeros of its trained width
        return np.zeros((0, width), dtype=np.float32), [str(j) for j in range(width)]
    if hasattr(part, "to_matrix"):
        m = part.to_matrix()
        m = m.toarray() if hasattr(m, "toarray") else np.asarray(m)
        names = part.matrix_names() if hasattr(part, "matrix_names") else [str(j) for j in range(m.shape[1])]
        return m.astype(np.float32), names
    a = np.asarray(part, dtype=np.float32)
    if a.ndim <= 2:
        return a, [str(j) for j in range(a.shape[1])]
    import torch

    dims = a.ndim - 2  # images: block-averaged to at most _POOLED per side
    pool = torch.nn.functional.adaptive_avg_pool2d if dims == 2 else torch.nn.functional.adaptive_avg_pool3d
    side = min(_POOLED, *a.shape[2:])
    pooled = pool(torch.from_numpy(a), side).reshape(len(a), -1).numpy()
    return pooled, [f"pixel_{j}" for j in range(pooled.shape[1])]
