"""`medflow pretrain` / `mf.pretrain(...)`: self-supervised pretraining on unlabeled patient timelines.

The events of a MEDS folder are tokenized shard by shard into a memory-mapped cache (`pretrain.tokens`), a causal
`timeline_transformer` encoder learns to predict each next code (CLMBR-style; `models.timeline`) through the core
Trainer (checkpoints after every epoch, exact resume, early stopping on the held-out patients' loss, progress),
and the run directory gets the weights as safetensors, the vocabulary, the curve, the held-out perplexity and
next-code accuracy beside a code-frequency reference, and a report. A study starts from it with
`models: [{name: timeline_transformer, init_from: RUN, mode: finetune | linear_probe | frozen_features}]`
(`docs/pretraining.md`).

>>> cfg = PretrainConfig(data={"meds": "cohort/"})
>>> cfg.objective, cfg.sequence.max_len, cfg.holdout
('next_code', 256, 0.05)
"""

from __future__ import annotations

import shutil
import sys
import time
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from medflow.artifacts import write_json, write_parquet, write_text
from medflow.config import validate
from medflow.errors import ConfigError
from medflow.models.pretrained import MARKER
from medflow.models.timeline import TimelineConfig
from medflow.pretrain.text import TextPretrainConfig
from medflow.runs import INCOMPLETE, new_work_dir
from medflow.train.trainer import TrainConfig

__all__ = ["PretrainConfig", "TextPretrainConfig", "pretrain", "load_pretrain_config"]

class PretrainData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    meds: str = Field(..., description="a MEDS folder (read one shard at a time; no labels needed)")


class PretrainSequence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_count: int = Field(5, ge=1, description="codes seen fewer times in the pretraining patients become <unknown>")
    max_len: int = Field(256, ge=8, le=4096, description="events per window; longer timelines are cut into several")


def _train_defaults() -> TrainConfig:
    return TrainConfig(max_epochs=5, batch_size=32, lr=1e-3, patience=2, warmup_epochs=0)


class PretrainConfig(BaseModel):
    """What `medflow pretrain` reads (YAML)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("pretrain", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Literal["events"] = "events"
    data: PretrainData
    objective: Literal["next_code", "motor"] = Field(
        "next_code", description="next_code: autoregressive next-code prediction (CLMBR-style); motor: piecewise-"
                                 "exponential time to the next occurrence of the most frequent codes (MOTOR-style)")
    motor_codes: int = Field(64, ge=1, le=4096, description="motor: how many of the most frequent timed codes "
                                                            "are time-to-event targets")
    sequence: PretrainSequence = PretrainSequence()
    model: TimelineConfig = TimelineConfig()
    train: TrainConfig = Field(default_factory=_train_defaults)
    holdout: float = Field(0.05, gt=0, lt=0.5, description="share of patients held out for perplexity, accuracy "
                                                            "and early stopping")
    max_valid_windows: int = Field(2000, ge=10, description="held-out windows scored after each epoch")
    seed: int = 0
    output_dir: str = "runs"


def load_pretrain_config(path: str | Path) -> PretrainConfig | TextPretrainConfig:
    """Read a pretraining YAML; relative paths (`data.meds`, `data.text.path`, `model.checkpoint`) are taken from the
    YAML's folder."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: pretraining file not found.")
    try:
        raw = yaml.safe_load(p.read_bytes().decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{p}: not a valid UTF-8 YAML file ({exc}).") from exc
    cfg = parse_pretrain_config(raw, str(p))

    def here(value: str) -> str:
        return value if Path(value).is_absolute() else str((p.parent / value).resolve())

    if isinstance(cfg, TextPretrainConfig):
        cfg.data.text.path = here(cfg.data.text.path)
        if cfg.model.checkpoint:
            cfg.model.checkpoint = here(cfg.model.checkpoint)
    else:
        cfg.data.meds = here(cfg.data.meds)
    return cfg


def parse_pretrain_config(raw: Any, source: str = "pretrain") -> PretrainConfig | TextPretrainConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a pretraining file is a mapping (name:, data:, model:, train: ...), not a "
                          f"{type(raw).__name__}.")
    kind = raw.get("kind", "events")
    if kind not in ("events", "text"):
        raise ConfigError(f"{source}: kind: {kind!r}; pretraining reads events (a MEDS folder) or text (notes).")
    return validate(raw, TextPretrainConfig if kind == "text" else PretrainConfig, source)


def _work_dir(cfg: PretrainConfig | TextPretrainConfig, resume: str | Path | None) -> Path:
    if resume is not None:
        work = Path(resume)
        if not work.name.endswith(INCOMPLETE):
            work = work.with_name(work.name + INCOMPLETE)
        if not work.is_dir():
            raise ConfigError(f"--resume {resume}: no interrupted pretraining there (expected a folder ending in "
                              f"{INCOMPLETE}, written by an earlier `medflow pretrain`).")
        return work
    return new_work_dir(cfg.output_dir, cfg.name)


def pretrain(config: PretrainConfig | TextPretrainConfig | str | Path | dict, resume: str | Path | None = None,
             console: Any = None, progress: bool = True) -> Path:
    """Pretrain on the config's MEDS folder (or notes, `kind: text`); returns the finished run directory.

    `resume`: the `.incomplete` folder of an interrupted pretraining (tokens and the last epoch's checkpoint are
    reused; the result is the same as an uninterrupted run's)."""
    import polars as pl
    import torch
    from rich.console import Console

    from medflow.models.timeline import MotorObjective, NextCodeObjective, next_code_accuracy, next_code_loss
    from medflow.pretrain.evaluate import code_counts, held_out_figures, motor_rates
    from medflow.pretrain.tokens import build_token_cache
    from medflow.train.callbacks import Checkpoint, EarlyStopping, ProgressBar
    from medflow.train.trainer import Trainer

    cfg = config if isinstance(config, PretrainConfig | TextPretrainConfig) else (
        parse_pretrain_config(config) if isinstance(config, dict) else load_pretrain_config(config))
    console = console or Console(stderr=True)
    work = _work_dir(cfg, resume)
    write_text(work / "pretrain.yaml", yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    if isinstance(cfg, TextPretrainConfig):
        from medflow.pretrain.text import pretrain_text

        meta = pretrain_text(cfg, work, console, progress)
        history, subjects = meta.pop("history"), meta.pop("subjects")
        meta.update(seed=cfg.seed, train=cfg.train.model_dump(mode="json"))
        write_parquet(work / "subjects.parquet", pl.DataFrame({"subject_id": subjects}).to_pandas())
        return _finish(work, meta, history)
    start = time.perf_counter()
    with console.status("tokenizing the timelines (one shard at a time) ...") if progress else _Null():
        cache = build_token_cache(cfg.data.meds, work / "tokens", cfg.sequence.min_count, cfg.sequence.max_len,
                                  cfg.holdout, cfg.seed)
    s = cache.summary
    console.print(f"{s['subjects']['pretrain']:,} pretraining and {s['subjects']['holdout']:,} held-out patients, "
                  f"{s['tokens']:,} events in {s['windows']:,} windows, vocabulary {s['vocabulary']:,} codes"
                  + ("  [bold]SYNTHETIC[/bold]" if s["synthetic"] else ""))
    x_train, x_hold = cache.tensors(False), cache.tensors(True)
    if len(x_train) < 2 or len(x_hold) < 1:
        raise ConfigError(f"{cfg.data.meds}: {len(x_train)} pretraining and {len(x_hold)} held-out windows; "
                          "pretraining needs more patients (or a larger holdout share).")
    rng = np.random.default_rng(cfg.seed)
    valid_idx = np.sort(rng.choice(len(x_hold), min(len(x_hold), cfg.max_valid_windows), replace=False))
    x_valid = x_hold.subset(valid_idx)
    torch.manual_seed(cfg.seed)
    task_codes: list[int] = []
    rates = None
    if cfg.objective == "motor":
        counts = code_counts(x_train, cache, timed_only=True)
        counts[:2] = 0  # never padding or <unknown>
        task_codes = [int(c) for c in np.argsort(-counts, kind="stable")[:cfg.motor_codes] if counts[c] > 0]
        module = MotorObjective(cache.featurizer.n_codes, task_codes, **cfg.model.model_dump())
        rates = motor_rates(module, x_train)  # the head starts at the constant hazards (its bias), weights near 0
        with torch.no_grad():
            module.head.bias.copy_(torch.as_tensor(np.log(rates).ravel(), dtype=torch.float32))
            module.head.weight.mul_(0.01)
    else:
        module = NextCodeObjective(cache.featurizer.n_codes, **cfg.model.model_dump())
        counts = code_counts(x_train, cache)  # the head starts at the codes' frequencies (its bias)
        with torch.no_grad():
            module.head.bias.copy_(torch.as_tensor(np.log((counts + 1) / (counts.sum() + len(counts))),
                                                   dtype=torch.float32))
    callbacks: list = [EarlyStopping("val_loss", patience=cfg.train.patience), Checkpoint(work / "checkpoints")]
    if progress and cfg.train.progress:
        callbacks.append(ProgressBar(f"{'pretrain':>18}"))
    trainer = Trainer(cfg.train, seed=cfg.seed, callbacks=callbacks)
    fit_start = time.perf_counter()
    state = trainer.fit(module, next_code_loss, x_train, torch.zeros(len(x_train)), x_valid,
                        torch.zeros(len(x_valid)), next_code_accuracy if cfg.objective == "next_code" else None)
    fit_seconds = time.perf_counter() - fit_start
    resumed = callbacks[1].resumed_from
    epochs_here = len(state.history) - (0 if resumed is None else resumed + 1)
    train_tokens = int((x_train.sizes() - 1).clip(min=0).sum())
    held = held_out_figures(module, cfg.objective, x_train, x_hold, cache, cfg.seed, rates)
    console.print(held["summary"])
    subjects = pl.DataFrame({"subject_id": cache.windows["subject_id"], "holdout": cache.windows["holdout"]}).unique(
        "subject_id", maintain_order=True)
    meta = {"kind": "events", "objective": cfg.objective, "name": cfg.name,
            "task_codes": [cache.featurizer.code_names[c] for c in task_codes], "model": cfg.model.model_dump(),
            "sequence": cfg.sequence.model_dump(), "train": cfg.train.model_dump(mode="json"),
            "data": {"meds": cfg.data.meds, **s}, "synthetic": s["synthetic"], "holdout": held,
            "best_epoch": callbacks[0].best_epoch, "epochs": len(state.history), "resumed_from": resumed,
            "seconds": {"total": time.perf_counter() - start, "training": fit_seconds},
            "tokens_per_second": train_tokens * max(epochs_here, 0) / fit_seconds if epochs_here > 0 else None,
            "seed": cfg.seed}
    from safetensors.torch import save

    from medflow.artifacts import atomic_write_bytes

    atomic_write_bytes(work / "model.safetensors", save({k: v.contiguous() for k, v in module.state_dict().items()}))
    write_json(work / "featurizer.json", cache.featurizer.to_dict())
    write_parquet(work / "subjects.parquet", subjects.with_columns(
        pl.when(pl.col("holdout")).then(pl.lit("holdout")).otherwise(pl.lit("pretrain")).alias("split"))
        .select("subject_id", "split").to_pandas())
    shutil.rmtree(work / "tokens", ignore_errors=True)
    return _finish(work, meta, state.history)


def _finish(work: Path, meta: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    """History, SYNTHETIC marker, pretrain.json, the report; then the folder renamed into place."""
    import polars as pl

    from medflow.pretrain.report import write_pretrain_report

    meta["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_parquet(work / "history.parquet", pl.DataFrame(history).to_pandas())
    if meta.get("synthetic"):
        write_text(work / "SYNTHETIC.txt", "SYNTHETIC: pretrained on simulated patients (medflow's simulator).\n")
    write_json(work / MARKER, meta)
    write_pretrain_report(work, meta, history)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    shutil.rmtree(work / "scratch", ignore_errors=True)
    final = work.with_name(work.name[: -len(INCOMPLETE)])
    work.rename(final)
    return final


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


class _CallableModule(types.ModuleType):
    """`mf.pretrain(...)` calls `pretrain`, while `medflow.pretrain` stays the package (its submodules import)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return pretrain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
