"""`Study` and `run_study()`: data -> task -> patient split -> featurizer -> models -> run directory."""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from rich.console import Console

from medflow.config import ModelEntry, StudyConfig, load_config, parse_config
from medflow.data.builtin import load as load_dataset
from medflow.data.dataset import Dataset
from medflow.data.quality import quality_summary
from medflow.data.splits import ByPatient, Fold, KFold, Scaffold
from medflow.errors import ConfigError, DataError
from medflow.evaluate.evaluator import (
    SUBGROUP_PREFIX,
    EvaluateConfig,
    evaluate_predictions,
    prediction_table,
    subgroup_labels,
)
from medflow.features import encode_targets, featurize, input_names, make_featurizer
from medflow.models.base import DeepEstimator, build_estimator, check_inputs, load_estimator
from medflow.models.transfer import Init, is_checkpoint, load_checkpoint
from medflow.registry import models as model_registry
from medflow.runs import INCOMPLETE, Run, load_run, new_work_dir, write_json, write_parquet, write_text
from medflow.study.data import data_config, load_study_data, source_folds
from medflow.study.pretrained import pretrained_checks, pretrained_init, pretrained_run, resolve_entry
from medflow.tasks.base import Task
from medflow.train import distributed
from medflow.train.trainer import TrainConfig

__all__ = ["Study", "run_study", "finish_run", "feature_columns", "new_run_dir", "prediction_rows", "transfer_init"]


class Study:
    """A study: data + task + models + validation plan, run reproducibly into a run directory.

    Example (trains for a few seconds, so not run as a doctest)::

        import medflow as mf
        study = mf.Study(dataset=mf.datasets.load("breast_cancer"),
                         task=mf.tasks.Binary(label="malignant"), model="mlp")
        run = study.fit()
    """

    def __init__(self, dataset: Dataset | str | None = None, task: Task | None = None,
                 model: str | list[str | dict] | None = None, split: ByPatient | KFold | Scaffold | None = None,
                 seed: int = 0, name: str | None = None, train: TrainConfig | dict | None = None,
                 evaluate: EvaluateConfig | dict | None = None, output_dir: str | Path = "runs",
                 explain: dict | None = None, data: dict | None = None,
                 intended_use: str = "", config: StudyConfig | None = None) -> None:
        if config is None:
            if task is None:
                raise ConfigError("Study needs a task, e.g. mf.tasks.Binary(label='outcome').")
            self.dataset = load_dataset(dataset) if isinstance(dataset, str) else dataset
            if self.dataset is None:
                raise ConfigError("Study needs a dataset (a Dataset or a built-in name).")
            data = {**data_config(self.dataset), **(data or {})}  # e.g. data={"mol_features": ["morgan"]}
            models = [model] if isinstance(model, str | dict) else (model or ["mlp", "logistic_regression"])
            raw = {"name": name or self.dataset.name, "intended_use": intended_use, "data": data,
                   "task": task.model_dump(), "models": models, "seed": seed, "output_dir": str(output_dir)}
            for key, value in (("split", split), ("train", train), ("evaluate", evaluate), ("explain", explain)):
                if value is not None:
                    raw[key] = value.model_dump() if hasattr(value, "model_dump") else value
            config = parse_config(raw, "Study")
        else:
            self.dataset = None
        self.config = config

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        return cls(config=load_config(path))

    def fit(self, resume: str | Path | None = None, console: Console | None = None) -> Run | None:
        """Train and evaluate every model; returns the finished Run (None on non-zero ranks under torchrun)."""
        return run_study(self.config, dataset=self.dataset, resume=resume, console=console)


def feature_columns(ds: Dataset, cfg: StudyConfig) -> list[str]:
    if ds.modality != "tabular":  # the features are the events or images; the frame holds samples and labels
        return []
    for col in cfg.data.drop:
        if col not in ds.frame.columns:
            raise DataError(f"{ds.source}: data.drop names column '{col}', which is not in the data.")
    excluded = set(cfg.task.label_columns) | set(cfg.data.drop)
    cols = [c for c in ds.feature_types if c not in excluded]
    if not cols:
        raise DataError(f"{ds.source}: no feature columns left after removing the label and data.drop.")
    return cols


def new_run_dir(cfg: StudyConfig) -> Path:
    return new_work_dir(cfg.output_dir, cfg.name)


def _check_models(cfg: StudyConfig, modality: str | None = None) -> list[ModelEntry]:
    entries = [resolve_entry(e, modality, cfg.task.kind) for e in cfg.model_entries()]
    if not entries:
        raise ConfigError("the study names no models; add at least one under models:.")
    names = [e.name for e in entries]
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"models: each model may appear once, got {keys}; give repeats a label, e.g. "
                          "{name: mlp, label: mlp_dp, privacy: {epsilon: 3}}.")
    for e in entries:
        est = build_estimator(e.name, e.params, cfg.task)  # unknown names, bad params, wrong task kind
        if e.init_from and model_registry.get(e.name).family != "deep":
            raise ConfigError(f"models: '{e.name}' is not a deep model; init_from (transfer learning) applies to "
                              "torch models only.")
        if e.init_from and not (Path(e.init_from).is_dir() or is_checkpoint(e.init_from)):
            raise ConfigError(f"models: '{e.name}' init_from {e.init_from}: no such run directory (or weights file: "
                              ".safetensors, .pt, .pth, .bin, .ckpt; or MONAI bundle folder).")
        if e.ensemble > 1 and not isinstance(est, DeepEstimator):
            raise ConfigError(f"models: '{e.key}' is not a deep network; ensemble (members trained with several "
                              "seeds) applies to torch models (tree ensembles already average many trees).")
        if e.privacy and model_registry.get(e.name).family != "deep":
            raise ConfigError(f"models: '{e.key}' is not a deep model; privacy (DP-SGD) applies to torch models "
                              "only.")
    if cfg.tune is not None:
        from medflow.study.tuning import check_spaces

        check_spaces(cfg, names)
    return entries


def _fit_fold(cfg: StudyConfig, ds: Dataset, fold: Fold, features: list[str], work: Path,
              entries: list[ModelEntry], subgroups: pd.DataFrame, console: Console,
              first: dict | None) -> tuple[list, dict]:
    frame = ds.frame
    train, valid, test, stop = (frame.iloc[idx] for idx in (fold.train, fold.valid, fold.test, fold.early_stopping))
    task = cfg.task.model_copy(deep=True).fit(train)
    if first is not None and task.kind == "survival":
        # pooled out-of-fold curves must share their time points: every fold predicts on fold 0's grid
        shared = first["task"].state
        task.load_state({**task.state, "grid": shared["grid"], "horizons": shared["horizons"]})
    pretrained = pretrained_run(entries)  # its vocabulary tokenizes the study's events
    feat = pretrained.featurizer() if pretrained is not None else make_featurizer(ds, features, train, cfg.data)
    fold_dir = work / f"fold_{fold.index}"
    write_json(fold_dir / "featurizer.json", feat.to_dict())
    write_json(fold_dir / "task.json", {"config": task.model_dump(mode="json"), "state": task.state})
    parts = (("train", train), ("valid", valid), ("test", test)) + ((("stop", stop),) if fold.stop is not None else ())
    xs = {part: featurize(feat, ds, df) for part, df in parts}
    ys = {part: encode_targets(feat, task, ds, df) for part, df in parts}
    xs.setdefault("stop", xs["valid"])
    checks = None if pretrained is None else pretrained_checks(
        pretrained, ds, frame[ds.patient_id].iloc[fold.test].to_numpy(), xs["train"], entries, console)
    ys.setdefault("stop", ys["valid"])
    rows, timings, tuning, transfer, privacy = [], {}, {}, {}, {}
    for entry in entries:
        model_dir = fold_dir / entry.key
        start = time.perf_counter()
        if (model_dir / "model.json").exists():
            est = load_estimator(model_dir, task)
            console.print(f"  [dim]{entry.key}: already trained (resumed run)[/dim]")
        else:
            params, train_cfg = entry.params, cfg.train
            if cfg.tune is not None:
                from medflow.study.tuning import tuned

                params, train_cfg = tuned(cfg, ds, fold, task, features, entry, model_dir, console, tuning)
            if entry.privacy is not None:
                train_cfg = train_cfg.model_copy(update={"privacy": entry.privacy})
            est = build_estimator(entry.name, params, task)
            est.sources = input_names(est, feat, xs["train"])
            est.init = transfer_init(entry)
            est.ensemble = entry.ensemble
            est.fit(xs["train"], ys["train"], xs["stop"], ys["stop"], train_cfg, cfg.seed,
                    workdir=work / "checkpoints" / f"fold_{fold.index}" / entry.key)
            if est.init is not None:
                transfer[entry.key] = {**est.init.report, **(checks if entry.mode else {})}
            if getattr(est, "resumed_from", None) is not None:
                console.print(f"  {entry.key}: resumed from the checkpoint after epoch {est.resumed_from + 1}")
            est.save(model_dir)
        timings[entry.key] = time.perf_counter() - start
        if getattr(est, "privacy", None):  # DP-SGD: the accountant's epsilon, per model and fold
            privacy[entry.key] = est.privacy
        for part, idx in (("valid", fold.valid), ("test", fold.test)):
            pred = est.predict(xs[part])
            if part == "test":  # e.g. segmentation masks, written beside the model
                task.write_outputs(model_dir / "test_outputs", ds, test, pred)
            rows.append(prediction_rows(ds, task, pred, ys[part], idx, part, fold.index, entry.key, subgroups))
    return rows, {"timings": timings, "task": task, "featurizer": feat, "xs": xs, "ys": ys, "tuning": tuning,
                  "test_frame": test, "transfer": transfer, "privacy": privacy}


def prediction_rows(ds: Dataset, task: Task, score: np.ndarray, y: np.ndarray, idx: np.ndarray, part: str,
                     fold: int, model: str, subgroups: pd.DataFrame) -> pd.DataFrame:
    pid = ds.frame[ds.patient_id].iloc[idx].astype(str).to_numpy()
    out = prediction_table(task, score, y, pid, idx, part, fold, model)
    for col in subgroups.columns:
        out[col] = subgroups[col].iloc[idx].to_numpy()
    return out


def _explain(cfg: StudyConfig, run_dir: Path, fold_info: dict, entries: list[ModelEntry], ds: Dataset) -> dict:
    from medflow.evaluate.metrics import get_metric
    from medflow.explain import explain_model

    task, feat, xs, ys = fold_info["task"], fold_info["featurizer"], fold_info["xs"], fold_info["ys"]
    metric = get_metric(task.primary_metric)
    return {e.key: explain_model(load_estimator(run_dir / "fold_0" / e.key, task), xs["test"], ys["test"], feat,
                                  metric, cfg.explain, cfg.seed, ds, fold_info["test_frame"]) for e in entries}


def run_study(cfg: StudyConfig, dataset: Dataset | None = None, resume: str | Path | None = None,
              console: Console | None = None) -> Run | None:
    """Run a study end to end and return the finished run (see docs/run-directory.md).

    Under `torchrun` (several processes) every process trains, rank 0 alone evaluates and writes the run
    directory and returns the Run; the other ranks return None.
    """
    console = console or Console(stderr=True)
    started = time.perf_counter()
    ds = dataset if dataset is not None else load_study_data(cfg.data)
    ds.synthetic = ds.synthetic or cfg.data.synthetic
    cfg.task.check(ds.frame, ds.source)
    features = feature_columns(ds, cfg)
    entries = _check_models(cfg, ds.modality)
    for e in entries:
        check_inputs(model_registry.get(e.name), ds.modality, ds.source)
    # task-level steps before any split (treatment effects: overlap, trimming, cross-fitted nuisances)
    ds, analysis = cfg.task.prepare(ds, features, cfg, console)
    subgroups = pd.DataFrame({SUBGROUP_PREFIX + s.label: subgroup_labels(ds.frame, s, ds.source)
                              for s in cfg.evaluate.subgroup_specs()}, index=ds.frame.index)
    strata = cfg.task.strata(ds.frame) if cfg.split.stratify else None
    folds = source_folds(cfg, ds, console) or cfg.split.make(ds.frame[ds.patient_id], strata, cfg.seed, ds.frame)
    if any(model_registry.get(e.name).family == "deep" for e in entries):
        # early stopping would make deep models look better on the validation patients it watched: keep
        # some validation patients unseen, for selection, threshold and conformal calibration
        folds = [f.with_stopping_part(ds.frame[ds.patient_id], cfg.split.early_stopping, cfg.seed, strata)
                 for f in folds]
    work = _resume_dir(resume, cfg) if resume else (new_run_dir(cfg) if distributed.is_main() else None)
    work = Path(distributed.broadcast_object(str(work)))  # multi-process: rank 0 names the folder
    write_text(work / "study.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
    inputs = ds.inputs_text(len(features))
    console.print(f"[bold]{cfg.name}[/bold]: {len(ds)} records, {ds.n_patients} patients, {inputs},"
                  f" {len(folds)} fold(s), models {[e.key for e in entries]}"
                  + (" [bold red]SYNTHETIC DATA[/bold red]" if ds.synthetic else ""))
    if analysis is not None:
        write_json(work / "task_analysis.json", analysis)
    rows, timings, first, tuning, privacy = [], {}, None, {}, {}
    for fold in folds:
        fold_rows, info = _fit_fold(cfg, ds, fold, features, work, entries, subgroups, console, first)
        rows += fold_rows
        for k, v in info["timings"].items():
            timings[k] = timings.get(k, 0.0) + v
        for k, v in info["tuning"].items():
            tuning.setdefault(k, {})[str(fold.index)] = v
        for k, v in info["privacy"].items():
            privacy.setdefault(k, {})[str(fold.index)] = v
        first = first or info
    if distributed.is_distributed():  # training is done: rank 0 evaluates and writes, the others stop here
        main = distributed.is_main()
        distributed.barrier()
        distributed.shutdown()
        if not main:
            return None
    extra = {"fit_seconds": timings, "tuning": tuning, "privacy": privacy, "transfer": first["transfer"]}
    return finish_run(cfg, ds, work, rows, first, entries, folds, features, started, console, extra)


def finish_run(cfg: StudyConfig, ds: Dataset, work: Path, rows: list[pd.DataFrame], first: dict,
               entries: list[ModelEntry], folds: list[Fold], features: list[str], started: float, console: Console,
               extra: dict, adjust: Callable[[dict], None] | None = None) -> Run:
    """Evaluate the trained models' predictions, explain, report, and move the finished run into place.

    `extra` adds non-empty sections to metrics.json (fit seconds, tuning, privacy, transfer, federated); `adjust`
    may edit the metrics after evaluation (a federated run names its federated model as the selected one).
    """
    preds = pd.concat(rows, ignore_index=True)
    write_parquet(work / "predictions.parquet", preds)
    console.print("evaluating (bootstrap over patients) ...")
    metrics = evaluate_predictions(preds, first["task"], cfg.evaluate, cfg.seed)
    metrics.update({k: v for k, v in extra.items() if v})
    if adjust is not None:
        adjust(metrics)
    write_json(work / "metrics.json", metrics)
    console.print("explaining ...")
    write_json(work / "explanations.json", _explain(cfg, work, first, entries, ds))
    write_json(work / "quality.json", quality_summary(ds, cfg.task.label_columns))
    if cfg.compare_blocks is not None:
        from medflow.study.fusion import compare_blocks

        console.print("comparing feature blocks and their fusion (repeated k-fold) ...")
        quiet = cfg.train.model_copy(update={"progress": False})
        write_json(work / "blocks.json", compare_blocks(ds, cfg.task, cfg.compare_blocks, quiet, cfg.seed))
    if cfg.compare_modalities is not None:
        from medflow.study.modalities import compare_modalities

        console.print("comparing modalities: each alone, each left out, all together (repeated k-fold) ...")
        quiet = cfg.train.model_copy(update={"progress": False})
        write_json(work / "modalities.json", compare_modalities(ds, cfg.task, cfg.compare_modalities, quiet, cfg.seed,
                                                                cfg.data))
    write_json(work / "manifest.json", _manifest(cfg, ds, folds, features, time.perf_counter() - started,
                                                  entries))
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    from medflow.report.html import write_report

    write_report(work)
    final = work.with_name(work.name[: -len(INCOMPLETE)])
    os.replace(work, final)
    return Run(final)


def _resume_dir(resume: str | Path, cfg: StudyConfig) -> Path:
    p = Path(resume)
    if not p.name.endswith(INCOMPLETE):
        raise ConfigError(f"--resume {p}: only an interrupted run (a folder ending in {INCOMPLETE}) can be resumed.")
    if not p.exists():
        raise ConfigError(f"--resume {p}: no such folder.")
    saved = yaml.safe_load((p / "study.yaml").read_text()) if (p / "study.yaml").exists() else None
    if saved is not None and saved != cfg.resolved():
        raise ConfigError(f"--resume {p}: the study config differs from the one the run started with; "
                          "resume with the same YAML, or start a new run.")
    return p


def _manifest(cfg: StudyConfig, ds: Dataset, folds: list[Fold], features: list[str], wall: float,
              entries: list[ModelEntry]) -> dict:
    import sklearn
    import torch

    import medflow

    return {
        "status": "complete", "medflow": medflow.__version__, "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
        "scikit_learn": sklearn.__version__, "host": platform.node(), "platform": platform.platform(),
        "seed": cfg.seed, "data": ds.summary(), "data_fingerprint": ds.fingerprint(), "synthetic": ds.synthetic,
        "features": features, "feature_types": {c: ds.feature_types[c].value for c in features},
        "patient_id_note": ds.meta.get("patient_id_note"),
        "splits": [{"fold": f.index, **f.sizes(ds.frame[ds.patient_id])} for f in folds],
        "models": {e.key: model_registry.get(e.name).family for e in entries},
        "wall_seconds": wall, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def transfer_init(entry: ModelEntry) -> Init | None:
    """The weights an entry starts from (`init_from`: fold 0's model of another run; transfer learning;
    `init_modalities`: one source per modality encoder of a fusion model)."""
    if entry.init_modalities:
        return _modality_init(entry)
    if entry.init_from is None:
        return None
    if entry.mode is not None:  # a pretrained run (resolve_entry set the mode)
        return pretrained_init(entry)
    if is_checkpoint(entry.init_from):  # weights from elsewhere: a file or a MONAI bundle
        return Init(entry.init_from, "checkpoint", load_checkpoint(entry.init_from), entry.freeze)
    try:
        run = load_run(Path(entry.init_from))
    except Exception as exc:
        raise ConfigError(f"init_from {entry.init_from}: not a finished run directory ({exc}).") from exc
    model = entry.init_model or entry.name
    if model not in run.models:
        raise ConfigError(f"init_from {entry.init_from}: the run has no model '{model}' (it has "
                          f"{run.models}); set init_model.")
    est = run.estimator(model, 0)
    if not hasattr(est, "module"):
        raise ConfigError(f"init_from {entry.init_from}: model '{model}' is not a deep model; only torch "
                          "weights can be transferred.")
    return Init(entry.init_from, model, est.module.state_dict(), entry.freeze)


def _modality_init(entry: ModelEntry) -> Init:
    """Each modality's encoder from its own source: a run's selected model (fold 0) or a weights file, its tensors
    renamed into the fusion model's `encoders.<modality>.`; the output layers (another width) stay fresh."""
    if model_registry.get(entry.name).inputs != "multimodal":
        raise ConfigError(f"models: '{entry.key}' reads one modality; init_modalities applies to fusion models "
                          "(fusion_late, fusion_masked, fusion_attention). Use init_from.")
    state: dict = {}
    for modality, source in entry.init_modalities.items():
        if is_checkpoint(source):
            weights = load_checkpoint(source)
        else:
            try:
                run = load_run(Path(source))
            except Exception as exc:
                raise ConfigError(f"init_modalities.{modality}: {source} is not a finished run directory or a "
                                  f"weights file ({exc}).") from exc
            est = run.estimator(run.metrics.selected_model, 0)
            if not hasattr(est, "module"):
                raise ConfigError(f"init_modalities.{modality}: the selected model of {source} "
                                  f"('{run.metrics.selected_model}') is not a deep model; train the modality with a "
                                  "network (e.g. gru, text_cnn, small_cnn, mlp) to transfer its weights.")
            weights = est.module.state_dict()
        state.update({f"encoders.{modality}.{k}": v for k, v in weights.items()})
    return Init(", ".join(f"{k}: {v}" for k, v in entry.init_modalities.items()), "per-modality", state,
                entry.freeze)

