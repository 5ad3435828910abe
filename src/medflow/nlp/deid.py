"""De-identification: PHI found (`nlp.phi`), replaced with consistent surrogates, and measured against gold spans.

`Deidentifier().deidentify(texts, patients)` replaces each PHI span with a surrogate of the same kind:
- dates shifted by one random offset per patient (30 to 365 days back), written in the note's own format, so
  intervals between a patient's dates are kept (admission to discharge, birth to visit);
- names, institutions and cities: invented surrogates, the same original always the same surrogate within a
  patient ("Smith" and "Mr. Smith" stay one person);
- numbers (MRN, phone, SSN, accounts, licences, devices, IDs): random digits and letters in the same shape;
- e-mail, URLs and IP addresses: reserved example domains and the TEST-NET range; ZIP: its first three digits and
  "00"; ages over 89: "90+" (HIPAA Safe Harbor).
The surrogates come from a seeded generator keyed by the patient; the mapping is never written out (it would be
PHI itself). `evaluate_deid` reports recall per PHI kind (a gold span counts as protected only when every one
of its word characters was replaced) and the number of leaked PHI tokens.

`deidentify_notes(path)` is `medflow deid`: notes read as training data are (`data.text.read_notes`, every note
checked), de-identified per patient, and written with the text column replaced; the PHI offsets are not written
(they would point at what was removed). With gold PHI spans in the source, its summary adds the evaluation.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.text import TextSource, read_notes
from medflow.nlp.phi import NOT_NAMES, PhiTagger, find_phi

__all__ = ["Deidentifier", "evaluate_deid", "default_tagger", "deidentify_notes"]

_SURR_FIRST = ["Avery", "Jordan", "Rowan", "Quinn", "Emerson", "Hollis", "Marlow", "Sawyer", "Ellis", "Harper",
               "Reese", "Lennon", "Tatum", "Arden", "Sutton", "Blair"]
_SURR_LAST = ["Ashdown", "Brightwater", "Coldbrook", "Dunmore", "Eastwick", "Fairholm", "Glenrock", "Hawthorne",
              "Ivyridge", "Kingsley", "Larkfield", "Merriweather", "Northcote", "Oakhurst", "Pemberly", "Quarrington"]
_SURR_PLACE = ["Alderbrook", "Birchmont", "Cobblestone", "Dovecote", "Elmstead", "Foxhaven", "Greystone", "Heathfield"]
_FORMATS = ["%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y", "%b %d, %Y", "%d %b %Y", "%d %B %Y", "%m/%d/%y", "%m-%d-%Y",
            "%b. %d, %Y", "%B %d %Y", "%b %d %Y", "%d-%b-%y", "%d-%b-%Y", "%Y/%m/%d", "%m.%d.%Y", "%d of %B %Y",
            "%d of %B, %Y", "%d of %b %Y"]
_NO_YEAR = ["%m/%d", "%B %d", "%b %d", "%b. %d"]
_PADDED = {"%Y-%m-%d", "%Y/%m/%d", "%d-%b-%y", "%d-%b-%Y", "%m.%d.%Y"}


@lru_cache(maxsize=2)
def default_tagger(seed: int = 0) -> PhiTagger:
    """The name tagger trained on the SYNTHETIC notes of the simulator's training families (seconds)."""
    from medflow.data.simulate.notes import simulate_notes

    frame, spans = simulate_notes(300, seed=seed)
    return PhiTagger().fit(frame["text"].tolist(), [spans[n] for n in frame["note_id"]])


def _shift_date(value: str, days: int) -> str | None:
    """The date moved by `days` in the format it was written in; None when it cannot be read."""
    v = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", value.strip())
    for fmt in _FORMATS:
        try:
            d = datetime.strptime(v, fmt).date()
        except ValueError:
            continue
        out = (d + timedelta(days=days)).strftime(fmt)
        # written without leading zeros: "3/4/2021" stays in that style; ISO and lab forms are always padded
        if fmt not in _PADDED and not re.search(r"(^|\D)0\d", v):
            out = re.sub(r"(^|\D)0(\d)", r"\1\2", out)
        return out
    for fmt in _NO_YEAR:
        try:
            d = datetime.strptime(f"2000 {v}", f"%Y {fmt}").date()  # a leap year reads 2/29
        except ValueError:
            continue
        out = (date(2000, d.month, d.day) + timedelta(days=days)).strftime(fmt)
        return out if re.search(r"(^|\D)0\d", v) else re.sub(r"(^|\D)0(\d)", r"\1\2", out)
    return None


class _Patient:
    """One patient's surrogate generator and mappings (same original -> same surrogate)."""

    def __init__(self, key: str, secret: int) -> None:
        h = int.from_bytes(hashlib.sha256(f"{secret}:{key}".encode()).digest()[:8], "little")
        self.rng = np.random.default_rng(h)
        self.shift = -int(self.rng.integers(30, 366))
        self.names: dict[str, str] = {}

    def _person(self, original: str) -> str:
        parts = [p for p in re.split(r"[\s,]+", original) if p]
        out = []
        for i, p in enumerate(parts):  # each name part maps on its own: "Smith", "John Smith" stay one person
            k = p.lower().strip(".")
            if k not in self.names:
                given = (i > 0) if "," in original else (i < len(parts) - 1)  # "Last, First" or "First Last"
                pool = _SURR_FIRST if given else _SURR_LAST
                self.names[k] = pool[int(self.rng.integers(len(pool)))]
            out.append(self.names[k].upper() if p.isupper() and len(p) > 1 else self.names[k])
        return (", " if "," in original else " ").join(out)

    def _shape(self, value: str) -> str:
        return "".join(str(int(self.rng.integers(10))) if c.isdigit() else
                       chr(65 + int(self.rng.integers(26))) if c.isupper() else c for c in value)

    def surrogate(self, label: str, value: str) -> str:
        if label == "DATE":
            return _shift_date(value, self.shift) or "[DATE]"
        if label == "AGE":
            return "90+"
        if label in ("PATIENT", "DOCTOR"):
            return self._person(value)
        if label in ("HOSPITAL", "CITY"):
            k = f"{label}:{value.lower()}"
            if k not in self.names:
                place = _SURR_PLACE[int(self.rng.integers(len(_SURR_PLACE)))]
                self.names[k] = f"{place} {'Hospital' if label == 'HOSPITAL' else ''}".strip()
            return self.names[k]
        if label == "EMAIL":
            return f"patient{int(self.rng.integers(1000, 9999))}@example.invalid"
        if label == "URL":
            return "https://example.invalid/record"
        if label == "IP":
            return f"192.0.2.{int(self.rng.integers(1, 255))}"
        if label == "STREET":
            suffix = value.split()[-1] if len(value.split()) > 2 else "Street"
            return f"{int(self.rng.integers(1, 9999))} {_SURR_PLACE[int(self.rng.integers(len(_SURR_PLACE)))]} {suffix}"
        if label == "ZIP":
            return value[:3] + "00"
        return self._shape(value)


def _with_names(text: str, spans: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """The note's spans plus every other occurrence of a name found in any note of the same patient."""
    if not names:
        return spans
    taken = np.zeros(len(text) + 1, dtype=bool)
    for s in spans:
        taken[s["start"]:s["end"]] = True
    extra = []
    for m in re.finditer(r"\b(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + r")\b", text):
        if not taken[m.start():m.end()].any():
            extra.append({"start": m.start(), "end": m.end(), "label": names[m.group()]})
    return sorted(spans + extra, key=lambda s: s["start"])


class Deidentifier:
    """Find PHI and replace it (see the module docstring). `tagger`: the name tagger (default: trained on the
    simulator's training families); `secret`: seeds every surrogate and date shift (keep it to re-run
    consistently, change it to make surrogates unlinkable across releases)."""

    def __init__(self, tagger: PhiTagger | None = None, secret: int = 0) -> None:
        self.tagger = tagger or default_tagger()
        self.secret = secret

    def find(self, text: str) -> list[dict[str, Any]]:
        return find_phi(text, self.tagger)

    def deidentify(self, texts: list[str], patients: list[str] | None = None,
                   progress: Any = None) -> tuple[list[str], list[list[dict[str, Any]]]]:
        """Clean texts and, per note, the PHI found: its label, its offsets in the original and those of its
        surrogate in the clean text (`clean_start`, `clean_end`); never the values."""
        people: dict[str, _Patient] = {}
        keys = [str(patients[i]) if patients is not None else f"note-{i}" for i in range(len(texts))]
        per_note = [self.find(t) for t in texts]
        names: dict[str, dict[str, str]] = {}  # patient -> name token -> label, from every note of the patient
        for key, text, spans in zip(keys, texts, per_note, strict=True):
            for s in spans:
                if s["label"] in ("PATIENT", "DOCTOR"):
                    for m in re.finditer(r"[A-Za-z][A-Za-z'\-]+", text[s["start"]:s["end"]]):
                        if m.group()[:1].isupper() and m.group().lower() not in NOT_NAMES:
                            names.setdefault(key, {})[m.group()] = s["label"]
        clean, found = [], []
        for i, text in enumerate(texts):
            key = keys[i]
            pat = people.setdefault(key, _Patient(key, self.secret))
            spans = _with_names(text, per_note[i], names.get(key, {}))
            out, at, pos, placed = [], 0, 0, []
            for s in spans:
                out.append(text[at:s["start"]])
                pos += s["start"] - at
                new = pat.surrogate(s["label"], text[s["start"]:s["end"]])
                placed.append({"label": s["label"], "start": s["start"], "end": s["end"], "clean_start": pos,
                               "clean_end": pos + len(new)})
                out.append(new)
                pos += len(new)
                at = s["end"]
            out.append(text[at:])
            clean.append("".join(out))
            found.append(placed)
            if progress is not None:
                progress()
        return clean, found


def evaluate_deid(texts: list[str], gold: list[list[dict[str, Any]]], found: list[list[dict[str, Any]]]) -> dict:
    """Recall per PHI kind (every word character of the gold span replaced), leaked PHI tokens, and precision
    (found spans overlapping a gold span)."""
    per: dict[str, list[int]] = {}
    leaked, n_found, n_true_found = 0, 0, 0
    for text, g, f in zip(texts, gold, found, strict=True):
        cov = np.zeros(len(text) + 1, dtype=bool)
        for s in f:
            cov[s["start"]:s["end"]] = True
        gcov = np.zeros(len(text) + 1, dtype=bool)
        for s in g:
            gcov[s["start"]:s["end"]] = True
            words = [(s["start"] + m.start(), s["start"] + m.end())
                     for m in re.finditer(r"\w+", text[s["start"]:s["end"]])]
            missed = sum(not cov[a:b].all() for a, b in words)
            leaked += missed
            st = per.setdefault(s["label"], [0, 0])
            st[0] += 1
            st[1] += missed == 0
        n_found += len(f)
        n_true_found += sum(bool(gcov[s["start"]:s["end"]].any()) for s in f)
    return {"recall": {k: {"n": n, "recall": c / n} for k, (n, c) in sorted(per.items())},
            "leaked_tokens": int(leaked), "found": n_found,
            "precision": n_true_found / n_found if n_found else 1.0}


# `medflow deid`: notes in, the same notes with PHI replaced by consistent surrogates out (`nlp.deid`).
def deidentify_notes(path: str | Path, text_column: str | None = None, patient_column: str | None = None,
                     id_column: str | None = None, secret: int = 0,
                     progress: Any = None) -> tuple[pd.DataFrame, dict[str, Any], list[tuple[str, str, list]]]:
    """(the notes with the text replaced, a summary: notes, PHI found per kind, seconds, and the evaluation
    against gold spans when the source has them, and up to three (note id, clean text, surrogate spans) examples
    for the HTML page)."""
    ds = read_notes(TextSource(path=str(path), text_column=text_column, patient_column=patient_column,
                               id_column=id_column))
    col = ds.text.text_column
    texts = ds.frame[col].tolist()
    deid = Deidentifier(secret=secret)
    t0 = time.perf_counter()
    clean, found = deid.deidentify(texts, ds.frame[ds.patient_id].astype(str).tolist(), progress)
    seconds = time.perf_counter() - t0
    examples = [(str(ds.frame["note_id"].iloc[i]), clean[i],
                 [{"label": s["label"], "start": s["clean_start"], "end": s["clean_end"]} for s in found[i]])
                for i in range(min(3, len(clean)))]
    out = ds.frame.copy()
    out[col] = clean
    summary: dict[str, Any] = {
        "source": str(path), "notes": len(texts), "patients": ds.n_patients, "seconds": seconds,
        "notes_per_second": len(texts) / seconds if seconds else None,
        "phi_found": dict(sorted(Counter(s["label"] for f in found for s in f).items())),
        "method": "patterns for identifiers with a form; a logistic-regression token tagger for names, trained on "
                  "medflow's SYNTHETIC notes; per-patient date shift and surrogates. Review before release.",
        "patient_column": ds.patient_id if ds.text.patient_given else "none (each note its own patient: dates "
                                                                         "shift independently per note)"}
    if ds.text.spans is not None and any(ds.text.spans.values()):
        from medflow.data.simulate.notes import PHI_LABELS

        gold = [[s for s in ds.text.spans.get(str(n), []) if s["label"] in PHI_LABELS or s["label"] == "ID"]
                for n in ds.frame["note_id"]]
        summary["evaluation"] = evaluate_deid(texts, gold, found)
    return out, summary, examples
