"""Token attributions for text models: which words of a note the prediction rests on.

- `bilstm_attention`: its own attention weights (how much each token's state enters the note vector; the
  model's explanation by construction, class-agnostic, non-negative, summing to 1 per window).
- other text networks: gradient x embedding (the first-order contribution of each token's embedding to the
  explained output: the positive logit for binary, the top class / top label otherwise).
- linear models on TF-IDF: coefficient x TF-IDF weight per n-gram (exact for a linear model), in `explain_tfidf`.
Each token keeps its character offsets, so the report and `predict(..., explain=True)` point into the text.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import torch

__all__ = ["token_attributions", "explain_text", "explain_spans", "text_method"]


def _members(est: Any) -> list[Any]:
    return list(est.module.members) if hasattr(est.module, "members") else [est.module]


def text_method(est: Any) -> str:
    return "attention" if hasattr(_members(est)[0], "last_attention") else "gradient_x_embedding"


def _column(est: Any, out: torch.Tensor) -> torch.Tensor:
    """The output column each note's explanation is for."""
    if out.shape[1] == 1:
        return torch.zeros(out.shape[0], dtype=torch.long)
    return out.detach().argmax(dim=1)


def token_attributions(est: Any, x: Any, idx: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """Per note in `idx`: one weight per token (in order), and the output column explained (-1: attention)."""
    idx = np.asarray(idx, dtype=np.int64)
    x = est.inputs(x)  # a model with its own tokenizer (hf_classifier) reads its own windows
    b = x.batch(idx)
    owner = b["owner"].numpy()
    per_window = []
    cols = np.full(len(idx), -1)
    for m in _members(est):
        m.eval()
        if hasattr(m, "last_attention"):
            with torch.no_grad():
                m(b)
            per_window.append(m.last_attention.numpy())
            continue
        store: dict[str, torch.Tensor] = {}

        def hook(_mod: Any, _inp: Any, out: torch.Tensor, store: dict = store) -> None:
            out.retain_grad()
            store["emb"] = out

        handle = m.embedding.register_forward_hook(hook)
        try:
            out = m(b)
            col = _column(est, out)
            cols = col.numpy()
            out.gather(1, col[:, None]).sum().backward()
        finally:
            handle.remove()
        emb = store["emb"]
        per_window.append((emb.grad * emb).sum(dim=-1).detach().numpy())
        m.zero_grad(set_to_none=True)
    w = np.mean(per_window, axis=0)  # (windows, L)
    out_notes = []
    for j, i in enumerate(idx):
        rows = np.flatnonzero(owner == j)
        if hasattr(x, "note_weights"):  # overlapping subword windows
            out_notes.append(x.note_weights(int(i), w[rows]))
            continue
        n_tok = int(x.lengths[i])
        out_notes.append(w[rows].reshape(-1)[:n_tok] if len(rows) > 1 else w[rows[0], :n_tok])
    return out_notes, cols


def explain_mentions(est: Any, x: Any, y: np.ndarray, note_ids: list[str], max_records: int,
                     examples: int) -> dict[str, Any]:
    """explanations.json entry of an extractor: example notes with their mentions (offsets, assertion, trigger,
    score), and per label how often each assertion was found over up to `max_records` test notes."""
    n = min(max_records, len(x))
    xs = x[:n]
    found = est.mentions(xs)
    pred = np.asarray(est.predict(xs))
    p = pred if pred.ndim == 1 else pred.max(axis=1)
    rows = list(dict.fromkeys([int(i) for i in np.argsort(-p)[: max(1, examples // 2)]]
                              + [int(i) for i in np.argsort(p)[: max(1, examples - examples // 2)]]
                              + [i for i in range(n) if any(m["assertion"] != "present" for m in found[i])][:2]))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for ms in found:
        for m in ms:
            counts[m["label"]][m["assertion"]] += 1
    return {"method": "context_mentions", "assertion": est.model.assertion,
            "assertion_counts": {k: dict(v) for k, v in counts.items()},
            "examples": [{"row": i, "note_id": note_ids[i], "score": float(p[i]),
                          "label": str(np.asarray(y)[i].tolist()), "text": xs.texts[i][:4000], "mentions": found[i]}
                         for i in rows]}


def explain_codes(est: Any, x: Any, y: np.ndarray, note_ids: list[str], max_records: int,
                  examples: int) -> dict[str, Any]:
    """explanations.json entry of a coder: example notes with their five best codes over the whole table."""
    n = min(max_records, len(x), max(examples, 1))
    xs = x[:n]
    ranked = est.rank(xs, 5)
    classes = list(getattr(est.task, "classes", []))
    return {"method": "icd_ranking", "examples": [
        {"row": i, "note_id": note_ids[i], "text": xs.texts[i][:1500],
         "label": str(classes[int(np.asarray(y)[i])]) if classes else "", "codes": ranked[i]} for i in range(n)]}


def explain_spans(est: Any, x: Any, y: np.ndarray, note_ids: list[str], max_records: int,
                  examples: int) -> dict[str, Any]:
    """explanations.json entry of a span model: example test notes with the predicted spans beside the gold ones
    (the notes with the most misses first, then the rest in order), and how many spans of each label were found
    over up to `max_records` test notes."""
    n = min(max_records, len(x))
    pred = est.predict(x[:n])
    gold = [list(g) for g in np.asarray(y, dtype=object)[:n]]
    key = [{(s["start"], s["end"], s["label"]) for s in sp} for sp in pred]
    misses = [len(key[i] ^ {(s["start"], s["end"], s["label"]) for s in gold[i]}) for i in range(n)]
    rows = list(dict.fromkeys([int(i) for i in np.argsort(misses, kind="stable")[::-1][: max(1, examples // 2)]
                               if misses[i]] + list(range(min(n, examples)))))[:max(examples, 1)]
    counts: dict[str, int] = defaultdict(int)
    for sp in pred:
        for s in sp:
            counts[s["label"]] += 1
    return {"method": "span_tagger", "found": dict(counts),
            "examples": [{"row": i, "note_id": note_ids[i], "text": x.texts[i][:4000], "misses": int(misses[i]),
                          "spans": [s for s in pred[i] if s["end"] <= 4000],
                          "gold": [s for s in gold[i] if s["end"] <= 4000]} for i in rows]}


def explain_text(est: Any, x: Any, y: np.ndarray, note_ids: list[str], max_records: int, examples: int,
                 top: int = 20) -> dict[str, Any]:
    """explanations.json entry of a text model: example notes with token weights, and the tokens with the
    largest mean |weight| over up to `max_records` test notes (tokens seen at least 3 times). Extractors:
    their mentions (`explain_mentions`)."""
    if hasattr(est, "mentions"):
        return explain_mentions(est, x, y, note_ids, max_records, examples)
    if hasattr(est, "rank"):
        return explain_codes(est, x, y, note_ids, max_records, examples)
    if est.task.kind == "spans":
        return explain_spans(est, x, y, note_ids, max_records, examples)
    x = est.inputs(x)
    n = min(max_records, len(x))
    pred = np.asarray(est.predict(x[:n]) if n < len(x) else est.predict(x))[:n]
    p = pred if pred.ndim == 1 else pred.max(axis=1)
    rows = [int(i) for i in np.argsort(-p)[: max(1, examples // 2)]] + \
           [int(i) for i in np.argsort(p)[: max(1, examples - examples // 2)]]
    rows = list(dict.fromkeys(rows))
    weights: list[np.ndarray] = []
    cols = []
    for start in range(0, n, 64):
        w, c = token_attributions(est, x, np.arange(start, min(start + 64, n)))
        weights += w
        cols += list(c)
    labels = list(getattr(est.task, "labels", None) or getattr(est.task, "classes", None) or [])
    agg: dict[str, list[float]] = defaultdict(list)
    for i in range(n):
        for (tok, _, _), v in zip(x.tokens(i), weights[i], strict=False):
            agg[tok.lower()].append(abs(float(v)))
    mean = {t: float(np.mean(v)) for t, v in agg.items() if len(v) >= 3}
    shown = []
    for i in rows:
        col = int(cols[i])
        shown.append({"row": i, "note_id": note_ids[i], "score": float(p[i]),
                      "label": str(np.asarray(y)[i].tolist()),
                      "explained": labels[col] if 0 <= col < len(labels) else "",
                      "tokens": [[tok, a, b, round(float(v), 5)] for (tok, a, b), v in
                                 zip(x.tokens(i), weights[i], strict=False)][:400]})
    return {"method": text_method(est), "examples": shown,
            "mean_abs_attribution": dict(sorted(mean.items(), key=lambda kv: -kv[1])[:top])}


def explain_tfidf(est: Any, x: Any, names: list[str], k: int = 10) -> list[list[dict[str, Any]]]:
    """Top n-grams per note for a linear model on TF-IDF: coefficient x weight (the explained column: the
    positive class, the top class or the top label)."""
    m = x.to_matrix().tocsr()
    model = est.model
    coefs = np.vstack([e.coef_ for e in model.estimators_]) if hasattr(model, "estimators_") else model.coef_
    pred = np.asarray(est.predict(x))
    out = []
    for i in range(m.shape[0]):
        col = 0 if coefs.shape[0] == 1 else int(np.argmax(pred[i]))
        row = m.getrow(i)
        contrib = row.data * coefs[col, row.indices]
        order = np.argsort(-np.abs(contrib))[:k]
        out.append([{"feature": names[row.indices[j]], "attribution": float(contrib[j])} for j in order])
    return out


def note_explanations(est: Any, x: Any, k: int = 10) -> tuple[list[list[dict[str, Any]]], str]:
    """`predict(..., explain=True)` on notes: the top `k` tokens per note with their character offsets (text
    networks), or the top n-grams (linear models on TF-IDF); and the method's name."""
    if hasattr(est, "mentions"):
        return est.mentions(x), "context_mentions"
    if hasattr(est, "rank"):
        return est.rank(x, k), "icd_ranking"
    if est.task.kind == "spans":  # the spans are the prediction and their own evidence
        return [list(s) for s in est.predict(x)], "span_tagger"
    if est.spec.inputs != "text":
        if not hasattr(getattr(est, "model", None), "estimators_") and not hasattr(getattr(est, "model", None),
                                                                                  "coef_"):
            from medflow.errors import ConfigError

            raise ConfigError(f"model '{est.spec.name}' on notes has no per-note explanation yet; explain a "
                              "linear model (logistic_regression) or a text network.")
        return explain_tfidf(est, x, x.matrix_names(), k), "coefficient_x_tfidf"
    out = []
    x = est.inputs(x)
    for start in range(0, len(x), 64):
        idx = np.arange(start, min(start + 64, len(x)))
        weights, _ = token_attributions(est, x, idx)
        for i, w in zip(idx, weights, strict=True):
            toks = x.tokens(int(i))
            out.append([{"token": toks[j][0], "start": toks[j][1], "end": toks[j][2], "attribution": float(w[j])}
                        for j in np.argsort(-np.abs(w))[:k]])
    return out, text_method(est)
