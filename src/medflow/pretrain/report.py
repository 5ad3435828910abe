"""The pretrained run's report: what data it saw, the training curve, the held-out figures with their CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medflow.artifacts import write_text
from medflow.report.elements import ci, escape, html_table, img
from medflow.report.html import CSS
from medflow.report.plots import history_plot

__all__ = ["write_pretrain_report"]


def _text_parts(meta: dict[str, Any]) -> tuple[list, list, list]:
    d, h, m = meta["data"], meta["holdout"], meta["model"]
    data_rows = [["notes", escape(d["source"])], ["pretraining notes", f"{d['pretraining_notes']:,}"],
                 ["held-out notes", f"{d['held_out_notes']:,}"],
                 ["windows", f"{d['windows']:,} (at most {m['max_len']} tokens each)"]]
    figures = [["perplexity of the masked tokens", ci(h["perplexity"])],
               ["the same, from token frequencies alone", f"{h['reference_perplexity']:.3f}"],
               ["top-1 masked-token accuracy", ci(h["next_code_accuracy"])],
               ["top-10 masked-token accuracy", ci(h["next_code_top10"])]]
    model_rows = [["objective", "masked-language modelling (15% of tokens; BERT's 80/10/10)"],
                  ["network", f"{escape(m['checkpoint'])}: hidden {m['hidden']}, {m['layers']} layers, "
                              f"{m['heads']} heads, vocabulary {m['vocab_size']:,}"],
                  ["epochs", f"{meta['epochs']} (best {meta['best_epoch'] + 1})"],
                  ["training time", f"{meta['seconds']['training']:.0f} s"]]
    return data_rows, figures, model_rows


def write_pretrain_report(run: Path, meta: dict[str, Any], history: list[dict[str, Any]]) -> Path:
    banner = ("<div class='synthetic'>SYNTHETIC DATA: pretrained on simulated patients; the figures say nothing "
              "about real records.</div>" if meta.get("synthetic") else "")
    if meta["kind"] == "text":
        data_rows, figures, model_rows = _text_parts(meta)
        use = ("<p class='muted'>Use it in a study: <code>models: [{name: hf_classifier, params: {checkpoint: "
               f"{escape(run.name.removesuffix('.incomplete'))}}}}}]</code> (docs/pretraining.md).</p>")
    else:
        data_rows, figures, model_rows = _event_parts(meta)
        use = ("<p class='muted'>Use it in a study: <code>models: [{name: timeline_transformer, init_from: "
               f"{escape(run.name.removesuffix('.incomplete'))}, mode: finetune}}]</code> (docs/pretraining.md).</p>")
    body = (f"<h1>Pretrained run: {escape(meta['name'])}</h1>{banner}"
            "<h2>Data</h2>" + html_table(["", ""], data_rows)
            + "<h2>Held-out records (95% CI, bootstrap over patients or notes)</h2>" + html_table(["", ""], figures)
            + "<h2>Training</h2>" + html_table(["", ""], model_rows)
            + img(history_plot({"pretraining loss": history}), "training curve") + use)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(meta['name'])}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>")
    path = run / "report.html"
    write_text(path, page)
    return path


def _event_parts(meta: dict[str, Any]) -> tuple[list, list, list]:
    d, h, m = meta["data"], meta["holdout"], meta["model"]
    data_rows = [["MEDS folder", escape(d["meds"])], ["shards", d["shards"]],
                 ["pretraining patients", f"{d['subjects']['pretrain']:,}"],
                 ["held-out patients", f"{d['subjects']['holdout']:,}"], ["events", f"{d['tokens']:,}"],
                 ["windows", f"{d['windows']:,} (at most {meta['sequence']['max_len']} events each)"],
                 ["vocabulary", f"{d['vocabulary']:,} codes (seen at least {meta['sequence']['min_count']} times "
                                "in the pretraining patients; id 0 padding, 1 unknown)"]]
    if meta["objective"] == "motor":
        figures = [["time-to-event NLL per (event, code)", ci(h["nll"])],
                   ["the same, constant hazards per code and piece", f"{h['reference_nll']:.4f}"],
                   ["next occurrences observed", f"{h['events']:,} in {h['pairs']:,} (event, code) pairs of "
                                                 f"{h['patients']:,} patients"],
                   ["target codes", escape(", ".join(meta.get("task_codes", [])[:20])
                                           + (" ..." if len(meta.get("task_codes", [])) > 20 else ""))]]
        objective = ("time to the next occurrence of the most frequent codes, piecewise-exponential (MOTOR-style)")
    else:
        figures = [["perplexity of the next code", ci(h["perplexity"])],
                   ["the same, from code frequencies alone", f"{h['reference_perplexity']:.3f}"],
                   ["top-1 next-code accuracy", ci(h["next_code_accuracy"])],
                   ["top-10 next-code accuracy", ci(h["next_code_top10"])],
                   ["next codes scored", f"{h['predicted_codes']:,} of {h['patients']:,} patients"]]
        objective = "autoregressive next-code prediction (CLMBR-style)"
    tps = meta.get("tokens_per_second")
    model_rows = [["objective", objective],
                  ["network", f"causal Transformer, d {m['d']}, {m['layers']} layers, {m['heads']} heads, dropout "
                              f"{m['dropout']}"],
                  ["epochs", f"{meta['epochs']} (best {meta['best_epoch'] + 1})"],
                  ["training time", f"{meta['seconds']['training']:.0f} s"
                   + (f", {tps:,.0f} events/s" if tps else "")]]
    return data_rows, figures, model_rows
