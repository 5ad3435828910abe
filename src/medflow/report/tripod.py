"""A TRIPOD+AI checklist (Collins et al., BMJ 2024) answered from a run directory.

Each item is answered from what the run holds, or marked for the authors (what no run can know: ethics,
funding, how outcomes were assessed) or not applicable. The answers point to the report section or the
run-directory file that holds the detail, so a reader sees what a publication still needs.
"""

from __future__ import annotations

__all__ = ["tripod_items"]

AUTHOR = "author"
DONE = "reported"
PART = "partly"
NA = "not applicable"


def _n_events(quality: dict) -> str:
    bal = quality.get("class_balance") or {}
    return "; ".join(f"{k}: " + ", ".join(f"{c} = {n}" for c, n in v.items()) for k, v in bal.items()) if bal else ""


def tripod_items(config: dict, manifest: dict, metrics: dict, quality: dict, external_sets: list[dict],
                 kind: str) -> list[tuple[str, str, str, str]]:
    """(item, topic, status, answer) rows for the report; `external_sets`: [{name, recalibrated}]."""
    external = [e["name"] for e in external_sets]
    recalibrated = any(e.get("recalibrated") for e in external_sets)
    data, split, sel = manifest.get("data", {}), config.get("split", {}), metrics.get("selection") or {}
    models = list(metrics.get("models", {}))
    any_entry = next(iter(metrics["models"].values()), {})
    sizes = manifest.get("splits", [])
    split_text = (f"{split.get('kind')} split by patient (test {split.get('test', '')}, validation "
                  f"{split.get('valid')}); " if split.get("kind") == "holdout" else
                  f"{split.get('k')}-fold cross-validation by patient, validation {split.get('valid')} of each "
                  "training part; ")
    subgroups = config.get("evaluate", {}).get("subgroups") or []
    synthetic = "SYNTHETIC (simulated) data. " if manifest.get("synthetic") else ""
    rows: list[tuple[str, str, str, str]] = [
        ("1", "Title", AUTHOR, "Name the study as development and/or evaluation of a prediction model, the "
                               f"population and outcome. Run name: {config.get('name')}."),
        ("2", "Abstract", AUTHOR, "See TRIPOD+AI for Abstracts."),
        ("3a-c", "Background: context, intended use, known inequalities", PART if config.get("intended_use")
         else AUTHOR, config.get("intended_use") or "No intended use was stated in the study (intended_use:)."),
        ("4", "Objectives", AUTHOR, f"Development and internal validation of a {kind} model"
                                    + (f"; external validation on {', '.join(external)}" if external else "")
                                    + "."),
        ("5a-b", "Data source and dates", PART, synthetic + f"Source: {data.get('source', '')}. "
                                               f"{data.get('description') or ''} Collection dates: authors."),
        ("6a-c", "Setting, eligibility, treatments", AUTHOR if not config.get("data", {}).get("cohort") else PART,
         "Cohort definition: " + str(config["data"]["cohort"]) if config.get("data", {}).get("cohort")
         else "Describe the setting and eligibility criteria of the records."),
        ("7", "Data preparation", DONE, "Data-quality findings, missingness and outliers per column (Data "
                                        "section, quality.json); preprocessing fitted on training rows only."),
        ("8a-c", "Outcome", PART, "Outcome column(s): " + ", ".join(_label(config)) + ". How and by whom it was "
                                  "assessed, blinded to predictors: authors."),
        ("9a-c", "Predictors", DONE if manifest.get("features") else PART,
         f"{len(manifest.get('features') or [])} input columns with their types (manifest.json)"
         if manifest.get("features") else "Event histories (codes, values, times) up to each prediction time."),
        ("10", "Sample size", PART, f"{quality.get('rows')} records from {quality.get('patients')} patients; "
                                    + (_n_events(quality) + ". " if _n_events(quality) else "")
                                    + "Justify the size (e.g. Riley et al.) in the paper."),
        ("11", "Missing data", DONE, "Median/mode imputation with missing-indicator columns, fitted on training "
                                     "rows (docs/evaluation.md); per-column missingness in the Data section."),
        ("12a", "Data use: splits", DONE, split_text + "; ".join(
            f"fold {s['fold']}: {s['train']['patients']}/{s['valid']['patients']}/{s['test']['patients']} "
            "patients" for s in sizes[:5])),
        ("12b", "Predictor handling", DONE, "Standardization, one-hot with an unknown bucket (tables); code "
                                            "vocabularies fitted on training patients (events)."),
        ("12c", "Model type, building, tuning, internal validation", DONE,
         f"Models {', '.join(models)} with the hyper-parameters in the study configuration; selection rule "
         f"'{sel.get('rule', 'none')}': {sel.get('reason', '')}. No hyper-parameter search."),
        ("12d", "Heterogeneity across centres", AUTHOR if not external else PART,
         "External validation: " + ", ".join(external) if external else "Single source; no centre variable."),
        ("12e", "Performance measures", DONE, f"Primary {metrics.get('primary_metric')}; every metric with a "
                                              f"{int(metrics.get('level', 0.95) * 100)}% patient-bootstrap CI; "
                                              "calibration; decision curves; conformal coverage."),
        ("12f", "Model updating / recalibration", DONE if recalibrated else NA,
         "Recalibration on external data: see External validation." if recalibrated else "No updating."),
        ("13", "Class imbalance", DONE if kind in ("binary", "multiclass") else NA,
         f"Class weights: {config.get('task', {}).get('class_weight')}; stratified splits: "
         f"{split.get('stratify')}; threshold method {metrics.get('threshold_method', {}).get('method')}."
         if kind in ("binary", "multiclass") else "Not a classification task."),
        ("14", "Fairness", DONE if subgroups else AUTHOR,
         f"Subgroup audit over {', '.join(_subgroup_names(subgroups))} (Subgroups section)." if subgroups
         else "No sensitive attributes were named (evaluate.subgroups)."),
        ("15", "Model output", DONE, _output_text(kind, any_entry)),
        ("16", "Training vs evaluation data differences", DONE if external else PART,
         "Drift summary per external data set (External validation)." if external
         else "Internal test split drawn from the same source (same distribution by design)."),
        ("17", "Ethical approval", AUTHOR, "State the approving body and consent."),
        ("18a-f", "Open science: funding, conflicts, protocol, registration, data and code", PART,
         f"Code: medflow {manifest.get('medflow')}, the study configuration and seed {manifest.get('seed')} "
         "reproduce the run (data fingerprint in manifest.json). Funding, conflicts, protocol: authors."),
        ("19", "Patient and public involvement", AUTHOR, "Describe it, or say there was none."),
        ("20a-c", "Participants: flow, characteristics, development vs evaluation", PART,
         "Patients per split in the Data section; characteristics by split: authors."),
        ("21", "Numbers of participants and outcome events", DONE,
         f"{quality.get('patients')} patients; " + (_n_events(quality) or "see the Data section") + "."),
        ("22", "Full model specification", DONE, "Weights and preprocessing state in the run directory "
                                                 "(model.safetensors / model.skops, featurizer.json)."),
        ("23a-b", "Performance with CIs; heterogeneity", DONE, "Model comparison, Performance plots, "
                                                               "Subgroups" + (", External validation"
                                                                              if external else "") + "."),
        ("24", "Model updating results", DONE if recalibrated else NA,
         "Before/after recalibration on external data." if recalibrated else "No updating."),
        ("25-26", "Interpretation and limitations", PART, "Limitations section (generated); interpretation: "
                                                          "authors."),
        ("27a-c", "Usability: poor inputs, user expertise, next steps", PART,
         "Missing or unseen inputs are imputed or mapped to an unknown bucket, with a warning at prediction; "
         "conformal sets flag undecided patients. User expertise and next steps: authors."),
    ]
    return rows


def _subgroup_names(subgroups: list) -> list[str]:
    return [s if isinstance(s, str) else str(s.get("name") or s.get("column")) for s in subgroups]


def _label(config: dict) -> list[str]:
    t = config.get("task", {})
    return [str(t[k]) for k in ("label", "time", "event", "treatment", "outcome") if t.get(k)]


def _output_text(kind: str, entry: dict) -> str:
    if kind == "binary":
        return (f"Probability of the positive class, a decision at threshold {entry.get('threshold', 0.5):.3f} "
                "(chosen on validation), a conformal prediction set, attributions.")
    if kind == "multiclass":
        return "Class probabilities, the most probable class, a conformal prediction set, attributions."
    if kind == "regression":
        return "Predicted value with a conformal interval, attributions."
    if kind == "survival":
        return "Risk score, survival probability at each horizon and the whole curve, conformal status sets."
    return "See the predict output."
