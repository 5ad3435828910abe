"""The report's explanation section: permutation importance and attributions (tables, events), Grad-CAM
overlays (images), atoms shaded on example molecules (graphs)."""

from __future__ import annotations

from medflow.report import plots
from medflow.report.elements import escape, html_table, img

__all__ = ["explain_section"]


def explain_section(expl: dict, selected: str) -> str:
    if selected not in expl:
        return ""
    e = expl[selected]
    if e.get("method") == "grad_cam":
        return _image_explain_section(expl, selected)
    if e.get("method") == "atom_integrated_gradients":
        return _molecule_explain_section(expl, selected)
    if e.get("method") == "mask_overlays":
        return "".join(f"<h3>{escape(name)}</h3><p>Best, median and worst test cases by mean Dice: true outline in "
                       "green, predicted in red (volumes: the slice with the most true foreground).</p>"
                       + (img(m["figure"], f"masks {name}") if m.get("figure") else "<p>No case to show.</p>")
                       for name, m in sorted(expl.items(), key=lambda kv: kv[0] != selected))
    pi = e["permutation_importance"]
    parts = ["<div class='grid'>",
             img(plots.importance_plot({k: v["mean"] for k, v in pi.items()}, {k: v["sd"] for k, v in pi.items()},
                                        f"Permutation importance ({selected})"), "permutation importance"),
             img(plots.importance_plot(e["mean_abs_attribution"], None,
                                        f"Mean |attribution| ({e['method']})"), "attributions"), "</div>"]
    rows = []
    for ex in e["examples"]:
        top = sorted(ex["attributions"].items(), key=lambda kv: -abs(kv[1]))[:5]
        rows.append([f"test record {ex['row']}", ", ".join(f"{escape(k)} {v:+.3f}" for k, v in top)])
    parts.append("<p>Per-record attributions (top 5) for example test records:</p>"
                 + html_table(["record", "attributions"], rows))
    for name, m in sorted(expl.items(), key=lambda kv: (kv[0] != selected, kv[1]["method"] != "retain_contributions")):
        if not (m["examples"] and "events" in m["examples"][0]):
            continue
        how = ("RETAIN's own decomposition: attention (alpha) x gated embedding, summing to the logit"
               if m["method"] == "retain_contributions" else "Integrated Gradients on the code embeddings")
        parts.append(f"<p>Events behind example predictions of <b>{escape(name)}</b> ({how}); visits group events by "
                     "day before the prediction time:</p>")
        rows = []
        for ex in m["examples"]:
            ev = "; ".join(_event_text(x) for x in ex["events"][:6])
            visits = sorted(ex["visits"].items(), key=lambda kv: -abs(kv[1]))[:3]
            rows.append([f"test sample {ex['row']}", ev, ", ".join(f"{escape(k)} {v:+.3f}" for k, v in visits)])
        parts.append(html_table(["sample", "top events", "top visits"], rows))
    others = [m for m in expl if m != selected and "permutation_importance" in expl[m]]
    if others:
        rows = [[escape(m), ", ".join(escape(k) for k in list(expl[m]["permutation_importance"])[:5])] for m in others]
        parts.append("<p>Top features of the other models (permutation importance):</p>"
                     + html_table(["model", "top 5"], rows))
    if any(m.get("method") == "atom_integrated_gradients" for m in expl.values()):  # graph models beside it
        parts.append(_molecule_explain_section(expl, selected))
    return "".join(parts)


def _explained_by(expl: dict, selected: str, method: str) -> list[tuple[str, dict, str]]:
    """(model, its explanations, an <h3> heading) of the models explained by `method`, the selected one first."""
    return [(name, e, f"<h3>{escape(name)}{' (selected)' if name == selected else ''}</h3>")
            for name, e in sorted(expl.items(), key=lambda kv: kv[0] != selected) if e.get("method") == method]


def _molecule_explain_section(expl: dict, selected: str) -> str:
    """Example test molecules with atoms shaded by attribution, and the descriptors the model leaned on."""
    parts = []
    for name, e, head in _explained_by(expl, selected, "atom_integrated_gradients"):
        parts.append(head + "<p>Integrated Gradients "
                     "over atom, bond and descriptor features from an all-zero baseline; each atom carries its own "
                     "and half of its bonds' attribution (red raises the output, blue lowers it). Regression: the "
                     "best, median and worst predicted test molecules; classification: the most and least "
                     "confident.</p>" + img(e["figure"], f"atom attributions {name}"))
        if e["mean_abs_attribution"]:
            parts.append(img(plots.importance_plot(e["mean_abs_attribution"], None,
                                                   f"Mean |attribution| of RDKit descriptors ({name})"),
                             "descriptor attributions"))
    return "".join(parts)


def _image_explain_section(expl: dict, selected: str) -> str:
    """Grad-CAM overlays of example test images per class (errors included) and the pointing game."""
    parts = []
    for name, e, head in _explained_by(expl, selected, "grad_cam"):
        parts.append(head + "<p>Grad-CAM (MONAI) on "
                     f"layer <code>{escape(e['layer'])}</code>: where the evidence for the prediction lies (binary: "
                     "the positive class; multiclass: the predicted class). Examples: the most confident correct "
                     "test images of each true class and its most confident error; volumes show the slice "
                     "through the map's peak.</p>" + img(e["figure"], f"Grad-CAM {name}"))
        pg = e.get("pointing_game")
        if pg:
            parts.append(f"<p>Pointing game on {pg['n']} test images with a known lesion: the map peaks inside the "
                         f"lesion in <b>{pg['value']:.1%}</b> (95% CI {pg['low']:.1%}&ndash;{pg['high']:.1%}); a "
                         f"random point would hit it {pg['chance']:.1%} of the time.</p>")
    return "".join(parts)


def _event_text(x: dict) -> str:
    when = "static" if x["days_before"] is None else f"{x['days_before']:.1f} d before"
    return f"{escape(x['code'])} ({when}) {x['attribution']:+.3f}"
