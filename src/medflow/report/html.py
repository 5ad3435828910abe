"""The model card: one self-contained HTML file written from a run directory (plots embedded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medflow.artifacts import read_json, write_text
from medflow.evaluate.evaluator import score_matrix, truth
from medflow.report import plots
from medflow.report.effects import effects_section
from medflow.report.elements import ci, display, escape, html_table, img
from medflow.report.explain_section import explain_section
from medflow.report.monitoring import federated_section, monitoring_section, privacy_section, transfer_section
from medflow.report.multimodal import coverage_section, modalities_section
from medflow.report.validation import (
    conformal_section,
    decision_section,
    external_results,
    external_section,
    selection_section,
    tripod_section,
    tuning_section,
)

__all__ = ["write_report", "render_report"]

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.synthetic{background:#b00;color:#fff;padding:.6em 1em;font-weight:bold;font-size:1.2em}
.flag{color:#b00;font-weight:bold}.sel{background:#eef6ee}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:1em}
pre{background:#f7f7f7;padding:.8em;font-size:.8em;overflow:auto}.muted{color:#666;font-size:.9em}"""


def _metrics_section(metrics: dict, names: list[str]) -> str:
    binary = "auroc" in names
    header = ["model"] + [display(n) for n in names] + (["threshold"] if binary else [])
    rows, classes = [], []
    for model, entry in metrics["models"].items():
        sel = model == metrics["selected_model"]
        rows.append([escape(model) + (" &#9733;" if sel else "")] + [ci(entry["metrics"][n]) for n in names]
                    + ([f"{entry['threshold']:.3f}"] if binary else []))
        classes.append("sel" if sel else "")
    level = int(round(metrics["level"] * 100))
    return (f"<p>Test split, {level}% CIs from {metrics['n_bootstrap']} bootstrap resamples of patients. "
            f"&#9733; = model selected on the validation predictions by {escape(metrics['primary_metric'])} "
            f"(never on the test split; see Model selection below)."
            + (f" Thresholds were chosen on the validation split ({escape(metrics['threshold_method']['method'])}) "
               "and applied unchanged to the test split." if binary else "") + "</p>"
            + html_table(header, rows, classes) + selection_section(metrics) + tuning_section(metrics))


def _survival_plots(test: pd.DataFrame, metrics: dict, unit: str) -> str:
    sel = metrics["selected_model"]
    g = test[test["model"] == sel]
    cal = metrics["models"][sel]["calibration"] or {}
    out = [img(plots.km_by_risk_plot(g["time"].to_numpy(), g["event"].to_numpy(), g["score"].to_numpy(),
                                      f"Kaplan-Meier by predicted risk tertile ({sel})", unit), "KM by risk group")]
    if cal:
        out.append(img(plots.survival_calibration_plot(cal, sel, unit), "survival calibration"))
    rows = [[escape(m)] + [f"{e['calibration'][h]['ece']:.3f}" for h in cal] for m, e in metrics["models"].items()
            if e.get("calibration")]
    table = ("<h3>Calibration</h3><p>Mean absolute gap between predicted survival and the Kaplan-Meier estimate "
             "within deciles of predicted risk, at each horizon (lower is better).</p>"
             + html_table(["model"] + [f"at {h} {unit}" for h in cal], rows)) if cal else ""
    intro = ("<p>Kaplan-Meier by predicted risk group: the test patients split into tertiles of the selected "
             "model's risk score; well-separated curves mean the ranking is useful.</p>")
    return intro + "<div class='grid'>" + "".join(out) + "</div>" + table


def _plots_section(preds: pd.DataFrame, metrics: dict, kind: str, classes: list[Any], unit: str = "") -> str:
    test = preds[preds["split"] == "test"]
    if kind == "survival":
        return _survival_plots(test, metrics, unit)
    if kind == "multilabel":  # each label's ROC curve for the selected model
        sel = metrics["selected_model"]
        g = test[test["model"] == sel]
        y, s = truth(g, kind), score_matrix(g, kind)
        seen = ~np.isnan(y)  # masked labels: each curve on its observed records
        return "<div class='grid'>" + img(plots.roc_plot({str(c): (y[seen[:, j], j], s[seen[:, j], j])
                                                          for j, c in enumerate(classes)
                                                          if 0 < y[seen[:, j], j].sum() < seen[:, j].sum()}),
                                          f"ROC per label ({sel})") + "</div>"
    if kind == "treatment_effect":  # its plots are in the treatment-effect section (report/effects.py)
        return "<p>See Treatment effects below.</p>"
    if kind == "spans":  # each label's strict F1 for the selected model, with its CI's half-width
        sel = metrics["selected_model"]
        ms = metrics["models"][sel]["metrics"]
        f1 = {k[8:]: v for k, v in ms.items() if k.startswith("span_f1_") and v["value"] == v["value"]}
        return ("<p>Strict match: same start, end and label; lenient: overlapping spans of the same label. "
                "Every figure with its 95% CI over patients is in the metrics table above.</p><div class='grid'>"
                + img(plots.importance_plot({k: v["value"] for k, v in f1.items()},
                                            {k: (v["high"] - v["low"]) / 2 for k, v in f1.items()},
                                            f"Strict F1 per label ({sel})"), "F1 per label") + "</div>")
    if kind == "segmentation":  # per-case Dice of each label, one box per model
        cols = [c for c in test.columns if c.startswith("case_dice_") and c != "case_dice_mean"]
        return "<div class='grid'>" + "".join(
            img(plots.case_box_plot({m: g[c].to_numpy(float) for m, g in test.groupby("model", sort=False)},
                                    f"Dice per test case: {c[len('case_dice_'):]}"),
                f"Dice per test case ({c[len('case_dice_'):]})") for c in cols) + "</div>"
    curves = {m: (g["y_true"].to_numpy(), score_matrix(g, kind)) for m, g in test.groupby("model", sort=False)}
    sel = metrics["selected_model"]
    entry = metrics["models"][sel]
    out = []
    if kind == "binary":
        out += [img(plots.roc_plot(curves), "ROC"), img(plots.pr_plot(curves), "precision-recall")]
    if kind in ("binary", "multiclass"):
        cal = {m: e["calibration"] for m, e in metrics["models"].items() if e.get("calibration")}
        out.append(img(plots.calibration_plot(cal), "calibration"))
        out.append(img(plots.confusion_plot(entry["confusion"], [str(c) for c in classes],
                                             f"{sel} at threshold {entry['threshold']:.2f}"), "confusion matrix"))
    else:
        out.append(img(plots.scatter_plot(curves), "predicted vs observed"))
    grid = "<div class='grid'>" + "".join(out) + "</div>"
    cal_rows = [[escape(m), f"{e['calibration']['ece']:.3f}", len(e["calibration"]["count"])]
                for m, e in metrics["models"].items() if e.get("calibration")]
    if cal_rows:
        grid += ("<h3>Calibration</h3><p>Expected calibration error (ECE: count-weighted mean gap between predicted "
                 "probability and observed frequency over equal-width bins; lower is better).</p>"
                 + html_table(["model", "ECE", "non-empty bins"], cal_rows))
    return grid


def _subgroup_section(metrics: dict, names: list[str]) -> str:
    sel = metrics["selected_model"]
    subs = metrics["models"][sel].get("subgroups") or {}
    if not subs:
        return "<p>No sensitive attributes were named (evaluate.subgroups), so no subgroup audit was run.</p>"
    parts = [f"<p>Model {escape(sel)}, test split; the same threshold for every group.</p>"]
    for attr, res in subs.items():
        flagged = res.get("largest_gap")
        rows = [[escape(level), g["n"]] + [ci(g["metrics"][n]) for n in names] for level, g in res["groups"].items()]
        parts.append(f"<h3>{escape(attr)}</h3>" + html_table(["group", "n"] + [display(n) for n in names], rows))
        if flagged:
            gap = res["gaps"][flagged]
            parts.append(f"<p class='flag'>Largest gap: {escape(display(flagged))} differs by {gap['gap']:.3f} "
                         f"between {escape(gap['best'])} (best) and {escape(gap['worst'])} (worst). Check whether the "
                         "CIs overlap before drawing conclusions.</p>")
    return "".join(parts)


def _quality_section(q: dict, manifest: dict) -> str:
    findings = "".join(f"<li>{escape(f)}</li>" for f in q["findings"]) or "<li>no findings</li>"
    rows = [[escape(c["column"]), c["type"], c["role"], f"{c['missing']:.1%}", c["unique"],
             f"{c['min']:.4g}" if "min" in c else "", f"{c['max']:.4g}" if "max" in c else "",
             c.get("outliers", "")]
            for c in q["columns"]]
    balance = "".join(f"<p>Class balance of {escape(k)}: {escape(v)}</p>" for k, v in q["class_balance"].items())
    stop = any("early_stopping" in s for s in manifest["splits"])
    parts = ("train", "early_stopping", "valid", "test") if stop else ("train", "valid", "test")
    split_rows = [[s["fold"], *(f"{s[p]['patients']} patients / {s[p]['rows']} rows" if p in s else "" for p in parts)]
                  for s in manifest["splits"]]
    note = manifest.get("patient_id_note")
    dropped = manifest["data"].get("invalid_smiles_dropped")
    empty = manifest["data"].get("empty_notes_dropped")
    listed = "; ".join(f"{'record' if 'record' in b else 'row'} {b.get('record', b.get('row'))}: "
                       f"{b['smiles'] or '(empty)'} ({b['reason']})"
                       for b in manifest["data"].get("invalid_examples", []))
    return (f"<p>{q['rows']} records from {q['patients']} patients.</p>" + balance
            + f"<p>Quality findings:</p><ul>{findings}</ul>"
            + (f"<p class='flag'>{escape(note)}.</p>" if note else "")
            + (f"<p class='flag'>{dropped} molecule(s) with invalid SMILES were left out (data.molecules.on_invalid: "
               f"drop), e.g. {escape(listed)}; all are listed in manifest.json.</p>" if dropped else "")
            + (f"<p class='flag'>{empty} note(s) were left out (empty text with data.text.on_empty: drop, or, in a "
               "built-in, an unreadable label list); each is listed with its reason in manifest.json.</p>"
               if empty else "")
            + ("<p class='flag'>The notes name no patient: each note is treated as its own patient in the splits "
               "(set data.text.patient_column when patients have several notes).</p>"
               if manifest["data"].get("patient_column", "").startswith("none") else "")
            + "<details><summary>Columns</summary>"
            + html_table(["column", "type", "role", "missing", "unique", "min", "max", "outliers"], rows)
            + "</details><h3>Splits (by patient)</h3>"
            + ("<p>The validation patients are split in two: early stopping watches one part; the other, unseen "
               "by every model during training, selects the model and calibrates the threshold and conformal "
               "sets (split.early_stopping).</p>" if stop else "")
            + html_table(["fold", *(("train", "early stopping", "validation (selection)", "test") if stop else
                                ("train", "valid", "test"))], split_rows))


def _limitations(manifest: dict, metrics: dict, q: dict, external: list[str] | None = None) -> str:
    items = [
        (f"Externally validated on {', '.join(external)} (section above); other sites, periods and populations "
         "still need their own validation before clinical use." if external else
         "Internal validation only: the test split comes from the same source as the training data; performance "
         "at another site, time period or population must be established by external validation "
         "(medflow evaluate RUN --data ...) before clinical use."),
        f"The test split holds {min(e['n_test_patients'] for e in metrics['models'].values())} patients; the CIs "
        "show how much the estimates could move with another sample.",
        "Attributions describe the model, not causal effects of the features on the outcome.",
    ]
    if metrics.get("primary_metric") == "auroc":  # binary: an operating threshold was chosen
        items.append("Decision thresholds were chosen on the validation split; the clinical cost of false negatives "
                     "and false positives should set the operating point in practice.")
    if metrics.get("primary_metric") == "c_harrell":
        items.append("Survival estimates beyond the longest follow-up are extrapolated; censoring is assumed to be "
                     "independent of the outcome given the features.")
    if manifest.get("patient_id_note"):
        items.append("No patient identifier was given; if a patient contributes several records, the splits and "
                     "CIs are optimistic.")
    if manifest.get("synthetic"):
        items.insert(0, "The data are SYNTHETIC (simulated): results say nothing about real patients.")
    if q["findings"]:
        items.append("The data-quality findings above may affect the results.")
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _blocks_section(run_dir: Path) -> str:
    path = run_dir / "blocks.json"
    if not path.exists():
        return ""
    b = read_json(path)
    rows = [[escape(name) + (" &#9733;" if name in (b["best_single"], b["best_fusion"]) else ""), r["columns"], ci(r)]
            for name, r in b["configs"].items()]
    return (f"<h2>Feature blocks and fusion</h2><p>Each block alone, early fusion (one {escape(b['model'])} on all "
            f"columns) and late fusion (one encoder per block), trained on the same {b['repeats']} x {b['k']}-fold "
            f"patient partitions; out-of-fold {escape(display(b['metric']))} averaged over repeats, 95% CIs from "
            f"{b['n_bootstrap']} patient bootstrap resamples (paired for the difference).</p>"
            + html_table(["configuration", "input columns", display(b["metric"])], rows)
            + f"<p><b>{escape(b['verdict'])}.</b> The best single block was chosen on these same out-of-fold scores, "
            "which favours it slightly: a conservative test for fusion.</p>"
            + ("<p>Who is recommended treatment: share of patients whose recommendation differs from the one made "
               "with every block (out-of-fold, averaged over repeats): "
               + ", ".join(f"{escape(k)} {v:.1%}" for k, v in b["decision_changes"].items()) + ".</p>"
               if b.get("decision_changes") else ""))


def _target_text(cfg: dict) -> str:
    if cfg["kind"] == "survival":
        return f"time '{cfg['time']}' ({cfg.get('time_unit', '')}), event '{cfg['event']}'"
    if cfg["kind"] == "segmentation":
        return "masks of " + ", ".join(f"'{lab}' ({i})" for i, lab in enumerate(cfg["labels"], start=1))
    if cfg["kind"] == "spans":
        return "spans of " + ", ".join(f"'{lab}'" for lab in cfg["labels"])
    if cfg["kind"] == "multilabel":
        return "labels " + ", ".join(f"'{lab}'" for lab in cfg["labels"])
    if cfg["kind"] == "treatment_effect":
        return f"effect of '{cfg['treatment']}' on '{cfg['outcome']}' ({cfg['outcome_kind']})"
    return f"label '{cfg['label']}'"


def _hazard_ratios(run_dir: Path) -> str:
    """Cox model coefficients as hazard ratios with Wald 95% CIs (fold 0)."""
    path = run_dir / "fold_0" / "cox_ph" / "model.json"
    if not path.exists():
        return ""
    summary = json.loads(path.read_text()).get("extra", {}).get("summary") or {}
    if not summary:
        return ""
    names = _output_names(read_json(run_dir / "fold_0" / "featurizer.json"))
    rows = []
    for name, b, se in sorted(zip(names, summary["coef"], summary["se"], strict=True), key=lambda r: -abs(r[1])):
        if name.endswith("=__unknown__"):  # all zero in training by construction: no estimate
            continue
        lo, hi = np.exp(b - 1.96 * se), np.exp(b + 1.96 * se)
        rows.append([escape(name), f"{np.exp(b):.3f}", f"{lo:.3f}&ndash;{hi:.3f}"])
    return ("<h2>Cox model: hazard ratios</h2><p>Per 1 SD of a numeric feature (inputs are standardized), or for a "
            "category's indicator; ridge-penalized (alpha in the config), so estimates shrink toward 1. "
            "95% Wald intervals from the penalized information matrix.</p>"
            + html_table(["feature", "hazard ratio", "95% CI"], rows))


def _output_names(featurizer: dict) -> list[str]:
    from medflow.features import featurizer_from_dict

    return list(getattr(featurizer_from_dict(featurizer), "output_names", []))


def render_report(run_dir: Path) -> str:
    """The report's HTML for a run directory."""
    manifest = read_json(run_dir / "manifest.json")
    metrics = read_json(run_dir / "metrics.json")
    config = yaml.safe_load((run_dir / "study.yaml").read_text())
    quality = read_json(run_dir / "quality.json")
    expl = read_json(run_dir / "explanations.json")
    external = external_results(run_dir)
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    task = read_json(run_dir / "fold_0" / "task.json")
    kind, classes = task["config"]["kind"], task["state"].get("classes", [])
    names = [n for n in next(iter(metrics["models"].values()))["metrics"]]
    synthetic = bool(manifest.get("synthetic"))
    histories = {}
    for m in metrics["models"]:
        meta_path = run_dir / "fold_0" / m / "model.json"
        h = json.loads(meta_path.read_text()).get("history") if meta_path.exists() else None
        if h:
            histories[m] = h
    title = f"medflow model card: {config['name']}"
    body = [
        "<div class='synthetic'>SYNTHETIC DATA: these results come from simulated patients.</div>" if synthetic else "",
        f"<h1>{escape(title)}</h1><p class='muted'>run {escape(run_dir.name.removesuffix('.incomplete'))} &middot; "
        f"finished {escape(manifest['finished_at'])}"
        f" &middot; {escape(kind)} task on {escape(_target_text(task['config']))}</p>",
        "<h2>Intended use</h2><p>" + escape(config.get("intended_use") or
                                       "Not stated. A research model: not for clinical decisions without "
                                       "prospective, external validation.") + "</p>",
        f"<h2>Data</h2><p>{escape(manifest['data']['description'] or manifest['data']['source'])}</p>"
        + _quality_section(quality, manifest) + coverage_section(manifest),
        "<h2>Model comparison</h2>" + _metrics_section(metrics, names),
        "<h2>Performance plots</h2>" + _plots_section(preds, metrics, kind, classes,
                                                      task["config"].get("time_unit", "")),
        _hazard_ratios(run_dir),
        effects_section(run_dir, metrics),
        decision_section(metrics, kind),
        conformal_section(metrics, kind, classes),
        "<h2>Subgroups</h2>" + _subgroup_section(metrics, names),
        external_section(external, names),
        monitoring_section(run_dir),
        privacy_section(metrics),
        federated_section(metrics),
        transfer_section(metrics),
        _blocks_section(run_dir),
        modalities_section(run_dir),
        "<h2>Explanations</h2>" + explain_section(expl, metrics["selected_model"]),
        ("<h2>Training</h2>" + img(plots.history_plot(histories), "training curves")) if histories else "",
        tripod_section(config, manifest, metrics, quality, external, kind),
        "<h2>Limitations</h2>" + _limitations(manifest, metrics, quality, list(external)),
        "<h2>Study configuration</h2><pre>" + escape(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "<h2>Environment</h2>" + html_table(["item", "value"], [[escape(k), escape(v)] for k, v in manifest.items()
                                                             if k not in ("data", "splits", "feature_types")]),
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the report (atomically) into the run directory, or to `path`."""
    run_dir = Path(run_dir)
    out = Path(path) if path else run_dir / "report.html"
    write_text(out, render_report(run_dir))
    return out


