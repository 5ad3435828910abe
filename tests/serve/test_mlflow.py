"""`medflow run --mlflow`: params, metrics with CI bounds, tags, the report, and the run as a pyfunc model that
predicts what Run.predict does, in a local MLflow tracking folder."""

from __future__ import annotations

import mlflow
import numpy as np
import yaml

from medflow.cli import app
from medflow.runs import load_run
from tests.conftest import make_frame


def test_run_logged_to_mlflow(tmp_path):
    from typer.testing import CliRunner

    csv = tmp_path / "d.csv"
    make_frame(n=200, seed=3).to_csv(csv, index=False)
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({
        "name": "tracked", "output_dir": str(tmp_path / "runs"), "data": {"path": str(csv), "patient_id": "pid"},
        "task": {"kind": "binary", "label": "y"}, "models": ["logistic_regression"],
        "split": {"kind": "holdout", "test": 0.25, "valid": 0.2}, "evaluate": {"n_bootstrap": 50}}))
    res = CliRunner().invoke(app, ["run", str(study), "--mlflow", "--mlflow-uri", str(tmp_path / "ml")])
    assert res.exit_code == 0, res.output
    run = load_run(tmp_path / "runs" / "tracked")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}")
    (logged,) = mlflow.search_runs(experiment_names=["tracked"], output_format="list")
    m = logged.data.metrics
    auroc = run.metrics.data["models"]["logistic_regression"]["metrics"]["auroc"]
    assert m["auroc"] == auroc["value"] and m["auroc.ci_low"] == auroc["low"] and m["auroc.ci_high"] == auroc["high"]
    assert m["logistic_regression.auroc"] == auroc["value"]
    assert logged.data.params["task.kind"] == "binary" and logged.data.tags["medflow.synthetic"] == "false"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(logged.info.run_id)}
    assert {"report.html", "metrics.json", "manifest.json"} <= artifacts
    model = mlflow.pyfunc.load_model(f"runs:/{logged.info.run_id}/model")
    records = make_frame(n=20, seed=9)[["x1", "x2", "cat", "sex"]]
    np.testing.assert_allclose(model.predict(records)["probability"], run.predict(records)["probability"])
