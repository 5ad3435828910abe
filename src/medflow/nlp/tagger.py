"""Span extraction trained from annotated notes: a BIO token tagger with constrained decoding, ConText for the
assertion of each problem found, and span-level precision / recall / F1 (strict and lenient) with bootstrap CIs
over notes.

`SpanTagger(labels).fit(texts, spans)` learns B-/I- tags per label with a logistic regression over each token's
shape, affixes and neighbouring words (`nlp.phi` features); decoding is Viterbi over the tagger's log-
probabilities with the BIO constraint (an I-X only after B-X or I-X), so every predicted span is well formed.
`extract(texts)` returns spans; PROBLEM-like labels (`assert_labels`) get ConText's assertion (present, negated,
possible, historical, family, hypothetical) from the sentence around them. Train on your own BRAT / JSONL corpus
(`data.read_notes`) or on the SYNTHETIC notes (`simulate_notes(annotate="clinical")`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from medflow.nlp.context import find_mentions
from medflow.nlp.medications import linear_model as _linear
from medflow.nlp.phi import _features, tokens_with_offsets

__all__ = ["SpanTagger", "span_scores", "spans_match", "note_counts"]

_HEADING = re.compile(r"(?m)^[ \t]*([A-Za-z][A-Za-z /&-]{1,40}):")

_UNITS = {"mg", "mcg", "g", "gram", "grams", "units", "unit", "ml", "puffs", "puff", "tablets", "tablet", "tabs",
          "caps", "capsules", "meq", "iu", "drops", "mg/kg", "l"}


def _note_features(toks: list[tuple[str, int, int]], text: str,
                   mentions: list[dict[str, Any]] | None = None) -> list[dict[str, float]]:
    """Each token's features: the PHI tagger's (`nlp.phi`) plus what marks a medication whatever its name, a
    number and a unit next to it, and, with a drug lexicon, whether the token begins or continues a lexicon
    mention (`mentions`). The note's lower-cased words and number flags are computed once per note."""
    w = [t[0].lower() for t in toks]
    num = [t.replace(".", "", 1).replace(",", "").isdigit() for t in w]
    lex: dict[int, str] = {}
    if mentions:
        k = 0
        for m in mentions:  # both in text order
            while k < len(toks) and toks[k][2] <= m["start"]:
                k += 1
            j = k
            while j < len(toks) and toks[j][1] < m["end"]:
                lex[j] = "lex=B" if j == k else "lex=I"
                j += 1
    out = []
    for i in range(len(toks)):
        f = _features(toks, text, i)
        if i + 2 < len(w) and num[i + 1] and w[i + 2] in _UNITS:
            f["before_dose"] = 1.0
        if num[i] and i + 1 < len(w) and w[i + 1] in _UNITS:
            f["dose_number"] = 1.0
        if w[i] in _UNITS and i > 0 and num[i - 1]:
            f["dose_unit"] = 1.0
        if i in lex:
            f[lex[i]] = 1.0
            if i + 1 < len(w) and (num[i + 1] or i + 1 not in lex):
                f["lex_then_other"] = 1.0
        out.append(f)
    return out


_IDENTITY = ("w=", "suf3=", "pre2=")


def _mask_names(feats: list[dict[str, float]], tags: list[str], label: str, rng: np.random.Generator,
                p: float = 0.5) -> None:
    """Hide the words of about half the training mentions of `label` (in place): their own word, affix and the
    neighbours' references to them, and for half of those the lexicon features too. The tagger then learns drugs
    from what surrounds a name (a dose after it, the lexicon, the list it sits in) and not only from the few names
    the training notes spell, so it finds drugs it never saw, in the lexicon or not."""
    n = len(tags)
    i = 0
    while i < n:
        if tags[i] != f"B-{label}":
            i += 1
            continue
        j = i + 1
        while j < n and tags[j] == f"I-{label}":
            j += 1
        if rng.random() < p:
            hide = _IDENTITY + (("lex=", "lex_") if rng.random() < 0.5 else ())
            for t in range(i, j):
                for k in [k for k in feats[t] if k.startswith(hide)]:
                    del feats[t][k]
            for t in range(max(0, i - 3), min(n, j + 3)):
                for k in [k for k in feats[t] if k[:2] in ("w-", "w+") and i <= t + int(k[1:3]) < j]:
                    del feats[t][k]
        i = j


class SpanTagger:
    """`lexicon`: drug lexicons (`nlp.drugs.load_lexicon` specs) whose mentions are token features, whose ids
    normalize the drug spans found, and whose drug spans get their dose / route / frequency / duration linked
    (`nlp.medications`); used when `drug_label` is among the labels (or the labels are not known yet)."""

    def __init__(self, labels: list[str] | None = None, assert_labels: tuple[str, ...] = ("PROBLEM",),
                 C: float = 1.0, assertion: str = "learned", lexicon: list[str] | None = None,
                 drug_label: str = "DRUG", stored_lexicons: dict[str, list[list[Any]]] | None = None) -> None:
        self.labels = labels
        self.assert_labels = assert_labels
        self.C = C
        self.assertion = assertion  # "learned" (from gold assertions, when the corpus has them) or "rules"
        self.lexicon_specs = [str(x) for x in (lexicon or [])]
        self.drug_label = drug_label
        self._stored = stored_lexicons
        self._lex: Any = None
        self.model: Any = None
        self.vec: Any = None
        self.assert_model: Any = None  # (vectorizer, classifier) once learned
        self.assert_classes: list[str] = []
        self.candidates: Any = None  # nlp.medications.MentionFilter once fitted with a lexicon

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """What a saved tagger needs: its settings and feature names (JSON) and its weights (arrays)."""
        meta = {"labels": self.labels, "assert_labels": list(self.assert_labels), "C": self.C,
                "assertion": self.assertion, "classes": [str(c) for c in self.model.classes_],
                "features": list(self.vec.feature_names_), "lexicon": self.lexicon_specs,
                "drug_label": self.drug_label, "lexicon_records": self._file_lexicons()}
        arrays = {"coef": self.model.coef_, "intercept": self.model.intercept_}
        if self.assert_model is not None:
            vec, lr = self.assert_model
            meta["assert_classes"] = [str(c) for c in lr.classes_]
            meta["assert_features"] = list(vec.feature_names_)
            arrays |= {"assert_coef": lr.coef_, "assert_intercept": lr.intercept_}
        if self.candidates is not None:
            meta["candidates"] = self.candidates.state()
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> SpanTagger:
        t = cls(meta["labels"], tuple(meta["assert_labels"]), meta["C"], meta.get("assertion", "rules"),
                meta.get("lexicon"), meta.get("drug_label", "DRUG"), meta.get("lexicon_records"))
        t.vec, t.model = _linear(meta["features"], meta["classes"], arrays["coef"], arrays["intercept"])
        if "candidates" in meta:
            from medflow.nlp.medications import MentionFilter

            t.candidates = MentionFilter.from_state(meta["candidates"])
        if "assert_classes" in meta:
            t.assert_model = _linear(meta["assert_features"], meta["assert_classes"], arrays["assert_coef"],
                                     arrays["assert_intercept"])
        return t

    @property
    def lexicon(self) -> Any:
        """The drug lexicon (loaded on first use), or None without one or without a drug label."""
        if not self.lexicon_specs or (self.labels is not None and self.drug_label not in self.labels):
            return None
        if self._lex is None:
            from medflow.nlp.drugs import load_lexicon

            self._lex = load_lexicon(self.lexicon_specs, self._stored)
        return self._lex

    def _file_lexicons(self) -> dict[str, list[list[Any]]]:
        """Lexicons read from files, kept whole in the saved model so it predicts without them."""
        from medflow.nlp.drugs import BUILTIN_LEXICONS, load_lexicon

        if self.lexicon is None:
            return {}
        return {s: (self._stored or {}).get(s) or load_lexicon([s]).records() for s in self.lexicon_specs
                if s not in BUILTIN_LEXICONS}

    def _mentions(self, text: str) -> list[dict[str, Any]] | None:
        lex = self.lexicon
        return lex.find(text) if lex is not None else None

    def _tags(self, toks: list[tuple[str, int, int]], spans: list[dict[str, Any]]) -> list[str]:
        tags = ["O"] * len(toks)
        for s in spans:
            if self.labels is not None and s["label"] not in self.labels:
                continue
            inside = [j for j, (_, a, b) in enumerate(toks) if a >= s["start"] and b <= s["end"]]
            for k, j in enumerate(inside):
                tags[j] = ("B-" if k == 0 else "I-") + s["label"]
        return tags

    def fit(self, texts: list[str], spans: list[list[dict[str, Any]]]) -> SpanTagger:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        if self.labels is None:
            self.labels = sorted({s["label"] for sp in spans for s in sp})
        feats, tags, ments = [], [], []
        rng = np.random.default_rng(0)
        for text, sp in zip(texts, spans, strict=True):
            toks = tokens_with_offsets(text)
            ments.append(self._mentions(text) or [])
            note = _note_features(toks, text, ments[-1])
            tags_n = self._tags(toks, sp)
            _mask_names(note, tags_n, self.drug_label, rng)
            feats += note
            tags += tags_n
        self.vec = DictVectorizer()
        self.model = LogisticRegression(C=self.C, max_iter=3000).fit(self.vec.fit_transform(feats), tags)
        if self.lexicon is not None:
            from medflow.nlp.medications import MentionFilter

            self.candidates = MentionFilter().fit(texts, spans, ments, self.drug_label)
        if self.assertion == "learned":
            self._fit_assertion(texts, spans)
        return self

    def _fit_assertion(self, texts: list[str], spans: list[list[dict[str, Any]]]) -> None:
        """Learn each asserted span's status from the gold attributes: a logistic regression over its ConText
        categories and triggers, the words around it and its section heading. Without gold assertions (or with
        one status only) ConText's rules decide."""
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        feats, ys = [], []
        for text, sp in zip(texts, spans, strict=True):
            gold = [s for s in sp if s["label"] in self.assert_labels and s.get("attributes", {}).get("assertion")]
            for s, f in zip(gold, self._assert_features(text, gold), strict=True):
                feats.append(f)
                ys.append(s["attributes"]["assertion"])
        if len(set(ys)) < 2:
            return
        vec = DictVectorizer()
        self.assert_model = (vec, LogisticRegression(C=self.C, max_iter=3000).fit(vec.fit_transform(feats), ys))

    def _assert_features(self, text: str, spans: list[dict[str, Any]]) -> list[dict[str, float]]:
        """Context features of each span (`nlp.extract.mention_features` of its ConText mention, crossed with
        the span's label) plus the heading of the section it sits in."""
        from medflow.nlp.extract import mention_features

        targets = {f"t{i}": [text[s["start"]:s["end"]]] for i, s in enumerate(spans)}
        found = {(m.start, m.end): m for m in find_mentions(text, targets)} if targets else {}
        out = []
        for s in spans:
            m = found.get((s["start"], s["end"]))
            f = {"no_mention": 1.0} if m is None else mention_features(replace(m, label=s["label"]), text)
            head = _HEADING.findall(text[:s["start"]])
            f[f"section={head[-1].strip().lower() if head else '<none>'}"] = 1.0
            out.append(f)
        return out

    def _decode(self, logp: np.ndarray, classes: list[str]) -> list[str]:
        """Viterbi with the BIO constraint: I-X may only follow B-X or I-X."""
        n, k = logp.shape
        allowed = np.zeros((k, k), dtype=bool)  # allowed[prev, cur]
        for a, pa in enumerate(classes):
            for b, cb in enumerate(classes):
                allowed[a, b] = not cb.startswith("I-") or pa[2:] == cb[2:] and pa != "O"
        start_ok = np.array([not c.startswith("I-") for c in classes])
        score = np.where(start_ok, logp[0], -np.inf)
        back = np.zeros((n, k), dtype=np.int64)
        for t in range(1, n):
            cand = score[:, None] + np.where(allowed, 0.0, -np.inf)
            back[t] = cand.argmax(axis=0)
            score = cand.max(axis=0) + logp[t]
        path = [int(score.argmax())]
        for t in range(n - 1, 0, -1):
            path.append(int(back[t, path[-1]]))
        return [classes[j] for j in path[::-1]]

    def extract(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        """Spans per text: {start, end, label, text, attributes} (assertion for `assert_labels`)."""
        out: list[list[dict[str, Any]]] = []
        for start in range(0, len(texts), 256):  # batches of notes: bounded memory on a whole corpus
            out += self._extract_batch(list(texts[start:start + 256]))
        return out

    def _extract_batch(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        classes = list(self.model.classes_)
        toks_of = [tokens_with_offsets(text) for text in texts]
        ments = [self._mentions(text) for text in texts]
        feats = [f for text, toks, m in zip(texts, toks_of, ments, strict=True) for f in _note_features(toks, text, m)]
        # one vectorization and one prediction per batch: per-note calls pay scikit-learn's checks each time
        logp_all = np.log(np.clip(self.model.predict_proba(self.vec.transform(feats)), 1e-12, 1)) if feats else None
        from medflow.nlp.medications import add_candidates, link, normalize

        out, at = [], 0
        for text, toks, ment in zip(texts, toks_of, ments, strict=True):
            if not toks:
                out.append([])
                continue
            logp, at = logp_all[at:at + len(toks)], at + len(toks)
            spans: list[dict[str, Any]] = []
            for (_, a, b), tag in zip(toks, self._decode(logp, classes), strict=True):
                if tag.startswith("B-"):
                    spans.append({"start": a, "end": b, "label": tag[2:]})
                elif tag.startswith("I-") and spans:
                    spans[-1]["end"] = b
            for s in spans:
                s["text"] = text[s["start"]:s["end"]]
                s["attributes"] = {}
            if ment and self.candidates is not None:
                spans = add_candidates(text, spans, ment, self.candidates.keep(text, ment), self.drug_label)
            self._assert(text, spans)
            normalize(text, spans, self.lexicon, ment, self.drug_label)
            if self.drug_label in (self.labels or ()):
                link(text, spans, self.drug_label)
            out.append(spans)
        return out

    def _assert(self, text: str, spans: list[dict[str, Any]]) -> None:
        """Each asserted span's status: learned (`_fit_assertion`) or ConText's, the span's own words the target."""
        asserted = [s for s in spans if s["label"] in self.assert_labels]
        if not asserted:
            return
        if self.assert_model is not None:
            vec, lr = self.assert_model
            for s, a in zip(asserted, lr.predict(vec.transform(self._assert_features(text, asserted))), strict=True):
                s["attributes"]["assertion"] = str(a)
            return
        found = {(m.start, m.end): m.assertion for m in find_mentions(text, {f"t{i}": [s["text"]] for i, s in
                                                                           enumerate(asserted)})}
        for s in asserted:
            s["attributes"]["assertion"] = found.get((s["start"], s["end"]), "present")


def spans_match(g: dict[str, Any], p: dict[str, Any], strict: bool) -> bool:
    """Same label and, strict, the same offsets, or, lenient, overlapping ones."""
    if g["label"] != p["label"]:
        return False
    if strict:
        return g["start"] == p["start"] and g["end"] == p["end"]
    return g["start"] < p["end"] and p["start"] < g["end"]


def note_counts(gold: list[dict[str, Any]], pred: list[dict[str, Any]], labels: list[str]) -> np.ndarray:
    """One note's span counts (spans with labels outside `labels` ignored): for strict then lenient matching, over
    all labels then per label, [gold spans matched, predicted spans matched, gold spans, predicted spans]; then the
    gold spans with an assertion that a prediction matches strictly, and how many of those got it right; then the
    same for the gold attribute spans linked to a drug (`attributes.drug`): how many got the same drug. The
    columns of a span task's predictions table (`tasks.spans`) and what `span_scores` sums."""
    gold = [s for s in gold if s["label"] in labels]
    pred = [s for s in pred if s["label"] in labels]
    row: list[int] = []
    for strict in (True, False):
        for lab in [None, *labels]:
            g = [s for s in gold if lab is None or s["label"] == lab]
            p = [s for s in pred if lab is None or s["label"] == lab]
            row += [sum(any(spans_match(a, b, strict) for b in p) for a in g),
                    sum(any(spans_match(a, b, strict) for a in g) for b in p), len(g), len(p)]
    pairs = [(g["attributes"]["assertion"], p.get("attributes", {}).get("assertion")) for g in gold for p in pred
             if "assertion" in g.get("attributes", {}) and spans_match(g, p, True)]
    row += [len(pairs), sum(a == b for a, b in pairs)]
    links = [(g["attributes"]["drug"], p.get("attributes", {}).get("drug")) for g in gold for p in pred
             if "drug" in g.get("attributes", {}) and spans_match(g, p, True)]
    row += [len(links), sum(a == b for a, b in links)]
    return np.asarray(row, dtype=float)


def span_scores(gold: list[list[dict]], pred: list[list[dict]], n_boot: int = 500, seed: int = 0) -> dict:
    """Per label and micro over labels, strict (same offsets) and lenient (overlap): precision, recall and F1
    with 95% bootstrap CIs over notes; the assertion accuracy on strictly matched problem spans; and the relation
    accuracy: of the strictly matched attribute spans with a gold drug, the share linked to that drug."""
    labels = sorted({s["label"] for sp in gold for s in sp})
    every = sorted(set(labels) | {s["label"] for sp in pred for s in sp})  # predicted-only labels count in micro
    width = 8 * (len(every) + 1) + 4
    counts = np.stack([note_counts(g, p, every) for g, p in zip(gold, pred, strict=True)]) if gold else \
        np.zeros((0, width))
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(gold), len(gold)) for _ in range(n_boot)]

    def prf(rows: np.ndarray) -> tuple[float, float, float]:
        tp_g, tp_p, ng, npred = rows.sum(axis=0)
        r = tp_g / ng if ng else 0.0
        pr = tp_p / npred if npred else 0.0
        return pr, r, 2 * pr * r / (pr + r) if pr + r else 0.0

    out: dict[str, Any] = {}
    for m, mode in enumerate(("strict", "lenient")):
        for label in [*labels, None]:
            at = 4 * (m * (len(every) + 1) + (0 if label is None else 1 + every.index(label)))
            per_note = counts[:, at:at + 4]
            pr, r, f1 = prf(per_note)
            lo, hi = np.percentile([prf(per_note[idx])[2] for idx in boots], [2.5, 97.5])
            out.setdefault(mode, {})[label or "micro"] = {"precision": pr, "recall": r, "f1": f1, "f1_low": lo,
                                                          "f1_high": hi, "n": int(per_note[:, 2].sum())}
    for name, at in (("assertion_accuracy", width - 4), ("relation_accuracy", width - 2)):
        n, right = counts[:, at:at + 2].sum(axis=0)
        out[name] = {"value": float(right / n) if n else None, "n": int(n)}
    return out
