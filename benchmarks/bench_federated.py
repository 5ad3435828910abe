"""(k) Federated training (Flower): FedAvg and FedProx beside pooled training and each site alone, on three non-IID
sites, every model tested on every site's held-out patients (AUROC with 95% patient-bootstrap CIs).

Settings (each one `medflow.federate.federate` call, the same code path as `medflow federate`):
* breast cancer (569 real patients), 3 label-skewed sites (Dirichlet 0.3);
* the EHR simulator (SYNTHETIC) at 20,000 patients as a table of count features (`data.as_table`), 30-day
  readmission, 3 label-skewed sites (Dirichlet 0.5), and sites by the simulator's race groups with the
  measurement bias planted in group B (`bias_group: B`).
Goal (issue #19): FedAvg within 0.02 AUROC of pooled training and above every site alone. The time of one
federated round is reported beside one pooled epoch (the same rows, the same network).

Then (`--only loopback`) the same training in one process and as separate Flower processes on loopback.

    python benchmarks/bench_federated.py [--patients 20000] [--only settings|loopback]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

SETTINGS = {
    "breast_cancer, 3 label-skewed sites": {
        "data": {"dataset": "breast_cancer"}, "task": {"kind": "binary", "label": "malignant"},
        "train": {"max_epochs": 60, "patience": 15, "lr": 0.003, "batch_size": 32},
        "sites": {"n": 3, "skew": 0.3}, "rounds": 60},
    "ehr_sim table, 3 label-skewed sites": {
        "data": {"dataset": "ehr_sim", "as_table": True, "sequence": {"min_count": 20}},
        "task": {"kind": "binary", "label": "readmission_30d"},
        "train": {"max_epochs": 60, "patience": 10, "lr": 1e-4, "weight_decay": 0.01, "batch_size": 128},
        "sites": {"n": 3, "skew": 0.5}, "rounds": 60},
    "ehr_sim table, sites by race (bias in group B)": {
        "data": {"dataset": "ehr_sim", "as_table": True, "sequence": {"min_count": 20},
                 "simulate": {"bias_group": "B"}},
        "task": {"kind": "binary", "label": "readmission_30d"},
        "train": {"max_epochs": 60, "patience": 10, "lr": 1e-4, "weight_decay": 0.01, "batch_size": 128},
        "sites": {"column": "race"}, "rounds": 60},
}


def run(patients: int = 20_000, strategies: tuple[str, ...] = ("fedavg", "fedprox")) -> list[dict]:
    from rich.console import Console

    from medflow.config import parse_config
    from medflow.federate import federate

    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in SETTINGS.items():
            for strategy in strategies:
                data = dict(s["data"])
                if data.get("dataset") == "ehr_sim":
                    data["simulate"] = {**data.get("simulate", {}), "patients": patients}
                cfg = parse_config({
                    "name": "bench_fed", "output_dir": tmp, "data": data, "task": s["task"], "models": ["mlp"],
                    "train": {**s["train"], "progress": False}, "evaluate": {"n_bootstrap": 500},
                    "federated": {"rounds": s["rounds"], "strategy": strategy, "proximal_mu": 0.01,
                                  "sites": s["sites"]}}, "bench")
                t0 = time.perf_counter()
                run_ = federate(cfg, console=Console(stderr=True, quiet=True))
                wall = time.perf_counter() - t0
                m = run_.metrics.data
                fed = m["federated"]
                models = {}
                for key, entry in m["models"].items():
                    groups = entry["subgroups"]["site"]["groups"]
                    models[key] = {"auroc": entry["metrics"]["auroc"],
                                   "sites": {g: v["metrics"]["auroc"] for g, v in groups.items()}}
                pooled_epochs = len(run_.estimator(fed["pooled_model"]).history)
                rows.append({"setting": name, "strategy": strategy, "sites": fed["sites"], "models": models,
                             "federated": fed["federated_model"], "pooled": fed["pooled_model"],
                             "alone": fed["alone_models"], "best_round": fed["best_round"],
                             "round_s": m["fit_seconds"][fed["federated_model"]] / fed["rounds"],
                             "pooled_epoch_s": m["fit_seconds"][fed["pooled_model"]] / max(pooled_epochs, 1),
                             "wall_s": wall, "synthetic": run_.synthetic})
                print(markdown(rows[-1:])[-1], flush=True)
    return rows


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def markdown(rows: list[dict]) -> list[str]:
    lines = ["| setting | strategy | federated AUROC | pooled AUROC | gap | best site alone | goal met | "
             "round s / pooled epoch s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f, p = r["models"][r["federated"]]["auroc"], r["models"][r["pooled"]]["auroc"]
        alone = {s: r["models"][k]["auroc"]["value"] for s, k in r["alone"].items()}
        best = max(alone, key=alone.get)
        met = p["value"] - f["value"] <= 0.02 and all(f["value"] > v for v in alone.values())
        lines.append(f"| {r['setting']}{' (SYNTHETIC)' if r['synthetic'] else ''} | {r['strategy']} | {_ci(f)} | "
                     f"{_ci(p)} | {p['value'] - f['value']:+.3f} | {best} {alone[best]:.3f} | "
                     f"{'yes' if met else 'no'} | {r['round_s']:.2f} / {r['pooled_epoch_s']:.2f} |")
    return lines


def site_tables(rows: list[dict]) -> list[str]:
    """Per setting and strategy: every model's AUROC on each site's held-out patients."""
    lines = []
    for r in rows:
        sites = list(r["sites"])
        lines += ["", f"{r['setting']}, {r['strategy']}: AUROC (95% CI) per site; train patients / prevalence "
                  + ", ".join(f"{s} {v['train']['patients']} / {v.get('prevalence', float('nan')):.1%}"
                              for s, v in r["sites"].items()), "",
                  "| model | all sites | " + " | ".join(sites) + " |", "|---" * (len(sites) + 2) + "|"]
        for key, m in r["models"].items():
            lines.append(f"| {key} | {_ci(m['auroc'])} | " + " | ".join(_ci(m["sites"][s]) for s in sites) + " |")
    return lines


def loopback(rounds: int = 10) -> dict:
    """The same federated training in one process (simulation) and as separate Flower processes on 127.0.0.1
    (a SuperLink, one SuperNode per site file, `flwr run`): breast cancer as 3 label-skewed site files, `mlp` without
    dropout; seconds per round for each, the federated model's AUROC, and the largest weight difference."""
    from pathlib import Path

    from rich.console import Console
    from safetensors.torch import load_file

    from medflow.config import parse_config
    from medflow.data.builtin import load
    from medflow.federate import SitesConfig, federate, site_parts

    warnings.filterwarnings("ignore")
    out: dict = {"rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        ds = load("breast_cancer")
        parts = site_parts(ds.frame, ds.patient_id, "malignant", SitesConfig(n=3, skew=0.3), 0, "bc")
        paths = []
        for name, g in ds.frame.groupby(parts.to_numpy()):
            paths.append(str(Path(tmp) / f"{name}.csv"))
            g.to_csv(paths[-1], index=False)
        weights = {}
        for mode in ("simulation", "loopback"):
            cfg = parse_config({
                "name": "bench_loop", "output_dir": tmp, "data": {"path": paths[0], "patient_id": "patient_id"},
                "task": {"kind": "binary", "label": "malignant"},
                "models": [{"name": "mlp", "params": {"dropout": 0.0}}],
                "train": {"lr": 0.003, "batch_size": 32, "progress": False}, "evaluate": {"n_bootstrap": 500},
                "federated": {"rounds": rounds, "deployment": mode}}, "bench")
            t0 = time.perf_counter()
            run_ = federate(cfg, sites=paths, console=Console(stderr=True, quiet=True))
            m = run_.metrics.data
            key = m["federated"]["federated_model"]
            out[mode] = {"round_s": m["fit_seconds"][key] / rounds, "wall_s": time.perf_counter() - t0,
                         "auroc": m["models"][key]["metrics"]["auroc"]}
            weights[mode] = load_file(run_.path / "fold_0" / key / "model.safetensors")
        out["max_weight_diff"] = max(float((weights["simulation"][k] - weights["loopback"][k]).abs().max())
                                     for k in weights["simulation"])
    return out


def loopback_markdown(r: dict) -> list[str]:
    return ["| deployment | seconds per round | wall s | federated AUROC |", "|---|---|---|---|"] + [
        f"| {mode} | {r[mode]['round_s']:.2f} | {r[mode]['wall_s']:.0f} | {_ci(r[mode]['auroc'])} |"
        for mode in ("simulation", "loopback")] + [
        "", f"{r['rounds']} rounds; largest weight difference between the two: {r['max_weight_diff']:.2g}."]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--only", choices=["settings", "loopback"])
    args = ap.parse_args()
    if args.only != "loopback":
        result = run(args.patients)
        print("\n".join(markdown(result) + site_tables(result)))
    if args.only != "settings":
        print("\n".join(loopback_markdown(loopback())))
