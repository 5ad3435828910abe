"""(t2) Clinical text on notes written in another style (`data.simulate.notes_other`: nursing, triage, medication
reconciliation and SOAP notes, a generator written separately from the one the models train on; SYNTHETIC).

1. Drug names: the span tagger trained on the first generator's notes (200 patients, 11 drugs) with the drug
   lexicon (ChEMBL's approved drugs + brands + abbreviations) and without it, the lexicon alone (every mention a
   drug), and medspaCy 1.3.1's TargetMatcher with one rule per lexicon phrase (its own venv,
   `benchmarks/.venv-medspacy`) on the same notes. Strict (same offsets) and lenient (overlap) precision /
   recall / F1, recall on drugs the lexicon knows and on drugs outside it, 95% bootstrap CIs over notes (1,000);
   for medflow also the normalization accuracy (lexicon name = the generator's generic) and the share of
   dose / route / frequency / duration spans linked to the right drug.
2. De-identification: recall per HIPAA kind with 95% CIs (every word of the span replaced, whatever the label),
   leaked tokens and precision; medflow's `Deidentifier` beside Presidio 2.2's recognizers (blank spaCy pipeline,
   offline, `benchmarks/.venv-presidio`).
3. Scale: `extract` (tagger + lexicon) and `deid` on N other-style notes (default 100,000), each in its own
   process: notes per second and the process's peak RSS.

    python benchmarks/bench_text_style.py [--patients 200] [--scale 100000] [--only drugs|deid|scale]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_text import MEDSPACY_VENV, PRESIDIO_VENV, _venv  # noqa: E402


def _boot(hits: np.ndarray, n: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """A ratio of per-note sums with its 95% bootstrap CI over notes."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(n), (n_boot, len(n)))
    vals = hits[idx].sum(axis=1) / np.maximum(n[idx].sum(axis=1), 1)
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return {"value": float(hits.sum() / max(n.sum(), 1)), "low": float(lo), "high": float(hi), "n": int(n.sum())}


def _known(lex, written: str) -> bool:
    """The lexicon has this drug: the phrase itself (ambiguous abbreviations included) or a combination of two."""
    return lex.lookup(written) is not None or bool(lex.find(written))


def _drug_scores(texts, gold, pred, lex) -> dict:
    """Strict / lenient P, R, F1 on DRUG spans; recall on drugs in and outside the lexicon (CIs over notes)."""
    rows = []
    for text, g, p in zip(texts, gold, pred, strict=True):
        g = [s for s in g if s["label"] == "DRUG"]
        p = [s for s in p if s["label"] == "DRUG"]
        r = []
        for strict in (True, False):
            def hit(a, b, strict=strict):
                return (a["start"], a["end"]) == (b["start"], b["end"]) if strict else \
                    a["start"] < b["end"] and b["start"] < a["end"]
            r += [sum(any(hit(a, b) for b in p) for a in g), sum(any(hit(a, b) for a in g) for b in p), len(g), len(p)]
        known = [_known(lex, text[s["start"]:s["end"]]) for s in g]
        got = [any((a["start"], a["end"]) == (b["start"], b["end"]) for b in p) for a in g]
        r += [sum(k and h for k, h in zip(known, got, strict=True)), sum(known),
              sum((not k) and h for k, h in zip(known, got, strict=True)), len(known) - sum(known)]
        rows.append(r)
    c = np.asarray(rows, dtype=float)
    out = {}
    for m, mode in enumerate(("strict", "lenient")):
        tpg, tpp, ng, npred = (c[:, 4 * m + k] for k in range(4))
        out[mode] = {"recall": _boot(tpg, ng), "precision": _boot(tpp, npred)}
        pr, rc = out[mode]["precision"]["value"], out[mode]["recall"]["value"]
        out[mode]["f1"] = 2 * pr * rc / (pr + rc) if pr + rc else 0.0
    out["recall_in_lexicon"] = _boot(c[:, 8], c[:, 9])
    out["recall_outside_lexicon"] = _boot(c[:, 10], c[:, 11])
    return out


def drugs(patients: int = 200, seed: int = 7) -> dict:
    from medflow.data.simulate.notes import simulate_notes
    from medflow.data.simulate.notes_other import simulate_other_notes
    from medflow.nlp.drugs import BUILTIN_LEXICONS, load_lexicon
    from medflow.nlp.tagger import SpanTagger, span_scores

    train, tspans = simulate_notes(200, seed=0, annotate="clinical")
    frame, spans = simulate_other_notes(patients, seed=seed, annotate="clinical")
    texts, gold = frame["text"].tolist(), [spans[n] for n in frame["note_id"]]
    lex = load_lexicon(BUILTIN_LEXICONS)
    out: dict = {"notes": len(texts), "lexicon_phrases": len(lex),
                 "gold_drugs_in_lexicon": sum(_known(lex, t[s["start"]:s["end"]]) for t, g in zip(texts, gold,
                                              strict=True) for s in g if s["label"] == "DRUG")}
    for name, specs in (("medflow tagger + lexicon", list(BUILTIN_LEXICONS)), ("medflow tagger alone", [])):
        t0 = time.perf_counter()
        tagger = SpanTagger(lexicon=specs).fit(train["text"].tolist(), [tspans[n] for n in train["note_id"]])
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred = tagger.extract(texts)
        sec = time.perf_counter() - t0
        res = _drug_scores(texts, gold, pred, lex) | {"fit_seconds": fit_s, "notes_per_s": len(texts) / sec}
        full = span_scores(gold, pred, n_boot=200)
        res["all_labels"] = {lab: {"recall": v["recall"], "precision": v["precision"], "n": v["n"]}
                             for lab, v in full["strict"].items()}
        res["relation_accuracy"] = full["relation_accuracy"]
        norm = [s["attributes"].get("normalized_name") == g["attributes"]["generic"] for gs, ps in
                zip(gold, pred, strict=True) for g in gs if g["label"] == "DRUG" for s in ps
                if (s["start"], s["end"]) == (g["start"], g["end"]) and s["attributes"].get("normalized_id")]
        res["normalization_accuracy"] = {"value": float(np.mean(norm)) if norm else None, "n": len(norm)}
        out[name] = res
    t0 = time.perf_counter()
    pred = [[{**m, "label": "DRUG"} for m in lex.find(t)] for t in texts]
    out["lexicon alone"] = _drug_scores(texts, gold, pred, lex) | {"notes_per_s": len(texts) /
                                                                   (time.perf_counter() - t0)}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"phrases": sorted(lex.phrases), "notes": [
            {"note_id": n, "text": t} for n, t in zip(frame["note_id"], texts, strict=True)]}))
        subprocess.run([str(_venv(MEDSPACY_VENV, "medspacy==1.3.1")), str(HERE / "text_medspacy_drugs.py"), str(src),
                        str(dst)], check=True, stderr=subprocess.DEVNULL)
        got = json.loads(dst.read_text())
    pred = [got["found"][n] for n in frame["note_id"]]
    out["medspaCy target rules"] = _drug_scores(texts, gold, pred, lex) | {"notes_per_s": len(texts) / got["seconds"]}
    return out


def _per_kind(texts, gold, found) -> dict:
    from medflow.nlp.deid import evaluate_deid

    kinds = sorted({s["label"] for g in gold for s in g})
    hits = {k: np.zeros(len(texts)) for k in kinds}
    ns = {k: np.zeros(len(texts)) for k in kinds}
    for i, (t, g, f) in enumerate(zip(texts, gold, found, strict=True)):
        for k, v in evaluate_deid([t], [g], [f])["recall"].items():
            ns[k][i], hits[k][i] = v["n"], round(v["recall"] * v["n"])
    total = evaluate_deid(texts, gold, found)
    return {"recall": {k: _boot(hits[k], ns[k]) for k in kinds}, "leaked_tokens": total["leaked_tokens"],
            "precision": total["precision"]}


def deid(patients: int = 200, seed: int = 8) -> dict:
    from medflow.data.simulate.notes_other import simulate_other_notes
    from medflow.nlp.deid import Deidentifier

    frame, spans = simulate_other_notes(patients, seed=seed, annotate="phi")
    texts, gold = frame["text"].tolist(), [spans[n] for n in frame["note_id"]]
    d = Deidentifier()
    t0 = time.perf_counter()
    _, found = d.deidentify(texts, frame["patient_id"].tolist())
    out = {"notes": len(texts), "medflow": _per_kind(texts, gold, found) | {"notes_per_s": len(texts) /
                                                                          (time.perf_counter() - t0)}}
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "notes.jsonl", Path(tmp) / "presidio.json"
        src.write_text("\n".join(json.dumps({"note_id": n, "text": t}) for n, t in zip(frame["note_id"], texts,
                                                                                      strict=True)))
        subprocess.run([str(_venv(PRESIDIO_VENV, "presidio-analyzer==2.2.*")), str(HERE / "text_presidio.py"),
                        str(src), str(dst)], check=True, stderr=subprocess.DEVNULL)
        got = json.loads(dst.read_text())
    out["presidio"] = _per_kind(texts, gold, [got["found"][n] for n in frame["note_id"]]) | {
        "notes_per_s": len(texts) / got["seconds"]}
    return out


def _child(task: str, path: str) -> None:
    """One scale measurement in this process: prints {notes, seconds, notes_per_s, peak_rss_gb, ...} as JSON."""
    import pandas as pd

    texts = pd.read_parquet(path)["text"].tolist()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if task == "extract":
        from medflow.data.simulate.notes import simulate_notes
        from medflow.nlp.drugs import BUILTIN_LEXICONS
        from medflow.nlp.tagger import SpanTagger

        train, spans = simulate_notes(200, seed=0, annotate="clinical")
        tagger = SpanTagger(lexicon=list(BUILTIN_LEXICONS)).fit(train["text"].tolist(),
                                                                 [spans[n] for n in train["note_id"]])
        t0 = time.perf_counter()
        found = sum(len(s) for s in tagger.extract(texts))
    else:
        from medflow.nlp.deid import Deidentifier

        d = Deidentifier()
        t0 = time.perf_counter()
        found = sum(len(f) for f in d.deidentify(texts)[1])
    sec = time.perf_counter() - t0
    print(json.dumps({"notes": len(texts), "spans": found, "seconds": sec, "notes_per_s": len(texts) / sec,
                      "rss_after_loading_gb": base,
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def scale(n_notes: int = 100_000) -> dict:
    from medflow.data.simulate.notes_other import simulate_other_notes

    t0 = time.perf_counter()
    frame, _ = simulate_other_notes(n_notes // 3 + 1, seed=11, annotate="phi")
    frame = frame.head(n_notes)
    out: dict = {"notes": len(frame), "mean_chars": float(frame["text"].str.len().mean()),
                 "generate_seconds": time.perf_counter() - t0}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "notes.parquet"
        frame[["note_id", "text"]].to_parquet(path)
        for task in ("extract", "deid"):
            r = subprocess.run([sys.executable, __file__, "--child", task, str(path)], check=True,
                               capture_output=True, text=True)
            out[task] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def _ci(v: dict) -> str:
    return f"{v['value']:.3f} ({v['low']:.3f}-{v['high']:.3f})"


def markdown(res: dict) -> list[str]:
    lines = []
    if "drugs" in res:
        d = res["drugs"]
        lines += [f"Drug names on {d['notes']} other-style notes ({d['gold_drugs_in_lexicon']} gold drug mentions "
                  f"the lexicon knows; lexicon {d['lexicon_phrases']} phrases):", "",
                  "| method | strict P | strict R | strict F1 | lenient R | R in lexicon | R outside | notes/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for name in ("medflow tagger + lexicon", "medflow tagger alone", "lexicon alone", "medspaCy target rules"):
            m = d[name]
            lines.append(f"| {name} | {_ci(m['strict']['precision'])} | {_ci(m['strict']['recall'])} | "
                         f"{m['strict']['f1']:.3f} | {_ci(m['lenient']['recall'])} | {_ci(m['recall_in_lexicon'])} "
                         f"| {_ci(m['recall_outside_lexicon'])} | {m['notes_per_s']:.0f} |")
        m = d["medflow tagger + lexicon"]
        lines += ["", f"medflow tagger + lexicon: normalization accuracy {m['normalization_accuracy']['value']:.3f} "
                  f"of {m['normalization_accuracy']['n']}; attributes linked to the right drug "
                  f"{m['relation_accuracy']['value']:.3f} of {m['relation_accuracy']['n']}; strict recall per label: "
                  + ", ".join(f"{k} {v['recall']:.3f}" for k, v in m["all_labels"].items()), ""]
    if "deid" in res:
        d = res["deid"]
        kinds = sorted(d["medflow"]["recall"])
        lines += [f"De-identification on {d['notes']} other-style notes, recall per kind (95% CI):", "",
                  "| kind | n | medflow | Presidio |", "|---|---|---|---|"]
        for k in kinds:
            p = d["presidio"]["recall"].get(k)
            lines.append(f"| {k} | {d['medflow']['recall'][k]['n']} | {_ci(d['medflow']['recall'][k])} | "
                         f"{_ci(p) if p else '-'} |")
        for who in ("medflow", "presidio"):
            lines.append(f"{who}: leaked tokens {d[who]['leaked_tokens']}, precision {d[who]['precision']:.3f}, "
                         f"{d[who]['notes_per_s']:.0f} notes/s")
        lines.append("")
    if "scale" in res:
        s = res["scale"]
        lines.append(f"Scale: {s['notes']:,} other-style notes ({s['mean_chars']:.0f} characters on average):")
        for task in ("extract", "deid"):
            t = s[task]
            lines.append(f"- {task}: {t['notes_per_s']:.0f} notes/s ({t['seconds']:.0f} s), peak RSS "
                         f"{t['peak_rss_gb']:.2f} GB ({t['rss_after_loading_gb']:.2f} GB after loading the notes)")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--scale", type=int, default=100_000)
    ap.add_argument("--only", choices=["drugs", "deid", "scale"])
    ap.add_argument("--child", nargs=2, metavar=("TASK", "NOTES"))
    a = ap.parse_args()
    if a.child:
        _child(*a.child)
        sys.exit(0)
    res = {}
    for part, fn in (("drugs", lambda: drugs(a.patients)), ("deid", lambda: deid(a.patients)),
                     ("scale", lambda: scale(a.scale))):
        if a.only in (None, part):
            res[part] = fn()
            print(json.dumps({part: res[part]}, indent=1, default=float)[:3000], flush=True)
    print("\n".join(markdown(res)))
