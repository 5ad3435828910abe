"""Model comparison on the built-in real datasets: 5-fold patient-level CV, pooled out-of-fold
test predictions, metrics with 95% patient-bootstrap CIs, and fit time per model."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from medflow.config import parse_config
from medflow.study import run_study

STUDIES = [
    ("breast_cancer", {"kind": "binary", "label": "malignant"},
     ["mlp", "resnet_mlp", "logistic_regression", "gradient_boosting"], ["auroc", "auprc", "brier"]),
    ("diabetes", {"kind": "regression", "label": "progression"},
     ["mlp", "resnet_mlp", "linear_regression", "gradient_boosting"], ["rmse", "mae", "r2"]),
]


def run(k: int = 5, seed: int = 0) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, task, models, shown in STUDIES:
            cfg = parse_config({"name": f"bench-{dataset}", "output_dir": tmp, "data": {"dataset": dataset},
                                "task": task, "models": models, "seed": seed,
                                "split": {"kind": "kfold", "k": k, "valid": 0.15},
                                "train": {"progress": False}, "evaluate": {"n_bootstrap": 1000}})
            result = run_study(cfg, console=Console(stderr=True, quiet=True))
            data = result.metrics.data
            for model in models:
                entry = data["models"][model]
                rows.append({"dataset": dataset, "model": model,
                             "selected": model == data["selected_model"],
                             "fit_seconds": data["fit_seconds"][model],
                             **{m: entry["metrics"][m] for m in shown}})
            Path(result.path)  # the run directory is discarded with the temp folder
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
