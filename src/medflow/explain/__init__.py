"""Explanations: attributions per record and global importance, by what the model reads.

`explain_model` picks the explainer of the model's input kind (`ModelSpec.inputs`): tabular attributions
and permutation importance (`tabular`), event attributions (`sequence`), Grad-CAM (`image`), atom
attributions drawn on the structure (`molecule`), token weights in the note (`text`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["explain_model"]


def _tabular(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
             frame: Any) -> dict[str, Any]:
    from medflow.explain.tabular import explain_tabular
    from medflow.features import input_names

    m = est.inputs(x)
    if hasattr(m, "toarray"):  # sparse TF-IDF of notes: the explained records only, dense
        n = min(cfg.max_records, m.shape[0])
        m, y = m[:n].toarray(), np.asarray(y)[:n]
    return explain_tabular(est, m, y, input_names(est, feat, x), metric, cfg, seed)


def _events(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
            frame: Any) -> dict[str, Any]:
    from medflow.explain.sequence import explain_events

    return explain_events(est, x, y, metric, cfg.max_records, cfg.examples)


def _images(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
            frame: Any) -> dict[str, Any]:
    from medflow.explain.image import explain_images, explain_segmentation

    ids = frame["image"].tolist()
    if est.task.kind == "segmentation":  # what to show is the masks, not the evidence for a class
        return explain_segmentation(est, x, y, ids)
    masks = [ds.images.masks.get(i) for i in ids] if ds.images.masks else None
    return explain_images(est, x, y, cfg.max_records, cfg.examples, ids, masks)


def _graphs(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
            frame: Any) -> dict[str, Any]:
    from medflow.explain.molecule import explain_molecules

    return explain_molecules(est, x, y, frame[ds.molecules.smiles_column].astype(str).tolist(), cfg.max_records,
                             cfg.examples)


def _text(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
          frame: Any) -> dict[str, Any]:
    from medflow.explain.text import explain_text

    return explain_text(est, x, y, frame["note_id"].astype(str).tolist(), cfg.max_records, cfg.examples)


_EXPLAINERS = {"tabular": _tabular, "events": _events, "images": _images, "graphs": _graphs, "text": _text}


def explain_model(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
                  frame: Any) -> dict[str, Any]:
    """The explanations.json entry of one model, from its test inputs `x`, labels `y` and rows `frame` of `ds`."""
    return _EXPLAINERS[est.spec.inputs](est, x, y, feat, metric, cfg, seed, ds, frame)
