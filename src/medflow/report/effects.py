"""The treatment-effect sections of the model card (runs whose task is `treatment_effect`)."""

from __future__ import annotations

from pathlib import Path

from medflow.artifacts import read_json
from medflow.report import effects_plots as plots
from medflow.report.elements import ci, escape, html_table, img

__all__ = ["effects_section"]


def _reference(a: dict, metrics: dict) -> str:
    names = {"difference_in_means": "difference in means (unadjusted)", "ipw": "IPW (Hajek, cross-fitted propensity)",
             "aipw": "AIPW / doubly robust (reference)"}
    rows = [[escape(names.get(k, k)), ci(v)] for k, v in a["reference"].items()]
    sel = metrics["selected_model"]
    rows.append([f"selected model {escape(sel)}: mean CATE on the test split",
                 ci(metrics["models"][sel]["metrics"]["ate"])])
    if a.get("true_ate") is not None:
        rows.append(["true ATE (simulation)", f"{a['true_ate']:.3f}"])
    if a.get("published"):
        p = a["published"]
        rows.append([f"published: {escape(p['method'])} ({escape(p['source'])})",
                     f"{p['value']:.2f} <span class='muted'>({p['low']:.2f}&ndash;{p['high']:.2f})</span>"])
    return ("<h3>Average effect</h3><p>Reference estimates on all analysed patients (95% CIs: Welch for the "
            "difference, 300 patient bootstrap resamples for IPW, the influence function for AIPW); the models' own "
            "estimates (mean predicted CATE on the test split) are in the comparison table above.</p>"
            + html_table(["estimate", f"effect of {a['treatment']} on {a['outcome']}"], rows))


def effects_section(run_dir: Path, metrics: dict) -> str:
    """Overlap, balance, reference ATEs, CATE distribution, uplift, CATE calibration and the assumptions."""
    path = run_dir / "task_analysis.json"
    if not path.exists():
        return ""
    a = read_json(path)
    sel = metrics["selected_model"]
    models = metrics["models"]
    ov = a["overlap"]
    trimmed = (f" Trimming to propensities in [{a['trim'][0]:g}, {a['trim'][1]:g}] removed {a['n_trimmed']} patients: "
               "the effects below hold for the remaining population only." if a.get("trim") else "")
    worst = max(a["balance"], key=lambda r: abs(r["smd_weighted"])) if a["balance"] else None
    parts = [
        "<h2>Treatment effects</h2>",
        f"<p>{a['n']} patients, {a['n_treated']} treated. Propensity and outcome models: "
        f"{escape(a['nuisance']['model'])}, cross-fitted over {a['nuisance']['folds']} patient folds (each patient's "
        f"estimates come from models that never saw that patient). Propensity AUROC {ov['propensity_auroc']:.3f} "
        "(near 0.5: arms alike; near 1: arms barely comparable)." + trimmed + "</p>",
        "<div class='grid'>" + (img(plots.overlap_plot(a["overlap_before_trim"], "before trimming"),
                                    "propensity overlap before trimming") if a.get("trim") else "")
        + img(plots.overlap_plot(ov, "analysed" if a.get("trim") else ""), "propensity overlap")
        + (img(plots.balance_plot(a["balance"]), "covariate balance") if a["balance"] else "") + "</div>",
        (f"<p>Largest imbalance left after inverse-propensity weighting: {escape(worst['column'])}, |SMD| "
         f"{abs(worst['smd_weighted']):.3f} (before {abs(worst['smd']):.3f}).</p>" if worst else ""),
        _reference(a, metrics),
        "<h3>Who benefits</h3><p>Predicted individual effects (CATE) on the test split, the uplift curve (benefit "
        "gained by treating the patients with the highest predicted benefit first, estimated with doubly robust "
        "pseudo-outcomes, against treating at random) and, for the selected model, the effect observed within "
        "quantile bins of the predicted effect.</p>",
        "<div class='grid'>" + img(plots.cate_hist_plot({m: e["cate_hist"] for m, e in models.items()}, ""),
                                   "CATE distribution")
        + img(plots.uplift_plot({m: e["uplift"] for m, e in models.items()}), "uplift curve")
        + img(plots.cate_calibration_plot(models[sel]["cate_calibration"]["bins"], sel), "CATE calibration")
        + "</div>",
    ]
    rows = []
    for m, e in models.items():
        iv = e.get("interval") or {}
        cov_true = iv.get("test_coverage_true")
        rows.append([escape(m), f"{e['recommended_share']:.1%}",
                     f"&plusmn;{iv['qhat']:.3f}" if iv else "n/a",
                     f"{iv['test_coverage_pseudo']:.1%}" if iv else "n/a",
                     f"{cov_true:.1%}" if cov_true is not None else "unknown"])
    parts.append("<h3>Recommendations and intervals</h3><p>Share of test patients for whom treatment is recommended "
                 "(predicted benefit above task.benefit_threshold), and the split-conformal interval of each "
                 "patient's effect, calibrated on the validation patients' doubly robust pseudo-outcomes: it covers a "
                 "patient's pseudo-outcome at the stated rate and is conservative for the CATE itself.</p>"
                 + html_table(["model", "treatment recommended", "interval half-width", "covers pseudo-outcome",
                               "covers true effect"], rows))
    parts.append("<h3>Assumptions (not testable from these data)</h3><ul>"
                 "<li>No unmeasured confounding: every common cause of treatment and outcome is among the covariates. "
                 "Nothing in the data can confirm this; a confounder left out biases every estimate here.</li>"
                 "<li>Positivity: every patient could have received either arm; checked above (overlap), and effects "
                 "for patients at the edges of the propensity distribution are extrapolations.</li>"
                 "<li>Consistency and no interference: one version of the treatment, and one patient's treatment "
                 "does not change another's outcome.</li>"
                 "<li>Covariates are measured before the treatment; post-treatment variables must not be adjusted for "
                 "(declare them in task.post_treatment and the run refuses them).</li>"
                 "<li>The doubly robust scores (tau-risk, uplift, CATE calibration) are only as good as the "
                 "cross-fitted nuisance models; with the true effect unknown, sqrt(PEHE) cannot be computed.</li></ul>")
    return "".join(parts)
