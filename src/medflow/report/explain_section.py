"""The report's explanation section: permutation importance and attributions (tables, events), Grad-CAM
overlays (images), atoms shaded on example molecules (graphs), words shaded in example notes (text)."""

from __future__ import annotations

from medflow.report import plots
from medflow.report.elements import escape, html_table, img
from medflow.report.text_tools import mark_spans, span_mark

__all__ = ["explain_section"]


def explain_section(expl: dict, selected: str) -> str:
    if selected not in expl:
        return ""
    e = expl[selected]
    if e.get("method") == "modality_ablation":
        from medflow.report.multimodal import modality_explain_section

        return modality_explain_section(expl, selected)
    if e.get("method") == "grad_cam":
        return _image_explain_section(expl, selected)
    if e.get("method") == "atom_integrated_gradients":
        return _molecule_explain_section(expl, selected)
    if e.get("method") in _TEXT_METHODS or e.get("method") in ("context_mentions", "icd_ranking", "span_tagger"):
        return _text_explain_section(expl, selected)
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
    if any(m.get("method") in _TEXT_METHODS for m in expl.values()):  # text networks beside a TF-IDF model
        parts.append(_text_explain_section(expl, selected))
    return "".join(parts)


_TEXT_METHODS = {"attention": "the model's attention weights (how much each word's state enters the note vector)",
                 "gradient_x_embedding": "gradient x embedding for the explained output (red raises it, blue "
                                         "lowers it)"}


def _highlight(tokens: list, text_len: int = 0) -> str:
    """A note with each token shaded by its weight (red positive, blue negative)."""
    top = max((abs(t[3]) for t in tokens), default=0.0) or 1.0
    out = []
    for tok, _, _, w in tokens:
        a = min(1.0, abs(w) / top)
        rgb = "220,50,47" if w >= 0 else "38,139,210"
        out.append(f"<span style='background: rgba({rgb},{a:.2f})'>{escape(tok)}</span>")
    return "<p class='note'>" + " ".join(out) + "</p>"


def _text_explain_section(expl: dict, selected: str) -> str:
    """Example test notes with words shaded by attribution, and the words the model leaned on most; extractors:
    their mentions marked in the note."""
    parts = [_mentions_section(name, e, head) for name, e, head in _explained_by(expl, selected, "context_mentions")]
    for _name, e, head in _explained_by(expl, selected, "icd_ranking"):
        rows = [[escape(str(ex["note_id"])), escape(ex["label"]), "; ".join(
            f"{escape(c['code'])} {escape(c['description'])} ({c['score']:.2f})" for c in ex["codes"])]
            for ex in e["examples"]]
        parts.append(head + "<p>The five best ICD-10-CM codes over the whole billable table for example test notes "
                     "(sentence by sentence, negated sentences skipped):</p>"
                     + html_table(["note", "true code", "top codes (score)"], rows))
    for _name, e, head in _explained_by(expl, selected, "span_tagger"):
        parts.append(head + "<p>Spans found in the test notes: " + ", ".join(
            f"{escape(k)} {v}" for k, v in sorted(e["found"].items())) + ". Example test notes (those with the most "
            "differences from the gold spans first), predicted spans marked above and gold spans below; hover for "
            "the label and assertion.</p>")
        for ex in e["examples"]:
            parts.append(f"<p><b>{escape(str(ex['note_id']))}</b>: {ex['misses']} span(s) differ from gold. "
                         "Predicted:</p>" + mark_spans(ex["text"], ex["spans"], span_mark, "p")
                         + "<p>Gold:</p>" + mark_spans(ex["text"], ex["gold"], span_mark, "p"))
    for method, how in _TEXT_METHODS.items():
        for name, e, head in _explained_by(expl, selected, method):
            parts.append(head + f"<p>Words shaded by {how}. Examples: the most and least confident test notes "
                         "(multilabel: for the top label).</p>")
            if e["mean_abs_attribution"]:
                parts.append(img(plots.importance_plot(e["mean_abs_attribution"], None,
                                                       f"Mean |weight| per word ({name})"), "word weights"))
            for ex in e["examples"]:
                what = f", explained: {escape(ex['explained'])}" if ex.get("explained") else ""
                parts.append(f"<p><b>{escape(str(ex['note_id']))}</b>: score {ex['score']:.2f}, true "
                             f"{escape(ex['label'])}{what}</p>" + _highlight(ex["tokens"]))
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


_COLOR = {"present": "133,200,80", "negated": "160,160,160", "possible": "240,190,60", "historical": "150,120,200",
          "family": "100,170,230", "hypothetical": "230,130,180"}


def _mention_mark(m: dict, inner: str) -> str:
    """A mention coloured by its ConText status, its trigger and score in the tooltip."""
    rgb = _COLOR.get(m["assertion"], "200,200,200")
    tip = f"{m['label']}: {m['assertion']}" + (f" ({m['triggers']})" if m["triggers"] else "") \
        + f", score {m['score']:.2f}"
    return (f"<mark style='background: rgba({rgb},0.6)' title='{escape(tip)}'>{inner}"
            f"<sub>{escape(m['assertion'])}</sub></mark>")


def _mentions_section(name: str, e: dict, head: str) -> str:
    how = ("assertion learned from the notes' labels (ConText categories and context words, logistic regression)"
           if e.get("assertion") == "learned" else "ConText rules")
    rows = [[escape(lab), ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))]
            for lab, c in e["assertion_counts"].items()]
    parts = [head, f"<p>Finding mentions with their ConText status; the note's score is its most confident mention "
             f"({how}). Mentions found in the explained test notes:</p>",
             html_table(["label", "mentions by ConText status"], rows)]
    for ex in e["examples"]:
        parts.append(f"<p><b>{escape(str(ex['note_id']))}</b>: top score {ex['score']:.2f}, true "
                     f"{escape(ex['label'])}</p>" + mark_spans(ex["text"], ex["mentions"], _mention_mark, "p"))
    return "".join(parts)
