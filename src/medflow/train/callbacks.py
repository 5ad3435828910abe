"""Trainer callbacks: early stopping, checkpoints with exact resume, and a progress bar."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from medflow.train.trainer import Trainer

__all__ = ["Callback", "EarlyStopping", "Checkpoint", "ProgressBar", "round_bar"]


class Callback:
    """Hooks the Trainer calls; override what you need."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_end(self, trainer: Trainer) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EarlyStopping(Callback):
    """Stops when the monitored value has not improved for `patience` epochs; restores the best weights.

    Args:
        monitor: "val_loss" or "val_metric".
        higher_is_better: the direction, read from the metric's registry entry by the caller.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as improvement.
    """

    def __init__(self, monitor: str = "val_loss", higher_is_better: bool = False, patience: int = 20,
                 min_delta: float = 0.0) -> None:
        if monitor not in ("val_loss", "val_metric"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_metric', got {monitor!r}")
        self.monitor, self.higher, self.patience, self.min_delta = monitor, higher_is_better, patience, min_delta
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer) -> None:
        value = getattr(trainer.state, self.monitor)
        if value != value:  # NaN: no validation data; keep the last weights
            return
        improved = self.best is None or (value > self.best + self.min_delta if self.higher
                                         else value < self.best - self.min_delta)
        if improved:
            self.best, self.best_epoch, self.wait = float(value), trainer.state.epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.state.should_stop = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.best_weights is not None:
            trainer.module.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state["best_weights"]


class Checkpoint(Callback):
    """Writes `last.pt` atomically after every epoch; on fit start, resumes from it when present."""

    def __init__(self, directory: str | Path, resume: bool = True) -> None:
        self.directory = Path(directory)
        self.resume = resume
        self.resumed_from: int | None = None

    @property
    def path(self) -> Path:
        return self.directory / "last.pt"

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.resume and self.path.exists():
            trainer.load_state_dict(torch.load(self.path, weights_only=True))
            self.resumed_from = trainer.state.epoch

    def on_epoch_end(self, trainer: Trainer) -> None:
        from medflow.train.distributed import is_main

        if not is_main():  # one writer; the other processes read the same file when resuming
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        torch.save(trainer.state_dict(), tmp)
        os.replace(tmp, self.path)


class ProgressBar(Callback):
    """A rich progress bar over epochs showing the losses and the monitored metric."""

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self._progress = None
        self._task = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=trainer.config.max_epochs,
                                             completed=trainer.state.epoch + 1, info="")

    def on_epoch_end(self, trainer: Trainer) -> None:
        s = trainer.state
        self._progress.update(self._task, completed=s.epoch + 1,
                              info=f"loss {s.train_loss:.4f} val {s.val_loss:.4f}")

    def on_fit_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def round_bar(description: str, total: int, show: bool = True) -> Iterator[Callable | None]:
    """A rich progress bar over federated rounds: yields `update(round, entry)` (None when not shown)."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(f"{description} rounds"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
    task = bar.add_task(description, total=total, info="")
    bar.start()
    try:
        yield lambda r, h: bar.update(task, completed=r, info=f"loss {h['train_loss']:.4f} val {h['val_loss']:.4f}")
    finally:
        bar.stop()
