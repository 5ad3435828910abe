"""The report's multimodal parts: each modality's coverage (Data), each modality's contribution by ablation
(Explanations), and `compare_modalities`: each modality alone, each left out, and all together on shared folds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medflow.artifacts import read_json
from medflow.report import plots
from medflow.report.elements import ci, escape, html_table, img

__all__ = ["coverage_section", "modality_explain_section", "modalities_section"]


def coverage_section(manifest: dict[str, Any]) -> str:
    cov = manifest.get("data", {}).get("modalities")
    if not cov:
        return ""
    rows = [[escape(k), escape(v["modality"]), f"{v['present']:,}", f"{v['share']:.1%}", f"{v['items']:,}",
             f"{v['after_prediction_time']:,}", escape(v["source"])] for k, v in cov.items()]
    return ("<h3>Modalities</h3><p>Each sample reads, per modality, only what was recorded at or before its prediction "
            "time; a sample without a modality is predicted from the others. Items dated after every prediction time "
            "of their patient are never read.</p>"
            + html_table(["modality", "kind", "samples with it", "share", "items in source", "items after the "
                          "prediction time", "source"], rows))


def modality_explain_section(expl: dict[str, Any], selected: str) -> str:
    e = expl[selected]
    rows = []
    for name, m in e["modalities"].items():
        lost = m[f"{e['metric']}_lost"]
        rows.append([escape(name), f"{m['present']:,}", f"{lost:+.3f}", f"{m['mean_abs_change']:.3f}",
                     f"{m['decisions_changed']:.1%}" if "decisions_changed" in m else "-"])
    parts = [f"<p>Modality ablation of <b>{escape(selected)}</b>: each modality removed (marked missing, as for a "
             f"patient who lacks it) on the test samples; {escape(e['metric'])} with all of them "
             f"{e['full']:.3f}.</p>",
             html_table(["modality", "test samples with it", f"{escape(e['metric'])} lost without it",
                         "mean |change| of the prediction", "decisions changed (at 0.5)"], rows),
             img(plots.importance_plot(dict(sorted(e["mean_abs_attribution"].items(), key=lambda kv: -kv[1])), None,
                                       f"Mean |contribution| per modality ({selected})"), "modality contributions")]
    ex = [[f"test sample {x['row']}", ", ".join(f"{escape(k)} {v:+.3f}" for k, v in
                                                   sorted(x["attributions"].items(), key=lambda kv: -abs(kv[1])))]
          for x in e["examples"]]
    if ex:
        parts.append("<p>Each modality's contribution to example predictions (prediction with all minus without "
                     "it):</p>" + html_table(["sample", "contributions"], ex))
    within = [[escape(m), ", ".join(f"{escape(c)} {v:+.3f}" for c, v in list(cols.items())[:8])]
              for m, cols in e.get("within_tables", {}).items()]
    if within:
        parts.append(f"<p>Within each table modality: {escape(e['metric'])} lost when one column is shuffled among "
                     "the patients who have it (permutation importance, top 8):</p>"
                     + html_table(["modality", "columns"], within))
    others = [[escape(k), ", ".join(f"{escape(m)} {v[e['metric'] + '_lost']:+.3f}" for m, v in x["modalities"].items())]
              for k, x in expl.items() if k != selected and x.get("method") == "modality_ablation"]
    if others:
        parts.append(f"<p>{escape(e['metric'])} lost without each modality, other models:</p>"
                     + html_table(["model", "per modality"], others))
    return "".join(parts)


def modalities_section(run_dir: Path) -> str:
    path = run_dir / "modalities.json"
    if not path.exists():
        return ""
    b = read_json(path)
    rows = [[escape(name) + (" &#9733;" if name in (b["best_single"], b["best_fused"]) else ""), escape(r["set"]),
             ci(r), ci(r["vs_all"]) if "vs_all" in r else "-",
             f"{r['decisions_changed']:.1%}" if "decisions_changed" in r else "-"]
            for name, r in b["configs"].items()]
    added = [[escape(m), ci(a)] for m, a in b["added_value"].items()]
    missing = [[escape(m), f"{v['n']:,}", *(ci(v[c]) if c in v else "-" for c in (b["best_single"], b["best_fused"]))]
               for m, v in b.get("missing", {}).items()]
    return (f"<h2>Did each modality help?</h2><p>Every modality alone, every set that leaves one out and all together, "
            f"each with {escape(b['model'])}, on the same {b['repeats']} x {b['k']}-fold patient partitions "
            f"(out-of-fold {escape(b['metric'])}, 95% CI by bootstrap over patients). {escape(b['verdict'])}.</p>"
            + html_table(["configuration", "modalities", escape(b["metric"]), "difference from all (paired CI)",
                          "decisions changed vs all"], rows)
            + "<p>Each modality's added value: all modalities minus all but it (paired bootstrap; above 0: it "
              "helped).</p>" + html_table(["modality", "added value (95% CI)"], added)
            + ("<p>Patients missing a modality: the best single modality and the best fused set on them.</p>"
               + html_table(["missing", "samples", b["best_single"], b["best_fused"]], missing) if missing else ""))
