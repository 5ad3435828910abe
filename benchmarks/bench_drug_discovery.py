"""(n) Drug-target interaction and molecule generation (issue #17).

    python benchmarks/bench_drug_discovery.py [--only dti|generation] [--seeds 0]

**DTI** on the built-in `dti_sim` (SYNTHETIC affinities with a known rule, real ChEMBL drugs, 48 simulated targets
in 6 families; the noise sd 0.4 is the best RMSE possible), three splits: random pairs, unseen drugs
(`split: {kind: group, column: drug_id}`) and unseen targets (`column: target_id`), 20% test. Models: `dti`
(D-MPNN drug tower + DeepDTA protein CNN), `dti` with a Morgan drug tower, the drug-only `mpnn` (what the drug
alone tells) and `random_forest` on Morgan bits + descriptors + the target's amino-acid and dipeptide composition.
Test RMSE with 95% bootstrap CIs, seconds per model (featurization shared).

**Generation** on real molecules (RDKit's solubility set, 1,256 distinct): `medflow generate` with its defaults
(2-layer LSTM, 384 units, 4 randomized SMILES per molecule), 1,000 samples: validity, uniqueness, novelty,
scaffold novelty, internal diversity, QED / logP / MW against training beside two halves of training; then
hill-climbing toward low and high solubility predicted by a random forest trained on the same set.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SPLITS = {"random pairs": {"kind": "holdout", "test": 0.2, "valid": 0.1},
          "unseen drugs": {"kind": "group", "column": "drug_id", "test": 0.2, "valid": 0.1},
          "unseen targets": {"kind": "group", "column": "target_id", "test": 0.2, "valid": 0.1}}
MODELS = [{"name": "dti", "params": {"hidden": 200, "filters": 32}},
          {"name": "dti", "label": "dti_morgan", "params": {"drug": "morgan", "hidden": 200}},
          {"name": "mpnn", "label": "mpnn_drug_only"},
          {"name": "random_forest", "params": {"n_estimators": 300}}]


def dti(seeds: list[int], out: Path) -> list[str]:
    from medflow.config import parse_config
    from medflow.study import run_study

    lines = ["| split | model | test RMSE (95% CI) | R2 | s per model | seed |", "|---|---|---|---|---|---|"]
    for seed in seeds:
        for split, spec in SPLITS.items():
            cfg = {"name": f"dti-{split.replace(' ', '-')}", "output_dir": str(out), "seed": seed,
                   "data": {"dataset": "dti_sim"}, "task": {"kind": "regression", "label": "pKd"}, "split": spec,
                   "models": MODELS, "train": {"max_epochs": 40, "patience": 6, "progress": False},
                   "explain": {"max_records": 20, "examples": 2, "n_repeats": 1}}
            t0 = time.perf_counter()
            run = run_study(parse_config(cfg, "bench"))
            total = time.perf_counter() - t0
            m = run.metrics.data["models"]
            for name, mm in m.items():
                r = mm["metrics"]["rmse"]
                secs = run.metrics.data.get("fit_seconds", {}).get(name, total / len(m))
                lines.append(f"| {split} | {name} | {r['value']:.3f} ({r['low']:.3f}-{r['high']:.3f}) | "
                             f"{mm['metrics']['r2']['value']:.3f} | {secs:.1f} | {seed} |")
                print(lines[-1], flush=True)
    return lines


def generation(out: Path) -> list[str]:
    import medflow as mf
    from medflow.molgen import train_generator
    from medflow.molgen.run import steer
    from medflow.screen import molecule_scorer

    t0 = time.perf_counter()
    run = train_generator({"name": "solubility-generator", "data": {"dataset": "solubility"}, "sample": 1000},
                          output=out / "generator", progress=False)
    total = time.perf_counter() - t0
    m = json.loads((run / "metrics.json").read_text())
    man = json.loads((run / "manifest.json").read_text())
    gen = mf.molgen.MoleculeGenerator.load(run)
    t1 = time.perf_counter()
    gen.sample(2000, seed=9)
    per_s = 2000 / (time.perf_counter() - t1)
    lines = [f"trained on {man['training_molecules']} molecules ({man['training']['sequences']} SMILES), "
             f"{man['training']['epochs']} epochs, {man['fit_seconds']:.0f} s to fit, {total:.0f} s with sampling "
             f"and the report; {per_s:.0f} SMILES sampled per second", "",
             "| measure | value (95% CI) | n |", "|---|---|---|"]
    for k in ("validity", "uniqueness", "novelty", "scaffold_novelty", "internal_diversity"):
        v = m[k]
        lines.append(f"| {k} | {v['value']:.3f} ({v['low']:.3f}-{v['high']:.3f}) | {v['n']} |")
    lines += [f"| training set's internal diversity | {m['training_internal_diversity']:.3f} | |", "",
              "| property | training mean +- sd | generated mean +- sd | Wasserstein | two halves of training |",
              "|---|---|---|---|---|"]
    for k, v in m["properties"].items():
        lines.append(f"| {k} | {v['training_mean']:.2f} +- {v['training_sd']:.2f} | {v['generated_mean']:.2f} +- "
                     f"{v['generated_sd']:.2f} | {v['wasserstein']:.3f} | {v['wasserstein_training_halves']:.3f} |")
    prop = mf.Study(dataset="solubility", task=mf.tasks.Regression(label="SOL"), seed=0, output_dir=out / "prop",
                    model={"name": "random_forest", "params": {"n_estimators": 200}},
                    data={"mol_features": ["descriptors"]}, explain={"max_records": 10, "n_repeats": 1}).fit()
    rmse = prop.metrics.data["models"]["random_forest"]["metrics"]["rmse"]
    lines += ["", f"steering: random forest on descriptors predicts SOL (test RMSE {rmse['value']:.3f}); 3 rounds of "
              "1,000 samples, fine-tuned on each round's best 20%", "",
              "| goal | round | valid | distinct | mean predicted SOL | best decile |", "|---|---|---|---|---|---|"]
    score = molecule_scorer(prop)
    for goal in ("min", "max"):
        t2 = time.perf_counter()
        _, hist = steer(gen, score, n=1000, rounds=3, keep=0.2, goal=goal, epochs=2, seed=0)
        for h in hist:
            lines.append(f"| {goal} | {h['round']} | {h['valid']:.3f} | {h['distinct']} | {h['mean_score']:.3f} | "
                         f"{h['best_decile_score']:.3f} |")
        lines.append(f"| {goal} | ({time.perf_counter() - t2:.0f} s) | | | | |")
    for ln in lines:
        print(ln, flush=True)
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["dti", "generation"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if a.only in (None, "dti"):
            print("\n".join(dti(a.seeds, Path(tmp) / "dti")))
        if a.only in (None, "generation"):
            print("\n".join(generation(Path(tmp) / "gen")))
