"""(t) Clinical text on the real IU chest X-ray reports (torchxrayvision's wheel, as `../shared/anchors/text`).

1. Finding extraction with negation, 7 findings, report level (positive = a mention not negated, historical,
   family or hypothetical; truth = the report's MeSH major heads): medspaCy 1.3.1 ConText run here exactly as the
   anchor runs it (its own virtual environment, `benchmarks/.venv-medspacy`, made on first use), the naive
   any-mention rule, medflow's `context_rules` (no training) and `context_learned` (assertion learned from the
   report labels). `context_learned` is scored on held-out reports only: medflow's 5-fold cross-validation
   (split.kind kfold, by patient = report), each report predicted by the fold model that never saw it. P / R / F1
   per finding with 95% bootstrap CIs over reports (1,000 resamples), macro F1 with its CI.
3. De-identification on SYNTHETIC notes (`data.simulate.notes`): the held-out referral-letter family (wording,
   names, hospitals and cities never seen in training), 300 patients; medflow's `Deidentifier` (patterns + the
   name tagger trained on the other families) beside Presidio 2.2's recognizers with a blank spaCy pipeline
   (offline; its own virtual environment `benchmarks/.venv-presidio`): recall per PHI kind (every word of the
   span replaced, whatever the label), leaked PHI tokens, precision, notes per second on 2 cores.
4. PadChest at scale: 107,689 real Spanish reports (66,842 patients), 12 labels, patient hold-out (20% test);
   TF-IDF + LR and `text_cnn` through `Study`: macro AUROC / AUPRC / F1 with CIs, fit seconds, predicted reports
   per second through `Run.predict`, and the peak memory of the process.
5. Span extraction as a study task (`--only spans`): `span_tagger` on the built-in SYNTHETIC `synthetic_notes`
   (discharge summaries of the EHR simulator's patients), in-family test patients and, by the core's external
   validation, the held-out `transfer` family; learned assertion beside ConText's rules.
2. Report classification, the 8 most frequent MeSH heads, 5-fold: the anchor's TF-IDF + logistic regression
   (scikit-learn, the anchor's code) beside medflow's models through `Study` (5 patient folds): macro AUROC,
   AUPRC and F1 at 0.5 with 95% CIs, fit seconds.

    python benchmarks/bench_text.py [--skip-classify] [--classify-models logistic_regression text_cnn ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
MEDSPACY_VENV = HERE / ".venv-medspacy"
PRESIDIO_VENV = HERE / ".venv-presidio"
FINDINGS = {"Cardiomegaly": "cardiomegaly", "Pleural Effusion": "pleural_effusion", "Pneumothorax": "pneumothorax",
            "Pulmonary Atelectasis": "atelectasis", "Nodule": "nodule", "Pulmonary Edema": "edema",
            "Pneumonia": "pneumonia"}
TOP8 = ["normal", "opacity", "cardiomegaly", "atelectasis", "calcified_granuloma", "pleural_effusion", "nodule",
        "airspace_disease"]


def _wheel() -> str:
    return str(next((Path(sys.prefix) / "share" / "medflow-wheels").glob("torchxrayvision-*.whl")))


def _venv(path: Path, package: str) -> Path:
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q", package], check=True)
    return path / "bin" / "python"


def _medspacy(ids: list[str]) -> dict:
    python = _venv(MEDSPACY_VENV, "medspacy==1.3.1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "medspacy.json"
        subprocess.run([str(python), str(HERE / "text_medspacy.py"), _wheel(), str(out)],
                       check=True, stderr=subprocess.DEVNULL)
        got = json.loads(out.read_text())
    cols = list(FINDINGS.values())
    res = {}
    for rule in ("context", "naive"):
        res[rule] = np.array([[int(k in got["reports"][i][rule]) for k in FINDINGS] for i in ids])
    res["seconds"], res["columns"] = got["seconds"], cols
    return res


def _prf(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    tp = float((p & y).sum())
    prec = tp / p.sum() if p.sum() else 0.0
    rec = tp / y.sum() if y.sum() else 0.0
    return prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def _scores(y: np.ndarray, p: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per finding P / R / F1 with bootstrap CIs over reports, and macro F1 with its CI."""
    y, p = y.astype(bool), p.astype(bool)
    rng = np.random.default_rng(seed)
    boots = np.array([[_prf(y[idx, j], p[idx, j])[2] for j in range(y.shape[1])]
                      for idx in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))])
    per = []
    for j in range(y.shape[1]):
        pr, rc, f1 = _prf(y[:, j], p[:, j])
        lo, hi = np.percentile(boots[:, j], [2.5, 97.5])
        per.append({"precision": pr, "recall": rc, "f1": f1, "low": lo, "high": hi, "n_true": int(y[:, j].sum())})
    macro = np.mean([r["f1"] for r in per])
    lo, hi = np.percentile(boots.mean(axis=1), [2.5, 97.5])
    return {"per_finding": per, "macro_f1": {"value": macro, "low": lo, "high": hi}}


def extraction(seed: int = 0) -> dict:
    import medflow as mf

    ds = mf.datasets.load("iu_reports")
    frame = ds.frame
    cols = list(FINDINGS.values())
    y = frame[cols].to_numpy()
    out = {"n_reports": len(frame), "findings": cols, "rules": {}}
    ms = _medspacy(frame["note_id"].tolist())
    out["rules"]["medspaCy ConText (anchor)"] = _scores(y, ms["context"]) | {"reports_per_s": len(y) / ms["seconds"]}
    out["rules"]["naive any mention (medspaCy)"] = _scores(y, ms["naive"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        study = mf.Study(dataset=ds, task=mf.tasks.Multilabel(labels=cols), seed=seed, output_dir=tmp,
                         model=["context_rules", "context_learned"], split={"kind": "kfold", "k": 5},
                         evaluate={"n_bootstrap": 200}, explain={"max_records": 50})
        run = study.fit()
        wall = time.perf_counter() - t0
        pred = run.predictions()
    for model in ("context_rules", "context_learned"):
        rows = pred[(pred.model == model) & (pred.split == "test")].sort_values("row")
        assert len(rows) == len(frame) and (rows["row"].to_numpy() == np.arange(len(frame))).all()
        p = np.column_stack([rows[f"prob_{j}"].to_numpy() >= 0.5 for j in range(len(cols))])
        out["rules"][f"medflow {model}"] = _scores(y, p)
    from medflow.nlp.extract import Extractor
    from medflow.nlp.lexicons import CHEST_XRAY

    t0 = time.perf_counter()
    Extractor(CHEST_XRAY, cols, "rules").predict_proba(frame["text"].tolist())
    out["rules"]["medflow context_rules"]["reports_per_s"] = len(frame) / (time.perf_counter() - t0)
    out["study_seconds"] = wall
    return out


def deidentification(patients: int = 300, seed: int = 101) -> dict:
    from medflow.data.simulate.notes import HELD_OUT, simulate_notes
    from medflow.nlp.deid import Deidentifier, default_tagger, evaluate_deid

    t0 = time.perf_counter()
    default_tagger()
    train_s = time.perf_counter() - t0
    out = {"train_seconds": train_s}
    for name, families in (("held-out referral letters", (HELD_OUT,)), ("training families", None)):
        frame, spans = simulate_notes(patients, seed=seed, families=families)
        texts, gold = frame["text"].tolist(), [spans[n] for n in frame["note_id"]]
        t0 = time.perf_counter()
        _, found = Deidentifier().deidentify(texts, frame["patient_id"].tolist())
        sec = time.perf_counter() - t0
        res = {"notes": len(texts), "medflow": evaluate_deid(texts, gold, found) | {"notes_per_s": len(texts) / sec}}
        if families == (HELD_OUT,):
            with tempfile.TemporaryDirectory() as tmp:
                src, dst = Path(tmp) / "notes.jsonl", Path(tmp) / "presidio.json"
                src.write_text("\n".join(json.dumps({"note_id": n, "text": t})
                                          for n, t in zip(frame["note_id"], texts, strict=True)))
                subprocess.run([str(_venv(PRESIDIO_VENV, "presidio-analyzer==2.2.*")), str(HERE / "text_presidio.py"),
                                str(src), str(dst)], check=True, stderr=subprocess.DEVNULL)
                got = json.loads(dst.read_text())
            pres = [got["found"][n] for n in frame["note_id"]]
            res["presidio"] = evaluate_deid(texts, gold, pres) | {"notes_per_s": len(texts) / got["seconds"]}
        out[name] = res
    return out


def classification(models: list[str], seed: int = 0) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import KFold

    import medflow as mf

    ds = mf.datasets.load("iu_reports")
    docs, y = ds.frame["text"].tolist(), ds.frame[TOP8].to_numpy()
    aucs, t0 = [], time.perf_counter()
    for tr, te in KFold(5, shuffle=True, random_state=0).split(docs):  # the anchor's code
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        xtr, xte = vec.fit_transform([docs[i] for i in tr]), vec.transform([docs[i] for i in te])
        aucs.append([roc_auc_score(y[te, j], LogisticRegression(max_iter=2000, C=4.0).fit(xtr, y[tr, j])
                                   .predict_proba(xte)[:, 1]) for j in range(len(TOP8))])
    out = {"anchor": {"macro_auroc": float(np.mean(aucs)), "seconds": time.perf_counter() - t0}, "models": {}}
    params = {"logistic_regression": {"C": 4.0}}
    with tempfile.TemporaryDirectory() as tmp:
        study = mf.Study(dataset=ds, task=mf.tasks.Multilabel(labels=TOP8), seed=seed, output_dir=tmp,
                         model=[{"name": m, "params": params.get(m, {})} for m in models],
                         split={"kind": "kfold", "k": 5}, train={"max_epochs": 20, "patience": 4},
                         evaluate={"n_bootstrap": 300}, explain={"max_records": 50})
        run = study.fit()
        fit_s = run.metrics.data.get("fit_seconds") or {}
        for m in models:
            met = run.metrics.data["models"][m]["metrics"]
            out["models"][m] = {k: met[k] for k in ("auroc_labels", "auprc_labels", "f1_labels")}
            out["models"][m]["fit_seconds"] = fit_s.get(m)
        out["selected"] = run.metrics.selected_model
    return out


def padchest(models=("logistic_regression", "text_cnn"), seed: int = 0) -> dict:
    import resource

    import medflow as mf
    from medflow.data.builtin_text import PADCHEST_LABELS

    t0 = time.perf_counter()
    ds = mf.datasets.load("padchest_reports")
    load_s = time.perf_counter() - t0
    labels = [lab.lower().replace(" ", "_") for lab in PADCHEST_LABELS]
    params = {"logistic_regression": {"C": 4.0}, "text_cnn": {"d": 64, "filters": 64}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run = mf.Study(dataset=ds, task=mf.tasks.Multilabel(labels=labels), seed=seed, output_dir=tmp,
                       model=[{"name": m, "params": params.get(m, {})} for m in models],
                       split={"kind": "holdout", "test": 0.2, "valid": 0.1},
                       train={"max_epochs": 6, "patience": 2, "batch_size": 256},
                       evaluate={"n_bootstrap": 200}, explain={"max_records": 50}).fit()
        study_s = time.perf_counter() - t0
        fit_s = run.metrics.data.get("fit_seconds") or {}
        test = ds.frame.sample(20_000, random_state=0)[["text"]]
        out = {"reports": len(ds.frame), "patients": ds.n_patients, "load_seconds": load_s, "study_seconds": study_s,
               "models": {}}
        for m in models:
            met = run.metrics.data["models"][m]["metrics"]
            t0 = time.perf_counter()
            run.predict(test, model=m)
            rate = len(test) / (time.perf_counter() - t0)
            out["models"][m] = {k: met[k] for k in ("auroc_labels", "auprc_labels", "f1_labels")} | {
                "fit_seconds": fit_s.get(m), "predict_reports_per_s": rate}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return out


def spans(patients: int = 100, seed: int = 0) -> dict:
    """Span extraction as a study task: `span_tagger` (assertion learned, and ConText's rules) trained on the
    built-in `synthetic_notes` (SYNTHETIC discharge summaries of the EHR simulator's patients), scored on its own
    family's held-out patients, then externally validated, unchanged, on the held-out `transfer` family."""
    import medflow as mf
    from medflow.data.simulate.ehr_notes import notes_from_ehr
    from medflow.data.text import TextSource, notes_dataset
    from medflow.evaluate.external import external_validation

    task = mf.tasks.SpanExtraction()
    t0 = time.perf_counter()
    run = mf.Study(dataset="synthetic_notes", task=task, seed=seed, evaluate={"n_bootstrap": 1000},
                   model=["span_tagger", {"name": "span_tagger", "label": "span_tagger_rules",
                                          "params": {"assertion": "rules"}}]).fit()
    fit_s = time.perf_counter() - t0
    frame, gold = notes_from_ehr(patients=patients, seed=seed + 5, families=("transfer",))
    ds = notes_dataset(frame, "text", "transfer", TextSource(path="transfer", id_column="note_id",
                                                             patient_column="patient_id"), synthetic=True, spans=gold)
    ext, _ = external_validation(run, ds, "transfer", "notes_from_ehr(families=('transfer',))", seed=seed)
    t0 = time.perf_counter()
    run.predict(frame[["text"]], model="span_tagger")
    rate = len(frame) / (time.perf_counter() - t0)
    keep = ["span_f1", "span_lenient_f1", *[f"span_f1_{lab}" for lab in task.labels], "assertion_accuracy"]
    return {"fit_seconds": fit_s, "notes_per_s": rate, "labels": list(task.labels), "metrics": keep,
            "n_transfer": len(frame), "transfer_patients": patients,
            "models": {m: {"in_family": {k: run.metrics.data["models"][m]["metrics"][k] for k in keep},
                           "transfer": {k: ext["models"][m]["metrics"][k] for k in keep}} for m in run.models}}


def run(classify_models=("logistic_regression", "text_cnn", "bilstm_attention", "transformer_encoder"),
        classify: bool = True) -> dict:
    res = {"extraction": extraction(), "deid": deidentification(), "padchest": padchest(), "spans": spans()}
    if classify:
        res["classification"] = classification(list(classify_models))
    return res


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"


def markdown(res: dict) -> list[str]:
    ex = res["extraction"]
    lines = [f"### Extraction with negation, {ex['n_reports']:,} real reports, 7 findings (report-level F1; "
             "context_learned on held-out folds)", "",
             "| rule set | " + " | ".join(ex["findings"]) + " | macro F1 (95% CI) | reports/s |",
             "|---" * (len(ex["findings"]) + 3) + "|"]
    for name, r in ex["rules"].items():
        cells = [f"{f['f1']:.3f} ({f['low']:.2f}-{f['high']:.2f})" for f in r["per_finding"]]
        rate = f"{r['reports_per_s']:.0f}" if "reports_per_s" in r else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_ci(r['macro_f1'])} | {rate} |")
    lines += ["", "Precision / recall per finding:", "", "| rule set | " + " | ".join(ex["findings"]) + " |",
              "|---" * (len(ex["findings"]) + 1) + "|"]
    for name, r in ex["rules"].items():
        lines.append(f"| {name} | " + " | ".join(f"{f['precision']:.2f} / {f['recall']:.2f}"
                                                 for f in r["per_finding"]) + " |")
    if "deid" in res:
        d = res["deid"]
        kinds = sorted({k for name, r in d.items() if name != "train_seconds" for k in r["medflow"]["recall"]})
        lines += ["", f"### De-identification, SYNTHETIC notes, recall per PHI kind (name tagger trained in "
                      f"{d['train_seconds']:.1f} s on the training families)", "",
                  "| notes | system | " + " | ".join(kinds) + " | leaked tokens | precision | notes/s |",
                  "|---" * (len(kinds) + 5) + "|"]
        for name, r in d.items():
            if name == "train_seconds":
                continue
            for system in ("medflow", "presidio"):
                if system in r:
                    m = r[system]
                    cells = [f"{m['recall'][k]['recall']:.3f}" if k in m["recall"] else "" for k in kinds]
                    lines.append(f"| {name} ({r['notes']}) | {system} | " + " | ".join(cells)
                                 + f" | {m['leaked_tokens']} | {m['precision']:.3f} | {m['notes_per_s']:.0f} |")
    if "padchest" in res:
        p = res["padchest"]
        lines += ["", f"### PadChest at scale: {p['reports']:,} real reports, {p['patients']:,} patients, 12 labels, "
                      f"patient hold-out (load {p['load_seconds']:.0f} s, whole study {p['study_seconds']:.0f} s, "
                      f"peak memory {p['peak_rss_gb']:.1f} GB)", "",
                  "| model | AUROC | AUPRC | F1 at 0.5 | fit s | predict reports/s |", "|---|---|---|---|---|---|"]
        for m, r in p["models"].items():
            fit = r.get("fit_seconds")
            fit_s = f"{sum(fit) if isinstance(fit, list) else fit:.0f}" if fit else ""
            lines.append(f"| {m} | {_ci(r['auroc_labels'])} | {_ci(r['auprc_labels'])} | {_ci(r['f1_labels'])} | "
                         f"{fit_s} | {r['predict_reports_per_s']:.0f} |")
    if "classification" in res:
        c = res["classification"]
        lines += ["", "### Report classification, 8 MeSH heads, 5-fold (macro over labels, 95% CI)", "",
                  f"Anchor TF-IDF + LR (scikit-learn, its KFold): macro AUROC {c['anchor']['macro_auroc']:.3f} "
                  f"({c['anchor']['seconds']:.0f} s).", "", "| model | AUROC | AUPRC | F1 at 0.5 | fit s (5 folds) |",
                  "|---|---|---|---|---|"]
        for m, r in c["models"].items():
            fit = r.get("fit_seconds")
            fit_s = f"{sum(fit) if isinstance(fit, list) else fit:.0f}" if fit else ""
            lines.append(f"| {m}{' *' if m == c['selected'] else ''} | {_ci(r['auroc_labels'])} | "
                         f"{_ci(r['auprc_labels'])} | {_ci(r['f1_labels'])} | {fit_s} |")
    if "spans" in res:
        sp = res["spans"]
        lines += ["", f"### Span extraction as a study task, SYNTHETIC notes of the EHR simulator's patients "
                  f"(strict F1, 95% CI; transfer = held-out family, {sp['transfer_patients']} patients, external "
                  f"validation; {sp['notes_per_s']:.0f} notes/s predicted)", "",
                  "| model | data | " + " | ".join(sp["metrics"]) + " |", "|---" * (len(sp["metrics"]) + 2) + "|"]
        for m, r in sp["models"].items():
            for part in ("in_family", "transfer"):
                lines.append(f"| {m} | {part} | " + " | ".join(_ci(r[part][k]) for k in sp["metrics"]) + " |")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-classify", action="store_true")
    ap.add_argument("--only", choices=["extraction", "deid", "padchest", "classification", "spans"])
    ap.add_argument("--classify-models", nargs="+",
                    default=["logistic_regression", "text_cnn", "bilstm_attention", "transformer_encoder"])
    a = ap.parse_args()
    if a.only:
        fn = {"extraction": extraction, "deid": deidentification, "padchest": padchest,
              "classification": lambda: classification(a.classify_models), "spans": spans}[a.only]
        result = {a.only: fn()}
        result.setdefault("extraction", {"n_reports": 0, "findings": [], "rules": {}})
    else:
        result = run(a.classify_models, not a.skip_classify)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "text.json").write_text(json.dumps(result, indent=1, default=float))
    print("\n".join(markdown(result)))
