"""SYNTHETIC discharge summaries rendered from the EHR simulator's patients, so the text and the events tell
the same story and every statement has a known truth.

`notes_from_ehr(meds_dir)` writes one note per inpatient admission of a MEDS cohort from `simulate_ehr`:
the patient's age and sex at admission, the chronic conditions coded at that admission (present), the acute
reason (present, or "possible" when phrased as a working diagnosis), earlier admissions' acute reasons
(historical: they happened before this stay), chronic conditions the patient does not have (negated, "no history
of ...") or that a relative has (family), the day-1 labs with their recorded values, the medications given
(drug, dose, route, frequency), the length of stay and the disposition (discharged, or died in hospital). Each
statement is a gold span at exact offsets: PROBLEM (with its assertion), DRUG, DOSE, ROUTE, FREQUENCY, and PHI
(PATIENT, DOCTOR, DATE, AGE over 89, MRN, PHONE, HOSPITAL) in the same span list. Some problem words carry a
typing slip (`typos`, 5% of words of 6 letters or more: "pnuemonia", "hypertenion"); the gold span covers the
text as written. Note labels come from the
events, not from the text: one 0/1 column per chronic condition, the acute reason and its ICD-10-CM code, so
classification, extraction, coding and de-identification can all be checked against the EHR's truth.

Two template families; `discharge` is the training family, `transfer` (other wording and section names, a
shorter note) is `HELD_OUT` for measuring generalization. Everything here is invented; no real person is named.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.simulate.notes import _CITY, _HOSPITAL, _date, _digits, _person, _pick

__all__ = ["notes_from_ehr", "CONDITION_NAMES", "ACUTE_NAMES", "HELD_OUT"]

HELD_OUT = "transfer"
CONDITION_NAMES = {"chf": "congestive heart failure", "copd": "COPD", "dm": "type 2 diabetes mellitus",
                   "ckd": "chronic kidney disease stage 3", "htn": "hypertension", "afib": "atrial fibrillation"}
ACUTE_NAMES = {"pneumonia": "community-acquired pneumonia", "sepsis": "sepsis", "aki": "acute kidney injury",
               "hf_exac": "acute on chronic diastolic heart failure", "uti": "urinary tract infection",
               "mi": "NSTEMI", "gi_bleed": "gastrointestinal hemorrhage", "stroke": "acute ischemic stroke",
               "none": "generalized weakness"}
_DOSES = {"furosemide": ("40 mg", "IV", "BID"), "metoprolol": ("25 mg", "PO", "BID"),
          "metformin": ("500 mg", "PO", "BID"), "insulin": ("20 units", "SC", "nightly"),
          "lisinopril": ("10 mg", "PO", "daily"), "warfarin": ("2.5 mg", "PO", "nightly"),
          "albuterol": ("2 puffs", "inhaled", "q4h PRN"), "ceftriaxone": ("1 g", "IV", "q24h"),
          "vancomycin": ("1 g", "IV", "q12h"), "heparin": ("5000 units", "SC", "q8h"),
          "aspirin": ("81 mg", "PO", "daily"), "pantoprazole": ("40 mg", "PO", "daily")}
_LAB_TEXT = {"creatinine": ("creatinine", "mg/dL", 2), "lactate": ("lactate", "mmol/L", 1),
             "hemoglobin": ("hemoglobin", "g/dL", 1), "wbc": ("WBC", "K/uL", 1), "sodium": ("sodium", "mmol/L", 0)}
_RELATIVE = ["Mother", "Father", "Sister", "Brother"]
_SECTIONS = {"discharge": ("DISCHARGE SUMMARY", "HISTORY OF PRESENT ILLNESS", "PAST MEDICAL HISTORY",
                           "FAMILY HISTORY", "LABS ON ADMISSION", "MEDICATIONS GIVEN", "HOSPITAL COURSE"),
             "transfer": ("Interfacility transfer / discharge note", "Reason for stay", "Prior admissions",
                          "Relatives", "Day-1 results", "Inpatient drugs", "Course")}


def misspell(word: str, rng: np.random.Generator) -> str:
    """A typing slip in a word of 6 letters or more: two adjacent inner letters swapped, or one dropped or doubled."""
    if len(word) < 6 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 2))
    kind = int(rng.integers(3))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i] + word[i + 1:] if kind == 1 else word[:i] + word[i] + word[i:]


class _Writer:
    """Text built piece by piece; labelled pieces recorded as spans at their exact offsets. With `typos`, a
    problem's words are misspelled at that rate (the gold span covers the misspelled text)."""

    def __init__(self, rng: np.random.Generator | None = None, typos: float = 0.0) -> None:
        self.parts: list[str] = []
        self.spans: list[dict[str, Any]] = []
        self.pos = 0
        self.rng, self.typos = rng, typos

    def put(self, text: str, label: str | None = None, assertion: str | None = None) -> None:
        if label == "PROBLEM" and self.typos and self.rng is not None:
            text = " ".join(misspell(w, self.rng) if self.rng.random() < self.typos else w for w in text.split(" "))
        if label:
            self.spans.append({"start": self.pos, "end": self.pos + len(text), "label": label,
                               "attributes": {"assertion": assertion} if assertion else {}})
        self.parts.append(text)
        self.pos += len(text)

    def listing(self, items: list[str], label: str, assertion: str, joiner: str = ", ", last: str = " and ") -> None:
        for k, item in enumerate(items):
            if k:
                self.put(last if k == len(items) - 1 else joiner)
            self.put(item, label, assertion)

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _admissions(meds_dir: Path) -> pd.DataFrame:
    """One row per inpatient admission: subject, admit / discharge, age, sex, chronic and acute codes, earlier
    acute reasons, drugs, day-1 labs, death in hospital."""
    import polars as pl

    from medflow.data.simulate.ehr import ACUTE, CHRONIC, LABS, MEDS_RX

    ev = pl.read_parquet(sorted(meds_dir.glob("data/**/*.parquet"))).sort(["subject_id", "time"], nulls_last=False)
    by_code = {c: k for k, (c, *_) in CHRONIC.items()} | {c: "acute:" + k for k, (c, _) in ACUTE.items()} | \
        {c: "lab:" + k for k, c in LABS.items()} | {c: "rx:" + k for k, c in MEDS_RX.items()}
    rows = []
    for (sid,), g in ev.partition_by("subject_id", as_dict=True, maintain_order=True).items():
        codes, times, vals = g["code"].to_list(), g["time"].to_list(), g["numeric_value"].to_list()
        sex = "female" if "GENDER//F" in codes else "male"
        birth = times[codes.index("MEDS_BIRTH")] if "MEDS_BIRTH" in codes else None
        earlier: list[str] = []
        cur: dict[str, Any] | None = None
        for code, t, v in zip(codes, times, vals, strict=True):
            if code == "ENCOUNTER//INPATIENT//START":
                cur = {"subject_id": int(sid), "admit": t, "sex": sex, "chronic": [], "acute": "none", "drugs": [],
                       "labs": {}, "died": False, "earlier": list(earlier),
                       "age": int((t - birth).days // 365.25) if birth else 65}
            elif cur is None:
                continue
            elif code == "ENCOUNTER//INPATIENT//END":
                cur["discharge"] = t
                rows.append(cur)
                if cur["acute"] != "none":
                    earlier.append(cur["acute"])
                cur = None
            elif code == "MEDS_DEATH":
                cur["died"] = True
            else:
                k = by_code.get(code, "")
                if k in CHRONIC and k not in cur["chronic"]:
                    cur["chronic"].append(k)
                elif k.startswith("acute:"):
                    cur["acute"] = k[6:]
                elif k.startswith("rx:") and k[3:] not in cur["drugs"]:
                    cur["drugs"].append(k[3:])
                elif k.startswith("lab:") and k[4:] not in cur["labs"] and v is not None:
                    cur["labs"][k[4:]] = float(v)
    return pd.DataFrame(rows)


def _render(adm: dict[str, Any], pat: dict[str, Any], family: str, rng: np.random.Generator,
            typos: float = 0.0) -> _Writer:
    from medflow.data.simulate.ehr import CHRONIC

    title, hpi, pmh, fhx, labs, meds, course = _SECTIONS[family]
    w = _Writer(rng, typos)
    w.put(f"{title}\nPatient: ")
    w.put(f"{pat['first']} {pat['last']}", "PATIENT")
    w.put("   MRN: ")
    w.put(pat["mrn"], "MRN")
    w.put(f"\n{'Admitted' if family == 'discharge' else 'Arrival'}: ")
    w.put(_date(rng, adm["admit"].date()), "DATE")
    w.put(f"   {'Discharged' if family == 'discharge' else 'Left'}: ")
    w.put(_date(rng, adm["discharge"].date()), "DATE")
    w.put(f"\n{'Attending' if family == 'discharge' else 'Physician'}: Dr. ")
    d = pat["doctor"]
    w.put(f"{d['first']} {d['last']}" if rng.random() < 0.5 else d["last"], "DOCTOR")
    w.put(f", {'' if family == 'discharge' else 'at '}")
    w.put(pat["hospital"], "HOSPITAL")
    w.put(f"\n\n{hpi}:\n")
    age = adm["age"]
    if age > 89:
        w.put(str(age), "AGE")
        w.put(f"-year-old {adm['sex']}")
    else:
        w.put(f"{age}-year-old {adm['sex']}")
    if adm["chronic"]:
        w.put(" with ")
        w.listing([CONDITION_NAMES[c] for c in adm["chronic"]], "PROBLEM", "present")
    acute = ACUTE_NAMES[adm["acute"]]
    if adm["acute"] != "none" and rng.random() < 0.3:
        w.put(", admitted with fever and malaise; ")
        w.put(_pick(rng, ["concern for ", "possible ", "rule out "]))
        w.put(acute, "PROBLEM", "possible")
        w.put(" on arrival.")
    else:
        w.put(", admitted with ")
        w.put(acute, "PROBLEM", "present")
        w.put(".")
    absent = [c for c in CHRONIC if c not in adm["chronic"]]
    rng.shuffle(absent)
    if absent:
        w.put(" No history of " if family == "discharge" else " Denies ")
        w.put(CONDITION_NAMES[absent[0]], "PROBLEM", "negated")
        w.put(".")
    w.put(f"\n\n{pmh}: ")
    if adm["earlier"]:
        w.put("admitted before for " if family == "transfer" else "prior admissions for ")
        w.listing([ACUTE_NAMES[a] for a in dict.fromkeys(adm["earlier"]) if a != "none"][:3], "PROBLEM",
                  "historical")
        w.put(".")
    else:
        w.put("no prior admissions.")
    if len(absent) > 1:
        w.put(f"\n{fhx}: {_pick(rng, _RELATIVE)} with ")
        w.put(CONDITION_NAMES[absent[1]], "PROBLEM", "family")
        w.put(".")
    shown = [k for k in _LAB_TEXT if k in adm["labs"]]
    if shown:
        w.put(f"\n\n{labs}: " + ", ".join(f"{_LAB_TEXT[k][0]} {adm['labs'][k]:.{_LAB_TEXT[k][2]}f} {_LAB_TEXT[k][1]}"
                                          for k in shown) + ".")
    if adm["drugs"]:
        w.put(f"\n\n{meds}:\n")
        for k, drug in enumerate(adm["drugs"], start=1):
            dose, route, freq = _DOSES[drug]
            w.put(f"{k}. " if family == "discharge" else "- ")
            at = w.pos
            w.put("insulin glargine" if drug == "insulin" else drug, "DRUG")
            for part, label in ((dose, "DOSE"), (route, "ROUTE"), (freq, "FREQUENCY")):
                w.put(" ")
                w.put(part, label)
                w.spans[-1]["attributes"]["drug"] = at  # the relation: this attribute is the drug's
            w.put("\n")
    los = max(1, (adm["discharge"] - adm["admit"]).days)
    w.put(f"\n{course}: {los} day(s) in hospital. ")
    w.put("The patient died in hospital." if adm["died"] else _pick(rng, ["Discharged home in stable condition.",
                                                                          "Discharged to skilled nursing facility."]))
    if not adm["died"]:
        w.put(" Follow-up with Dr. ")
        w.put(d["last"], "DOCTOR")
        w.put(" on ")
        w.put(_date(rng, adm["discharge"].date() + timedelta(days=int(rng.integers(7, 30)))), "DATE")
        w.put(". Clinic phone ")
        a, b, c = _digits(rng, 3), _digits(rng, 3), _digits(rng, 4)
        w.put(f"({a}) {b}-{c}", "PHONE")
        w.put(".")
    w.put("\n")
    return w


def notes_from_ehr(meds_dir: str | Path | None = None, patients: int = 300, seed: int = 0,
                   families: tuple[str, ...] = ("discharge",), max_notes: int | None = None, typos: float = 0.05
                   ) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """SYNTHETIC notes, one per admission of a MEDS cohort from `simulate_ehr` (simulated here, `patients` and
    `seed`, when `meds_dir` is None), and their gold spans. Returns (frame: note_id, subject_id, patient_id,
    family, admit, text, acute, icd10, one 0/1 column per chronic condition; {note_id: [spans]}). `typos`: the
    share of a problem's words of 6 letters or more written with a slip ("pnuemonia"), as clinicians type."""
    import tempfile

    from medflow.data.simulate.ehr import ACUTE, CHRONIC, simulate_ehr

    if meds_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            return notes_from_ehr(simulate_ehr(Path(tmp) / "ehr", patients=patients, seed=seed), seed=seed,
                                  families=families, max_notes=max_notes, typos=typos)
    adms = _admissions(Path(meds_dir))
    rng = np.random.default_rng([seed, 7])
    pool = "test" if families == (HELD_OUT,) else "train"
    people: dict[int, dict[str, Any]] = {}
    rows, spans = [], {}
    for i, adm in enumerate(adms.to_dict("records")):
        if max_notes is not None and i >= max_notes:
            break
        sid = adm["subject_id"]
        if sid not in people:
            city, _ = _pick(rng, _CITY[pool])
            people[sid] = {**_person(rng, pool), "mrn": _pick(rng, [_digits(rng, 8), f"MR{_digits(rng, 7)}"]),
                           "hospital": _pick(rng, _HOSPITAL[pool]), "doctor": _person(rng, pool), "city": city}
        family = _pick(rng, list(families))
        w = _render(adm, people[sid], family, rng, typos)
        nid = f"ehr-{seed}-{sid}-{i}"
        rows.append({"note_id": nid, "subject_id": sid, "patient_id": f"P{sid:06d}", "family": family,
                     "admit": adm["admit"], "text": w.text, "acute": adm["acute"],
                     "icd10": ACUTE[adm["acute"]][0].split("//")[1],
                     **{c: int(c in adm["chronic"]) for c in CHRONIC}})
        spans[nid] = w.spans
    return pd.DataFrame(rows), spans
