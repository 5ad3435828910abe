"""Training: the Trainer and its callbacks."""

from medflow.train.callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar
from medflow.train.trainer import TrainConfig, Trainer

__all__ = ["Trainer", "TrainConfig", "Callback", "EarlyStopping", "Checkpoint", "ProgressBar"]
