"""Finding PHI in clinical text: pattern recognizers for identifiers with a form, a learned tagger for names.

Identifiers that have a shape (dates, phone and fax numbers, e-mail, SSN, URLs, IP addresses, ZIP codes, street
addresses, ages over 89) or that follow a label (MRN, account / member numbers, licences and NPI / DEA numbers,
device serials) are found by patterns, each a regular expression with an optional context group; any other run
of 6 or more digits is an "ID" (HIPAA's "any other unique identifying number"). Names of patients and clinicians,
institutions and cities have no shape: a token classifier (logistic regression over the word's shape,
capitalisation, affixes and the words around it, never a list of names) labels them, trained on annotated notes
(by default the SYNTHETIC notes of `data.simulate.notes`' training families; your own with `PhiTagger.fit`). A
name found once in a note is then found everywhere in that note. Spans are character offsets, end exclusive.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["find_phi", "PhiTagger", "PATTERNS", "tokens_with_offsets"]

_MON = r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sept?(?:ember)?|" \
       r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
_M12, _D31 = r"(?:0?[1-9]|1[0-2])", r"(?:0?[1-9]|[12]\d|3[01])"
_NO = r"(?:\s*(?:number|num\.?|no\.?|#|id))?"  # "MRN", "MRN #", "Medical Record No.", "Member ID"
_PHONE_CTX = r"(?i:\b(?:tel(?:ephone)?|phone|ph|cell|mobile|pager|call|contact|home|work)\b[\s:.#]*)"
_NUM = r"\+?1[-.\s]?"  # the US country code, when written
_WORDNAME = r"(?:[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?|[A-Z]\.)"  # a capitalized name word or an initial
_NAME = rf"(?:{_WORDNAME}[ \t]+){{0,3}}[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"  # ends on a whole word
_NAME2 = rf"(?:{_WORDNAME}[ \t]+){{1,3}}[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"  # two words at least
_CAPS_NAME = r"[A-Z]{2,}(?:[-'][A-Z]{2,})?,[ \t]+[A-Z]{2,}(?:[ \t]+[A-Z]\.?)?"  # LAST, FIRST [M]
# (label, pattern): the span is group "v" when the pattern has one (its context stays unmasked), else the match.
# Identifiers that follow a label are matched in the forms hospitals write them: digits in groups with hyphens,
# dots or spaces ("MRN 84-227-991", "84 227 991"), letters before them ("HX12345678"), a check digit after a
# hyphen ("1234567-8"). A label's value must hold at least five digits (an MRN's "# 12" is not one).
PATTERNS: list[tuple[str, str]] = [
    ("EMAIL", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("URL", r"(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:)]"),
    ("IP", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    ("SSN", r"\b\d{3}-\d{2}-\d{4}\b"),
    ("SSN", rf"(?i:\b(?:SSN|SS#|social\s+security{_NO}))[\s:#.]*(?P<v>\d{{3}}[-\s]?\d{{2}}[-\s]?\d{{4}})\b"),
    ("FAX", rf"(?i:fax)(?:\s*(?:number|no\.?|#))?[\s:.]*(?:to\s+)?"
            rf"(?P<v>(?:{_NUM})?(?:\(\d{{3}}\)\s?|\b\d{{3}}[-.\s])\d{{3}}[-.\s]\d{{4}}\b(?:\s*(?:x|ext\.?)\s*\d{{1,5}})?)\b"),
    ("PHONE", rf"(?:{_NUM})?(?:\(\d{{3}}\)\s?|\b\d{{3}}[-.])\d{{3}}[-.]\d{{4}}\b(?:\s*(?:x|ext\.?)\s*\d{{1,5}}\b)?"),
    ("PHONE", rf"{_PHONE_CTX}(?P<v>(?:{_NUM})?\d{{3}}\s\d{{3}}\s\d{{4}})\b"),
    ("DATE", rf"\b{_M12}/{_D31}/(?:\d{{4}}|\d{{2}})\b|\b\d{{4}}[-/]\d{{2}}[-/]\d{{2}}\b|\b{_M12}-{_D31}-\d{{4}}\b"
             rf"|\b{_M12}\.{_D31}\.\d{{4}}\b"),
    ("DATE", rf"\b{_D31}-{_MON}-(?:\d{{4}}|\d{{2}})\b"),  # 14-Mar-24, 14-Mar-2024 (lab and pharmacy systems)
    ("DATE", rf"\b{_MON}\s+{_D31}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b|\b{_D31}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MON}"
             rf"(?:,?\s+\d{{4}})?\b"),
    ("DATE", rf"(?<![\d/]){_M12}/{_D31}(?![\d/])"),
    ("DATE", r"(?i:\b(?:on|since|until|from|by)\s+the\s+)(?P<v>(?:[12]?\d|3[01])(?:st|nd|rd|th))\b"),  # "on the 14th"
    ("AGE", r"\b(?P<v>(?:9\d|1[01]\d))(?=\s*(?:-?\s*(?:years?|yrs?)[- ]old|\s*(?:y/?o|yo|y\.o\.?)(?!\w)"
            r"|\s*(?:years?|yrs?)\b))"),
    ("AGE", r"(?i:\bage[d:]?\s+)(?P<v>(?:9\d|1[01]\d))\b"),
    ("MRN", rf"(?i:\b(?:MRN|MR\s*#|MR\s*No\.?|med(?:ical)?\s+rec(?:ord)?s?{_NO}|record{_NO}|chart{_NO}|"
            rf"unit{_NO}|hospital\s+(?:number|no\.?|#)|pt\.?{_NO}|patient\s+(?:number|no\.?|#|id)))[\s:#.]*"
            r"(?P<v>(?=(?:[A-Z]{0,3}[-.\s]?)?(?:\d[-.\s]?){5})[A-Z]{0,3}[-.]?\d{2,}(?:[-.]\d+|\s\d{3,4}(?!\d)){0,3}"
            r"(?:-[A-Z0-9])?)\b"),
    ("MRN", r"\bMR\d{6,9}\b"),
    ("ACCOUNT", rf"(?i:\b(?:acct|account|member|policy|subscriber|insurance|plan|group|billing|encounter|visit|"
                rf"claim|medicare(?:\s+MBI)?|medicaid|beneficiary|MBI|FIN|HAR|CSN){_NO})[\s:#.]*"
                r"(?P<v>(?=[A-Z0-9-]*\d)(?=(?:[A-Z-]*\d){5})[A-Z0-9]{1,4}(?:-?[A-Z0-9]{2,}){1,4})\b"),
    ("LICENSE", rf"(?i:\b(?:driver'?s?\s+licen[cs]e|licen[cs]e|lic\.?|DL|NPI|DEA|certificate|cert\.?){_NO})"
                r"[\s:#.]*(?P<v>(?!plate)[A-Z]{0,2}\d[\d-]{3,14}\d)\b"),
    ("VEHICLE", rf"(?i:\b(?:licen[cs]e\s+plate|plate|tag|VIN|vehicle){_NO})[\s:#.]*"
                r"(?P<v>(?=[A-Z0-9-]*\d)[A-Z0-9]{1,4}[-\s]?[A-Z0-9]{2,14})\b"),
    ("DEVICE", rf"(?i:\b(?:serial|S/N|UDI|device\s+id|model/serial|lot){_NO})[\s:#.]*"
               r"(?P<v>[A-Z0-9(][A-Z0-9()-]{4,})\b"),
    ("DEVICE", r"\bSN-[A-Z0-9]{5,}\b"),
    ("STREET", r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St\.|Avenue|Ave\.?|Road|Rd\.?|Drive|Dr\.?|Lane|Ln\.?|"
               r"Court|Ct\.?|Boulevard|Blvd\.?|Way|Place|Pl\.?|Terrace|Circle|Highway|Hwy\.?|Parkway|Pkwy\.?)"
               r"(?:,?\s+(?:Apt|Suite|Ste|Unit|#)\.?\s*\w+)?(?=[\s,.;]|$)"),
    ("CITY", r"\b(?P<v>[A-Z][a-z]+(?:\s[A-Z][a-z]+)?),\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"),
    ("ZIP", r"\b[A-Z]{2}\s+(?P<v>\d{5}(?:-\d{4})?)\b"),
    ("ZIP", r"(?i:\bzip(?:\s*code)?[\s:#.]*)(?P<v>\d{5}(?:-\d{4})?)\b"),
    ("HOSPITAL", r"\b(?:St\.\s+)?(?:[A-Z][a-z]+\s+){1,3}(?:Hospital|Medical\s+Center|Health\s+Center|Health\s+System|"
                 r"Clinic|Infirmary|Health|Institute|Medical\s+Group|Nursing\s+Home|Rehabilitation\s+Center)\b"),
    # names in the forms EHRs print them: after a title, before a credential, in a labelled field, the banner's
    # LAST, FIRST; with initials ("Declan T. Sorensen", "S. Haddad, RN"); "Patient" alone stays a word
    ("DOCTOR", rf"\b(?:Dr\.?|Doctor)[ \t]+(?P<v>{_CAPS_NAME}|{_NAME})"),
    ("DOCTOR", rf"(?P<v>{_CAPS_NAME}|{_NAME}),[ \t]*(?:MD|M\.D\.|DO|RN|NP|PA-C|PA|PharmD|RPh|LPN|CNA|CRNA|APRN|PhD)\b"),
    ("PATIENT", rf"\b(?:Pt|Patient|Name|Re)[ \t]*:[ \t]*(?P<v>{_CAPS_NAME}|{_NAME2})"),
    ("PATIENT", rf"(?m)^(?P<v>{_CAPS_NAME}|{_NAME2})(?=[ \t]*\((?:\d|aged?\b)|[ \t]+(?:DOB|MRN)\b)"),
    ("ID", r"\b[A-Z]{0,3}\d{6,}\b"),
]
_COMPILED = [(lab, re.compile(p)) for lab, p in PATTERNS]
_TOKEN = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:\.\d+)?|[^\sA-Za-z\d]")
_TITLES = {"dr", "mr", "mrs", "ms", "miss", "prof", "mr./ms"}
NOT_NAMES = _TITLES | {"dear", "sincerely", "regards", "md", "do", "rn", "np", "pa", "phd", "mbbs", "dds", "pharmd",
                        "re", "to", "cc", "from", "attn", "patient", "name", "signed"}
NAME_LABELS = ("PATIENT", "DOCTOR", "HOSPITAL", "CITY")


def tokens_with_offsets(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@lru_cache(maxsize=65536)  # a note's words repeat across tokens, neighbours and notes
def _shape(w: str) -> str:
    s = re.sub(r"[A-Z]", "X", re.sub(r"[a-z]", "x", re.sub(r"\d", "d", w)))
    return re.sub(r"(.)\1{2,}", r"\1\1", s)


def _features(toks: list[tuple[str, int, int]], text: str, i: int, seen: Any = None) -> dict[str, float]:
    w = toks[i][0]
    f = {"bias": 1.0, f"w={w.lower()}": 1.0, f"shape={_shape(w)}": 1.0, f"suf3={w[-3:].lower()}": 1.0,
         f"pre2={w[:2].lower()}": 1.0}
    if w[:1].isupper():
        f["title_case"] = 1.0
    if w.isupper() and len(w) > 1:
        f["all_caps"] = 1.0
    line_start = text.rfind("\n", 0, toks[i][1]) + 1
    if not text[line_start:toks[i][1]].strip():
        f["line_start"] = 1.0
    for k in (-3, -2, -1, 1, 2, 3):
        j = i + k
        v = toks[j][0] if 0 <= j < len(toks) else ("<s>" if j < 0 else "</s>")
        f[f"w{k:+d}={v.lower()}"] = 1.0
        if abs(k) == 1 and 0 <= j < len(toks):
            f[f"shape{k:+d}={_shape(v)}"] = 1.0
            f[f"cap{k:+d}={v[:1].isupper()}"] = 1.0
    if seen is not None and w[:1].isalpha():  # never seen as ordinary text: names are, most words are not
        f["unseen"] = float(not seen(w.lower()))
        if f["unseen"] and w[:1].isupper():
            f["unseen_cap"] = 1.0
    prev = [t[0].lower().rstrip(".") for t in toks[max(0, i - 3):i]]
    if any(p in _TITLES for p in prev):
        f["after_title"] = 1.0
    return f


class PhiTagger:
    """Names, institutions and cities by token classification (see the module docstring)."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C
        self.model: Any = None
        self.vec: Any = None
        self.ordinary: dict[str, int] = {}  # word -> number of training notes it appears in as non-PHI

    def _rows(self, text: str, own: set[str] | None = None) -> tuple[list[tuple[str, int, int]], list[dict]]:
        """Token features; `own`: the note's own ordinary words, not counted as seen (training: a word seen in
        no other note is as new as a name)."""
        toks = tokens_with_offsets(text)
        own = own or set()

        def seen(w: str) -> bool:
            return self.ordinary.get(w, 0) - (w in own) > 0

        return toks, [_features(toks, text, i, seen) for i in range(len(toks))]

    @staticmethod
    def _labels(toks: list[tuple[str, int, int]], spans: list[dict[str, Any]]) -> list[str]:
        lab = ["O"] * len(toks)
        for s in spans:
            for j, (w, a, b) in enumerate(toks):
                if a >= s["start"] and b <= s["end"] and w[:1].isalpha():
                    lab[j] = s["label"] if s["label"] in NAME_LABELS else "PHI"
        return lab

    def fit(self, texts: list[str], spans: list[list[dict[str, Any]]]) -> PhiTagger:
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.linear_model import LogisticRegression

        own_words = []
        self.ordinary = {}
        for text, sp in zip(texts, spans, strict=True):
            toks = tokens_with_offsets(text)
            own = {w.lower() for (w, _, _), lab in zip(toks, self._labels(toks, sp), strict=True) if lab == "O"}
            own_words.append(own)
            for w in own:
                self.ordinary[w] = self.ordinary.get(w, 0) + 1
        feats, labels = [], []
        for text, sp, own in zip(texts, spans, own_words, strict=True):
            toks, f = self._rows(text, own)
            feats += f
            labels += [lab if lab in NAME_LABELS else "O" for lab in self._labels(toks, sp)]
        self.vec = DictVectorizer()
        x = self.vec.fit_transform(feats)
        self.model = LogisticRegression(C=self.C, max_iter=3000).fit(x, labels)
        return self

    def tag(self, text: str) -> list[dict[str, Any]]:
        """Name-like spans: consecutive tokens with one label merge (across a comma for 'Last, First');
        every other occurrence of a found name token in the note is marked too."""
        toks, f = self._rows(text)
        if not toks:
            return []
        proba = self.model.predict_proba(self.vec.transform(f))
        classes = list(self.model.classes_)
        o = classes.index("O")
        named = np.delete(proba, o, axis=1)
        others = [c for c in classes if c != "O"]
        # recall first: a token is PHI when "ordinary" is less likely than not
        pred = np.where(proba[:, o] < 0.5, np.array(others)[named.argmax(axis=1)], "O").astype(object)
        for j, (w, _, _) in enumerate(toks):  # honorifics and salutations are not PHI (HIPAA)
            if w.lower().rstrip(".") in NOT_NAMES:
                pred[j] = "O"
        for j in range(len(toks)):  # a person's name runs on: "Pamela Ward", "DIAZ, Sharon"
            if pred[j] not in ("PATIENT", "DOCTOR"):
                continue
            near = [k for k in (j + 1, j - 1) if 0 <= k < len(toks)]
            if j >= 2 and toks[j - 1][0] == "," and toks[j - 2][0][:1].isupper():  # "DIAZ, Sharon"
                near.append(j - 2)
            for k in near:
                if not 0 <= k < len(toks) or pred[k] != "O" or not toks[k][0][:1].isupper() or len(toks[k][0]) < 2:
                    continue
                gap = text[min(toks[j][2], toks[k][2]):max(toks[j][1], toks[k][1])]
                if gap in (" ", ", ") and "\n" not in gap:
                    pred[k] = pred[j]
        found = {toks[j][0]: pred[j] for j in range(len(toks)) if pred[j] != "O" and len(toks[j][0]) > 1
                 and toks[j][0][:1].isupper()}
        pred = np.array([found.get(t[0], p) if p == "O" else p for t, p in zip(toks, pred, strict=True)])
        spans: list[dict[str, Any]] = []
        for j, (_, a, b) in enumerate(toks):
            if pred[j] == "O":
                continue
            last = spans[-1] if spans else None
            gap = text[last["end"]:a] if last else ""
            if last and last["label"] == pred[j] and gap.strip() in ("", ",", ".") and len(gap) <= 2:
                last["end"] = b
            else:
                spans.append({"start": a, "end": b, "label": str(pred[j])})
        return spans


def _pattern_spans(text: str) -> list[dict[str, Any]]:
    out = []
    for lab, rx in _COMPILED:
        for m in rx.finditer(text):
            g = "v" if "v" in rx.groupindex and m.group("v") is not None else 0
            out.append({"start": m.start(g), "end": m.end(g), "label": lab})
    return out


def find_phi(text: str, tagger: PhiTagger | None = None) -> list[dict[str, Any]]:
    """PHI spans in `text`, non-overlapping (the earlier pattern wins, so FAX before PHONE and the specific labels
    before the catch-all ID; pattern spans before the tagger's)."""
    cands = _pattern_spans(text) + (tagger.tag(text) if tagger is not None else [])
    taken = np.zeros(len(text) + 1, dtype=bool)
    out = []
    for s in cands:
        if taken[s["start"]:s["end"]].any():
            continue
        taken[s["start"]:s["end"]] = True
        out.append(s)
    return sorted(out, key=lambda s: s["start"])
