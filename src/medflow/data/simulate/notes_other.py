"""SYNTHETIC notes in another style: the second, independent note generator, never used for training.

`simulate_notes` (notes.py) writes dictated discharge summaries, progress notes, radiology reports and referral
letters. This module was written separately, in the style of nursing notes, triage notes, medication
reconciliations and short SOAP notes as EHRs print them, so that a tagger or a de-identifier trained on the first
generator is measured on wording, layouts and names it never saw (figures labelled "another style"):

- medication lists in six layouts: inline with semicolons ("home meds: lisinopril 10 mg daily; metformin 500 mg
  PO BID"), bullets under a header, a pipe table (Medication | Dose | Route | Frequency), a MAR ("0800 given APAP
  650 mg PO"), numbered items with glued doses ("1) amlodipine 5mg po qd"), narrative starts with durations
  ("started on cephalexin 500 mg PO QID for 7 days"); generic names, salt forms, brand names (Lasix, Zofran),
  abbreviations (APAP, HCTZ, KCl, NS), combinations (piperacillin-tazobactam) and drugs outside ChEMBL's
  approved small molecules (heparin, enoxaparin, insulins, senna, melatonin);
- vitals blocks and nursing shorthand ("A&Ox3, ambulating w/ assist"), negated and possible problems;
- PHI of every HIPAA kind in the forms hospitals write: names with initials and titles, MRN 84-227-991,
  MR#: 1234567, Acct# 000123456, FIN, Medicare MBI, SSN without hyphens, phones with +1 and extensions, 14-Mar-24,
  2024/03/14, "on the 14th", ages in y.o./yrs, apartments and suites, plates and VINs, UDIs and lots, NPI / DEA.

Gold spans: PHI (`PHI_LABELS` + VEHICLE) and clinical (PROBLEM with assertion, DRUG with `attributes.generic`,
DOSE, ROUTE, FREQUENCY, DURATION with `attributes.drug` = their drug's start: the relation). Names, places and
hospitals come from pools neither generator's training families use. Everything is invented.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.simulate.notes_other_phi import identifiers

__all__ = ["simulate_other_notes", "OTHER_FAMILIES", "OTHER_DRUGS"]

OTHER_FAMILIES = ("nursing", "triage", "medrec", "soap")
# (as written, the generic it normalizes to, doses, routes, frequencies)
OTHER_DRUGS: list[tuple[str, str, list[str], list[str], list[str]]] = [
    ("lisinopril", "LISINOPRIL", ["10 mg", "20mg"], ["PO", "po"], ["daily", "qd"]),
    ("metformin", "METFORMIN", ["500 mg", "1000 mg"], ["PO"], ["BID", "twice daily"]),
    ("amlodipine", "AMLODIPINE", ["5 mg", "10mg"], ["PO", "by mouth"], ["daily", "qAM"]),
    ("amlodipine besylate", "AMLODIPINE BESYLATE", ["5 mg"], ["PO"], ["daily"]),
    ("losartan potassium", "LOSARTAN POTASSIUM", ["50 mg"], ["PO"], ["daily"]),
    ("metoprolol succinate", "METOPROLOL SUCCINATE", ["50 mg", "25 mg"], ["PO"], ["daily"]),
    ("carvedilol", "CARVEDILOL", ["6.25 mg", "12.5 mg"], ["PO"], ["BID", "q12h"]),
    ("spironolactone", "SPIRONOLACTONE", ["25 mg"], ["PO"], ["daily"]),
    ("digoxin", "DIGOXIN", ["0.125 mg", "125 mcg"], ["PO"], ["daily"]),
    ("amiodarone", "AMIODARONE", ["200 mg"], ["PO"], ["daily", "BID"]),
    ("diltiazem", "DILTIAZEM", ["30 mg", "120 mg"], ["PO"], ["q6h", "daily"]),
    ("clopidogrel", "CLOPIDOGREL", ["75 mg"], ["PO"], ["daily"]),
    ("rivaroxaban", "RIVAROXABAN", ["20 mg", "15 mg"], ["PO"], ["daily with dinner", "daily"]),
    ("simvastatin", "SIMVASTATIN", ["20 mg", "40 mg"], ["PO"], ["qHS", "at bedtime"]),
    ("rosuvastatin", "ROSUVASTATIN", ["10 mg"], ["PO"], ["daily"]),
    ("omeprazole", "OMEPRAZOLE", ["20 mg", "40 mg"], ["PO"], ["daily before breakfast", "daily"]),
    ("famotidine", "FAMOTIDINE", ["20 mg"], ["PO", "IV"], ["BID", "q12h"]),
    ("ondansetron", "ONDANSETRON", ["4 mg"], ["IV", "PO", "ODT"], ["q8h PRN nausea", "q6h prn"]),
    ("oxycodone", "OXYCODONE", ["5 mg", "10 mg"], ["PO"], ["q4h PRN pain", "q6h prn"]),
    ("hydromorphone", "HYDROMORPHONE", ["0.5 mg", "1 mg"], ["IV"], ["q3h PRN", "q2h prn severe pain"]),
    ("tramadol", "TRAMADOL", ["50 mg"], ["PO"], ["q6h PRN"]),
    ("sertraline", "SERTRALINE", ["50 mg", "100 mg"], ["PO"], ["daily"]),
    ("trazodone", "TRAZODONE", ["50 mg"], ["PO"], ["qHS PRN sleep", "at bedtime"]),
    ("quetiapine", "QUETIAPINE", ["25 mg"], ["PO"], ["qHS"]),
    ("lorazepam", "LORAZEPAM", ["0.5 mg", "1 mg"], ["PO", "IV"], ["q6h PRN anxiety", "q8h prn"]),
    ("levothyroxine", "LEVOTHYROXINE", ["50 mcg", "88 mcg"], ["PO"], ["daily", "qAM"]),
    ("methylprednisolone", "METHYLPREDNISOLONE", ["40 mg", "125 mg"], ["IV"], ["q8h", "q12h"]),
    ("cephalexin", "CEPHALEXIN", ["500 mg"], ["PO"], ["QID", "q6h"]),
    ("azithromycin", "AZITHROMYCIN", ["500 mg", "250 mg"], ["PO", "IV"], ["daily"]),
    ("levofloxacin", "LEVOFLOXACIN", ["750 mg"], ["PO", "IV"], ["daily", "q24h"]),
    ("metronidazole", "METRONIDAZOLE", ["500 mg"], ["PO", "IV"], ["q8h", "TID"]),
    ("doxycycline", "DOXYCYCLINE", ["100 mg"], ["PO"], ["BID"]),
    ("tamsulosin", "TAMSULOSIN", ["0.4 mg"], ["PO"], ["qHS", "daily"]),
    ("allopurinol", "ALLOPURINOL", ["100 mg", "300 mg"], ["PO"], ["daily"]),
    ("montelukast", "MONTELUKAST", ["10 mg"], ["PO"], ["qHS"]),
    ("sitagliptin", "SITAGLIPTIN", ["100 mg"], ["PO"], ["daily"]),
    ("glipizide", "GLIPIZIDE", ["5 mg"], ["PO"], ["daily", "BID"]),
    ("Lasix", "FUROSEMIDE", ["40 mg", "20mg"], ["IV", "PO"], ["BID", "daily"]),
    ("Zofran", "ONDANSETRON", ["4 mg"], ["IV"], ["q6h PRN"]),
    ("Coumadin", "WARFARIN", ["5 mg", "2.5 mg"], ["PO"], ["daily at 1700", "qPM"]),
    ("Norvasc", "AMLODIPINE", ["10 mg"], ["PO"], ["daily"]),
    ("Eliquis", "APIXABAN", ["5 mg", "2.5 mg"], ["PO"], ["BID"]),
    ("Keflex", "CEPHALEXIN", ["500 mg"], ["PO"], ["QID"]),
    ("Zosyn", "PIPERACILLIN/TAZOBACTAM", ["3.375 g", "4.5 g"], ["IV"], ["q8h", "q6h"]),
    ("Tylenol", "ACETAMINOPHEN", ["650 mg", "1 g"], ["PO"], ["q6h PRN", "q6h prn fever"]),
    ("APAP", "ACETAMINOPHEN", ["650 mg", "500mg"], ["PO", "PR"], ["q6h PRN", "q4h prn"]),
    ("ASA", "ASPIRIN", ["81 mg", "325 mg"], ["PO"], ["daily"]),
    ("HCTZ", "HYDROCHLOROTHIAZIDE", ["25 mg", "12.5 mg"], ["PO"], ["daily"]),
    ("KCl", "POTASSIUM CHLORIDE", ["20 mEq", "40 mEq"], ["PO", "IV"], ["once", "BID"]),
    ("NS", "SODIUM CHLORIDE", ["1 L", "500 mL"], ["IV"], ["bolus", "over 1 hr"]),
    ("piperacillin-tazobactam", "PIPERACILLIN/TAZOBACTAM", ["4.5 g"], ["IV"], ["q6h", "q8h"]),
    ("heparin", "HEPARIN", ["5000 units", "5,000 units"], ["SC", "subq"], ["q8h", "q12h"]),
    ("enoxaparin", "ENOXAPARIN", ["40 mg", "1 mg/kg"], ["SC", "subcut"], ["daily", "q12h"]),
    ("insulin lispro", "INSULIN LISPRO", ["4 units", "per sliding scale"], ["SC"], ["with meals", "TID AC"]),
    ("insulin glargine", "INSULIN GLARGINE", ["20 units", "10 units"], ["SC"], ["qHS", "nightly"]),
    ("senna", "SENNA", ["8.6 mg", "2 tabs"], ["PO"], ["qHS PRN constipation", "BID"]),
    ("melatonin", "MELATONIN", ["3 mg"], ["PO"], ["qHS PRN"]),
    ("semaglutide", "SEMAGLUTIDE", ["0.5 mg"], ["SC"], ["weekly"]),
]
_DURATIONS = ["x 5 days", "for 7 days", "for 2 weeks", "x 3 days", "for 10 days"]
_FIRST = ["Olivia", "Mateo", "Priya", "Declan", "Yusuf", "Ingrid", "Tobias", "Marisol", "Kwame", "Hannah",
          "Rafael", "Colette", "Dmitri", "Aaliyah", "Soren", "Beatrix", "Luca", "Imani", "Ezra", "Noor"]
_LAST = ["Okafor", "Lindqvist", "Castellano", "Brennan", "Haddad", "Novak", "Achterberg", "Delacroix", "Mwangi",
         "Fitzgerald", "Sorensen", "Kowalczyk", "Abernathy", "Ferreira", "Takahashi", "Whitcombe", "Oyelaran",
         "Vasquez", "Thornbury", "Halvorsen"]
_HOSP = ["Bayview Memorial Hospital", "Granite Falls Medical Center", "Sacred Heart Health Center",
         "Willow Creek Regional Medical Center", "Northshore University Hospital"]
_PLACES = [("Bellingham", "WA"), ("Fort Collins", "CO"), ("Duluth", "MN"), ("Savannah", "GA"), ("Provo", "UT")]
_STREETS = ["Birch Dr.", "Harbor Blvd", "Quarry Rd.", "Chestnut Ave", "Orchard Ln", "Summit Parkway", "Ridge Ct"]
_PROBLEMS = ["chest pain", "shortness of breath", "cellulitis", "fall", "UTI", "hypotension", "nausea",
             "CHF exacerbation", "hyperglycemia", "pneumonia", "DVT", "delirium"]
_MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_MONTH = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


class _Note:
    """A note being written: text pieces with gold spans at exact offsets."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.parts, self.spans, self.pos = rng, [], [], 0

    def put(self, text: str, label: str | None = None, **attributes: Any) -> int:
        at = self.pos
        if label:
            self.spans.append({"start": at, "end": at + len(text), "label": label, "attributes": attributes})
        self.parts.append(text)
        self.pos += len(text)
        return at

    def pick(self, xs: list) -> Any:
        return xs[int(self.rng.integers(len(xs)))]

    def digits(self, n: int) -> str:
        return "".join(str(int(d)) for d in self.rng.integers(0, 10, n))

    def text(self) -> str:
        return "".join(self.parts)


def _date(n: _Note, d: date) -> None:
    k = int(n.rng.integers(7))
    if k == 6:  # "on the 14th": the day alone
        suffix = "th" if 10 <= d.day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(d.day % 10, "th")
        n.put("on the ")
        n.put(f"{d.day}{suffix}", "DATE")
        return
    n.put([f"{d.day:02d}-{_MON[d.month - 1]}-{d.year % 100:02d}", f"{d.year}/{d.month:02d}/{d.day:02d}",
           f"{d.month:02d}.{d.day:02d}.{d.year}", f"{_MONTH[d.month - 1]} {d.day}th, {d.year}"
           if d.day in (4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 19, 20, 24, 25, 26, 27, 28) else
           f"{_MONTH[d.month - 1]} {d.day}, {d.year}", f"{d.month}/{d.day}", f"{d.month}/{d.day}/{d.year}"][k], "DATE")


def _name(n: _Note, p: dict[str, str], label: str) -> None:
    n.put(n.pick([f"{p['first']} {p['last']}", f"{p['first'][0]}. {p['last']}", f"{p['last'].upper()}, "
                  f"{p['first'].upper()}", f"{p['first']} {n.pick('ABCDEHJKLMRST')}. {p['last']}",
                  p["last"]]), label)


def _med(n: _Note, layout: str, pool: list) -> None:
    written, generic, doses, routes, freqs = n.pick(pool)
    at = n.put(written, "DRUG", generic=generic)
    if layout == "table":
        for lab, v in (("DOSE", n.pick(doses)), ("ROUTE", n.pick(routes)), ("FREQUENCY", n.pick(freqs))):
            n.put(" | ")
            n.put(v, lab, drug=at)
        return
    dose, route, freq = n.pick(doses), n.pick(routes), n.pick(freqs)
    n.put(" ")
    n.put(dose.replace(" ", "") if layout == "numbered" and dose[0].isdigit() else dose, "DOSE", drug=at)
    if layout != "mar" or n.rng.random() < 0.8:
        n.put(" ")
        n.put(route, "ROUTE", drug=at)
    if layout != "mar":
        n.put(" ")
        n.put(freq, "FREQUENCY", drug=at)
    if layout in ("narrative", "bullets") and n.rng.random() < 0.4:
        n.put(" ")
        n.put(n.pick(_DURATIONS), "DURATION", drug=at)


def _med_list(n: _Note, pool: list) -> None:
    layout = n.pick(["inline", "bullets", "table", "mar", "numbered", "narrative"])
    k = int(n.rng.integers(2, 5))
    if layout == "inline":
        n.put(n.pick(["Home meds: ", "home meds: ", "Current meds - ", "Meds: "]))
        for i in range(k):
            n.put("; " if i else "")
            _med(n, layout, pool)
        n.put("\n")
    elif layout == "bullets":
        n.put(n.pick(["MEDICATIONS:\n", "Current Outpatient Medications\n", "Active orders:\n"]))
        for _ in range(k):
            n.put(n.pick(["- ", "* ", "  "]))
            _med(n, layout, pool)
            n.put("\n")
    elif layout == "table":
        n.put("Medication | Dose | Route | Frequency\n")
        for _ in range(k):
            _med(n, layout, pool)
            n.put("\n")
    elif layout == "mar":
        n.put("MAR:\n")
        for _ in range(k):
            n.put(f"{n.pick(['0800', '1200', '1600', '2000', '2200'])} {n.pick(['given', 'administered', 'gave'])} ")
            _med(n, layout, pool)
            n.put(n.pick(["\n", " per order\n", ", tolerated well\n"]))
    elif layout == "numbered":
        for i in range(k):
            n.put(f"{i + 1}) ")
            _med(n, layout, pool)
            n.put(" " if i < k - 1 else "\n")
    else:
        n.put(n.pick(["Started on ", "Pt was started on ", "Continue "]))
        _med(n, layout, pool)
        n.put(". ")
        n.put(n.pick(["Also on ", "Resumed home "]))
        _med(n, layout, pool)
        n.put(".\n")


def _problems(n: _Note) -> None:
    a, b = n.pick(_PROBLEMS), n.pick([p for p in _PROBLEMS])
    n.put(n.pick(["Pt presents with ", "c/o ", "Admitted for ", "Here for "]))
    n.put(a, "PROBLEM", assertion="present")
    n.put(n.pick([". Denies ", ". No ", ". Pt denies ", "; negative for "]))
    n.put(b if b != a else "fever", "PROBLEM", assertion="negated")
    n.put(". ")
    n.put(n.pick(["Possible ", "r/o ", "Concern for "]))
    n.put(n.pick(["sepsis", "PE", "ACS", "stroke"]), "PROBLEM", assertion="possible")
    n.put(".\n")


def _vitals(n: _Note) -> None:
    n.put(f"VS: T {n.pick(['98.6F', '37.2C', '100.4F'])} HR {int(n.rng.integers(55, 120))} BP "
          f"{int(n.rng.integers(95, 170))}/{int(n.rng.integers(55, 100))} RR {int(n.rng.integers(12, 26))} SpO2 "
          f"{int(n.rng.integers(88, 100))}% {n.pick(['RA', 'on 2L NC', 'on room air'])}\n")


def _phi_block(n: _Note, pat: dict[str, Any]) -> None:
    """Identifiers in the header and footer forms hospitals print."""
    n.put(n.pick(["MRN ", "MR#: ", "MRN: ", "Med Rec # ", "Chart no. "]))
    n.put(pat["mrn"], "MRN")
    n.put(n.pick(["  Acct# ", "  FIN ", "  CSN: ", "  Medicare MBI "]))
    n.put(pat["acct"], "ACCOUNT")
    n.put("\n")


def simulate_other_notes(n_patients: int = 100, seed: int = 0, annotate: str = "all") -> tuple[pd.DataFrame, dict]:
    """SYNTHETIC notes in another style: (frame with note_id, patient_id, family, text; {note_id: spans}).
    `annotate`: "phi", "clinical" or "all"."""
    rng = np.random.default_rng(10_000 + seed)
    rows, spans = [], {}
    for p in range(n_patients):
        def person() -> dict[str, str]:
            return {"first": _FIRST[int(rng.integers(len(_FIRST)))], "last": _LAST[int(rng.integers(len(_LAST)))]}

        pat = {**person(), "age": int(rng.choice([int(rng.integers(20, 89)), int(rng.integers(90, 105))])),
               "admit": date(2021, 1, 1) + timedelta(days=int(rng.integers(0, 1200))), "nurse": person(),
               "doctor": person(), "hospital": _HOSP[int(rng.integers(len(_HOSP)))],
               "place": _PLACES[int(rng.integers(len(_PLACES)))]}
        d = "".join(str(int(v)) for v in rng.integers(0, 10, 12))
        pat["mrn"] = [f"{d[:2]}-{d[2:5]}-{d[5:8]}", d[:7], f"00{d[:6]}", f"{d[:4]}-{d[4:6]}-{d[6]}",
                      f"A{d[:7]}"][int(rng.integers(5))]
        pat["acct"] = [f"000{d[3:9]}", d[2:9], d[:9], f"{int(d[0]) % 9 + 1}EG4-TE5-MK{d[1:3]}"][int(rng.integers(4))]
        for k in range(3):
            n = _Note(rng)
            family = OTHER_FAMILIES[int(rng.integers(len(OTHER_FAMILIES)))]
            _render(n, family, pat)
            nid = f"oth-{seed}-{p}-{k}"
            rows.append({"note_id": nid, "patient_id": f"Q{seed}-{p:05d}", "family": family, "text": n.text()})
            keep = {"phi": lambda s: s["label"] not in _CLINICAL, "clinical": lambda s: s["label"] in _CLINICAL,
                    "all": lambda s: True}[annotate]
            spans[nid] = [s for s in n.spans if keep(s)]
    return pd.DataFrame(rows), spans


_CLINICAL = {"PROBLEM", "DRUG", "DOSE", "ROUTE", "FREQUENCY", "DURATION"}


def _render(n: _Note, family: str, pat: dict[str, Any]) -> None:
    """One note of `family`: its pieces in order, text as written and the generators of spans between them."""
    day = pat["admit"] + timedelta(days=int(n.rng.integers(0, 20)))
    ids = {k: (lambda k=k: identifiers(n, pat, k)) for k in ("age", "phone", "vehicle", "address", "ids", "license",
                                                               "contact", "device", "web")}
    meds, problems, vitals = (lambda: _med_list(n, OTHER_DRUGS)), (lambda: _problems(n)), (lambda: _vitals(n))
    hospital, header = (lambda: n.put(pat["hospital"], "HOSPITAL")), (lambda: _phi_block(n, pat))
    steps: dict[str, list[Any]] = {
        "nursing": ["NURSING NOTE  ", lambda: _date(n, day), f" {n.pick(['0700', '1930', '2300'])}\nPt: ",
                    lambda: _name(n, pat, "PATIENT"), ", ", ids["age"], "\n", header,
                    "Pt A&Ox3, ambulating w/ assist, tolerating PO diet. ", problems, vitals, meds,
                    "Family updated at bedside, daughter ", ids["phone"], ".\n-- ",
                    lambda: _name(n, pat["nurse"], "DOCTOR"), ", RN\n"],
        "triage": ["ED TRIAGE - ", hospital, "\nArrived ", lambda: _date(n, day), " by private vehicle, ",
                   ids["vehicle"], ".\n", lambda: _name(n, pat, "PATIENT"), " (", ids["age"], ") ", problems, vitals,
                   meds, ids["address"], "\n", ids["ids"]],
        "medrec": ["MEDICATION RECONCILIATION\n", header, "Patient: ", lambda: _name(n, pat, "PATIENT"), "   DOB: ",
                   lambda: _date(n, pat["admit"] - timedelta(days=int(365.25 * pat["age"]))), "\nPharmacist: ",
                   lambda: _name(n, pat["doctor"], "DOCTOR"), ", PharmD ", ids["license"], "\n", meds, meds,
                   ids["contact"]],
        "soap": ["S: ", problems, "O: ", vitals, "A/P: ", meds, "Device check: ", ids["device"], ". F/u with Dr. ",
                 lambda: _name(n, pat["doctor"], "DOCTOR"), " at ", hospital, " ",
                 lambda: _date(n, day + timedelta(days=14)), ". Portal ", ids["web"], "\n"],
    }
    for step in steps[family]:
        if isinstance(step, str):
            n.put(step)
        else:
            step()
