"""The run directory: atomic writes, and loading a finished run back as a predictor.

A run is written under ``<name>/<timestamp>.incomplete/`` and renamed to ``<timestamp>/`` only
when every file is in place, so a directory without the suffix is always complete. Layout in
docs/run-directory.md.
"""

from __future__ import annotations

import math
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medflow.artifacts import read_json, write_json, write_parquet, write_text
from medflow.errors import DataError, ModelError
from medflow.explain import explain_records
from medflow.features import featurizer_from_dict, kind_of
from medflow.features.tabular import TabularFeaturizer
from medflow.models.base import Estimator, load_estimator
from medflow.tasks import Task, task_from_dict
from medflow.tasks.base import put_before

__all__ = ["Run", "load_run", "json_rows", "plain_value", "task_from_dict", "write_json", "write_text", "write_parquet",
           "read_json", "INCOMPLETE", "new_work_dir"]

INCOMPLETE = ".incomplete"


def new_work_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh `OUTPUT/NAME/STAMP.incomplete/` folder (renamed without the suffix when the work is finished)."""
    from datetime import UTC, datetime

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = Path(output_dir) / name
    path, i = base / stamp, 1
    while path.exists() or path.with_name(path.name + INCOMPLETE).exists():
        path, i = base / f"{stamp}-{i}", i + 1
    work = path.with_name(path.name + INCOMPLETE)
    work.mkdir(parents=True)
    return work
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
        model = model or self.metrics.selected_model
        if getattr(records, "modality", "tabular") != "tabular":
            out = self._predict_dataset(records, model, explain)
            return json_rows({c: out[c] for c in out.columns}, len(out))
        index, columns, _ = self._predict_table(records, model, explain, source, horizons)
        return json_rows(columns, len(index))

    @property
    def modality(self) -> str:
        """The modality of the data the run was trained on (its featurizer's registry entry)."""
        return kind_of(self.featurizer()).modality

    def _predict_table(self, records: Any, model: str, explain: bool, source: str,
                       horizons: list[float] | None) -> tuple[pd.Index, dict[str, Any], dict[str, Any]]:
        """Records to (their index, the prediction columns in order, the table's attrs)."""
        hint = kind_of(self.featurizer()).records_hint
        if hint:
            raise DataError(f"{source}: {hint}")
        frame = self._frame(records, source)
        extra = self.featurizer().check_columns(frame, source)
        label_cols = set(self.task.label_columns) | {self.config["data"].get("patient_id") or ""} | \
            set(getattr(self.featurizer(), "record_columns", []))
        extra = [c for c in extra if c not in label_cols]
        if extra:
            warnings.warn(f"{source}: ignoring column(s) not used by the model: {extra}", stacklevel=3)
        task, hs = self.task, self.task.horizons_for(horizons)
        folds, scores, outputs = [], [], []
        for fold in range(len(self._folds)):
            est = self.estimator(model, fold)
            x = self.inputs(frame, fold, source)
            folds.append((est, x, self.featurizer(fold).output_sources))
            scores.append(est.predict(x))
            outputs.append(task.fold_outputs(est, x, hs))
        score = task.combine(scores)
        pid = self.config["data"].get("patient_id")
        out = self._prediction_columns(score, model, {pid: frame[pid].to_numpy()} if pid in frame.columns else {})
        self._add_spread(out, model, [x for _, x, _ in folds])
        table_attrs = task.finish_columns(out, score, outputs, hs)
        if explain:
            out["explanation"], method = explain_records(self.modality, folds)
            out["explanation_method"] = [method] * len(frame)
        return frame.index, out, table_attrs

    def _predict_dataset(self, ds: Any, model: str, explain: bool) -> pd.DataFrame:
        """Predictions for the records of a Dataset: an event Dataset (each sample sees its events up to its
        prediction time), an image Dataset (one row per image; `explanation`: the Grad-CAM map and its peak), or
        the task's own table (segmentation: one mask per image)."""
        n = len(self._folds)
        own = self.task.dataset_predictions(((self.estimator(model, f), self.inputs(ds, f)) for f in range(n)), ds)
        if own is not None:
            own["model"] = model
            if self.synthetic:
                own["synthetic"] = True
            return own
        folds, scores = [], []
        for fold in range(n):
            est = self.estimator(model, fold)
            x = self.inputs(ds, fold)
            folds.append((est, x, self.featurizer(fold).output_sources))
            scores.append(est.predict(x))
        ids = [c for c in ds.id_columns if c in ds.frame.columns]
        cols = self._prediction_columns(np.mean(scores, axis=0), model, {c: ds.frame[c].to_numpy() for c in ids})
        self._add_spread(cols, model, [x for _, x, _ in folds])
        if explain:
            cols["explanation"], _ = explain_records(ds.modality, folds[:1])
        return pd.DataFrame(cols)

    def _add_spread(self, out: dict[str, Any], model: str, xs: list) -> None:
        """Ensembles (`ensemble: k`): the members' standard deviation per prediction (`uncertainty`; for several
        folds, the mean over folds), just before the `model` column."""
        spreads = [getattr(self.estimator(model, f), "predict_spread", lambda x: None)(x) for f, x in enumerate(xs)]
        if all(s is not None for s in spreads):
            sd = np.mean(spreads, axis=0)
            put_before(out, "model", {"uncertainty": sd.tolist() if sd.ndim > 1 else sd})

    def _prediction_columns(self, score: np.ndarray, model: str, ids: dict[str, Any]) -> dict[str, Any]:
        """The id columns, the task's prediction columns, its conformal set or interval, the model's name, and
        `synthetic` for runs trained on synthetic data."""
        entry = self.metrics.data["models"].get(model, {})
        out: dict[str, Any] = dict(ids)
        out.update(self.task.prediction_columns(score, entry))
        if entry.get("conformal"):
            out.update(self.task.conformal_columns(entry["conformal"], score))
        out["model"] = [model] * len(score)
        if self.synthetic:
            out["synthetic"] = [True] * len(score)
        return out

    def report(self, path: str | Path | None = None) -> Path:
        """(Re)write the HTML model card; returns its path."""
        from medflow.report.html import write_report

        return write_report(self.path, path)

    def explain(self, records: Any, model: str | None = None) -> pd.DataFrame:
        return self.predict(records, model=model, explain=True)


def json_rows(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Columns (arrays, lists or Series of length `n`) to rows of plain Python values: numpy scalars as Python
    numbers, NaN and infinity as None, timestamps as ISO text, nested lists and dicts likewise."""
    plain = {}
    for name, values in columns.items():
        arr = values.to_numpy() if isinstance(values, pd.Series) else values
        if isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind in "fiub":
            vals = arr.tolist()  # Python numbers already; only non-finite floats need a look
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                vals = [None if not math.isfinite(v) else v for v in vals]
        elif isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.dtype.kind == "U":
            vals = arr.tolist()
        elif isinstance(arr, np.ndarray) and arr.dtype.kind == "M":  # tolist() would give integers
            vals = [None if pd.isna(x) else x.isoformat() for x in pd.to_datetime(arr)]
        else:
            vals = [plain_value(v) for v in (arr.tolist() if isinstance(arr, np.ndarray) else arr)]
        plain[name] = vals
    return [{k: v[i] for k, v in plain.items()} for i in range(n)]


def plain_value(v: Any) -> Any:
    """One value as JSON can hold it (see `json_rows`)."""
    if type(v) in (str, int, bool) or v is None:  # the common cases first
        return v
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, pd.Timestamp | datetime):
        return v.isoformat()
    if isinstance(v, list | tuple | np.ndarray):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {k: plain_value(x) for k, x in v.items()}
    return v


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
