"""Explanations: attributions per record and global importance, by what the model reads.

`explain_model` picks the explainer of the model's input kind (`ModelSpec.inputs`): tabular attributions
and permutation importance (`tabular`), event attributions (`sequence`), Grad-CAM (`image`), atom
attributions drawn on the structure (`molecule`), token weights in the note (`text`).

`explain_records` gives each predicted record its explanation (what `Run.predict(explain=True)` returns), looked
up by the data's modality in `record_explainers`, so a run never branches on the modality: a new modality
registers its explainer here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["explain_model", "explain_records", "record_explainers", "top_features"]


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


def _modalities(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
                frame: Any) -> dict[str, Any]:
    from medflow.explain.multimodal import explain_modalities

    return explain_modalities(est, x, y, metric, cfg.examples, feat, seed)


_EXPLAINERS = {"tabular": _tabular, "events": _events, "images": _images, "graphs": _graphs, "text": _text,
               "multimodal": _modalities}


def explain_model(est: Any, x: Any, y: np.ndarray, feat: Any, metric: Any, cfg: Any, seed: int, ds: Any,
                  frame: Any) -> dict[str, Any]:
    """The explanations.json entry of one model, from its test inputs `x`, labels `y` and rows `frame` of `ds`.
    Several modalities per record are explained by modality first, whatever the model (a fusion network, or a
    tabular model on their features)."""
    kind = ds.modality if ds is not None and ds.modality == "multimodal" else est.spec.inputs
    return _EXPLAINERS[kind](est, x, y, feat, metric, cfg, seed, ds, frame)


# -- per-record explanations (`Run.predict(explain=True)`) --------------------------------------------------------
def top_features(names: list[str], row: np.ndarray, k: int = 10) -> list[dict[str, float]]:
    """The k features of largest absolute attribution in `row`, largest first."""
    order = np.argsort(-np.abs(row))[:k]
    return [{"feature": names[i], "attribution": float(row[i])} for i in order]


def _method(est: Any) -> str:
    from medflow.explain.tabular import method_name

    return method_name(est)


def _table_records(folds: list[tuple[Any, Any, list[str]]]) -> tuple[list, str]:
    """Tables: each fold model's attributions over its featurizer's inputs, averaged over folds."""
    from medflow.explain.tabular import attributions

    names, per_fold = None, []
    for est, x, sources in folds:
        names, a = attributions(est, x, sources)
        per_fold.append(a)
    return [top_features(names, row) for row in np.mean(per_fold, axis=0)], _method(folds[0][0])


def _event_records(folds: list[tuple[Any, Any, list[str]]], k: int = 10) -> tuple[list, str]:
    """Top events per sample (sequence models) or top count features (tabular models on counts)."""
    est, x, _ = folds[0]
    if est.spec.inputs == "events":
        from medflow.explain.sequence import event_attributions

        attr, valid, _ = event_attributions(est, x)
        pos, _ = x.positions(np.arange(len(x)))
        out = []
        for i in range(len(x)):
            v = np.flatnonzero(valid[i])
            top = v[np.argsort(-np.abs(attr[i][v]))[:k]]
            out.append([{"code": x.code_names[x.codes[pos[i][j]]], "attribution": float(attr[i][j])} for j in top])
        return out, _method(est)
    from medflow.explain.tabular import attributions

    names, a = attributions(est, x.to_matrix(), x.matrix_names())
    return [top_features(names, row, k) for row in a], _method(est)


def _image_records(folds: list[tuple[Any, Any, list[str]]]) -> tuple[list, str]:
    """Grad-CAM per image: the map (in [0, 1], at the model's input size) and the voxel where it peaks."""
    from medflow.explain.image import cam_peak, grad_cam

    est, x, _ = folds[0]
    return [{"method": "grad_cam", "peak": cam_peak(c), "map": c} for c in grad_cam(est, x)], "grad_cam"


def _molecule_records(folds: list[tuple[Any, Any, list[str]]], k: int = 8) -> tuple[list, str]:
    """Top atoms per molecule (graph models: Integrated Gradients, `explain.molecule`; atoms named by element and
    RDKit index, e.g. O2) or the top fingerprint bits / descriptors (tabular models, screened to 20 features)."""
    est, x, _ = folds[0]
    if est.spec.inputs == "graphs":
        from medflow.explain.molecule import atom_attributions

        out = []
        for start in range(0, len(x), 256):
            idx = np.arange(start, min(start + 256, len(x)))
            attr = atom_attributions(est, x, idx)
            for i, a in zip(idx, attr["atoms"], strict=True):
                names = x.atom_symbols(int(i))
                out.append([{"atom": f"{names[j]}{j}", "attribution": float(a[j])}
                            for j in np.argsort(-np.abs(a))[:k]])
        return out, _method(est)
    from medflow.explain.tabular import attributions, screen_features

    m = x.to_matrix()
    names, a = attributions(est, m, screen_features(est, m, x.matrix_names(), 20))
    return [top_features(names, row, k) for row in a], _method(est)


def _text_records(folds: list[tuple[Any, Any, list[str]]]) -> tuple[list, str]:
    """Token weights or n-gram attributions in each note (`explain.text`)."""
    from medflow.explain.text import note_explanations

    est, x, _ = folds[0]
    return note_explanations(est, x)


def _multimodal_records(folds: list[tuple[Any, Any, list[str]]]) -> tuple[list, str]:
    """Each modality's contribution to the record's prediction (fold 0's model; `explain.multimodal`)."""
    from medflow.explain.multimodal import _score, modality_contributions

    est, x, _ = folds[0]
    full, without = modality_contributions(est, x)
    contrib = {m: _score(full) - _score(p) for m, p in without.items()}
    return [sorted(({"modality": m, "attribution": float(c[i]), "present": bool(x.index[m][i] >= 0)}
                    for m, c in contrib.items()), key=lambda r: -abs(r["attribution"])) for i in range(len(x))], \
        "modality_ablation"


record_explainers: dict[str, Any] = {"tabular": _table_records, "events": _event_records, "images": _image_records,
                                     "molecules": _molecule_records, "text": _text_records,
                                     "multimodal": _multimodal_records}


def explain_records(modality: str, folds: list[tuple[Any, Any, list[str]]]) -> tuple[list, str]:
    """Each record's explanation and the method's name, from every fold's (estimator, inputs, input names);
    tables average the fold models' attributions, other modalities explain with fold 0's model."""
    return record_explainers[modality](folds)
