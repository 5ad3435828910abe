"""ICD-10-CM coding: rank the official codes for a diagnosis phrase or a note.

The code table is the official ICD-10-CM release shipped by `simple-icd-10-cm` (98,505 codes, 74,736 billable
leaves), read offline. `ICDCoder.rank(texts, k)` scores every billable code against each text:

- by its description (and its category's, e.g. "I50.2 Systolic (congestive) heart failure" under "Heart
  failure"): TF-IDF cosine over words and character 3-5 grams (so "pneumonias", "cardiomyopathic" still meet
  their codes), after clinical abbreviations are spelled out (CHF, COPD, DM2, HTN, AKI, afib, NSTEMI, ...);
- when trained on coded texts (`fit(texts, codes)`), also by the nearest training texts (k-nearest neighbours,
  cosine): a site's own wording and its coders' habits, which descriptions alone cannot know.

A note is coded sentence by sentence (the best score of each code over the sentences), skipping sentences that
open with a negation ("No evidence of pneumonia.", "Denies chest pain."), so a ruled-out diagnosis is not coded.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["ICDCoder", "icd10cm_table", "default_coder", "ABBREVIATIONS", "DX_PHRASES"]

ABBREVIATIONS = {
    "chf": "congestive heart failure", "hfref": "systolic heart failure", "hfpef": "diastolic heart failure",
    "copd": "chronic obstructive pulmonary disease", "dm2": "type 2 diabetes mellitus",
    "t2dm": "type 2 diabetes mellitus", "dm": "diabetes mellitus", "iddm": "type 1 diabetes mellitus",
    "htn": "essential hypertension", "aki": "acute kidney failure", "ckd": "chronic kidney disease",
    "afib": "atrial fibrillation", "a-fib": "atrial fibrillation", "af": "atrial fibrillation",
    "nstemi": "non-ST elevation myocardial infarction", "stemi": "ST elevation myocardial infarction",
    "mi": "myocardial infarction", "cad": "atherosclerotic heart disease of native coronary artery",
    "uti": "urinary tract infection", "pna": "pneumonia", "cap": "pneumonia", "dvt": "deep vein thrombosis",
    "pe": "pulmonary embolism", "tia": "transient cerebral ischemic attack", "cva": "cerebral infarction",
    "gerd": "gastro-esophageal reflux disease", "mdd": "major depressive disorder", "hld": "hyperlipidemia",
    "osa": "obstructive sleep apnea", "bph": "benign prostatic hyperplasia", "ra": "rheumatoid arthritis",
    "oa": "osteoarthritis", "lbp": "low back pain", "sob": "shortness of breath", "ams": "altered mental status",
    "etoh": "alcohol", "aud": "alcohol dependence", "esrd": "end stage renal disease", "hypok": "hypokalemia",
    "ugib": "gastrointestinal hemorrhage", "sbo": "intestinal obstruction", "ards": "acute respiratory distress",
}
_QUALIFIERS = ("newborn", "pregnancy", "childbirth", "puerperium", "puerperal", "delivery", "sequela", "subsequent",
               "other ", "other specified", "intractable", "with status", "class ", "level ", "recurrent",
               "with complications", "with unspecified complications", "drug induced", "due to", "following")
# sentences not coded for this patient's encounter: negated, ruled out, family history
_SKIP_START = re.compile(r"^\s*(no|not|denies|denied|negative for|without|ruled out|rule out|r/o|mother|father|sister|"
                         r"brother|family history|fhx|maternal|paternal)\b", re.I)

# (phrase as clinicians write it, the code a coder assigns): the evaluation set `tests/nlp/test_icd.py` and the
# benchmark rank against all 74,736 billable codes. Written here from coding conventions, so a measure of
# retrieval with abbreviations and paraphrase, not of a site's coders.
DX_PHRASES: list[tuple[str, str]] = [
    ("CHF exacerbation", "I50.9"), ("acute on chronic systolic heart failure", "I50.23"),
    ("acute diastolic heart failure", "I50.31"), ("community acquired pneumonia", "J18.9"),
    ("type 2 DM", "E11.9"), ("type 2 diabetes with hyperglycemia", "E11.65"), ("HTN", "I10"),
    ("afib", "I48.91"), ("NSTEMI", "I21.4"), ("UTI", "N39.0"), ("AKI", "N17.9"),
    ("COPD exacerbation", "J44.1"), ("asthma", "J45.909"), ("sepsis", "A41.9"), ("hypothyroidism", "E03.9"),
    ("hyperlipidemia", "E78.5"), ("GERD", "K21.9"), ("anemia", "D64.9"), ("obesity", "E66.9"),
    ("pulmonary embolism", "I26.99"), ("osteoarthritis of right knee", "M17.11"), ("hypokalemia", "E87.6"),
    ("hyponatremia", "E87.1"), ("iron deficiency anemia", "D50.9"), ("acute pancreatitis", "K85.90"),
    ("syncope", "R55"), ("chest pain", "R07.9"), ("fever", "R50.9"), ("seizure", "R56.9"),
    ("TIA", "G45.9"), ("obstructive sleep apnea", "G47.33"), ("BPH", "N40.0"),
    ("rheumatoid arthritis", "M06.9"), ("major depressive disorder, single episode", "F32.9"),
    ("generalized anxiety disorder", "F41.1"), ("cellulitis of left lower leg", "L03.116"),
    ("DVT of left femoral vein", "I82.412"), ("end stage renal disease", "N18.6"), ("migraine", "G43.909"),
    ("dehydration", "E86.0"), ("constipation", "K59.00"), ("hypoglycemia", "E16.2"),
    ("altered mental status", "R41.82"), ("shortness of breath", "R06.02"), ("gout", "M10.9"),
    ("essential tremor", "G25.0"), ("vitamin D deficiency", "E55.9"), ("acute bronchitis", "J20.9"),
    ("allergic rhinitis", "J30.9"), ("urinary retention", "R33.9"),
]


@lru_cache(maxsize=2)
def icd10cm_table(billable_only: bool = True) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(codes, descriptions, their category's description) from the official table; billable leaves only by
    default."""
    import simple_icd_10_cm as cm

    codes = [c for c in cm.get_all_codes(with_dots=True) if not billable_only or cm.is_leaf(c)]
    codes = [c for c in codes if cm.is_subcategory(c) or cm.is_category(c)] if billable_only else codes
    desc = [cm.get_description(c) for c in codes]
    parent = []
    for c in codes:
        p = cm.get_parent(c) if cm.is_subcategory(c) else ""
        parent.append(cm.get_description(p) if p and (cm.is_category(p) or cm.is_subcategory(p)) else "")
    return tuple(codes), tuple(desc), tuple(parent)


@lru_cache(maxsize=1)
def _shared(billable_only: bool) -> ICDCoder:
    return ICDCoder(billable_only)


def default_coder(neighbours: int = 5) -> ICDCoder:
    """A coder over the billable codes; the description index (about 15 s to build) is built once per process
    and shared, each call gets its own training memory."""
    import copy

    coder = copy.copy(_shared(True))
    coder.neighbours, coder.train_x, coder.train_codes = neighbours, None, []
    return coder


def expand(text: str) -> str:
    """Lower-cased, with clinical abbreviations spelled out."""
    return re.sub(r"[a-z0-9\-]+", lambda m: ABBREVIATIONS.get(m.group(), m.group()), text.lower())


class ICDCoder:
    """Rank ICD-10-CM codes (see the module docstring). `neighbours`: training texts consulted per query."""

    def __init__(self, billable_only: bool = True, neighbours: int = 5) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import FeatureUnion

        self.codes, desc, parent = icd10cm_table(billable_only)
        self.index = {c: i for i, c in enumerate(self.codes)}
        self.descriptions = desc
        docs = [f"{d} {d} {p}" for d, p in zip(desc, parent, strict=True)]  # the code's own words count twice
        self.vec = FeatureUnion([("w", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)),
                                 ("c", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                                       min_df=2, dtype=np.float32))])
        self.matrix = _normalize(self.vec.fit_transform([expand(d) for d in docs]))
        # coding conventions as priors: without detail in the text, the unspecified code; a qualifier the text does
        # not state (newborn, pregnancy, sequela, a later encounter, "other specified") counts against a code
        low = [d.lower() for d in desc]
        self.unspecified = np.array([("unspecified" in d) or ("not otherwise" in d) for d in low], dtype=np.float32)
        self.qualifiers = {q: np.array([q in d for d in low], dtype=bool) for q in _QUALIFIERS}
        self.with_ = np.array([re.search(r"\bwith\b", d) is not None for d in low], dtype=bool)
        self.neighbours = neighbours
        self.train_x: Any = None
        self.train_codes: list[str] = []

    def fit(self, texts: list[str], codes: list[str]) -> ICDCoder:
        unknown = sorted({c for c in codes if c not in self.index})
        if unknown:
            from medflow.errors import DataError

            raise DataError(f"codes not in the ICD-10-CM table (billable leaves): {unknown[:5]}; check the code "
                            "column (codes are written with the dot, e.g. I50.9).")
        self.train_x = _normalize(self.vec.transform([expand(t) for t in texts]))
        self.train_codes = list(codes)
        return self

    def _query_scores(self, queries: list[str], rows: np.ndarray | None = None) -> np.ndarray:
        """Description scores (queries x codes, or x `rows` of the table) with the coding-convention priors."""
        expanded = [expand(q) for q in queries]
        m = self.matrix if rows is None else self.matrix[rows]
        s = np.asarray((_normalize(self.vec.transform(expanded)) @ m.T).todense(), dtype=np.float32)
        pick = (lambda a: a) if rows is None else (lambda a: a[rows])
        s *= 1.0 + 0.1 * pick(self.unspecified)
        for word, has in self.qualifiers.items():
            lack = np.array([word not in q for q in expanded])
            cols = pick(has)
            if lack.any() and cols.any():
                s[np.ix_(lack, cols)] *= 0.8
        # "with <complication>" needs it documented; uncomplicated is the default
        lack = np.array([re.search(r"\bwith\b", q) is None for q in expanded])
        cols = pick(self.with_)
        if lack.any() and cols.any():
            s[np.ix_(lack, cols)] *= 0.85
        return s

    def scores(self, text: str, neighbours: bool = True) -> np.ndarray:
        """One score per code for a phrase or a sentence: description similarity, blended with the nearest
        training texts when fitted."""
        s = self._query_scores([text])[0]
        if neighbours:
            self._add_neighbours(s, _normalize(self.vec.transform([expand(text)])))
        return s

    def _add_neighbours(self, s: np.ndarray, q: Any, rows: np.ndarray | None = None) -> None:
        if self.train_x is not None and len(self.train_codes) and self.neighbours:
            sim = np.asarray((self.train_x @ q.T).todense()).ravel()
            where = None if rows is None else {int(r): j for j, r in enumerate(rows)}
            for j in np.argsort(-sim)[: self.neighbours]:
                i = self.index[self.train_codes[j]]
                if where is not None:
                    if i not in where:
                        continue
                    i = where[i]
                s[i] = max(s[i], 0.5 * s[i] + 0.5 * float(sim[j]) + 0.5 * float(sim[j]) * (sim[j] > 0.5))

    def notes_scores(self, notes: list[str], rows: np.ndarray | None = None) -> np.ndarray:
        """Notes x codes (or x `rows`): descriptions against each sentence (the best per code; negated and
        family-history sentences skipped), then the nearest training notes against the whole note. All sentences
        of all notes are scored in one pass."""
        from medflow.nlp.context import sentences

        parts, owner = [], []
        for i, note in enumerate(notes):
            kept = [note[a:b] for a, b in sentences(note) if not _SKIP_START.match(note[a:b])] or [note]
            parts += kept
            owner += [i] * len(kept)
        out = np.full((len(notes), len(self.codes) if rows is None else len(rows)), -np.inf, dtype=np.float32)
        for start in range(0, len(parts), 256):  # bounded memory: 256 sentences x the table at a time
            s = self._query_scores(parts[start:start + 256], rows)
            np.maximum.at(out, np.asarray(owner[start:start + 256]), s)
        if self.train_x is not None and self.neighbours:
            q = _normalize(self.vec.transform([expand(n) for n in notes]))
            for i in range(len(notes)):
                self._add_neighbours(out[i], q[i], rows)
        return out

    def note_scores(self, note: str) -> np.ndarray:
        """One note's code scores (`notes_scores`)."""
        return self.notes_scores([note])[0]

    def rank(self, texts: list[str], k: int = 5, notes: bool = False) -> list[list[dict[str, Any]]]:
        """The top `k` codes per text (`notes=True`: sentence by sentence), with descriptions and scores."""
        out = []
        for t in texts:
            s = self.note_scores(t) if notes else self.scores(t)
            top = np.argsort(-s)[:k]
            out.append([{"code": self.codes[i], "description": self.descriptions[i], "score": round(float(s[i]), 4)}
                        for i in top])
        return out


def _normalize(m: Any) -> Any:
    from sklearn.preprocessing import normalize

    return normalize(m.tocsr())
