"""Medication mentions as records: each drug span normalized to its lexicon id, and its dose, route, frequency
and duration linked to it (a relation, not four loose span types).

`normalize(text, spans, lexicon)` sets a DRUG span's `attributes` {normalized_id, normalized_name, lexicon} from
the lexicon mention it overlaps most (none: the tagger found a drug the lexicon does not know, and says so with
`normalized_id: ""`).

`link(text, spans)` links every attribute span (DOSE, ROUTE, FREQUENCY, DURATION, FORM, REASON) to one drug:
the nearest drug before it in the same list item (a line, or the part of a line between semicolons), else the
nearest drug after it there with no comma between ("10 mg of lisinopril"), else none. The attribute span gets
`attributes.drug` = the drug span's start offset, the drug span gets `attributes.dose` (route, ...) = the
attribute's text. Where a sentence or list item holds several drugs each takes what follows it up to the next
one: the way medication lists are written ("lisinopril 10 mg daily, metformin 500 mg PO BID").

`medication_table(note_ids, spans)`: one row per drug with its linked attributes (what `medflow extract` writes
as OUTPUT.medications.csv).
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from medflow.nlp.drugs import DrugLexicon

__all__ = ["ATTRIBUTES", "normalize", "link", "medication_table", "MentionFilter", "add_candidates", "linear_model"]

ATTRIBUTES = ("DOSE", "ROUTE", "FREQUENCY", "DURATION", "FORM", "REASON")
_BREAKS = "\n;"
_WORDS = re.compile(r"[a-z0-9]+|[:;,.*-]")


def normalize(text: str, spans: list[dict[str, Any]], lexicon: DrugLexicon | None,
              mentions: list[dict[str, Any]] | None = None, drug_label: str = "DRUG") -> None:
    """Each drug span's lexicon id and name (in place); `mentions`: the lexicon's matches, if already found."""
    drugs = [s for s in spans if s["label"] == drug_label]
    if not drugs or lexicon is None:
        return
    found = lexicon.find(text) if mentions is None else mentions
    for s in drugs:
        best, overlap = None, 0
        for m in found:
            o = min(s["end"], m["end"]) - max(s["start"], m["start"])
            if o > overlap:
                best, overlap = m, o
        s.setdefault("attributes", {}).update(
            normalized_id=best["id"] if best else "", normalized_name=best["name"] if best else "",
            lexicon=best["source"] if best else "")


def link(text: str, spans: list[dict[str, Any]], drug_label: str = "DRUG",
         attributes: tuple[str, ...] = ATTRIBUTES) -> None:
    """Attribute spans linked to their drug (in place; see the module docstring)."""
    drugs = sorted((s for s in spans if s["label"] == drug_label), key=lambda s: s["start"])
    if not drugs:
        return

    def apart(a: int, b: int) -> bool:
        return any(c in _BREAKS for c in text[a:b])

    for s in spans:
        if s["label"] not in attributes:
            continue
        before = [d for d in drugs if d["end"] <= s["start"] and not apart(d["end"], s["start"])]
        after = [d for d in drugs if d["start"] >= s["end"] and not apart(s["end"], d["start"])
                 and "," not in text[s["end"]:d["start"]]]
        drug = before[-1] if before else (after[0] if after else None)
        attrs = s.setdefault("attributes", {})
        if drug is None:
            attrs.pop("drug", None)
            continue
        attrs["drug"] = drug["start"]
        key = s["label"].lower()
        dattrs = drug.setdefault("attributes", {})
        dattrs[key] = f"{dattrs[key]}; {s['text']}" if key in dattrs else s["text"]


def medication_table(note_ids: list[Any], spans: list[list[dict[str, Any]]], drug_label: str = "DRUG") -> pd.DataFrame:
    """One row per drug span: note, offsets, text, normalized id and name, and its linked attributes."""
    cols = ["note_id", "start", "end", "drug", "normalized_id", "normalized_name",
            *[a.lower() for a in ATTRIBUTES]]
    rows = []
    for nid, sp in zip(note_ids, spans, strict=True):
        for s in sp:
            if s["label"] != drug_label:
                continue
            a = s.get("attributes", {})
            rows.append({"note_id": nid, "start": s["start"], "end": s["end"], "drug": s["text"],
                         "normalized_id": a.get("normalized_id", ""), "normalized_name": a.get("normalized_name", ""),
                         **{k.lower(): a.get(k.lower(), "") for k in ATTRIBUTES}})
    return pd.DataFrame(rows, columns=cols)


def _candidate_features(text: str, m: dict[str, Any]) -> dict[str, float]:
    """What around a lexicon mention says it is a drug here: the words beside it, a number or unit after it,
    whether it opens a list item, its source and whether it is an ambiguous abbreviation."""
    left = text[max(0, m["start"] - 40):m["start"]]
    right = text[m["end"]:m["end"] + 40]
    lw = _WORDS.findall(left.lower())[-2:]
    rw = _WORDS.findall(right.lower())[:2]
    f = {"bias": 1.0, f"src={m['source']}": 1.0, f"L1={lw[-1] if lw else '<s>'}": 1.0,
         f"R1={rw[0] if rw else '</s>'}": 1.0, f"R2={rw[1] if len(rw) > 1 else '</s>'}": 1.0}
    if rw and rw[0][0].isdigit():
        f["number_after"] = 1.0
    line = left[left.rfind("\n") + 1:]
    if not line.strip() or line.rstrip().endswith((":", "-", "*", ";", ",")) or line.strip().rstrip(".").isdigit():
        f["item_start"] = 1.0
    if text[m["start"]:m["end"]].isupper():
        f["all_caps"] = 1.0
    return f


class MentionFilter:
    """Lexicon mentions the tagger left as O, kept as drugs when their context says so: a logistic regression
    over `_candidate_features`, trained on the training notes' lexicon mentions (a drug there when a gold drug
    span overlaps it). Where every training mention is a drug (or none is), that share decides alone."""

    def __init__(self) -> None:
        self.vec: Any = None
        self.lr: Any = None
        self.constant: float | None = None

    def fit(self, texts: list[str], gold: list[list[dict[str, Any]]], mentions: list[list[dict[str, Any]]],
            drug_label: str = "DRUG") -> MentionFilter:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        feats, ys = [], []
        for text, g, ms in zip(texts, gold, mentions, strict=True):
            drugs = [s for s in g if s["label"] == drug_label]
            for m in ms:
                feats.append(_candidate_features(text, m))
                ys.append(int(any(s["start"] < m["end"] and m["start"] < s["end"] for s in drugs)))
        if len(set(ys)) < 2:
            self.constant = float(ys[0]) if ys else 1.0
            return self
        self.vec = DictVectorizer()
        self.lr = LogisticRegression(max_iter=2000).fit(self.vec.fit_transform(feats), ys)
        return self

    def keep(self, text: str, mentions: list[dict[str, Any]]) -> list[bool]:
        if not mentions:
            return []
        if self.lr is None:
            return [bool((self.constant if self.constant is not None else 1.0) >= 0.5)] * len(mentions)
        p = self.lr.predict_proba(self.vec.transform([_candidate_features(text, m) for m in mentions]))[:, 1]
        return [bool(v >= 0.5) for v in p]

    def state(self) -> dict[str, Any]:
        if self.lr is None:
            return {"constant": self.constant}
        return {"features": list(self.vec.feature_names_), "coef": self.lr.coef_[0].tolist(),
                "intercept": float(self.lr.intercept_[0])}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> MentionFilter:
        out = cls()
        if "features" not in d:
            out.constant = d.get("constant")
            return out
        out.vec, out.lr = linear_model(d["features"], [0, 1], [d["coef"]], [d["intercept"]])
        return out


def linear_model(features: list[str], classes: list[Any], coef: Any, intercept: Any) -> tuple[Any, Any]:
    """A fitted DictVectorizer + LogisticRegression rebuilt from saved feature names and weights (the span
    tagger's token, assertion and candidate classifiers)."""
    import numpy as np
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = DictVectorizer()
    vec.feature_names_ = list(features)
    vec.vocabulary_ = {f: i for i, f in enumerate(vec.feature_names_)}
    lr = LogisticRegression()
    lr.classes_ = np.asarray(classes)
    lr.coef_, lr.intercept_ = np.asarray(coef), np.asarray(intercept)
    return vec, lr


def add_candidates(text: str, spans: list[dict[str, Any]], mentions: list[dict[str, Any]], keep: list[bool],
                   drug_label: str = "DRUG") -> list[dict[str, Any]]:
    """`spans` with the lexicon's boundaries: drug spans that overlap a lexicon mention become one span covering
    the mention ("amlodipine" + "besylate" -> "amlodipine besylate"); a kept mention that no drug span overlaps
    becomes a drug span, replacing predicted spans of other labels inside it (an "NS" tagged as a route)."""
    out = list(spans)
    for m, k in zip(mentions, keep, strict=True):
        over = [s for s in out if s["start"] < m["end"] and m["start"] < s["end"]]
        drugs = [s for s in over if s["label"] == drug_label]
        if drugs:
            start, end = min(m["start"], *(s["start"] for s in drugs)), max(m["end"], *(s["end"] for s in drugs))
            if len(drugs) == 1 and (drugs[0]["start"], drugs[0]["end"]) == (start, end):
                continue
            first = {**drugs[0], "start": start, "end": end, "text": text[start:end]}
            out = [s for s in out if s not in drugs or s is drugs[0]]
            out[out.index(drugs[0])] = first
        elif k and all(m["start"] <= s["start"] and s["end"] <= m["end"] for s in over):
            out = [s for s in out if s not in over]
            out.append({"start": m["start"], "end": m["end"], "label": drug_label, "text": text[m["start"]:m["end"]],
                        "attributes": {"from_lexicon": True}})
    return sorted(out, key=lambda s: s["start"])
