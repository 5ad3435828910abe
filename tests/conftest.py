"""Tiny in-memory data for fast tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medflow.train.trainer import TrainConfig


def make_frame(n: int = 200, seed: int = 0, kind: str = "binary", rows_per_patient: int = 1) -> pd.DataFrame:
    """Records whose label depends on x1 and the category; a few missing values."""
    rng = np.random.default_rng(seed)
    n_pat = n // rows_per_patient
    pid = np.repeat([f"p{i:04d}" for i in range(n_pat)], rows_per_patient)
    x1 = rng.normal(size=len(pid))
    x2 = rng.normal(size=len(pid))
    cat = rng.choice(["a", "b", "c"], size=len(pid))
    z = 2.0 * x1 + (cat == "a") * 1.5 - 0.5
    frame = pd.DataFrame({"pid": pid, "x1": x1, "x2": x2, "cat": cat,
                          "sex": rng.choice(["F", "M"], size=len(pid))})
    if kind == "binary":
        frame["y"] = (rng.random(len(pid)) < 1 / (1 + np.exp(-2 * z))).astype(int)
    elif kind == "multiclass":
        frame["y"] = np.digitize(z + rng.normal(scale=0.3, size=len(pid)), [-0.5, 1.0]).astype(int)
        frame["y"] = frame["y"].map({0: "low", 1: "mid", 2: "high"})
    elif kind == "survival":  # proportional hazards with log-hazard z, uniform censoring
        t = rng.exponential(100 * np.exp(-z))
        c = rng.uniform(0, 250, size=len(pid))
        frame["time"], frame["event"] = np.minimum(t, c).round(2) + 0.01, (t <= c).astype(int)
    else:
        frame["y"] = 10 + 3 * z + rng.normal(scale=0.5, size=len(pid))
    frame.loc[rng.choice(len(frame), 5, replace=False), "x2"] = np.nan
    return frame


@pytest.fixture
def binary_frame() -> pd.DataFrame:
    return make_frame(kind="binary")


@pytest.fixture
def fast_train() -> TrainConfig:
    return TrainConfig(max_epochs=15, patience=5, batch_size=32, progress=False)
