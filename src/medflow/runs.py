"""The run directory: atomic writes, and loading a finished run back as a predictor.

A run is written under ``<name>/<timestamp>.incomplete/`` and renamed to ``<timestamp>/`` only
when every file is in place, so a directory without the suffix is always complete. Layout in
docs/run-directory.md.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medflow.artifacts import read_json, write_json, write_parquet, write_text
from medflow.errors import DataError, ModelError
from medflow.features import featurizer_from_dict
from medflow.features.tabular import TabularFeaturizer
from medflow.models.base import Estimator, load_estimator
from medflow.tasks.base import Binary, Multiclass, Multilabel, Regression, Task
from medflow.tasks.effects import TreatmentEffect
from medflow.tasks.segmentation import Segmentation
from medflow.tasks.spans import SpanExtraction
from medflow.tasks.survival import Survival

__all__ = ["Run", "load_run", "write_json", "write_text", "write_parquet", "read_json", "INCOMPLETE"]

INCOMPLETE = ".incomplete"
_TASKS = {"binary": Binary, "multiclass": Multiclass, "multilabel": Multilabel, "regression": Regression,
          "survival": Survival,
          "segmentation": Segmentation, "treatment_effect": TreatmentEffect, "spans": SpanExtraction}


def task_from_dict(d: dict[str, Any]) -> Task:
    cfg = dict(d["config"])
    return _TASKS[cfg["kind"]](**cfg).load_state(d["state"])


class Metrics:
    """The metrics of a run, with a table view (value and 95% CI per model and metric)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def value(self, model: str, metric: str) -> float:
        return float(self.data["models"][model]["metrics"][metric]["value"])

    def ci(self, model: str, metric: str) -> tuple[float, float]:
        m = self.data["models"][model]["metrics"][metric]
        return float(m["low"]), float(m["high"])

    @property
    def selected_model(self) -> str:
        return self.data["selected_model"]

    def table(self) -> pd.DataFrame:
        """Rows = models, columns = metrics, cells '0.991 (0.978-0.999)'."""
        rows = {}
        for model, entry in self.data["models"].items():
            rows[model] = {name: f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"
                           for name, m in entry["metrics"].items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def __repr__(self) -> str:
        return self.table().to_string()


class Run:
    """A finished run: its config, metrics and saved models; predicts on raw records."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.name.endswith(INCOMPLETE) or not (self.path / "manifest.json").exists():
            raise ModelError(f"{self.path}: the run is incomplete (it was interrupted or failed); resume it "
                             f"with `medflow run STUDY.yaml --resume {self.path}` or start it again.")
        self.manifest = read_json(self.path / "manifest.json")
        self.config = yaml.safe_load((self.path / "study.yaml").read_text())
        self.metrics = Metrics(read_json(self.path / "metrics.json"))
        self._folds: list[tuple[TabularFeaturizer, Task, dict[str, Path]]] = []
        for fold_dir in sorted(self.path.glob("fold_*")):
            feat = featurizer_from_dict(read_json(fold_dir / "featurizer.json"))
            task = task_from_dict(read_json(fold_dir / "task.json"))
            self._folds.append((feat, task, {p.name: p for p in fold_dir.iterdir() if (p / "model.json").exists()}))
        self._cache: dict[tuple[int, str], Estimator] = {}

    @property
    def models(self) -> list[str]:
        return list(self.metrics.data["models"])

    @property
    def task(self) -> Task:
        return self._folds[0][1]

    @property
    def synthetic(self) -> bool:
        return bool(self.manifest.get("synthetic"))

    def estimator(self, model: str, fold: int = 0) -> Estimator:
        if (fold, model) not in self._cache:
            feat, task, dirs = self._folds[fold]
            if model not in dirs:
                raise ModelError(f"{self.path}: no model '{model}'; this run has {sorted(dirs)}.")
            self._cache[(fold, model)] = load_estimator(dirs[model], task)
        return self._cache[(fold, model)]

    def featurizer(self, fold: int = 0) -> TabularFeaturizer:
        return self._folds[fold][0]

    def predictions(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / "predictions.parquet")

    def inputs(self, records: Any, fold: int = 0, source: str = "input") -> Any:
        """Fold `fold`'s model inputs for records (a table), an event Dataset (windows up to each sample's
        time) or an image Dataset (images resized and normalized as in training)."""
        if getattr(records, "modality", "tabular") != "tabular":
            from medflow.features import featurize

            return featurize(self.featurizer(fold), records, records.frame)
        return self.featurizer(fold).transform(records, source)

    def scores(self, records: Any, model: str | None = None, source: str = "input") -> np.ndarray:
        """A model's raw outputs for records or an event Dataset, as predictions.parquet holds them
        (probabilities, values, or [risk, S(grid)...]); k-fold runs average the fold models."""
        model = model or self.metrics.selected_model
        if getattr(records, "modality", "tabular") == "tabular":
            records = self._frame(records, source)
            self.featurizer().check_columns(records, source)
        return self.task.combine([self.estimator(model, f).predict(self.inputs(records, f, source))
                                  for f in range(len(self._folds))])

    def _frame(self, records: Any, source: str) -> pd.DataFrame:
        if isinstance(records, pd.DataFrame):
            idx = records.index  # a default index is kept as it is (reset_index copies every column)
            default = isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1
            frame = records if default else records.reset_index(drop=True)
        elif isinstance(records, dict):
            frame = pd.DataFrame([records])
        else:
            frame = pd.DataFrame(list(records))
        if frame.empty:
            raise DataError(f"{source}: no records to predict.")
        return frame

    def predict(self, records: Any, model: str | None = None, explain: bool = False,
                source: str = "input", horizons: list[float] | None = None) -> pd.DataFrame:
        """Predict raw records (a DataFrame, a list of dicts, or one dict).

        Returns one row per record: the prediction (probability, class probabilities or value),
        the predicted label at the run's threshold, and with ``explain=True`` the top attributions.
        Survival runs give the risk score, the survival probability at each horizon (the task's, or
        `horizons`) and the whole curve on the task's time grid (`survival_curve`; grid in `.attrs`).
        With k-fold runs the fold models' predictions are averaged.
        """
        model = model or self.metrics.selected_model
        if getattr(records, "modality", "tabular") != "tabular":
            return self._predict_dataset(records, model, explain)
        index, columns, attrs = self._predict_table(records, model, explain, source, horizons)
        out = pd.DataFrame(columns, index=index)
        out.attrs.update(attrs)
        return out

    def predict_rows(self, records: Any, model: str | None = None, explain: bool = False,
                     source: str = "input", horizons: list[float] | None = None) -> list[dict[str, Any]]:
        """`predict`'s rows as plain Python values, ready for JSON (NaN as None, timestamps as ISO text),
        without building a DataFrame: what the decision-support service answers with."""
        from medflow.predictions import json_rows

        model = model or self.metrics.selected_model
        if getattr(records, "modality", "tabular") != "tabular":
            out = self._predict_dataset(records, model, explain)
            return json_rows({c: out[c] for c in out.columns}, len(out))
        index, columns, _ = self._predict_table(records, model, explain, source, horizons)
        return json_rows(columns, len(index))

    def _predict_table(self, records: Any, model: str, explain: bool, source: str,
                       horizons: list[float] | None) -> tuple[pd.Index, dict[str, Any], dict[str, Any]]:
        """Records to (their index, the prediction columns in order, the table's attrs)."""
        from medflow.explain.tabular import attributions, method_name
        from medflow.predictions import survival_columns

        if getattr(self.featurizer(), "name", "") == "codes-v1":
            raise DataError(f"{source}: this run reads event histories; predict on an event Dataset, e.g. "
                            "run.predict(mf.data.event_dataset(mf.data.read_meds(path), cohort=...)).")
        if getattr(self.featurizer(), "name", "") == "image-v1":
            raise DataError(f"{source}: this run reads images; predict on an image Dataset, e.g. "
                            "run.predict(mf.data.read_image_dataset(mf.data.ImageSource(path='scans/'))).")
        frame = self._frame(records, source)
        extra = self.featurizer().check_columns(frame, source)
        label_cols = set(self.task.label_columns) | {self.config["data"].get("patient_id") or ""} | \
            set(getattr(self.featurizer(), "record_columns", []))
        extra = [c for c in extra if c not in label_cols]
        if extra:
            warnings.warn(f"{source}: ignoring column(s) not used by the model: {extra}", stacklevel=3)
        scores, attrs, names, at, cifs, xs, graph_expl, method = [], [], None, [], [], [], [], None
        hs = list(horizons or (self.task.state.get("horizons", []) if self.task.kind == "survival" else []))
        for fold in range(len(self._folds)):
            est = self.estimator(model, fold)
            x = self.inputs(frame, fold, source)
            xs.append(x)
            scores.append(est.predict(x))
            if hs:
                at.append(est.predict_survival(x, np.asarray(hs, dtype=float)))
                head = getattr(est, "head", None)
                if self.task.kind == "survival" and self.task.competing_risks and hasattr(head, "cif"):
                    cifs.append(head.cif(est.outputs(x), np.asarray(hs, dtype=float)))
            if explain and hasattr(x, "batch"):  # molecules: atoms or screened features; notes: tokens or n-grams
                if fold == 0 and hasattr(x, "tokens"):
                    from medflow.explain.text import note_explanations

                    graph_expl, method = note_explanations(est, x)
                elif fold == 0:
                    graph_expl = _molecule_explanations(est, x)
            elif explain:
                names, a = attributions(est, x, self.featurizer(fold).output_sources)
                attrs.append(a)
        score = self.task.combine(scores)
        pid = self.config["data"].get("patient_id")
        out = self._prediction_columns(score, model, {pid: frame[pid].to_numpy()} if pid in frame.columns else {})
        self._add_spread(out, model, xs)
        table_attrs: dict[str, Any] = {}
        if self.task.kind == "survival":
            limit = self.task.state["max_time"]
            beyond = [h for h in hs if h > limit]
            if beyond:
                warnings.warn(f"horizons {beyond} lie beyond the longest follow-up in training ({limit:g} "
                              f"{self.task.time_unit}); survival there is extrapolated (held at the last estimate)",
                              stacklevel=3)
            table_attrs = survival_columns(out, self.task, score, np.mean(at, axis=0) if at else None, hs,
                                           np.mean(cifs, axis=0) if cifs else None)
        if explain:
            out["explanation"] = [_top(names, row) for row in np.mean(attrs, axis=0)] if attrs else graph_expl
            out["explanation_method"] = [method or method_name(self.estimator(model, 0))] * len(frame)
        return frame.index, out, table_attrs

    def _predict_dataset(self, ds: Any, model: str, explain: bool) -> pd.DataFrame:
        """Predictions for the records of an event Dataset (each sample sees its events up to its prediction
        time) or an image Dataset (one row per image; `explanation`: the Grad-CAM map and its peak)."""
        if self.task.kind == "segmentation":
            return self._predict_masks(ds, model)
        scores, contribs, xs = [], [], []
        for fold in range(len(self._folds)):
            est = self.estimator(model, fold)
            x = self.inputs(ds, fold)
            xs.append(x)
            scores.append(est.predict(x))
            if explain and fold == 0:
                contribs = _image_explanations(est, x) if ds.modality == "images" else _event_explanations(est, x)
        ids = [c for c in ds.id_columns if c in ds.frame.columns]
        cols = self._prediction_columns(np.mean(scores, axis=0), model, {c: ds.frame[c].to_numpy() for c in ids})
        self._add_spread(cols, model, xs)
        if explain:
            cols["explanation"] = contribs
        return pd.DataFrame(cols)

    def _add_spread(self, out: dict[str, Any], model: str, xs: list) -> None:
        """Ensembles (`ensemble: k`): the members' standard deviation per prediction (`uncertainty`; for several
        folds, the mean over folds), just before the `model` column."""
        from medflow.predictions import put_before

        spreads = [getattr(self.estimator(model, f), "predict_spread", lambda x: None)(x) for f, x in enumerate(xs)]
        if all(s is not None for s in spreads):
            sd = np.mean(spreads, axis=0)
            put_before(out, "model", {"uncertainty": sd.tolist() if sd.ndim > 1 else sd})

    def _predict_masks(self, ds: Any, model: str) -> pd.DataFrame:
        """Segmentation: one row per image with its label map (`mask`, in the image's own size; fold models'
        class probabilities averaged) and the voxels of each label."""
        from medflow.tasks.segmentation import mask_in_image_space

        probs = np.mean([self.estimator(model, f).probabilities(self.inputs(ds, f)) for f in range(len(self._folds))],
                        axis=0)
        labels = probs.argmax(axis=1).astype(np.uint8)
        ids = [c for c in ds.id_columns if c in ds.frame.columns]
        out = ds.frame[ids].reset_index(drop=True).copy()
        out["mask"] = [mask_in_image_space(m, ds.images.arrays[i].shape[1:])
                       for m, i in zip(labels, ds.frame["image"], strict=True)]
        for j, lab in enumerate(self.task.labels, start=1):
            out[f"voxels_{lab}"] = [int((m == j).sum()) for m in out["mask"]]
        out["model"] = model
        if self.synthetic:
            out["synthetic"] = True
        return out

    def _prediction_columns(self, score: np.ndarray, model: str, ids: dict[str, Any]) -> dict[str, Any]:
        from medflow.predictions import score_columns

        return score_columns(self.task, self.metrics.data["models"].get(model, {}), score, model, self.synthetic,
                             ids)

    def report(self, path: str | Path | None = None) -> Path:
        """(Re)write the HTML model card; returns its path."""
        from medflow.report.html import write_report

        return write_report(self.path, path)

    def explain(self, records: Any, model: str | None = None) -> pd.DataFrame:
        return self.predict(records, model=model, explain=True)


def _top(names: list[str], row: np.ndarray, k: int = 10) -> list[dict[str, float]]:
    order = np.argsort(-np.abs(row))[:k]
    return [{"feature": names[i], "attribution": float(row[i])} for i in order]


def _image_explanations(est: Estimator, x: np.ndarray) -> list[dict[str, Any]]:
    """Grad-CAM per image: the map (in [0, 1], at the model's input size) and the voxel where it peaks."""
    from medflow.explain.image import cam_peak, grad_cam

    return [{"method": "grad_cam", "peak": cam_peak(c), "map": c} for c in grad_cam(est, x)]


def _event_explanations(est: Estimator, x: Any, k: int = 10) -> list[list[dict[str, Any]]]:
    """Top events per sample (sequence models) or top count features (tabular models on counts)."""
    if est.spec.inputs == "events":
        from medflow.explain.sequence import event_attributions

        attr, valid, _ = event_attributions(est, x)
        pos, _ = x.positions(np.arange(len(x)))
        out = []
        for i in range(len(x)):
            v = np.flatnonzero(valid[i])
            top = v[np.argsort(-np.abs(attr[i][v]))[:k]]
            out.append([{"code": x.code_names[x.codes[pos[i][j]]], "attribution": float(attr[i][j])} for j in top])
        return out
    from medflow.explain.tabular import attributions

    names, a = attributions(est, x.to_matrix(), x.matrix_names())
    return [_top(names, row, k) for row in a]


def _molecule_explanations(est: Estimator, x: Any, k: int = 8) -> list[list[dict[str, Any]]]:
    """Top atoms per molecule (graph models: Integrated Gradients, `explain.molecule`; atoms named by element and
    RDKit index, e.g. O2) or the top fingerprint bits / descriptors (tabular models, screened to 20 features)."""
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
        return out
    from medflow.explain.tabular import attributions, screen_features

    m = x.to_matrix()
    names, a = attributions(est, m, screen_features(est, m, x.matrix_names(), 20))
    return [_top(names, row, k) for row in a]


def load_run(path: str | Path) -> Run:
    """Load a finished run directory (or the newest run under a study folder)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such run directory.")
    if not (p / "manifest.json").exists():
        complete = sorted(c for c in p.iterdir() if c.is_dir() and (c / "manifest.json").exists())
        if complete and not p.name.endswith(INCOMPLETE):
            p = complete[-1]
    return Run(p)
