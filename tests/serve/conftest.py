"""Finished runs to serve, a store, and a throwaway PostgreSQL server on loopback (started, not mocked)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from medflow.config import parse_config
from medflow.study import run_study
from tests.conftest import _free_port, make_frame, postgres_url  # noqa: F401 - postgres_url: shared with tests/ehr


def _study(root: Path, name: str, kind: str, models: list[str], task: dict, seed: int = 1) -> Path:
    frame = make_frame(n=300, seed=seed, kind=kind)
    csv = root / f"{name}.csv"
    frame.to_csv(csv, index=False)
    cfg = {"name": name, "output_dir": str(root / "runs"), "data": {"path": str(csv), "patient_id": "pid"},
           "task": task, "models": models, "split": {"kind": "holdout", "test": 0.25, "valid": 0.2},
           "train": {"max_epochs": 8, "patience": 4, "progress": False}, "evaluate": {"n_bootstrap": 50},
           "intended_use": "test fixture. Not for clinical use."}
    return run_study(parse_config(cfg, name)).path


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("served")
    return {"risk": _study(root, "risk", "binary", ["logistic_regression", "mlp"], {"kind": "binary", "label": "y"}),
            "risk2": _study(root, "risk2", "binary", ["logistic_regression"], {"kind": "binary", "label": "y"},
                            seed=2),
            "surv": _study(root, "surv", "survival", ["cox_ph"],
                           {"kind": "survival", "time": "time", "event": "event", "horizons": [30, 90]})}


@pytest.fixture(scope="session")
def event_run(tmp_path_factory) -> Path:
    """A small readmission run on the EHR simulator's MEDS events (SYNTHETIC)."""
    root = tmp_path_factory.mktemp("events")
    cfg = {"name": "readmit", "output_dir": str(root / "runs"),
           "data": {"dataset": "ehr_sim", "cohort": "readmission_30d", "simulate": {"patients": 400, "seed": 0},
                    "sequence": {"max_len": 48}, "use_source_splits": False},
           "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["logistic_regression", "gru"],
           "split": {"kind": "holdout", "test": 0.25, "valid": 0.25},
           "train": {"max_epochs": 2, "patience": 2, "batch_size": 64, "progress": False},
           "evaluate": {"n_bootstrap": 50}, "explain": {"max_records": 30, "n_repeats": 1, "examples": 2}}
    return run_study(parse_config(cfg, "readmit")).path


@pytest.fixture
def record() -> dict:
    return {"x1": 0.3, "x2": -1.0, "cat": "a", "sex": "F"}


@contextmanager
def live_server(app):
    """A real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    from medflow.serve.app import ServiceHandle

    handle = ServiceHandle.start(app, port=_free_port())
    try:
        yield handle.url
    finally:
        handle.stop()
