"""HTML pages for the text tools that run outside a study: `medflow deid` (what was replaced, how well, example
de-identified notes with the replacements marked) and `medflow extract` (spans, and scores against gold)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medflow.report.elements import escape, html_table

__all__ = ["deid_page", "extract_page", "mark_spans", "span_mark"]

_STYLE = """<style>body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.note{white-space:pre-wrap;border:1px solid #ddd;padding:.6rem;background:#fafafa}mark{background:#ffe08a}
.warn{background:#fff3cd;padding:.6rem 1rem}</style>"""


def mark_spans(text: str, spans: list[dict[str, Any]], mark: Callable[[dict[str, Any], str], str] | None = None,
               tag: str = "div") -> str:
    """The text, escaped, with each span wrapped by `mark(span, its escaped text)` (default: a <mark> titled with
    the label); a span overlapping an earlier one is left unmarked."""
    mark = mark or (lambda s, inner: f"<mark title='{escape(s['label'])}'>{inner}</mark>")
    out, at = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        if s["start"] < at:
            continue
        out.append(escape(text[at:s["start"]]))
        out.append(mark(s, escape(text[s["start"]:s["end"]])))
        at = s["end"]
    return f"<{tag} class='note'>" + "".join(out) + escape(text[at:]) + f"</{tag}>"


def span_mark(s: dict[str, Any], inner: str) -> str:
    """A span marked with its label and, when it has one, its assertion as the hover title."""
    what = s["label"] + (f" ({s['attributes']['assertion']})" if s.get("attributes", {}).get("assertion") else "")
    return f"<mark title='{escape(what)}'>{inner}</mark>"


def deid_page(summary: dict[str, Any], examples: list[tuple[str, str, list[dict[str, Any]]]]) -> str:
    """`examples`: (note id, the de-identified text, the surrogate spans in it) for a few notes."""
    ev = summary.get("evaluation", {})
    rec = ev.get("recall", {})
    rows = [[escape(k), summary["phi_found"].get(k, 0), f"{rec[k]['recall']:.3f} of {rec[k]['n']}" if k in rec else ""]
            for k in sorted(set(summary["phi_found"]) | set(rec))]
    gold = (f"<p>Against the gold PHI spans in the input: {ev['leaked_tokens']} PHI tokens left in the text; "
            f"precision of what was replaced {ev['precision']:.3f}.</p>") if ev else \
        "<p>The input had no gold PHI spans, so recall is not measured here (see docs/text.md for the figures).</p>"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>De-identification</title>{_STYLE}</head><body>",
             "<h1>De-identification</h1>",
             "<p class='warn'>Automatic de-identification misses some PHI; review before release. The surrogate "
             "mapping is not stored.</p>",
             f"<p>{summary['notes']} notes of {summary['patients']} patients from {escape(summary['source'])}, "
             f"{summary['notes_per_second']:.0f} notes/s. Method: {escape(summary['method'])} Patients: "
             f"{escape(summary['patient_column'])}.</p>",
             html_table(["PHI kind", "replaced", "recall (gold)"], rows), gold,
             "<h2>Example notes after de-identification (surrogates marked)</h2>"]
    for nid, text, spans in examples:
        parts.append(f"<h3>{escape(nid)}</h3>" + mark_spans(text, spans))
    return "".join(parts) + "</body></html>"


def extract_page(source: str, counts: dict[str, int], scores: dict[str, Any] | None,
                 examples: list[tuple[str, str, list[dict[str, Any]]]], medications: Any = None) -> str:
    """`medflow extract`'s page: counts, scores against gold spans, the medications (each drug's lexicon id and
    linked dose / route / frequency / duration; first 50) and example notes with their spans marked."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Span extraction</title>{_STYLE}</head><body>",
             f"<h1>Span extraction: {escape(source)}</h1>",
             html_table(["label", "spans found"], [[escape(k), v] for k, v in sorted(counts.items())])]
    if scores:
        rows = [[escape(lab), f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                 f"{m['f1']:.3f} ({m['f1_low']:.3f}-{m['f1_high']:.3f})", f"{scores['lenient'][lab]['f1']:.3f}",
                 m["n"]] for lab, m in scores["strict"].items()]
        parts.append("<h2>Against the gold spans (95% bootstrap CI over notes)</h2>"
                     + html_table(["label", "strict precision", "strict recall", "strict F1", "lenient F1", "gold"],
                                  rows))
        acc = scores.get("assertion_accuracy", {})
        if acc.get("value") is not None:
            parts.append(f"<p>Assertion (ConText) accuracy on strictly matched problems: {acc['value']:.3f} of "
                         f"{acc['n']}.</p>")
        rel = scores.get("relation_accuracy", {})
        if rel.get("value") is not None:
            parts.append(f"<p>Dose, route, frequency and duration linked to the right drug (strictly matched "
                         f"spans): {rel['value']:.3f} of {rel['n']}.</p>")
    if medications is not None and len(medications):
        cols = ["note_id", "drug", "normalized_id", "normalized_name", "dose", "route", "frequency", "duration"]
        parts.append(f"<h2>Medications ({len(medications)}; the first 50)</h2>" + html_table(
            cols, [[escape(str(r[c])) for c in cols] for r in medications.head(50).to_dict("records")]))
    parts.append("<h2>Example notes (spans marked; hover for the label)</h2>")
    for nid, text, spans in examples:
        parts.append(f"<h3>{escape(nid)}</h3>" + mark_spans(text, spans, span_mark))
    return "".join(parts) + "</body></html>"
