"""The model card: one self-contained HTML file written from a run directory (plots embedded)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medflow.artifacts import read_json, write_text
from medflow.evaluate.evaluator import score_matrix
from medflow.evaluate.metrics import metric_info
from medflow.report import plots

__all__ = ["write_report", "render_report"]

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .5em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.synthetic{background:#b00;color:#fff;padding:.6em 1em;font-weight:bold;font-size:1.2em}
.flag{color:#b00;font-weight:bold}.sel{background:#eef6ee}img{max-width:100%}.grid{display:flex;flex-wrap:wrap;gap:1em}
pre{background:#f7f7f7;padding:.8em;font-size:.8em;overflow:auto}.muted{color:#666;font-size:.9em}"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(f"<tr class='{(row_class or [''] * len(rows))[i]}'>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                   for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(b64: str, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{b64}'>"


def _ci(m: dict[str, float]) -> str:
    if m["value"] != m["value"]:
        return "n/a <span class='muted'>(undefined here)</span>"
    return f"{m['value']:.3f} <span class='muted'>({m['low']:.3f}&ndash;{m['high']:.3f})</span>"


def _metrics_section(metrics: dict, names: list[str]) -> str:
    binary = "auroc" in names
    header = ["model"] + [_display(n) for n in names] + (["threshold"] if binary else [])
    rows, classes = [], []
    for model, entry in metrics["models"].items():
        sel = model == metrics["selected_model"]
        rows.append([_e(model) + (" &#9733;" if sel else "")] + [_ci(entry["metrics"][n]) for n in names]
                    + ([f"{entry['threshold']:.3f}"] if binary else []))
        classes.append("sel" if sel else "")
    level = int(round(metrics["level"] * 100))
    return (f"<p>Test split, {level}% CIs from {metrics['n_bootstrap']} bootstrap resamples of patients. "
            f"&#9733; = model selected on the validation predictions by {_e(metrics['primary_metric'])} "
            f"(never on the test split; see Model selection below)."
            + (f" Thresholds were chosen on the validation split ({_e(metrics['threshold_method']['method'])}) "
               "and applied unchanged to the test split." if binary else "") + "</p>"
            + _table(header, rows, classes) + _selection_section(metrics) + _tuning_section(metrics))


def _tuning_section(metrics: dict) -> str:
    """The nested hyper-parameter search: the best parameters of each tuned model on each outer fold."""
    tuning = metrics.get("tuning") or {}
    if not tuning:
        return ""
    rows = []
    for model, folds in tuning.items():
        for fold, r in folds.items():
            params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                               for k, v in r["best_params"].items())
            rows.append([_e(model), _e(fold), r["n_trials"], f"{r['best_value']:.4f}", _e(params)])
    first = next(iter(next(iter(tuning.values())).values()))
    return ("<h3>Hyper-parameter search</h3><p>Optuna (TPE), nested: each trial trained on "
            f"{first['inner_folds']} inner patient folds of the outer fold's training and validation patients and "
            f"was scored by the mean inner-fold {_e(first['metric'])}; the test split was never seen. The best "
            "parameters were then trained on the outer fold.</p>"
            + _table(["model", "outer fold", "trials", f"best inner {first['metric']}", "best parameters"], rows))


def _selection_section(metrics: dict) -> str:
    """How the starred model was chosen: the rule, its reasoning, every model's validation score."""
    sel = metrics.get("selection") or {}
    if not sel.get("models"):
        return f"<p>{_e(sel.get('reason', ''))}</p>"
    rows = [[_e(m) + (" &#9733;" if m == sel["selected"] else ""), _ci(r), r["complexity"],
             "" if r["diff_from_best"] is None else
             f"{r['diff_from_best']:.3f} <span class='muted'>({r['diff_low']:.3f}&ndash;{r['diff_high']:.3f})</span>",
             "yes" if r["tied_with_best"] else "no"] for m, r in sel["models"].items()]
    folds = f" pooled over {sel['n_folds']} folds" if sel["n_folds"] > 1 else ""
    warn = f"<p class='flag'>Warning: {_e(sel['warning'])}</p>" if sel.get("warning") else ""
    return (f"<h3>Model selection</h3><p>Validation predictions{folds}: {sel['n_valid_patients']} patients"
            + (f", {sel['n_valid_events']} events" if sel.get("n_valid_events") is not None else "")
            + f". Rule <b>{_e(sel['rule'])}</b>: {_e(sel['reason'])}.</p>" + warn
            + _table(["model", f"validation {_display(sel['metric'])}", "complexity rank",
                      "behind the best (paired CI)", "tied with the best"], rows))


def _display(name: str) -> str:
    return metric_info(name)[0]


def _survival_plots(test: pd.DataFrame, metrics: dict, unit: str) -> str:
    sel = metrics["selected_model"]
    g = test[test["model"] == sel]
    cal = metrics["models"][sel]["calibration"] or {}
    out = [_img(plots.km_by_risk_plot(g["time"].to_numpy(), g["event"].to_numpy(), g["score"].to_numpy(),
                                      f"Kaplan-Meier by predicted risk tertile ({sel})", unit), "KM by risk group")]
    if cal:
        out.append(_img(plots.survival_calibration_plot(cal, sel, unit), "survival calibration"))
    rows = [[_e(m)] + [f"{e['calibration'][h]['ece']:.3f}" for h in cal] for m, e in metrics["models"].items()
            if e.get("calibration")]
    table = ("<h3>Calibration</h3><p>Mean absolute gap between predicted survival and the Kaplan-Meier estimate "
             "within deciles of predicted risk, at each horizon (lower is better).</p>"
             + _table(["model"] + [f"at {h} {unit}" for h in cal], rows)) if cal else ""
    intro = ("<p>Kaplan-Meier by predicted risk group: the test patients split into tertiles of the selected "
             "model's risk score; well-separated curves mean the ranking is useful.</p>")
    return intro + "<div class='grid'>" + "".join(out) + "</div>" + table


def _plots_section(preds: pd.DataFrame, metrics: dict, kind: str, classes: list[Any], unit: str = "") -> str:
    test = preds[preds["split"] == "test"]
    if kind == "survival":
        return _survival_plots(test, metrics, unit)
    curves = {m: (g["y_true"].to_numpy(), score_matrix(g, kind)) for m, g in test.groupby("model", sort=False)}
    sel = metrics["selected_model"]
    entry = metrics["models"][sel]
    out = []
    if kind == "binary":
        out += [_img(plots.roc_plot(curves), "ROC"), _img(plots.pr_plot(curves), "precision-recall")]
    if kind in ("binary", "multiclass"):
        cal = {m: e["calibration"] for m, e in metrics["models"].items() if e.get("calibration")}
        out.append(_img(plots.calibration_plot(cal), "calibration"))
        out.append(_img(plots.confusion_plot(entry["confusion"], [str(c) for c in classes],
                                             f"{sel} at threshold {entry['threshold']:.2f}"), "confusion matrix"))
    else:
        out.append(_img(plots.scatter_plot(curves), "predicted vs observed"))
    grid = "<div class='grid'>" + "".join(out) + "</div>"
    cal_rows = [[_e(m), f"{e['calibration']['ece']:.3f}", len(e["calibration"]["count"])]
                for m, e in metrics["models"].items() if e.get("calibration")]
    if cal_rows:
        grid += ("<h3>Calibration</h3><p>Expected calibration error (ECE: count-weighted mean gap between predicted "
                 "probability and observed frequency over equal-width bins; lower is better).</p>"
                 + _table(["model", "ECE", "non-empty bins"], cal_rows))
    return grid


def _decision_section(metrics: dict, kind: str) -> str:
    """Net benefit curves of every model on the test split (binary; survival at each horizon)."""
    entries = {m: e["decision_curve"] for m, e in metrics["models"].items() if e.get("decision_curve")}
    if not entries:
        return ""
    first = next(iter(entries.values()))
    th = first["thresholds"]
    if kind == "binary":
        panels = {"": ({m: d["model"] for m, d in entries.items()}, first["treat_all"],
                       {m: d["useful_range"] for m, d in entries.items()})}
    else:
        panels = {h: ({m: d["horizons"][h]["model"] for m, d in entries.items() if h in d["horizons"]},
                      first["horizons"][h]["treat_all"],
                      {m: d["horizons"][h]["useful_range"] for m, d in entries.items() if h in d["horizons"]})
                  for h in first["horizons"]}
    imgs, rows = [], []
    for h, (curves, treat_all, useful) in panels.items():
        title = "Decision curve, test split" + (f", event by {h}" if h else "")
        imgs.append(_img(plots.decision_curve_plot(th, curves, treat_all, title), "decision curve"))
        for m, r in useful.items():
            rows.append([_e(m)] + ([_e(h)] if h else []) + ["none" if r is None else f"{r[0]:.2f}&ndash;{r[1]:.2f}"])
    return ("<h2>Decision curves</h2><p>Net benefit of treating the patients whose predicted risk is at least the "
            "threshold probability, against treating everyone and treating no one (Vickers &amp; Elkin 2006). "
            "The threshold says how many false positives one true positive is worth: pt / (1 - pt). "
            + ("For survival, risk is the predicted probability of the event by the horizon, and net benefit "
               "uses the Kaplan-Meier estimate among the treated, so censoring is handled. " if kind == "survival"
               else "") + "</p><div class='grid'>" + "".join(imgs) + "</div>"
            + _table(["model"] + (["horizon"] if kind == "survival" else [])
                     + ["thresholds where the model beats treat-all and treat-none"], rows))


def _conformal_section(metrics: dict, kind: str, classes: list) -> str:
    """Conformal prediction sets or intervals: their target and the empirical coverage on the test split."""
    entries = {m: e["conformal"] for m, e in metrics["models"].items() if e.get("conformal")}
    if not entries:
        return ""
    first = next(iter(entries.values()))
    target = first["coverage"]
    rows = []
    for m, c in entries.items():
        t = c["test"]
        if kind == "regression":
            rows.append([_e(m), _ci(t["coverage"]), f"&plusmn;{c['qhat']:.4g}", f"{t['mean_width']:.4g}"])
        elif kind == "survival":
            for h, r in t["horizons"].items():
                rows.append([_e(m), _e(h), _ci(r["coverage"]), f"{r['mean_set_size']:.2f}", r["n_known"]])
        else:
            by_class = ", ".join(f"{_e(k)}: {v['value']:.3f}" for k, v in t["coverage_by_class"].items())
            rows.append([_e(m), _ci(t["coverage"]), by_class, f"{t['mean_set_size']:.2f}",
                         f"{t['singleton_share']:.1%}"])
    if kind == "regression":
        header = ["model", "test coverage (95% CI)", "interval half-width", "mean width"]
        what = "intervals: prediction &plusmn; the calibrated quantile of absolute validation residuals"
    elif kind == "survival":
        header = ["model", "horizon", "test coverage (95% CI, IPCW)", "mean set size", "patients with known status"]
        what = ("sets for the status 'event by the horizon' (only patients whose status at the horizon is known "
                "count, each weighted by the inverse probability of censoring)")
    else:
        header = ["model", "test coverage (95% CI)", "coverage by class", "mean set size", "single-label sets"]
        what = ("sets of labels: every class whose probability is at least 1 minus the calibrated quantile of "
                + ("that class's" if "class_conditional" in first["method"] else "the")
                + " validation non-conformity scores (1 - probability of the true class)")
    return (f"<h2>Conformal prediction</h2><p>Split conformal {what}, calibrated on the validation predictions "
            f"({first['n_calibration']} records) for a target coverage of {target:.0%}: in exchangeable data the "
            "set holds the true outcome at least that often. Empirical coverage on the test split (patient "
            "bootstrap CI) checks it; a set with more than one label says the model cannot decide for that "
            "patient. <span class='muted'>Method: " + _e(first["method"]) + ".</span></p>" + _table(header, rows))


def _external_section(run_dir: Path, names: list[str]) -> str:
    """External validations written by `medflow evaluate RUN --data ...`, apart from the internal results."""
    folders = sorted(p for p in (run_dir / "external").glob("*") if (p / "metrics.json").exists())
    if not folders:
        return ""
    parts = ["<h2>External validation</h2><p>The run's models applied unchanged (same thresholds, same conformal "
             "sets) to data from outside the training source. These results, not the internal ones above, say "
             "how the model transports to that site or period.</p>"]
    for folder in folders:
        r = read_json(folder / "metrics.json")
        ext = r["external"]
        parts.append(f"<h3>{_e(ext['name'])}</h3><p>{_e(ext['source'])}: {ext['n_records']} records, "
                     f"{ext['n_patients']} patients" + (f"; outcome counts {_e(ext['class_balance'])}"
                                                       if ext.get("class_balance") else "") + ".</p>")
        if ext.get("synthetic"):
            parts.append("<p class='flag'>These external data are SYNTHETIC.</p>")
        rows = [[_e(m) + (" &#9733;" if m == r["selected_model"] else "")] + [_ci(e["metrics"][n]) for n in names]
                for m, e in r["models"].items()]
        parts.append(_table(["model"] + [_display(n) for n in names], rows))
        cal = [[_e(m), _ci(e["calibration_fit"]["citl"]), _ci(e["calibration_fit"]["slope"]),
                f"{e['calibration_fit']['oe_ratio']['value']:.3f}"]
               for m, e in r["models"].items() if e.get("calibration_fit")]
        if cal:
            parts.append("<p>Calibration-in-the-large (0 is ideal: the mean prediction matches the outcome rate) "
                         "and calibration slope (1 is ideal; below 1, predictions are too extreme), "
                         "with patient-bootstrap 95% CIs:</p>"
                         + _table(["model", "calibration-in-the-large", "calibration slope", "observed / expected"],
                                  cal))
        drift = r.get("drift") or {}
        flags = "".join(f"<li>{_e(f)}</li>" for f in drift.get("flagged", [])) or "<li>no large shifts</li>"
        parts.append(f"<p>Input drift against the training data:</p><ul>{flags}</ul>")
        if "unknown_code_share" in drift:
            parts.append(f"<p>Event histories: {drift['unknown_code_share']:.1%} of the events carry codes training "
                         f"never saw; {drift['events_per_sample']:.0f} events per sample. Lab values below are "
                         "standardized with the training mean and sd, so their mean is the shift from training."
                         "</p>")
        if drift.get("columns"):
            rows = [[_e(c["column"]), _e(c["type"]), "" if c.get("missing_train") is None else
                     f"{c['missing_train']:.1%}", f"{c['missing_new']:.1%}",
                     f"{c['smd']:+.2f}" if c.get("smd") is not None and c["smd"] == c["smd"] else "",
                     f"{c['unseen_share']:.1%}" if "unseen_share" in c else ""] for c in drift["columns"]]
            parts.append("<details><summary>Drift by column</summary>" + _table(
                ["column", "type", "missing (training)", "missing (new)", "standardized mean difference",
                 "unseen categories"], rows) + "</details>")
        rc = r.get("recalibration")
        if rc:
            rows = []
            for m, e in rc["models"].items():
                for when in ("before", "after"):
                    c = e[when]["calibration_fit"]
                    rows.append([_e(m), when, _ci(c["citl"]), _ci(c["slope"])]
                                + [_ci(e[when]["metrics"][n]) for n in names if n in e[when]["metrics"]][:3])
            shown = [n for n in names][:3]
            parts.append(f"<p>Recalibration ({_e(rc['method'])}) fitted on {rc['n_fit_patients']} of the new "
                         f"patients and reported on the other {rc['n_report_patients']}; the decision threshold "
                         "moves through the same map:</p>"
                         + _table(["model", "", "calibration-in-the-large", "calibration slope"]
                                  + [_display(n) for n in shown], rows))
    return "".join(parts)


def _tripod_section(config: dict, manifest: dict, metrics: dict, quality: dict, run_dir: Path, kind: str) -> str:
    from medflow.report.tripod import tripod_items

    sets = [{"name": p.name, "recalibrated": "recalibration" in read_json(p / "metrics.json")}
            for p in sorted((run_dir / "external").glob("*")) if (p / "metrics.json").exists()]
    rows = tripod_items(config, manifest, metrics, quality, sets, kind)
    counts = {s: sum(r[2] == s for r in rows) for s in ("reported", "partly", "author", "not applicable")}
    cls = {"reported": "", "partly": "", "author": "flag", "not applicable": "muted"}
    body = [[_e(i), _e(topic), f"<span class='{cls[st]}'>{_e(st)}</span>", _e(text)] for i, topic, st, text in rows]
    return ("<h2>TRIPOD+AI checklist</h2><p>The TRIPOD+AI reporting items (Collins et al., BMJ 2024), answered "
            f"from this run: {counts['reported']} reported, {counts['partly']} partly, {counts['author']} for the "
            f"authors to supply, {counts['not applicable']} not applicable.</p>"
            + "<details><summary>Items</summary>" + _table(["item", "topic", "status", "answer from the run"], body)
            + "</details>")


def _subgroup_section(metrics: dict, names: list[str]) -> str:
    sel = metrics["selected_model"]
    subs = metrics["models"][sel].get("subgroups") or {}
    if not subs:
        return "<p>No sensitive attributes were named (evaluate.subgroups), so no subgroup audit was run.</p>"
    parts = [f"<p>Model {_e(sel)}, test split; the same threshold for every group.</p>"]
    for attr, res in subs.items():
        flagged = res.get("largest_gap")
        rows = [[_e(level), g["n"]] + [_ci(g["metrics"][n]) for n in names] for level, g in res["groups"].items()]
        parts.append(f"<h3>{_e(attr)}</h3>" + _table(["group", "n"] + [_display(n) for n in names], rows))
        if flagged:
            gap = res["gaps"][flagged]
            parts.append(f"<p class='flag'>Largest gap: {_e(_display(flagged))} differs by {gap['gap']:.3f} "
                         f"between {_e(gap['best'])} (best) and {_e(gap['worst'])} (worst). Check whether the "
                         "CIs overlap before drawing conclusions.</p>")
    return "".join(parts)


def _explain_section(expl: dict, selected: str) -> str:
    if selected not in expl:
        return ""
    e = expl[selected]
    pi = e["permutation_importance"]
    parts = ["<div class='grid'>",
             _img(plots.importance_plot({k: v["mean"] for k, v in pi.items()}, {k: v["sd"] for k, v in pi.items()},
                                        f"Permutation importance ({selected})"), "permutation importance"),
             _img(plots.importance_plot(e["mean_abs_attribution"], None,
                                        f"Mean |attribution| ({e['method']})"), "attributions"), "</div>"]
    rows = []
    for ex in e["examples"]:
        top = sorted(ex["attributions"].items(), key=lambda kv: -abs(kv[1]))[:5]
        rows.append([f"test record {ex['row']}", ", ".join(f"{_e(k)} {v:+.3f}" for k, v in top)])
    parts.append("<p>Per-record attributions (top 5) for example test records:</p>"
                 + _table(["record", "attributions"], rows))
    for name, m in sorted(expl.items(), key=lambda kv: (kv[0] != selected, kv[1]["method"] != "retain_contributions")):
        if not (m["examples"] and "events" in m["examples"][0]):
            continue
        how = ("RETAIN's own decomposition: attention (alpha) x gated embedding, summing to the logit"
               if m["method"] == "retain_contributions" else "Integrated Gradients on the code embeddings")
        parts.append(f"<p>Events behind example predictions of <b>{_e(name)}</b> ({how}); visits group events by "
                     "day before the prediction time:</p>")
        rows = []
        for ex in m["examples"]:
            ev = "; ".join(_event_text(x) for x in ex["events"][:6])
            visits = sorted(ex["visits"].items(), key=lambda kv: -abs(kv[1]))[:3]
            rows.append([f"test sample {ex['row']}", ev, ", ".join(f"{_e(k)} {v:+.3f}" for k, v in visits)])
        parts.append(_table(["sample", "top events", "top visits"], rows))
    others = [m for m in expl if m != selected]
    if others:
        rows = [[_e(m), ", ".join(_e(k) for k in list(expl[m]["permutation_importance"])[:5])] for m in others]
        parts.append("<p>Top features of the other models (permutation importance):</p>"
                     + _table(["model", "top 5"], rows))
    return "".join(parts)


def _event_text(x: dict) -> str:
    when = "static" if x["days_before"] is None else f"{x['days_before']:.1f} d before"
    return f"{_e(x['code'])} ({when}) {x['attribution']:+.3f}"


def _quality_section(q: dict, manifest: dict) -> str:
    findings = "".join(f"<li>{_e(f)}</li>" for f in q["findings"]) or "<li>no findings</li>"
    rows = [[_e(c["column"]), c["type"], c["role"], f"{c['missing']:.1%}", c["unique"],
             f"{c['min']:.4g}" if "min" in c else "", f"{c['max']:.4g}" if "max" in c else "",
             c.get("outliers", "")]
            for c in q["columns"]]
    balance = "".join(f"<p>Class balance of {_e(k)}: {_e(v)}</p>" for k, v in q["class_balance"].items())
    stop = any("early_stopping" in s for s in manifest["splits"])
    parts = ("train", "early_stopping", "valid", "test") if stop else ("train", "valid", "test")
    split_rows = [[s["fold"], *(f"{s[p]['patients']} patients / {s[p]['rows']} rows" if p in s else "" for p in parts)]
                  for s in manifest["splits"]]
    note = manifest.get("patient_id_note")
    return (f"<p>{q['rows']} records from {q['patients']} patients.</p>" + balance
            + f"<p>Quality findings:</p><ul>{findings}</ul>"
            + (f"<p class='flag'>{_e(note)}.</p>" if note else "")
            + "<details><summary>Columns</summary>"
            + _table(["column", "type", "role", "missing", "unique", "min", "max", "outliers"], rows)
            + "</details><h3>Splits (by patient)</h3>"
            + ("<p>The validation patients are split in two: early stopping watches one part; the other, unseen "
               "by every model during training, selects the model and calibrates the threshold and conformal "
               "sets (split.early_stopping).</p>" if stop else "")
            + _table(["fold", *(("train", "early stopping", "validation (selection)", "test") if stop else
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
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _blocks_section(run_dir: Path) -> str:
    path = run_dir / "blocks.json"
    if not path.exists():
        return ""
    b = read_json(path)
    rows = [[_e(name) + (" &#9733;" if name in (b["best_single"], b["best_fusion"]) else ""), r["columns"], _ci(r)]
            for name, r in b["configs"].items()]
    return (f"<h2>Feature blocks and fusion</h2><p>Each block alone, early fusion (one {_e(b['model'])} on all "
            f"columns) and late fusion (one encoder per block), trained on the same {b['repeats']} x {b['k']}-fold "
            f"patient partitions; out-of-fold {_e(_display(b['metric']))} averaged over repeats, 95% CIs from "
            f"{b['n_bootstrap']} patient bootstrap resamples (paired for the difference).</p>"
            + _table(["configuration", "input columns", _display(b["metric"])], rows)
            + f"<p><b>{_e(b['verdict'])}.</b> The best single block was chosen on these same out-of-fold scores, "
            "which favours it slightly: a conservative test for fusion.</p>")


def _target_text(cfg: dict) -> str:
    if cfg["kind"] == "survival":
        return f"time '{cfg['time']}' ({cfg.get('time_unit', '')}), event '{cfg['event']}'"
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
        rows.append([_e(name), f"{np.exp(b):.3f}", f"{lo:.3f}&ndash;{hi:.3f}"])
    return ("<h2>Cox model: hazard ratios</h2><p>Per 1 SD of a numeric feature (inputs are standardized), or for a "
            "category's indicator; ridge-penalized (alpha in the config), so estimates shrink toward 1. "
            "95% Wald intervals from the penalized information matrix.</p>"
            + _table(["feature", "hazard ratio", "95% CI"], rows))


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
        f"<h1>{_e(title)}</h1><p class='muted'>run {_e(run_dir.name.removesuffix('.incomplete'))} &middot; "
        f"finished {_e(manifest['finished_at'])}"
        f" &middot; {_e(kind)} task on {_e(_target_text(task['config']))}</p>",
        "<h2>Intended use</h2><p>" + _e(config.get("intended_use") or
                                       "Not stated. A research model: not for clinical decisions without "
                                       "prospective, external validation.") + "</p>",
        f"<h2>Data</h2><p>{_e(manifest['data']['description'] or manifest['data']['source'])}</p>"
        + _quality_section(quality, manifest),
        "<h2>Model comparison</h2>" + _metrics_section(metrics, names),
        "<h2>Performance plots</h2>" + _plots_section(preds, metrics, kind, classes,
                                                      task["config"].get("time_unit", "")),
        _hazard_ratios(run_dir),
        _decision_section(metrics, kind),
        _conformal_section(metrics, kind, classes),
        "<h2>Subgroups</h2>" + _subgroup_section(metrics, names),
        _external_section(run_dir, names),
        _blocks_section(run_dir),
        "<h2>Explanations</h2>" + _explain_section(expl, metrics["selected_model"]),
        ("<h2>Training</h2>" + _img(plots.history_plot(histories), "training curves")) if histories else "",
        _tripod_section(config, manifest, metrics, quality, run_dir, kind),
        "<h2>Limitations</h2>" + _limitations(manifest, metrics, quality, sorted(
            p.name for p in (run_dir / "external").glob("*") if (p / "metrics.json").exists())),
        "<h2>Study configuration</h2><pre>" + _e(yaml.safe_dump(config, sort_keys=False)) + "</pre>",
        "<h2>Environment</h2>" + _table(["item", "value"], [[_e(k), _e(v)] for k, v in manifest.items()
                                                             if k not in ("data", "splits", "feature_types")]),
    ]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title><style>{CSS}</style>"
            f"</head><body>{''.join(body)}</body></html>")


def write_report(run_dir: str | Path, path: str | Path | None = None) -> Path:
    """Write the report (atomically) into the run directory, or to `path`."""
    run_dir = Path(run_dir)
    out = Path(path) if path else run_dir / "report.html"
    write_text(out, render_report(run_dir))
    return out


