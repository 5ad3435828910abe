"""Report sections on a model's life beyond its metrics: input drift in service, summed over every service process
that saved counts into `<run>/monitoring/` (docs/service.md), and the privacy spent by DP-SGD training
(docs/privacy.md), and where starting weights came from (docs/pretraining.md)."""

from __future__ import annotations

from pathlib import Path

from medflow.artifacts import read_json
from medflow.evaluate.drift import merge_states, summarize
from medflow.report.elements import ci, escape, html_table

__all__ = ["monitoring_section", "privacy_section", "federated_section", "transfer_section"]


def _share(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def monitoring_section(run_dir: Path) -> str:
    files = sorted((Path(run_dir) / "monitoring").glob("*.json"))
    if not files:
        return ""
    states = [read_json(f) for f in files]
    merged = merge_states(states)
    summary = summarize(merged)
    versions = sorted({f"{s.get('model')} v{s.get('version')}" for s in states})
    since = min(s.get("started", "") for s in states)
    until = max(s.get("updated", "") for s in states)
    rows = []
    for r in sorted(summary["features"], key=lambda r: -(r["psi"] or 0)):
        rows.append([escape(r["feature"]), escape(r["type"]), "" if r["psi"] is None else f"{r['psi']:.3f}",
                     escape(r.get("stability", "")), _share(r.get("outside_training_range_share")),
                     _share(r.get("unseen_category_share")), _share(r["missing_share"]),
                     _share(r["missing_in_training"])])
    flagged = "".join(f"<li>{escape(f)}</li>" for f in summary["flagged"])
    note = f"<p><em>{escape(summary['note'])}</em></p>" if summary["note"] else ""
    return ("<h2>Monitoring in service</h2>"
            f"<p>{summary['records_seen']:,} record(s) predicted by {escape(', '.join(versions))} between "
            f"{escape(since)} and {escape(until)} ({len(files)} service process(es)), against the study data's "
            "distribution: population stability index per feature (&lt; 0.1 stable, 0.1-0.2 moderate, &ge; 0.2 "
            "shift), share outside the training range, unseen categories and missingness.</p>" + note
            + (f"<p><strong>Flagged:</strong></p><ul>{flagged}</ul>" if flagged else "<p>Nothing flagged.</p>")
            + html_table(["feature", "type", "PSI", "reading", "outside training range", "unseen categories",
                          "missing", "missing in training"], rows))


def privacy_section(metrics: dict) -> str:
    """Models trained with DP-SGD: the epsilon the accountant spent per fold, beside every model's test metrics
    (the non-private ones trained on the same folds)."""
    privacy = metrics.get("privacy") or {}
    if not privacy:
        return ""
    ledger = [(model, fold, p) for model, folds in privacy.items() for fold, p in folds.items()]
    rows = [[escape(model), escape(fold), f"{p['epsilon_spent']:.3f}", f"{p['epsilon_target']:g}", f"{p['delta']:g}",
             f"{p['max_grad_norm']:g}", f"{p['noise_multiplier']:.3f}", f"{p['sample_rate']:.3f}", p["steps"]]
            for model, fold, p in ledger]
    primary = metrics.get("primary_metric", "")
    cmp_rows = [[escape(m) + (" (DP-SGD)" if m in privacy else ""), ci(e["metrics"][primary])]
                for m, e in metrics["models"].items() if primary in e["metrics"]]
    return ("<h2>Differential privacy</h2><p>Models trained with DP-SGD (Opacus: per-sample clipping, Gaussian "
            "noise, Poisson batches, RDP accountant). The guarantee covers the trained weights with respect to the "
            "training records; validation records (early stopping, selection) and test records are not protected. "
            "Every model below was trained and tested on the same folds.</p>"
            + html_table(["model", "fold", "epsilon spent", "epsilon target", "delta", "clip norm",
                          "noise multiplier", "sample rate", "steps"], rows)
            + (html_table(["model", f"test {escape(primary)} (95% CI)"], cmp_rows) if cmp_rows else ""))



def federated_section(metrics: dict) -> str:
    """A federated run (`medflow federate`): the sites, what they shared, and each model's test metric on every
    site's held-out patients (federated, pooled, each site alone), with 95% CIs."""
    fed = metrics.get("federated")
    if not fed:
        return ""
    primary = metrics.get("primary_metric", "")
    sites = list(fed["sites"])
    site_rows = [[escape(s), v["train"]["patients"], v["valid"]["patients"], v["test"]["patients"],
                  f"{v['prevalence']:.1%}" if "prevalence" in v else ""] for s, v in fed["sites"].items()]
    roles = [(fed["federated_model"], f"federated ({fed['strategy']})"), (fed["pooled_model"], "pooled (upper bound)")]
    roles += [(m, f"{s} alone") for s, m in fed["alone_models"].items()]
    rows = []
    for model, role in roles:
        entry = metrics["models"].get(model)
        if entry is None or primary not in entry["metrics"]:
            continue
        groups = (entry.get("subgroups", {}).get("site") or {}).get("groups", {})
        rows.append([escape(role), ci(entry["metrics"][primary])]
                    + [ci(groups[s]["metrics"][primary]) if s in groups and primary in groups[s]["metrics"] else ""
                       for s in sites])
    mu = f", proximal mu {fed['proximal_mu']:g}" if fed.get("proximal_mu") is not None else ""
    return ("<h2>Federated training</h2>"
            f"<p>{escape(fed['federated_model'])} was trained with Flower ({escape(fed['strategy'])}{mu}) over "
            f"{len(sites)} sites for {fed['rounds']} rounds of {fed['local_epochs']} local epoch(s); the global "
            f"weights of round {fed['best_round']} (lowest validation loss over the sites) are kept. Shared: "
            f"{escape(fed['shared'])}. Each site split its own patients; every model below shares the architecture, "
            "the featurizer (merged from the sites' summaries) and the training options, and is tested on the same "
            "held-out patients of every site.</p>"
            + html_table(["site", "train patients", "validation patients", "test patients", "prevalence (train)"],
                         site_rows)
            + html_table(["model", f"test {escape(primary)}, all sites"] + [f"{escape(s)}" for s in sites], rows))


_MODES = {"none": "fine-tuned (all weights)", "backbone": "linear probe (encoder frozen)",
          "features": "frozen features + cross-validated logistic regression"}


def transfer_section(metrics: dict) -> str:
    """Where each model's starting weights came from (`init_from`): another run or a pretrained run, how they were
    used, and for pretrained runs the vocabulary coverage and the overlap of the test patients with pretraining."""
    transfer = metrics.get("transfer") or {}
    if not transfer:
        return ""
    rows = []
    for model, t in transfer.items():
        extra = []
        if "study_code_share" in t:
            extra.append(f"{t['study_code_share']:.0%} of the study's {t['study_codes']} codes known to the encoder")
        if "unknown_event_share" in t:
            extra.append(f"{t['unknown_event_share']:.1%} of training events &lt;unknown&gt;")
        if "test_patients" in t:
            extra.append(f"{t['test_patients_in_pretraining']} of {t['test_patients']} test patients in the "
                         "pretraining" + (" (allowed: results are optimistic)" if t["test_patients_in_pretraining"]
                                          else ""))
        if "logistic_regression" in t:
            lr = t["logistic_regression"]
            extra.append(f"C = {lr['C']:g} ({escape(lr['C_chosen_by'])})")
        rows.append([escape(model), escape(t.get("source", "")), _MODES.get(t.get("freeze", ""), t.get("freeze", "")),
                     f"{t.get('tensors_copied', 0)} of {t.get('tensors_total', 0)}",
                     f"{t.get('trainable_parameters', 0):,}", "; ".join(extra)])
    return ("<h2>Starting weights</h2>" + html_table(["model", "from", "how", "tensors copied", "trainable parameters",
                                                       "checks"], rows))
