"""Report sections on validation beyond the metrics: model selection and tuning, decision curves, conformal
prediction, external validation and the TRIPOD+AI checklist."""

from __future__ import annotations

from pathlib import Path

from medflow.artifacts import read_json
from medflow.report import plots
from medflow.report.elements import ci, display, escape, html_table, img

__all__ = ["selection_section", "tuning_section", "decision_section", "conformal_section", "external_results",
           "external_section", "tripod_section"]


def tuning_section(metrics: dict) -> str:
    """The nested hyper-parameter search: the best parameters of each tuned model on each outer fold."""
    tuning = metrics.get("tuning") or {}
    if not tuning:
        return ""
    rows = []
    for model, folds in tuning.items():
        for fold, r in folds.items():
            params = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                               for k, v in r["best_params"].items())
            rows.append([escape(model), escape(fold), r["n_trials"], f"{r['best_value']:.4f}", escape(params)])
    first = next(iter(next(iter(tuning.values())).values()))
    return ("<h3>Hyper-parameter search</h3><p>Optuna (TPE), nested: each trial trained on "
            f"{first['inner_folds']} inner patient folds of the outer fold's training and validation patients and "
            f"was scored by the mean inner-fold {escape(first['metric'])}; the test split was never seen. The best "
            "parameters were then trained on the outer fold.</p>"
            + html_table(["model", "outer fold", "trials", f"best inner {first['metric']}", "best parameters"], rows))


def selection_section(metrics: dict) -> str:
    """How the starred model was chosen: the rule, its reasoning, every model's validation score."""
    sel = metrics.get("selection") or {}
    if not sel.get("models"):
        return f"<p>{escape(sel.get('reason', ''))}</p>"
    rows = [[escape(m) + (" &#9733;" if m == sel["selected"] else ""), ci(r), r["complexity"],
             "" if r["diff_from_best"] is None else
             f"{r['diff_from_best']:.3f} <span class='muted'>({r['diff_low']:.3f}&ndash;{r['diff_high']:.3f})</span>",
             "yes" if r["tied_with_best"] else "no"] for m, r in sel["models"].items()]
    folds = f" pooled over {sel['n_folds']} folds" if sel["n_folds"] > 1 else ""
    warn = f"<p class='flag'>Warning: {escape(sel['warning'])}</p>" if sel.get("warning") else ""
    return (f"<h3>Model selection</h3><p>Validation predictions{folds}: {sel['n_valid_patients']} patients"
            + (f", {sel['n_valid_events']} events" if sel.get("n_valid_events") is not None else "")
            + f". Rule <b>{escape(sel['rule'])}</b>: {escape(sel['reason'])}.</p>" + warn
            + html_table(["model", f"validation {display(sel['metric'])}", "complexity rank",
                      "behind the best (paired CI)", "tied with the best"], rows))


def decision_section(metrics: dict, kind: str) -> str:
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
        imgs.append(img(plots.decision_curve_plot(th, curves, treat_all, title), "decision curve"))
        for m, r in useful.items():
            span = "none" if r is None else f"{r[0]:.2f}&ndash;{r[1]:.2f}"
            rows.append([escape(m)] + ([escape(h)] if h else []) + [span])
    return ("<h2>Decision curves</h2><p>Net benefit of treating the patients whose predicted risk is at least the "
            "threshold probability, against treating everyone and treating no one (Vickers &amp; Elkin 2006). "
            "The threshold says how many false positives one true positive is worth: pt / (1 - pt). "
            + ("For survival, risk is the predicted probability of the event by the horizon, and net benefit "
               "uses the Kaplan-Meier estimate among the treated, so censoring is handled. " if kind == "survival"
               else "") + "</p><div class='grid'>" + "".join(imgs) + "</div>"
            + html_table(["model"] + (["horizon"] if kind == "survival" else [])
                     + ["thresholds where the model beats treat-all and treat-none"], rows))


def conformal_section(metrics: dict, kind: str, classes: list) -> str:
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
            rows.append([escape(m), ci(t["coverage"]), f"&plusmn;{c['qhat']:.4g}", f"{t['mean_width']:.4g}"])
        elif kind == "survival":
            for h, r in t["horizons"].items():
                rows.append([escape(m), escape(h), ci(r["coverage"]), f"{r['mean_set_size']:.2f}", r["n_known"]])
        else:
            by_class = ", ".join(f"{escape(k)}: {v['value']:.3f}" for k, v in t["coverage_by_class"].items())
            rows.append([escape(m), ci(t["coverage"]), by_class, f"{t['mean_set_size']:.2f}",
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
            "patient. <span class='muted'>Method: " + escape(first["method"]) + ".</span></p>"
            + html_table(header, rows))


def external_results(run_dir: Path) -> dict[str, dict]:
    """The external validations written by `medflow evaluate RUN --data ...`, by name."""
    return {p.name: read_json(p / "metrics.json")
            for p in sorted((run_dir / "external").glob("*")) if (p / "metrics.json").exists()}


def external_section(external: dict[str, dict], names: list[str]) -> str:
    """External validations, apart from the internal results."""
    if not external:
        return ""
    parts = ["<h2>External validation</h2><p>The run's models applied unchanged (same thresholds, same conformal "
             "sets) to data from outside the training source. These results, not the internal ones above, say "
             "how the model transports to that site or period.</p>"]
    for r in external.values():
        ext = r["external"]
        parts.append(f"<h3>{escape(ext['name'])}</h3><p>{escape(ext['source'])}: {ext['n_records']} records, "
                     f"{ext['n_patients']} patients" + (f"; outcome counts {escape(ext['class_balance'])}"
                                                       if ext.get("class_balance") else "") + ".</p>")
        if ext.get("synthetic"):
            parts.append("<p class='flag'>These external data are SYNTHETIC.</p>")
        rows = [[escape(m) + (" &#9733;" if m == r["selected_model"] else "")] + [ci(e["metrics"][n]) for n in names]
                for m, e in r["models"].items()]
        parts.append(html_table(["model"] + [display(n) for n in names], rows))
        cal = [[escape(m), ci(e["calibration_fit"]["citl"]), ci(e["calibration_fit"]["slope"]),
                f"{e['calibration_fit']['oe_ratio']['value']:.3f}"]
               for m, e in r["models"].items() if e.get("calibration_fit")]
        if cal:
            parts.append("<p>Calibration-in-the-large (0 is ideal: the mean prediction matches the outcome rate) "
                         "and calibration slope (1 is ideal; below 1, predictions are too extreme), "
                         "with patient-bootstrap 95% CIs:</p>"
                         + html_table(["model", "calibration-in-the-large", "calibration slope", "observed / expected"],
                                  cal))
        drift = r.get("drift") or {}
        flags = "".join(f"<li>{escape(f)}</li>" for f in drift.get("flagged", [])) or "<li>no large shifts</li>"
        parts.append(f"<p>Input drift against the training data:</p><ul>{flags}</ul>")
        if "unknown_code_share" in drift:
            parts.append(f"<p>Event histories: {drift['unknown_code_share']:.1%} of the events carry codes training "
                         f"never saw; {drift['events_per_sample']:.0f} events per sample. Lab values below are "
                         "standardized with the training mean and sd, so their mean is the shift from training."
                         "</p>")
        if drift.get("columns"):
            rows = [[escape(c["column"]), escape(c["type"]), "" if c.get("missing_train") is None else
                     f"{c['missing_train']:.1%}", f"{c['missing_new']:.1%}",
                     f"{c['smd']:+.2f}" if c.get("smd") is not None and c["smd"] == c["smd"] else "",
                     f"{c['unseen_share']:.1%}" if "unseen_share" in c else ""] for c in drift["columns"]]
            parts.append("<details><summary>Drift by column</summary>" + html_table(
                ["column", "type", "missing (training)", "missing (new)", "standardized mean difference",
                 "unseen categories"], rows) + "</details>")
        rc = r.get("recalibration")
        if rc:
            rows = []
            for m, e in rc["models"].items():
                for when in ("before", "after"):
                    c = e[when]["calibration_fit"]
                    rows.append([escape(m), when, ci(c["citl"]), ci(c["slope"])]
                                + [ci(e[when]["metrics"][n]) for n in names if n in e[when]["metrics"]][:3])
            shown = [n for n in names][:3]
            parts.append(f"<p>Recalibration ({escape(rc['method'])}) fitted on {rc['n_fit_patients']} of the new "
                         f"patients and reported on the other {rc['n_report_patients']}; the decision threshold "
                         "moves through the same map:</p>"
                         + html_table(["model", "", "calibration-in-the-large", "calibration slope"]
                                  + [display(n) for n in shown], rows))
    return "".join(parts)


def tripod_section(config: dict, manifest: dict, metrics: dict, quality: dict, external: dict[str, dict],
                   kind: str) -> str:
    """The TRIPOD+AI items answered from the run (report/tripod.py), folded."""
    from medflow.report.tripod import tripod_items

    sets = [{"name": name, "recalibrated": "recalibration" in r} for name, r in external.items()]
    rows = tripod_items(config, manifest, metrics, quality, sets, kind)
    counts = {s: sum(r[2] == s for r in rows) for s in ("reported", "partly", "author", "not applicable")}
    cls = {"reported": "", "partly": "", "author": "flag", "not applicable": "muted"}
    body = [[escape(i), escape(topic), f"<span class='{cls[st]}'>{escape(st)}</span>", escape(text)]
            for i, topic, st, text in rows]
    return ("<h2>TRIPOD+AI checklist</h2><p>The TRIPOD+AI reporting items (Collins et al., BMJ 2024), answered "
            f"from this run: {counts['reported']} reported, {counts['partly']} partly, {counts['author']} for the "
            f"authors to supply, {counts['not applicable']} not applicable.</p>"
            + "<details><summary>Items</summary>" + html_table(["item", "topic", "status", "answer from the run"], body)
            + "</details>")
