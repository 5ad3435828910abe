"""`medflow run --mlflow [DIR|URI]`: a finished run logged to MLflow, so teams that track there see medflow's runs.

Logged: the study's settings as params (flattened, e.g. `task.kind`), every model's metrics with their 95% CI
bounds (`<model>.<metric>`, `.ci_low`, `.ci_high`; the selected model's also without the prefix), tags (task,
selected model, SYNTHETIC flag, run directory, data fingerprint), the report and the run's JSON files as artifacts,
and the run itself as an MLflow pyfunc model (`mlflow.pyfunc.load_model(uri).predict(frame)` calls
`Run.predict`). A plain folder (default `mlruns/`) holds a SQLite tracking database and the artifacts (MLflow's
file store is in maintenance mode); a URI (`http://...`, `sqlite:///...`, `postgresql://...`) is used as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from medflow.errors import ConfigError
from medflow.runs import Run

__all__ = ["log_run", "MedflowPyfunc"]

try:
    import mlflow.pyfunc

    _Base: Any = mlflow.pyfunc.PythonModel
except ImportError:  # the `mlflow` extra is not installed; log_run says how to get it
    mlflow = None
    _Base = object


class MedflowPyfunc(_Base):
    """An MLflow pyfunc over a medflow run directory (logged as the artifact `run`)."""

    def load_context(self, context: Any) -> None:
        from medflow.runs import load_run

        self.run = load_run(context.artifacts["run"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.run.predict(model_input)


def _flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = str(d)[:500]
    return out


def tracking_uri(target: str | Path) -> tuple[str, str | None]:
    """(tracking URI, artifact folder) for a folder or a URI."""
    text = str(target)
    if "://" in text:
        return text, None
    folder = Path(text).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts")


def log_run(run: Run, target: str | Path = "mlruns", experiment: str | None = None) -> str:
    """Log a finished run to MLflow; returns the MLflow run id."""
    if mlflow is None:
        raise ConfigError("--mlflow needs MLflow: pip install 'medflow[mlflow]' (mlflow-skinny).")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri, artifacts = tracking_uri(target)
    mlflow.set_tracking_uri(uri)
    name = experiment or run.config.get("name") or run.path.parent.name
    if mlflow.get_experiment_by_name(name) is None:
        mlflow.create_experiment(name, artifact_location=artifacts and str(Path(artifacts) / name))
    mlflow.set_experiment(name)
    metrics = run.metrics.data
    selected = metrics["selected_model"]
    with mlflow.start_run(run_name=run.path.name) as active:
        mlflow.log_params(_flatten({k: v for k, v in run.config.items() if k != "intended_use"}))
        values: dict[str, float] = {}
        for model, entry in metrics["models"].items():
            for metric, m in entry["metrics"].items():
                for suffix, key in (("", "value"), (".ci_low", "low"), (".ci_high", "high")):
                    v = float(m[key])
                    if v == v:  # MLflow refuses NaN
                        values[f"{model}.{metric}{suffix}"] = v
                        if model == selected:
                            values[f"{metric}{suffix}"] = v
        mlflow.log_metrics(values)
        mlflow.set_tags({"medflow.task": run.task.kind, "medflow.selected_model": selected,
                         "medflow.synthetic": str(run.synthetic).lower(), "medflow.run_dir": str(run.path),
                         "medflow.data_fingerprint": str(run.manifest.get("data_fingerprint", "")),
                         "mlflow.note.content": run.config.get("intended_use") or ""})
        for f in ("report.html", "metrics.json", "manifest.json", "study.yaml", "quality.json"):
            if (run.path / f).exists():
                mlflow.log_artifact(str(run.path / f))
        mlflow.pyfunc.log_model(name="model", python_model=MedflowPyfunc(), artifacts={"run": str(run.path)})
        return active.info.run_id
