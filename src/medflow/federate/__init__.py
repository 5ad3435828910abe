"""`medflow federate`: one model trained across sites that never share rows, beside pooled and site-alone models.

Each site is a table (its own CSV/Parquet file, or a part of a dataset: one site per value of a column, or
label-skewed non-IID parts drawn with a Dirichlet prior). Every site splits its own patients into train /
validation / test (the study's `split:`), fits the featurizer on its own training rows and shares only the
summaries (means, sds, medians, categories), which the server merges into one featurizer. Then three kinds of
models train with the same architecture, featurizer and training options:

* `<model>_<strategy>`: federated with Flower (FedAvg or FedProx; `train/federated.py`), the model of the run;
* `<model>_pooled`: trained on all sites' training rows together, the upper bound that pooling would give;
* `<model>_<site>_alone`: one per site, trained on that site's rows only.

All are tested on the union of the sites' held-out patients, overall and per site (a `site` subgroup with 95%
CIs), in one run directory that the report, `medflow predict` and the service read like any other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from rich.console import Console

from medflow.config import FederateConfig, SitesConfig
from medflow.data.dataset import Dataset
from medflow.data.splits import Fold
from medflow.errors import ConfigError, DataError

__all__ = ["SitesConfig", "FederateConfig", "federate", "site_parts", "SITE_COLUMN"]

SITE_COLUMN = "site"


def site_parts(frame: pd.DataFrame, patient_id: str, label: str | None, cfg: SitesConfig, seed: int,
               source: str) -> pd.Series:
    """The site of every row: the value of `cfg.column`, or one of `cfg.n` label-skewed parts (by patient).

    Label skew (Hsu et al. 2019): for each class, the shares of its patients that go to each site are drawn
    from Dirichlet(skew); every site keeps at least 5% of each class, so each can train and be tested.
    """
    if cfg.column is not None:
        if cfg.column not in frame.columns:
            raise DataError(f"{source}: federated.sites.column '{cfg.column}' is not a column of the data.")
        return frame[cfg.column].astype(str).rename(SITE_COLUMN)
    if label is None:
        raise ConfigError("federated.sites: label-skewed sites need a task with one label column; give "
                          "federated.sites.column or site files (--sites).")
    rng = np.random.default_rng(seed)
    first = frame.drop_duplicates(patient_id)
    site_of: dict[Any, int] = {}
    for _, group in first.groupby(label, sort=True):
        pids = rng.permutation(group[patient_id].to_numpy())
        shares = 0.05 + (1 - 0.05 * cfg.n) * rng.dirichlet(np.full(cfg.n, cfg.skew)) if cfg.n * 0.05 < 1 else \
            np.full(cfg.n, 1 / cfg.n)
        cuts = np.round(np.cumsum(shares)[:-1] * len(pids)).astype(int)
        for k, part in enumerate(np.split(pids, cuts)):
            site_of.update(dict.fromkeys(part.tolist(), k))
    names = [f"site_{chr(ord('a') + k)}" if cfg.n <= 26 else f"site_{k + 1}" for k in range(cfg.n)]
    return frame[patient_id].map(lambda p: names[site_of[p]]).rename(SITE_COLUMN)


def read_sites(cfg: Any, paths: list[str | Path]) -> Dataset:
    """Site files read with the study's data options, checked to share columns and types; one dataset with a
    site column and patient ids made unique per site."""
    from medflow.study.data import load_study_data

    parts, first = [], None
    for path in paths:
        ds = load_study_data(cfg.data.model_copy(update={"path": str(path), "dataset": None}))
        _check_table(ds)
        name = Path(path).stem
        if first is None:
            first = (ds, path)
        else:
            ref, ref_path = first
            missing = sorted(set(ref.feature_types) - set(ds.feature_types))
            extra = sorted(set(ds.feature_types) - set(ref.feature_types))
            if missing or extra:
                raise DataError(f"{path}: its columns differ from {ref_path}'s: "
                                + "; ".join(([f"missing {missing}"] if missing else [])
                                            + ([f"not in {Path(ref_path).name}: {extra}"] if extra else []))
                                + ". Every site must have the same columns.")
            for col, kind in ref.feature_types.items():
                if ds.feature_types[col] != kind:
                    raise DataError(f"{path}: column '{col}' is {ds.feature_types[col].value} here but "
                                    f"{kind.value} in {ref_path}; give data.types so every site reads it alike.")
        frame = ds.frame.copy()
        frame[ds.patient_id] = name + ":" + frame[ds.patient_id].astype(str)
        frame[SITE_COLUMN] = name
        parts.append((frame, ds))
    if len({p[0][SITE_COLUMN].iloc[0] for p in parts}) != len(parts):
        raise ConfigError(f"--sites: two site files have the same name ({[Path(p).stem for p in paths]}); "
                          "rename one.")
    ds0 = first[0]
    return Dataset(frame=pd.concat([p[0] for p in parts], ignore_index=True), name=cfg.name,
                   patient_id=ds0.patient_id, feature_types=dict(ds0.feature_types),
                   source=", ".join(str(p) for p in paths), synthetic=any(p[1].synthetic for p in parts),
                   description=f"{len(paths)} sites: " + ", ".join(Path(p).stem for p in paths))


def _check_table(ds: Dataset) -> None:
    if ds.modality != "tabular":
        hint = " (data.as_table: true reads event data as a table of count features)" if ds.modality == "events" \
            else ""
        raise ConfigError(f"federated training reads tables (one CSV/Parquet per site or a table dataset); "
                          f"{ds.modality} data are not supported yet{hint}.")


def _check_sites(ds: Dataset, cfg: Any) -> list[str]:
    """Sites in order; each must have a positive and a negative label for binary tasks, and enough patients."""
    sites = sorted(set(ds.frame[SITE_COLUMN].tolist()))
    for site in sites:
        part = ds.frame[ds.frame[SITE_COLUMN] == site]
        n = part[ds.patient_id].nunique()
        if n < 10:
            raise DataError(f"site '{site}' has {n} patients; a site needs at least 10 to split into train, "
                            "validation and test.")
        if cfg.task.kind == "binary":
            counts = part[cfg.task.label].value_counts()
            if len(counts) < 2:
                raise DataError(f"site '{site}': '{cfg.task.label}' has only the value {counts.index.tolist()} "
                                f"({int(counts.sum())} rows), so the site has no positive or no negative labels; "
                                "every site needs both to train and to be tested. Drop the site or merge it with "
                                "another.")
    return sites


def site_fold(ds: Dataset, cfg: Any, rows: np.ndarray) -> Fold:
    """One site's own patient split of its rows `rows` (the study's split:, early-stopping part included); the
    same wherever it is computed, in the launcher or in the site's own process."""
    sub = ds.frame.iloc[rows].reset_index(drop=True)
    strata = cfg.task.strata(sub) if cfg.split.stratify else None
    fold = cfg.split.make(sub[ds.patient_id], strata, cfg.seed)[0]
    fold = fold.with_stopping_part(sub[ds.patient_id], cfg.split.early_stopping, cfg.seed, strata)
    return Fold(0, rows[fold.train], rows[fold.valid], rows[fold.test], None if fold.stop is None else rows[fold.stop])


def _site_folds(ds: Dataset, cfg: Any, sites: list[str]) -> tuple[Fold, dict[str, Fold]]:
    """Each site's own patient split (the study's split:), and their union as one fold."""
    if cfg.split.kind != "holdout":
        raise ConfigError("federated training uses a holdout split per site (split: {kind: holdout}); k-fold is "
                          "not supported.")
    per_site = {site: site_fold(ds, cfg, np.flatnonzero((ds.frame[SITE_COLUMN] == site).to_numpy()))
                for site in sites}
    cat = lambda part: np.concatenate([getattr(f, part) for f in per_site.values()])  # noqa: E731
    union = Fold(0, cat("train"), cat("valid"), cat("test"),
                 None if any(f.stop is None for f in per_site.values()) else cat("stop"))
    return union, per_site


def _loopback(cfg: Any, fed: FederateConfig, base: Any, task: Any, feat: Any, sites: list[str | Path] | None,
              work: Path, console: Console) -> Any:
    """`deployment: loopback`: the rounds run as a SuperLink, one SuperNode per site file and `flwr run`
    (`train/loopback.py`); None in a simulation. The launcher checks that the featurizer the server merged from the
    sites' summaries is the one it merged itself from the same files."""
    if fed.deployment != "loopback":
        return None
    import functools

    from medflow.train.loopback import loopback_fit

    plan = {"study": cfg.resolved(), "model": {"name": base.name, "params": base.params},
            "task": {"config": task.model_dump(mode="json"), "state": task.state},
            "federated": fed.model_dump(mode="json"), "seed": cfg.seed,
            "sites": [{"name": Path(p).stem, "path": str(Path(p).resolve())} for p in sites or []],
            "launcher_featurizer": feat.to_dict()}
    console.print(f"  separate processes on 127.0.0.1: a Flower SuperLink, {len(plan['sites'])} SuperNodes (one per "
                  "site file), flwr run; logs in federated_loopback/")
    return functools.partial(loopback_fit, plan=plan, workdir=work / "federated_loopback")


def federate(cfg: Any, sites: list[str | Path] | None = None, dataset: Dataset | None = None,
             console: Console | None = None) -> Any:
    """Train the study's model across sites (files, or parts of its dataset) and write one run directory."""
    from medflow.evaluate.evaluator import SUBGROUP_PREFIX, SubgroupConfig, subgroup_labels
    from medflow.features import encode_targets, featurize, input_names, make_featurizer, merge_featurizers
    from medflow.models.base import build_estimator
    from medflow.registry import models as model_registry
    from medflow.runs import write_json, write_text
    from medflow.study import feature_columns, finish_run, new_run_dir, prediction_rows
    from medflow.study.data import load_study_data

    console = console or Console(stderr=True)
    started = time.perf_counter()
    fed = cfg.federated or FederateConfig()
    if fed.deployment == "loopback" and not sites:
        raise ConfigError("federated.deployment loopback runs one Flower SuperNode per site file: give the sites as "
                          "files (--sites a.csv --sites b.csv ...).")
    if sites:
        if len(sites) < 2:
            raise ConfigError("--sites: give at least two site files (one file is centralized training: "
                              "medflow run).")
        ds = read_sites(cfg, sites)
    else:
        ds = dataset if dataset is not None else load_study_data(cfg.data)
        _check_table(ds)
        if SITE_COLUMN in ds.frame.columns and fed.sites.column != SITE_COLUMN:
            raise DataError(f"{ds.source}: the data have a column named '{SITE_COLUMN}'; use federated.sites.column:"
                            f" {SITE_COLUMN}, or rename it.")
        label = cfg.task.label_columns[0] if len(cfg.task.label_columns) == 1 else None
        frame = ds.frame.copy()
        frame[SITE_COLUMN] = site_parts(frame, ds.patient_id, label, fed.sites, cfg.seed, ds.source).to_numpy()
        ds = Dataset(frame=frame, name=ds.name, patient_id=ds.patient_id,
                     feature_types={k: v for k, v in ds.feature_types.items() if k != fed.sites.column},
                     source=ds.source, synthetic=ds.synthetic, description=ds.description, meta=ds.meta)
    ds.synthetic = ds.synthetic or cfg.data.synthetic
    cfg.task.check(ds.frame, ds.source)
    site_names = _check_sites(ds, cfg)
    features = feature_columns(ds, cfg)
    deep = [e for e in cfg.model_entries() if model_registry.get(e.name).family == "deep"]
    chosen = [e for e in deep if fed.model in (None, e.key)]
    if not chosen:
        raise ConfigError(f"federated: {'model ' + repr(fed.model) if fed.model else 'the study'} names no deep "
                          f"model to federate (deep models listed: {[e.key for e in deep]}).")
    base = chosen[0]
    keys = {"federated": f"{base.key}_{fed.strategy}", "pooled": f"{base.key}_pooled",
            **{s: f"{base.key}_{s}_alone" for s in site_names}}
    entries = [base.model_copy(update={"label": k}) for k in keys.values()]
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={
        "subgroups": [*cfg.evaluate.subgroups, SubgroupConfig(column=SITE_COLUMN)]})})
    subgroups = pd.DataFrame({SUBGROUP_PREFIX + s.label: subgroup_labels(ds.frame, s, ds.source)
                              for s in cfg.evaluate.subgroup_specs()}, index=ds.frame.index)
    fold, per_site = _site_folds(ds, cfg, site_names)
    frame = ds.frame
    task = cfg.task.model_copy(deep=True).fit(frame.iloc[fold.train])
    feats = [(make_featurizer(ds, features, frame.iloc[f.train], cfg.data), len(f.train)) for f in per_site.values()]
    feat = merge_featurizers(ds, feats)
    work = new_run_dir(cfg)
    write_text(work / "study.yaml", yaml.safe_dump(cfg.resolved(), sort_keys=False))
    write_json(work / "fold_0" / "featurizer.json", feat.to_dict())
    write_json(work / "fold_0" / "task.json", {"config": task.model_dump(mode="json"), "state": task.state})
    x_all, y_all = featurize(feat, ds, frame), encode_targets(feat, task, ds, frame)
    sizes = ", ".join(f"{s}: {frame[ds.patient_id].iloc[np.r_[f.train, f.valid, f.test]].nunique()}"
                      for s, f in per_site.items())
    console.print(f"[bold]{cfg.name}[/bold]: federated {fed.strategy} over {len(site_names)} sites ({sizes} "
                  f"patients), {len(features)} features, {fed.rounds} rounds"
                  + (" [bold red]SYNTHETIC DATA[/bold red]" if ds.synthetic else ""))
    rows, timings, privacy = [], {}, {}
    history: list[dict] = []
    best_round = None
    for role, key in keys.items():
        t0 = time.perf_counter()
        est = build_estimator(base.name, base.params, task)
        est.sources = input_names(est, feat, x_all)
        if role == "federated":
            console.print(f"  {key}: {fed.rounds} rounds x {fed.local_epochs} local epoch(s) on each site")
            parts = [(s, x_all[f.train], y_all[f.train], x_all[f.early_stopping], y_all[f.early_stopping])
                     for s, f in per_site.items()]
            est.fit_federated(parts, cfg.train, fed, cfg.seed, fit=_loopback(cfg, fed, base, task, feat, sites, work,
                                                                            console))
            history, best_round = est.history, est.best_epoch + 1
        else:
            f = fold if role == "pooled" else per_site[role]
            est.fit(x_all[f.train], y_all[f.train], x_all[f.early_stopping], y_all[f.early_stopping], cfg.train,
                    cfg.seed)
        est.save(work / "fold_0" / key)
        timings[key] = time.perf_counter() - t0
        if getattr(est, "privacy", None):
            privacy[key] = {"0": est.privacy}
        for part, idx in (("valid", fold.valid), ("test", fold.test)):
            rows.append(prediction_rows(ds, task, est.predict(x_all[idx]), y_all[idx], idx, part, 0, key,
                                         subgroups))
    first = {"task": task, "featurizer": feat, "xs": {"test": x_all[fold.test]}, "ys": {"test": y_all[fold.test]},
             "test_frame": frame.iloc[fold.test], "transfer": {}}
    summary = {"strategy": fed.strategy, "deployment": fed.deployment, "rounds": fed.rounds,
               "local_epochs": fed.local_epochs, "proximal_mu": fed.proximal_mu if fed.strategy == "fedprox" else None,
               "model": base.key,
               "federated_model": keys["federated"], "pooled_model": keys["pooled"],
               "alone_models": {s: keys[s] for s in site_names},
               "best_round": best_round,
               "history": [{"round": h["epoch"] + 1, "train_loss": h["train_loss"], "val_loss": h["val_loss"],
                            "site_train_loss": h["site_train_loss"]} for h in history],
               "sites": {s: {part: {"patients": int(frame.iloc[getattr(f, part)][ds.patient_id].nunique()),
                                    "rows": int(len(getattr(f, part)))} for part in ("train", "valid", "test")}
                         | ({"prevalence": float(np.mean(y_all[f.train]))} if task.kind == "binary" else {})
                         for s, f in per_site.items()},
               "shared": "model weights, losses and record counts per round; featurizer summaries (means, sds, "
                         "medians, categories) once; never rows"}

    def name_federated(metrics: dict) -> None:  # the federated model is the run's model; the others compare
        metrics["selected_model"] = keys["federated"]
        metrics["selection"] = {**metrics.get("selection", {}), "selected": keys["federated"], "rule": "federated",
                                "warning": None, "reason": "federated run: the federated model is the one the "
                                "sites can deploy; pooled and site-alone models are there for comparison"}

    extra = {"fit_seconds": timings, "privacy": privacy, "federated": summary}
    return finish_run(cfg, ds, work, rows, first, entries, [fold], features, started, console, extra,
                      name_federated)
