"""The fidelity and privacy report of a synthetic table: one self-contained HTML page, marked SYNTHETIC."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medflow.report.elements import escape, html_table, img

__all__ = ["report_html"]


def _shapes_plot(per_column: dict[str, float]) -> str:
    from medflow.report.plots import _encode, _figure

    items = sorted(per_column.items(), key=lambda kv: kv[1])[:30]
    plt, fig, ax = _figure(6.0, max(2.5, 0.22 * len(items) + 1))
    ax.barh([k[:40] for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set(xlim=(0, 1), xlabel="similarity (1 - KS or 1 - TVD)", title="Column shapes, least similar first")
    ax.tick_params(axis="y", labelsize=7)
    return _encode(plt, fig)


def _fmt(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def report_html(report: dict[str, Any], frame: pd.DataFrame) -> str:
    dcr = report["dcr"]
    rows = [["quality (mean of the two below)", _fmt(report["quality"]), "sdmetrics QualityReport's definition"],
            ["column shapes", _fmt(report["column_shapes"]), "1 - KS (numeric), 1 - TVD (categorical), mean"],
            ["column pair trends", _fmt(report["column_pairs"]), "1 - |r diff| / 2, or 1 - TVD of 2-way tables"],
            ["DCR share", _fmt(dcr["share"]), f"synthetic rows closer to a training row than 5% of real rows are "
                                              f"to each other (cutoff {dcr['cutoff']:.3f}); lower is more private"],
            ["exact copies of training rows", _fmt(dcr["exact_copies"]), "share of synthetic rows"],
            ["membership-inference AUROC", _fmt(report["membership_auroc"]),
             "distance-to-closest-synthetic-record attack, members vs held-out; 0.5 = no signal"]]
    if "tstr_auroc" in report:
        rows += [["TSTR AUROC", _fmt(report["tstr_auroc"]), "logistic regression trained on synthetic rows, tested "
                                                           "on the real held-out rows"],
                 ["TRTR AUROC", _fmt(report["trtr_auroc"]), "the same model trained on the real training rows"]]
    seq = ""
    if "sequences" in report:  # event sequences: their shape, real against synthetic, and what was dropped
        sq = report["sequences"]
        seq = ("<h2>Event sequences</h2><p>Measures above are on the prediction samples of the cohort "
               f"<b>{escape(report['cohort'])}</b> as count tables (one code vocabulary for all three). Sampled "
               f"{report['patients']['sampled']} patients; {report['patients']['invalid_dropped']} dropped as "
               "structurally invalid (encounters that do not open and close in order).</p>"
               + html_table(["per patient", "real training", "synthetic"],
                            [[k.replace("_", " "), _fmt(sq["real"][k]), _fmt(sq["synthetic"][k])]
                             for k in ("events_per_patient", "admissions_per_patient", "readmitted_within_30d")]
                            + [["code frequency correlation (log per patient)", "",
                                _fmt(sq["code_frequency_correlation"])]]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>SYNTHETIC data report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;margin:1rem 0}}td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}}
.banner{{background:#b00020;color:#fff;padding:.6rem 1rem;font-weight:bold}}</style></head><body>
<div class="banner">SYNTHETIC DATA: generated records, not patients</div>
<h1>Synthetic data: fidelity and privacy</h1>
<p>Generator <b>{escape(report['model'])}</b> fitted on {report['n_train']} real training rows of
{escape(report['source'])} in {report['fit_seconds']:.1f} s; {report['n_synthetic']} synthetic rows compared with
those rows and with {report['n_holdout']} held-out real rows it never saw (seed {report['seed']}).
{'The real data were themselves SYNTHETIC (simulated).' if report.get('real_data_synthetic') else ''}</p>
{html_table(["measure", "value", "what it is"], rows)}
{seq}
{img(_shapes_plot(report['per_column']), 'column shapes')}
<h2>First synthetic rows</h2>
{html_table([escape(c) for c in frame.columns[:12]], [[escape(v) for v in r] for r in frame.head(8).iloc[:, :12]
                                                      .itertuples(index=False)])}
</body></html>"""
