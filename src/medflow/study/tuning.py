"""Hyper-parameter search (Optuna, TPE) nested inside each outer fold, so the test split stays untouched.

For every model named under `tune.space`, each trial trains on inner patient folds of the outer fold's
training and validation patients (featurizer refitted per inner fold) and scores the trial by the mean
inner-fold metric; the best parameters are then trained on the outer fold as usual. Early stopping inside
an inner fold watches that fold's held-out part, the same part that scores the trial: a small optimistic
bias shared by every trial, so the ranking of trials is fair (docs/evaluation.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medflow.config import SearchDim, TuneConfig
from medflow.errors import ConfigError

__all__ = ["TuneConfig", "SearchDim", "search_space", "tune_model", "tune_spaces", "check_spaces", "tuned"]


def search_space(model: str, raw: dict[str, Any], param_fields: list[str], train_fields: list[str]) -> dict:
    """Parse and check one model's search space, naming the model and parameter in errors."""
    out = {}
    for name, value in raw.items():
        where = f"tune.space.{model}.{name}"
        is_train = name.startswith("train.")
        field = name[6:] if is_train else name
        valid = train_fields if is_train else param_fields
        if field not in valid:
            owner = "train" if is_train else f"model '{model}'"
            raise ConfigError(f"{where}: '{field}' is not a parameter of {owner}; valid: {', '.join(valid)}"
                              + ("." if is_train else " (or train.lr, train.weight_decay, ...)."))
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
            dim = SearchDim(low=value[0], high=value[1], integer=all(isinstance(v, int) for v in value))
        elif isinstance(value, dict):
            try:
                dim = SearchDim(**value)
            except Exception as exc:
                raise ConfigError(f"{where}: {exc}") from exc
        else:
            raise ConfigError(f"{where}: give [low, high], {{low, high, log}} or {{choices: [...]}}, got {value!r}.")
        if dim.choices is None and (dim.low is None or dim.high is None or dim.low >= dim.high):
            raise ConfigError(f"{where}: needs low < high (got {dim.low}, {dim.high}) or choices.")
        if dim.log and dim.choices is None and dim.low <= 0:
            raise ConfigError(f"{where}: a log-scaled range needs low > 0.")
        out[name] = dim
    return out


def _suggest(trial: Any, name: str, dim: SearchDim) -> Any:
    if dim.choices is not None:
        return trial.suggest_categorical(name, dim.choices)
    if dim.integer:
        return trial.suggest_int(name, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(name, float(dim.low), float(dim.high), log=dim.log)


def _inner_folds(patient_ids: Any, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from medflow.data.splits import KFold

    folds = KFold(k=k, valid=0.0, stratify=False).make(patient_ids.reset_index(drop=True), None, seed)
    return [(f.train, f.test) for f in folds]


def tune_model(entry: Any, space: dict, cfg: Any, ds: Any, rows: np.ndarray, task: Any, features: list[str],
               seed: int, fold_index: int, console: Any = None) -> dict[str, Any]:
    """Search `space` for one model on the outer fold's rows (train + valid); returns the trials and best."""
    import optuna

    from medflow.evaluate.metrics import get_metric
    from medflow.features import encode_targets, featurize, input_names, make_featurizer
    from medflow.models.base import build_estimator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tune: TuneConfig = cfg.tune
    metric = get_metric(tune.metric or task.primary_metric)
    frame = ds.frame.iloc[rows]
    inner = _inner_folds(frame[ds.patient_id], tune.inner_folds, seed + 100 + fold_index)
    base_train = cfg.train.model_copy(update={"progress": False})

    def objective(trial: Any) -> float:
        params, train = dict(entry.params), base_train.model_dump()
        for name, dim in space.items():
            value = _suggest(trial, name, dim)
            (train.__setitem__(name[6:], value) if name.startswith("train.") else params.__setitem__(name, value))
        train_cfg = type(cfg.train)(**train)
        scores = []
        for i, (tr, va) in enumerate(inner):
            a, b = frame.iloc[tr], frame.iloc[va]
            feat = make_featurizer(ds, features, a, cfg.data)
            xa, xb = featurize(feat, ds, a), featurize(feat, ds, b)
            ya, yb = encode_targets(feat, task, ds, a), encode_targets(feat, task, ds, b)
            est = build_estimator(entry.name, params, task)
            est.sources = input_names(est, feat, xa)
            est.fit(xa, ya, xb, yb, train_cfg, seed + i)
            scores.append(metric(yb, est.predict(xb)))
        value = float(np.nanmean(scores))
        if console is not None:
            console.print(f"  [dim]{entry.name} fold {fold_index} trial {trial.number}: {metric.name} {value:.4f} "
                          f"{trial.params}[/dim]", highlight=False)
        return value

    direction = "maximize" if metric.higher_is_better else "minimize"
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed + fold_index))
    study.optimize(objective, n_trials=tune.trials, timeout=tune.timeout_s)
    best = study.best_trial
    model_params = {k: v for k, v in best.params.items() if not k.startswith("train.")}
    train_params = {k[6:]: v for k, v in best.params.items() if k.startswith("train.")}
    return {"metric": metric.name, "direction": direction, "inner_folds": tune.inner_folds,
            "n_trials": len(study.trials), "best_value": float(best.value), "best_params": best.params,
            "model_params": model_params, "train_params": train_params,
            "trials": [{"number": t.number, "params": t.params, "value": t.value} for t in study.trials]}


def tune_spaces(cfg: Any) -> dict[str, dict[str, Any]]:
    """What a study's `tune:` searches: tune.space when given, else every listed model's default space."""
    from medflow.registry import models

    if cfg.tune is None:
        return {}
    if cfg.tune.space:
        return dict(cfg.tune.space)
    spaces = {e.name: models.get(e.name).search for e in cfg.model_entries()}
    return {k: v for k, v in spaces.items() if v}


def _parsed_space(model: str, raw: dict[str, Any]) -> dict[str, SearchDim]:
    from medflow.registry import models
    from medflow.train.trainer import TrainConfig

    return search_space(model, raw, list(models.get(model).params.model_fields), list(TrainConfig.model_fields))


def check_spaces(cfg: Any, names: list[str]) -> None:
    """Before training: every searched model is listed, and every space names real parameters."""
    for model in cfg.tune.space:
        if model not in names:
            raise ConfigError(f"tune.space names model '{model}', which is not under models: {names}.")
    spaces = tune_spaces(cfg)
    if not spaces:
        raise ConfigError(f"tune: none of the models {names} has a default search space; give tune.space.")
    for model, raw in spaces.items():
        _parsed_space(model, raw)


def tuned(cfg: Any, ds: Any, fold: Any, task: Any, features: list[str], entry: Any, model_dir: Any, console: Any,
          tuning: dict) -> tuple[dict, Any]:
    """A model's parameters and training options for one outer fold: as configured, or the best of a nested
    search (saved as `tuning.json` beside the model, so a resumed run reuses a finished search)."""
    from medflow.artifacts import read_json, write_json

    spaces = tune_spaces(cfg)
    if entry.name not in spaces:
        return entry.params, cfg.train
    saved = model_dir / "tuning.json"
    if saved.exists():
        result = read_json(saved)
    else:
        console.print(f"  tuning {entry.name}: {cfg.tune.trials} trials x {cfg.tune.inner_folds} inner folds "
                      f"on fold {fold.index}'s training and validation patients")
        rows = np.r_[fold.train, fold.valid] if fold.stop is None else np.r_[fold.train, fold.valid, fold.stop]
        result = tune_model(entry, _parsed_space(entry.name, spaces[entry.name]), cfg, ds, rows, task, features,
                            cfg.seed, fold.index, console)
        write_json(saved, result)
    tuning[entry.key] = {k: v for k, v in result.items() if k != "trials"}
    return {**entry.params, **result["model_params"]}, cfg.train.model_copy(update=result["train_params"])
