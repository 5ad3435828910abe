"""(v) Pretraining on unlabeled timelines: the few-shot curve EHRSHOT made the standard, and pretraining throughput.

SYNTHETIC: both cohorts come from medflow's EHR simulator (`data.simulate.ehr`), written separately: the
pretraining cohort (default 100,000 patients, seed 11, ids from 10,000,000: no patient in common with the task
cohort, checked by the study code) and the task cohort (default 20,000 patients, seed 12).

1. Pretraining (`medflow.pretrain`, streamed: the token cache is memory-mapped) with the MOTOR-style time-to-event
   objective and the CLMBR-style next-code objective; held-out figures beside their history-free references.
2. Few-shot curve on 30-day readmission (task cohort): the test set is a fixed 30% of its patients; the training
   set draws k labelled patients (k in 64, 256, 1,024, 4,096, all of the pool), 5 repeats each up to 256 (seeds
   0-4), then fewer as the training sets grow (3 at 1,024, 1 at 4,096 and for all: 2 cores), a patient-level 20%
   of them kept for early stopping. Models, all on the same samples:
   * `motor frozen` / `clmbr frozen`: the pretrained encoder's representations, an L2 logistic regression with C
     chosen by cross-validation (`mode: frozen_features`, `models.transfer.fit_frozen_head`, EHRSHOT's protocol);
   * `motor finetune`: the encoder and head trained through the core Trainer (`mode: finetune`);
   * `scratch`: the same `timeline_transformer` trained from random weights through the same Trainer;
   * `logistic regression` / `gradient boosting` on count features (log1p counts, mean values, age; the
     featurization count-based baselines get in studies), scikit-learn defaults as medflow's registry builds them.
   AUROC on the test set: mean over the repeats, its 95% CI from 500 bootstrap resamples of test patients (the
   same resample for every repeat and model), and the paired difference to gradient boosting with its CI.
4. Text (`--only text`): `hf_classifier` on the real IU reports (cardiomegaly) from a small BERT built here
   (WordPiece on half the reports, random weights: NOT a pretrained clinical model) and from the same BERT after
   masked-language pretraining on that half, beside TF-IDF logistic regression and text_cnn, on the other half.
3. Throughput: one epoch of pretraining through the Trainer vs a plain PyTorch loop (same module, batches, AdamW),
   events per second, median of 3; peak RSS of a pretraining process at two cohort sizes.

    python benchmarks/bench_pretrain.py [--pretrain-patients 100000] [--task-patients 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MODEL = {"d": 64, "layers": 2, "heads": 4, "dropout": 0.1}


def simulate(root: Path, pre: int, task: int) -> None:
    from medflow.data.simulate.ehr import simulate_ehr

    if not (root / "pre").exists():
        simulate_ehr(root / "pre", patients=pre, seed=11, first_id=10_000_000)
    if not (root / "task").exists():
        simulate_ehr(root / "task", patients=task, seed=12)


def pretrain(root: Path, objective: str, epochs: int) -> tuple[Path, dict]:
    import medflow as mf

    cfg = mf.pretrain.PretrainConfig(name=objective, data={"meds": str(root / "pre")}, objective=objective,
                                     model=MODEL, sequence={"max_len": 128, "min_count": 5},
                                     train={"max_epochs": epochs, "batch_size": 64, "lr": 2e-3, "patience": 2},
                                     output_dir=str(root / "runs"), motor_codes=32)
    path = mf.pretrain(cfg)
    return path, json.loads((path / "pretrain.json").read_text())


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from medflow.evaluate.metrics import auroc

    return float(auroc(y, s))


def _frozen(z: np.ndarray, train: np.ndarray, ytr: np.ndarray, test: np.ndarray) -> np.ndarray:
    """EHRSHOT's protocol, as `mode: frozen_features` runs it: standardized representations, L2 logistic
    regression with C chosen by stratified cross-validation (log loss)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

    mean, sd = z[train].mean(0), z[train].std(0) + 1e-6
    folds = min(5, int(np.bincount(ytr).min()))
    if folds < 2:
        lr = LogisticRegression(max_iter=5000).fit((z[train] - mean) / sd, ytr)
    else:
        lr = LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=folds, scoring="neg_log_loss",
                                  max_iter=5000).fit((z[train] - mean) / sd, ytr)
    return lr.predict_proba((z[test] - mean) / sd)[:, 1]


def _fit_models(runs: dict, reps: dict, x, counts, y_all, train, stop, test, task, train_cfg, seed: int
                ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every model of the curve on one training draw: test predictions and fit seconds."""
    from medflow.models import build_estimator
    from medflow.models.pretrained import load_pretrained
    from medflow.models.transfer import Init

    ytr = y_all[train]
    preds, seconds = {}, {}

    def deep(init_run: Path | None) -> np.ndarray:
        est = build_estimator("timeline_transformer", MODEL, task)
        if init_run is not None:
            p = load_pretrained(init_run)
            est.init = Init(str(init_run), "timeline encoder", p.encoder_state(), "none")
        est.fit(x.subset(train), ytr, x.subset(stop), y_all[stop], train_cfg, seed=seed)
        return est.predict(x.subset(test))

    def counts_model(name: str) -> np.ndarray:
        est = build_estimator(name, {}, task)
        est.fit(counts[train], ytr, counts[stop], y_all[stop], train_cfg, seed=seed)
        return est.predict(counts[test])

    jobs = [(f"{name} frozen", (lambda z=reps[name]: _frozen(z, train, ytr, test))) for name in runs]
    if "motor" in runs:
        jobs.append(("motor finetune", lambda: deep(runs["motor"])))
    jobs += [("scratch", lambda: deep(None)),
             ("logistic regression (counts)", lambda: counts_model("logistic_regression")),
             ("gradient boosting (counts)", lambda: counts_model("gradient_boosting"))]
    for name, fn in jobs:
        t0 = time.perf_counter()
        preds[name] = np.asarray(fn(), dtype=float).reshape(-1)
        seconds[name] = time.perf_counter() - t0
    return preds, seconds


def few_shot(root: Path, runs: dict[str, Path], ks: list[int], repeats: int, epochs: int) -> dict:
    import torch

    from medflow.data.cohort import extract_samples
    from medflow.data.sources.meds import read_meds
    from medflow.models import build_estimator
    from medflow.models.pretrained import load_pretrained
    from medflow.models.transfer import Init
    from medflow.tasks import Binary
    from medflow.train.trainer import TrainConfig

    data = read_meds(root / "task")
    samples = extract_samples(data, "readmission_30d")
    y_all = samples["readmission_30d"].to_numpy().astype(int)
    pids = samples["subject_id"].to_numpy()
    patients = np.unique(pids)
    rng = np.random.default_rng(2026)
    test_pat = set(rng.choice(patients, int(0.3 * len(patients)), replace=False).tolist())
    is_test = np.isin(pids, list(test_pat))
    pool = np.array(sorted(set(patients.tolist()) - test_pat))
    test = np.flatnonzero(is_test)
    task = Binary(label="readmission_30d").fit(samples.to_pandas().iloc[np.flatnonzero(~is_test)])
    first = next(iter(runs.values()))
    feat = load_pretrained(first).featurizer()  # every pretrained run here shares the vocabulary (same data)
    x = feat.transform(data, samples)
    counts = x.to_matrix()
    reps: dict[str, np.ndarray] = {}
    for name, run in runs.items():  # frozen representations, once for every sample
        p = load_pretrained(run)
        est = build_estimator("timeline_transformer", p.model_params, task)
        module = est.build_module(x.n_codes)
        Init(str(run), "timeline encoder", p.encoder_state(), "features").apply(module)
        module.eval()
        with torch.no_grad():
            reps[name] = torch.cat([module.represent(x.batch(np.arange(i, min(i + 512, len(x)))))
                                    for i in range(0, len(x), 512)]).numpy()
    # one bootstrap of test patients, shared by every repeat and model (paired comparisons)
    tp = pids[test]
    uniq, inv = np.unique(tp, return_inverse=True)
    members = [np.flatnonzero(inv == j) for j in range(len(uniq))]
    boot = [np.concatenate([members[j] for j in rng.integers(0, len(uniq), len(uniq))]) for _ in range(500)]
    y_test = y_all[test]
    train_cfg = TrainConfig(max_epochs=epochs, batch_size=64, lr=1e-3, patience=3, progress=False)
    results: dict = {"test_samples": int(len(test)), "test_patients": len(uniq), "pool_patients": len(pool),
                     "test_prevalence": float(y_test.mean()), "curve": []}
    ks = [k for k in ks if k < len(pool)] + [len(pool)]
    for k in ks:
        per_model: dict[str, list[np.ndarray]] = {}
        fit_s: dict[str, float] = {}
        n_rep = 1 if k >= len(pool) else (repeats if k <= 256 else max(1, min(repeats, (repeats * 512) // k + 1)))
        for r in range(n_rep):
            r_rng = np.random.default_rng(r)
            chosen = r_rng.choice(pool, k, replace=False)
            stop_pat = set(r_rng.choice(chosen, max(1, int(0.2 * k)), replace=False).tolist())
            rows = np.flatnonzero(np.isin(pids, chosen))
            stop = rows[np.isin(pids[rows], list(stop_pat))]
            train = rows[~np.isin(pids[rows], list(stop_pat))]
            ytr = y_all[train]
            if ytr.min() == ytr.max():
                continue
            preds, seconds = _fit_models(runs, reps, x, counts, y_all, train, stop, test, task, train_cfg, r)
            for name, sec in seconds.items():
                fit_s[name] = fit_s.get(name, 0.0) + sec
            for name, p in preds.items():
                per_model.setdefault(name, []).append(np.asarray(p, dtype=float).reshape(-1))
        row = {"k": int(k), "repeats": len(next(iter(per_model.values()))), "models": {}}
        ref = per_model["gradient boosting (counts)"]
        for name, ps in per_model.items():
            point = np.mean([_auroc(y_test, p) for p in ps])
            draws = np.array([np.mean([_auroc(y_test[b], p[b]) for p in ps]) for b in boot])
            pairs = list(zip(ps, ref, strict=True))
            diff = np.array([np.mean([_auroc(y_test[b], p[b]) - _auroc(y_test[b], q[b]) for p, q in pairs])
                             for b in boot])
            row["models"][name] = {
                "auroc": {"value": float(point), "low": float(np.percentile(draws, 2.5)),
                          "high": float(np.percentile(draws, 97.5))},
                "repeat_sd": float(np.std([_auroc(y_test, p) for p in ps])),
                "minus_gbm": {"value": float(point - np.mean([_auroc(y_test, q) for q in ref])),
                              "low": float(np.percentile(diff, 2.5)), "high": float(np.percentile(diff, 97.5))},
                "fit_seconds": fit_s[name] / len(ps)}
        results["curve"].append(row)
        print(json.dumps({"k": k, **{m: round(v["auroc"]["value"], 3) for m, v in row["models"].items()}}),
              flush=True)
    return results


def throughput(root: Path, windows: int = 8_000) -> dict:
    """Events/s of one pretraining epoch: the Trainer vs a plain loop (same module class, batches, optimizer)."""
    import torch

    from medflow.models.timeline import NextCodeObjective, next_code_loss
    from medflow.pretrain.tokens import build_token_cache
    from medflow.train.trainer import TrainConfig, Trainer

    torch.set_num_threads(2)
    cache = build_token_cache(root / "pre", root / "tput_tokens", 5, 128, 0.05, 0)
    x = cache.tensors(False).subset(np.arange(windows))
    tokens = int((x.sizes() - 1).clip(min=0).sum())
    cfg = TrainConfig(max_epochs=1, batch_size=64, lr=2e-3, progress=False)
    trainer_s, plain_s = [], []
    for rep in range(3):
        torch.manual_seed(rep)
        module = NextCodeObjective(cache.featurizer.n_codes, **MODEL)
        t0 = time.perf_counter()
        Trainer(cfg, seed=rep).fit(module, next_code_loss, x, torch.zeros(len(x)))
        trainer_s.append(time.perf_counter() - t0)
        torch.manual_seed(rep)
        module = NextCodeObjective(cache.featurizer.n_codes, **MODEL)
        opt = torch.optim.AdamW(module.parameters(), lr=2e-3, weight_decay=1e-4)
        batches = Trainer(cfg, seed=rep)._batches(x, len(x), 64)  # the same length-bucketed batches
        t0 = time.perf_counter()
        module.train()
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            loss = next_code_loss(module(x.batch(idx.numpy())), None)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
        plain_s.append(time.perf_counter() - t0)
    t, p = float(np.median(trainer_s)), float(np.median(plain_s))
    return {"windows": windows, "events": tokens, "trainer_events_per_s": tokens / t, "plain_events_per_s": tokens / p,
            "ratio": t / p}


def peak_rss(root: Path, patients: int) -> dict:
    """Peak RSS of a one-epoch pretraining process on the first `patients` of the pretraining cohort's shards."""
    code = (
        "import resource, sys, shutil, pathlib, medflow as mf\n"
        f"src = pathlib.Path({str(root / 'pre')!r}); dst = pathlib.Path({str(root / f'rss_{patients}')!r})\n"
        "if not dst.exists():\n"
        "    files = sorted((src / 'data').rglob('*.parquet'))\n"
        f"    keep = max(1, round(len(files) * {patients} / 100_000))\n"
        "    for f in files[:keep]:\n"
        "        t = dst / f.relative_to(src); t.parent.mkdir(parents=True, exist_ok=True); shutil.copy(f, t)\n"
        "    shutil.copytree(src / 'metadata', dst / 'metadata')\n"
        "cfg = mf.pretrain.PretrainConfig(name='rss', data={'meds': str(dst)}, model=" + repr(MODEL) + ", "
        "sequence={'max_len': 128}, train={'max_epochs': 1, 'batch_size': 64, 'progress': False}, "
        f"output_dir={str(root / 'rss_runs')!r})\n"
        "p = mf.pretrain(cfg, progress=False)\n"
        "import json; m = json.loads((p / 'pretrain.json').read_text())\n"
        "print(json.dumps({'patients': sum(m['data']['subjects'].values()), 'events': m['data']['tokens'], "
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_checkpoints(root: Path, epochs: int = 8) -> dict:
    """`hf_classifier` on the real IU reports (cardiomegaly), from a small BERT with random weights and from the
    same BERT after masked-language pretraining on the other half of the reports, beside TF-IDF logistic
    regression and text_cnn, in one study (same split, same CIs); seconds per note to train and to predict."""
    import medflow as mf
    from medflow.config import parse_config
    from medflow.models.hf import small_bert
    from medflow.pretrain.tokens import is_holdout
    from medflow.study import run_study

    f = mf.datasets.load("iu_reports").frame
    half = is_holdout(np.arange(len(f), dtype=np.int64), 0.5, 7)
    root.mkdir(parents=True, exist_ok=True)
    f.loc[half, ["note_id", "text"]].to_csv(root / "unlabelled.csv", index=False)
    f.loc[~half, ["note_id", "text", "cardiomegaly"]].to_csv(root / "labelled.csv", index=False)
    scratch = small_bert(root / "scratch", f.loc[half, "text"].astype(str).tolist(), hidden=64, layers=2, heads=2,
                         vocab_size=3000)
    t0 = time.perf_counter()
    mlm = mf.pretrain({"name": "iu_mlm", "kind": "text", "output_dir": str(root / "runs"),
                       "data": {"text": {"path": str(root / "unlabelled.csv"), "text_column": "text",
                                         "id_column": "note_id"}},
                       "model": {"checkpoint": str(scratch)}, "max_len": 128,
                       "train": {"max_epochs": epochs, "batch_size": 32, "lr": 1e-3, "patience": 2}})
    mlm_s = time.perf_counter() - t0
    hf = {"max_len": 128, "stride": 32}
    raw = {"name": "iu_hf", "output_dir": str(root / "runs"),
           "data": {"text": {"path": str(root / "labelled.csv"), "text_column": "text", "id_column": "note_id"}},
           "task": {"kind": "binary", "label": "cardiomegaly"},
           "models": ["logistic_regression", "text_cnn",
                      {"name": "hf_classifier", "label": "hf_random_init",
                       "params": {"checkpoint": str(scratch), **hf}},
                      {"name": "hf_classifier", "label": "hf_mlm_pretrained",
                       "params": {"checkpoint": str(mlm), **hf}}],
           "split": {"kind": "holdout", "test": 0.3, "valid": 0.15},
           "train": {"max_epochs": 15, "patience": 4, "lr": 2e-3, "batch_size": 32, "progress": False},
           "evaluate": {"n_bootstrap": 1000}, "explain": {"max_records": 10, "examples": 1}}
    run = run_study(parse_config(raw, "bench"))
    metrics = run.metrics.data
    test = run.predictions()
    n_test = int((test["split"] == "test").sum() / len(metrics["models"]))
    frame = f.loc[~half, ["note_id", "text"]].head(500)
    out = {"notes_labelled": int((~half).sum()), "notes_pretraining": int(half.sum()), "test_notes": n_test,
           "mlm": json.loads((mlm / "pretrain.json").read_text())["holdout"], "mlm_seconds": mlm_s, "models": {}}
    for name, m in metrics["models"].items():
        t0 = time.perf_counter()
        run.predict(frame, model=name)
        out["models"][name] = {"auroc": m["metrics"]["auroc"], "auprc": m["metrics"]["auprc"],
                               "fit_seconds": metrics["fit_seconds"][name],
                               "predict_ms_per_note": 1000 * (time.perf_counter() - t0) / len(frame)}
    return out


def _ci(m: dict, digits: int = 3) -> str:
    return f"{m['value']:.{digits}f} ({m['low']:.{digits}f}-{m['high']:.{digits}f})"


def markdown(out: dict) -> str:
    """The tables of benchmarks/README.md (v), from the results."""
    lines = []
    if "throughput" in out:
        t = out["throughput"]
        lines += ["| windows | events | plain loop events/s | Trainer events/s | Trainer / plain time |",
                  "|---|---|---|---|---|",
                  f"| {t['windows']:,} | {t['events']:,} | {t['plain_events_per_s']:,.0f} | "
                  f"{t['trainer_events_per_s']:,.0f} | **{t['ratio']:.2f}x** |", ""]
        lines += ["| pretraining cohort | events | peak RSS (MB) |", "|---|---|---|"]
        lines += [f"| {r['patients']:,} patients | {r['events']:,} | {r['peak_rss_mb']:,.0f} |"
                  for r in out.get("peak_rss", [])] + [""]
    for name, p in out.get("pretraining", {}).items():
        h = p["holdout"]
        fig = (f"time-to-event NLL {_ci(h['nll'], 4)} vs constant hazards {h['reference_nll']:.4f}" if "nll" in h else
               f"perplexity {_ci(h['perplexity'], 2)} vs code frequencies {h['reference_perplexity']:.2f}, top-1 "
               f"{_ci(h['next_code_accuracy'])}")
        lines.append(f"* {name}: {p['epochs']} epochs, {p['seconds']['training']:.0f} s, "
                     f"{p['tokens_per_second']:,.0f} events/s; held out: {fig}")
    if "few_shot" in out:
        fs = out["few_shot"]
        models = list(fs["curve"][0]["models"])
        lines += ["", f"test: {fs['test_samples']:,} discharges of {fs['test_patients']:,} patients (prevalence "
                  f"{fs['test_prevalence']:.3f}); pool {fs['pool_patients']:,} patients", "",
                  "| k patients (repeats) | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
        for row in fs["curve"]:
            lines.append(f"| {row['k']:,} ({row['repeats']}) | "
                         + " | ".join(_ci(row["models"][m]["auroc"]) for m in models) + " |")
        lines += ["", "Difference to gradient boosting on counts (paired, same test resamples):", "",
                  "| k | " + " | ".join(m for m in models if not m.startswith("gradient")) + " |",
                  "|---" * len(models) + "|"]
        for row in fs["curve"]:
            lines.append(f"| {row['k']:,} | " + " | ".join(
                _ci(row["models"][m]["minus_gbm"]) for m in models if not m.startswith("gradient")) + " |")
    if "text" in out:
        t = out["text"]
        lines += ["", f"IU reports: {t['notes_labelled']:,} labelled (test {t['test_notes']:,}), "
                  f"{t['notes_pretraining']:,} for pretraining; MLM perplexity {_ci(t['mlm']['perplexity'], 1)} vs "
                  f"token frequencies {t['mlm']['reference_perplexity']:.1f} ({t['mlm_seconds']:.0f} s)", "",
                  "| model | AUROC | AUPRC | fit s | predict ms/note |", "|---|---|---|---|---|"]
        for name, m in t["models"].items():
            lines.append(f"| {name} | {_ci(m['auroc'])} | {_ci(m['auprc'])} | {m['fit_seconds']:.1f} | "
                         f"{m['predict_ms_per_note']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pretrain-patients", type=int, default=100_000)
    ap.add_argument("--task-patients", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--ks", default="64,256,1024,4096")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--only", choices=["curve", "throughput", "text"], default=None)
    a = ap.parse_args()
    root = Path(a.workdir or tempfile.mkdtemp(prefix="bench_pretrain_"))
    root.mkdir(parents=True, exist_ok=True)
    out: dict = {"synthetic": True, "pretrain_patients": a.pretrain_patients, "task_patients": a.task_patients}
    t0 = time.perf_counter()
    if a.only != "text":
        simulate(root, a.pretrain_patients, a.task_patients)
    out["simulate_seconds"] = time.perf_counter() - t0
    if a.only in (None, "throughput"):
        out["throughput"] = throughput(root)
        print(json.dumps(out["throughput"]), flush=True)
        out["peak_rss"] = [peak_rss(root, n) for n in (20_000, a.pretrain_patients)]
        print(json.dumps(out["peak_rss"]), flush=True)
    if a.only in (None, "curve"):
        runs, metas = {}, {}
        for objective, name in (("motor", "motor"), ("next_code", "clmbr")):
            runs[name], metas[name] = pretrain(root, objective, a.pretrain_epochs)
            print(json.dumps({name: {k: metas[name][k] for k in ("holdout", "seconds", "tokens_per_second")}},
                             default=str), flush=True)
        out["pretraining"] = {k: {f: m[f] for f in ("holdout", "seconds", "tokens_per_second", "epochs", "data")}
                              for k, m in metas.items()}
        out["few_shot"] = few_shot(root, runs, [int(k) for k in a.ks.split(",")], a.repeats, a.epochs)
    if a.only == "text":
        out = {"text": text_checkpoints(root / "text")}
        print(json.dumps(out["text"], default=str), flush=True)
    out["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = HERE / "results" / ("pretrain_text.json" if a.only == "text" else "pretrain.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1, default=str))
    print(markdown(out))
    print(f"written {path}")


if __name__ == "__main__":
    main()
