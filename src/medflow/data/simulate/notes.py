"""SYNTHETIC clinical notes with planted PHI at exact offsets: the ground truth de-identification is measured on.

`simulate_notes(n_patients, seed, families)` renders notes of four template families (discharge summaries,
progress notes, radiology reports, referral letters) for simulated patients: sections, abbreviations, lists,
negated and family-history findings, medications with dose / route / frequency, and PHI of the HIPAA Safe
Harbor kinds (names of patients and clinicians, dates, ages over 89, phone and fax numbers, e-mail, SSN, medical
record and account numbers, licences, device serials, street addresses, cities, ZIP codes, institutions, URLs and
IP addresses), each recorded as a span {start, end, label}. Everything here is invented; no real person is named.

Generalization, not memorized templates: the referral family (`HELD_OUT`) is never rendered for training by
default, and it draws names, hospitals and cities from pools the training families never use (`pool="test"`),
so a de-identifier measured on it meets new wording and new names.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["simulate_notes", "PHI_LABELS", "FAMILIES", "HELD_OUT"]

PHI_LABELS = ("PATIENT", "DOCTOR", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "SSN", "MRN", "ACCOUNT", "LICENSE",
              "DEVICE", "STREET", "CITY", "ZIP", "HOSPITAL", "URL", "IP")
FAMILIES = ("discharge", "progress", "radiology", "referral")
HELD_OUT = "referral"

_FIRST = {"train": ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
                    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
                    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra",
                    "Donald", "Ashley", "Steven", "Kimberly", "Andrew", "Emily", "Kenneth", "Donna", "Joshua",
                    "Michelle", "Kevin", "Carol"],
          "test": ["Brian", "Amanda", "George", "Melissa", "Timothy", "Deborah", "Ronald", "Stephanie", "Jason",
                   "Rebecca", "Edward", "Sharon", "Jeffrey", "Laura", "Ryan", "Cynthia", "Jacob", "Dorothy", "Gary",
                   "Amy", "Nicholas", "Kathleen", "Eric", "Angela", "Jonathan", "Shirley", "Larry", "Brenda",
                   "Justin", "Emma", "Scott", "Anna", "Brandon", "Pamela", "Benjamin", "Nicole", "Samuel", "Ruth",
                   "Gregory", "Katherine"]}
_LAST = {"train": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
                   "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore", "Jackson",
                   "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis",
                   "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill",
                   "Flores", "Green"],
         "test": ["Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez",
                  "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart",
                  "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
                  "Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
                  "Watson"]}
_HOSPITAL = {"train": ["Riverside Medical Center", "St. Vincent Hospital", "Lakeside Clinic", "Mercy General Hospital",
                       "Northgate Health Center", "Cedar Valley Hospital"],
             "test": ["Hillcrest Regional Hospital", "St. Agnes Medical Center", "Brookfield Community Clinic",
                      "Pine Ridge Infirmary", "Meadowbrook Health"]}
_CITY = {"train": [("Springfield", "IL"), ("Franklin", "TN"), ("Greenville", "SC"), ("Fairview", "OR"),
                   ("Madison", "WI"), ("Georgetown", "KY")],
         "test": [("Clinton", "IA"), ("Salem", "MA"), ("Arlington", "TX"), ("Dayton", "OH"), ("Ashland", "OR")]}
_STREET = ["Maple", "Oak", "Pine", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Main", "Sunset", "Lincoln"]
_SUFFIX = ["Street", "St.", "Avenue", "Ave", "Road", "Rd", "Drive", "Lane", "Court", "Boulevard"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_PROBLEMS = [("type 2 diabetes mellitus", "E11.9"), ("congestive heart failure", "I50.9"), ("pneumonia", "J18.9"),
             ("COPD exacerbation", "J44.1"), ("atrial fibrillation", "I48.91"), ("acute kidney injury", "N17.9"),
             ("cellulitis of the left leg", "L03.116"), ("urinary tract infection", "N39.0"),
             ("hypertension", "I10"), ("asthma", "J45.909")]
# (drug, dose, route, frequency[, duration]): rendered "drug dose route frequency", each part a clinical span
_MEDS = [("metoprolol", "25 mg", "PO", "BID"), ("lisinopril", "10 mg", "PO", "daily"), ("furosemide", "40 mg", "IV",
         "BID"), ("metformin", "500 mg", "PO", "BID"), ("apixaban", "5 mg", "PO", "BID"),
         ("albuterol", "2 puffs", "inhaled", "q4h PRN"), ("ceftriaxone", "1 g", "IV", "q24h", "x 5 days"),
         ("insulin glargine", "20 units", "SC", "nightly"), ("atorvastatin", "40 mg", "PO", "nightly"),
         ("vancomycin", "1 g", "IV", "q12h", "for 7 days"), ("pantoprazole", "40 mg", "PO", "daily")]
_MEDS_TEST = [("amlodipine", "5 mg", "PO", "daily"), ("warfarin", "2.5 mg", "PO", "nightly"),
              ("heparin", "5000 units", "SC", "q8h"), ("levothyroxine", "75 mcg", "PO", "daily"),
              ("piperacillin-tazobactam", "4.5 g", "IV", "q6h"), ("prednisone", "40 mg", "PO", "daily", "x 5 days"),
              ("gabapentin", "300 mg", "PO", "TID"), ("ondansetron", "4 mg", "IV", "q6h PRN")]
# negated findings and family history: (text before, the problem, text after)
_NEGATED = [("Denies ", "chest pain", "."), ("No evidence of ", "pneumonia", "."), ("Denies ", "fever", "."),
            ("No ", "shortness of breath", "."), ("Negative for ", "deep vein thrombosis", "."),
            ("No ", "pleural effusion", ".")]
_FAMILY = [("Mother had ", "breast cancer", "."), ("Father with ", "type 2 diabetes", "."),
           ("Family history of ", "coronary artery disease", ".")]

_TEMPLATES = {
    "discharge": [
        "DISCHARGE SUMMARY\nPatient: {PATIENT}   MRN: {MRN}   DOB: {DOB}\nAdmitted: {DATE}   Discharged: {DATE}\n"
        "Attending: Dr. {DOCTOR}\n\nHISTORY OF PRESENT ILLNESS:\n{AGE_PHRASE} with {PROBLEM} admitted to {HOSPITAL}. "
        "{NEGATED} {NEGATED}\n\nFAMILY HISTORY: {FAMILY}\n\nDISCHARGE MEDICATIONS:\n1. {MED}\n2. {MED}\n3. {MED}\n\n"
        "FOLLOW-UP: with Dr. {DOCTOR} on {DATE}. Call {PHONE} with questions.\n",
        "D/C SUMMARY - {HOSPITAL}\nName: {PATIENT_LF}  Acct #: {ACCOUNT}\nAdmission date {DATE}, discharge date {DATE}."
        "\nHPI: Pt is a {AGE_PHRASE} w/ hx of {PROBLEM}. {NEGATED}\nHospital course: treated for {PROBLEM}. "
        "Meds on discharge: {MED}; {MED}.\nPt lives at {STREET}, {CITY_ZIP}. Home phone {PHONE}.\n"
        "Dictated by {DOCTOR}, MD on {DATE}.\n",
    ],
    "progress": [
        "PROGRESS NOTE {DATE}\n{PATIENT} ({MRN}) seen on rounds today. {AGE_PHRASE}, day 3 for {PROBLEM}.\n"
        "S: feels better. {NEGATED}\nO: afebrile, BP 128/76.\nA/P: {PROBLEM} improving. Continue {MED}. "
        "Pager {PHONE}.\n-- {DOCTOR}, MD\n",
        "Progress note - {HOSPITAL}, ward 7\nMr./Ms. {PATIENT_LAST} reports no new complaints. {NEGATED}\n"
        "Plan: continue {MED}, recheck labs {DATE}. Spoke with daughter at {PHONE}. e-mail: {EMAIL}\n"
        "Signed: Dr. {DOCTOR} (license {LICENSE})\n",
    ],
    "radiology": [
        "CHEST X-RAY, 2 VIEWS  Exam date: {DATE}\nPatient {PATIENT}, MRN {MRN}, {HOSPITAL}\n"
        "INDICATION: {AGE_PHRASE} with cough, r/o {PROBLEM}.\nFINDINGS: {NEGATED} Heart size normal.\n"
        "IMPRESSION: No acute cardiopulmonary process.\nRead by {DOCTOR}, MD. Images: {URL}\n",
        "CT ABDOMEN {DATE} - {HOSPITAL}\nName: {PATIENT_LF}; MRN {MRN}; DOB {DOB}\nDevice: pacemaker serial "
        "{DEVICE}\nFINDINGS: {NEGATED}\nReported to Dr. {DOCTOR} by phone {PHONE} on {DATE}. Workstation {IP}.\n",
    ],
    "referral": [  # held out: new wording, new names, new institutions
        "Dear Dr. {DOCTOR},\n\nThank you for seeing my patient {PATIENT}, born {DOB}, whom I follow at {HOSPITAL} "
        "for {PROBLEM}. {AGE_PHRASE} who {NEGATED_LOWER} {FAMILY}\nCurrent medicines: {MED}, {MED}.\n"
        "Address: {STREET}, {CITY_ZIP}. Tel {PHONE}, fax {FAX}. SSN {SSN} for insurance, member number {ACCOUNT}.\n"
        "Portal: {URL}\n\nSincerely,\n{DOCTOR}, MD\n{DATE}\n",
        "REFERRAL\nTo: {DOCTOR_FULL}, Cardiology, {HOSPITAL}\nRe: {PATIENT_LF} (record {MRN}), seen {DATE}\n"
        "Reason: {PROBLEM}; {NEGATED_LOWER}\nPlease reply by fax to {FAX} or e-mail {EMAIL}.\n"
        "Referring clinician: {DOCTOR_FULL}, NPI {LICENSE}\n",
    ],
}


def _pick(rng: np.random.Generator, xs: list) -> Any:
    return xs[int(rng.integers(len(xs)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(int(d)) for d in rng.integers(0, 10, n))


def _date(rng: np.random.Generator, d: date) -> str:
    fmt = int(rng.integers(6))
    return [f"{d.month:02d}/{d.day:02d}/{d.year}", d.isoformat(), f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
            f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}", f"{d.month}/{d.day}/{d.year % 100:02d}",
            f"{_MONTHS[d.month - 1][:3]} {d.day}"][fmt]


def _person(rng: np.random.Generator, pool: str) -> dict[str, str]:
    return {"first": _pick(rng, _FIRST[pool]), "last": _pick(rng, _LAST[pool])}


def _render(template: str, rng: np.random.Generator,
            pat: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """The template with each placeholder filled; PHI pieces recorded as spans, clinical entities (problems with
    their assertion, drugs, doses, routes, frequencies) as a second list."""
    out, spans, clinical, pos = [], [], [], 0

    def put(text: str, label: str | None = None, entity: str | None = None, assertion: str | None = None) -> None:
        nonlocal pos
        if label:
            spans.append({"start": pos, "end": pos + len(text), "label": label})
        if entity:
            clinical.append({"start": pos, "end": pos + len(text), "label": entity,
                             "attributes": {"assertion": assertion} if assertion else {}})
        out.append(text)
        pos += len(text)

    def med() -> None:
        drug, dose, route, freq, *duration = _pick(rng, _MEDS if pat["pool"] == "train" else _MEDS_TEST)
        at = pos
        parts = ((drug, "DRUG"), (dose, "DOSE"), (route, "ROUTE"), (freq, "FREQUENCY"), *((d, "DURATION")
                                                                                       for d in duration))
        for k, (part, lab) in enumerate(parts):
            put((" " if k else "") + "")
            put(part, entity=lab)
            if k:
                clinical[-1]["attributes"]["drug"] = at  # the relation: this attribute is the drug's

    def finding(parts: tuple[str, str, str], assertion: str, lower: bool = False) -> None:
        before, problem, after = parts
        put(before.lower() if lower else before)
        put(problem, entity="PROBLEM", assertion=assertion)
        put(after)

    for piece in re.split(r"(\{[A-Z_]+\})", template):
        key = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
        if key is None:
            put(piece)
        elif key == "PATIENT":
            put(f"{pat['first']} {pat['last']}", "PATIENT")
        elif key == "PATIENT_LF":
            put(f"{pat['last'].upper() if rng.random() < 0.3 else pat['last']}, {pat['first']}", "PATIENT")
        elif key == "PATIENT_LAST":
            put(pat["last"], "PATIENT")
        elif key in ("DOCTOR", "DOCTOR_FULL"):
            d = _pick(rng, pat["doctors"])
            put(f"{d['first']} {d['last']}" if key == "DOCTOR_FULL" or rng.random() < 0.5 else d["last"], "DOCTOR")
        elif key == "DOB":
            put(_date(rng, pat["dob"]), "DATE")
        elif key == "DATE":
            put(_date(rng, pat["admit"] + timedelta(days=int(rng.integers(-400, 30)))), "DATE")
        elif key == "AGE_PHRASE":
            age = pat["age"]
            text = _pick(rng, [f"{age}-year-old {pat['sex']}", f"{age} yo {pat['sex'][0].upper()}",
                               f"{age} y/o {pat['sex']}"])
            m = re.match(r"\d+", text)
            if age > 89:
                put(text[:m.end()], "AGE")
                put(text[m.end():])
            else:
                put(text)
        elif key == "PHONE" or key == "FAX":
            a, b, c = _digits(rng, 3), _digits(rng, 3), _digits(rng, 4)
            put(_pick(rng, [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}"]), key)
        elif key == "EMAIL":
            put(f"{pat['first'].lower()}.{pat['last'].lower()}{_digits(rng, 2)}@"
                f"{_pick(rng, ['mail.com', 'example.org', 'inbox.net'])}", "EMAIL")
        elif key == "SSN":
            put(f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}", "SSN")
        elif key == "MRN":
            put(pat["mrn"], "MRN")
        elif key == "ACCOUNT":
            put(_pick(rng, [_digits(rng, 9), f"HX{_digits(rng, 8)}"]), "ACCOUNT")
        elif key == "LICENSE":
            put(_pick(rng, [f"MD{_digits(rng, 6)}", _digits(rng, 10)]), "LICENSE")
        elif key == "DEVICE":
            put(f"SN-{_digits(rng, 4)}{chr(65 + int(rng.integers(26)))}{_digits(rng, 3)}", "DEVICE")
        elif key == "STREET":
            put(f"{int(rng.integers(1, 9999))} {_pick(rng, _STREET)} {_pick(rng, _SUFFIX)}", "STREET")
        elif key == "CITY_ZIP":
            put(pat["city"], "CITY")
            put(f", {pat['state']} ")
            put(_digits(rng, 5), "ZIP")
        elif key == "HOSPITAL":
            put(pat["hospital"], "HOSPITAL")
        elif key == "URL":
            put(f"https://portal.{pat['hospital'].split()[0].lower().strip('.')}health.org/chart/{_digits(rng, 6)}",
                "URL")
        elif key == "IP":
            put(".".join(str(int(v)) for v in rng.integers(1, 255, 4)), "IP")
        elif key == "PROBLEM":
            put(pat["problem"], entity="PROBLEM", assertion="possible" if "".join(out).endswith("r/o ") else "present")
        elif key == "MED":
            med()
        elif key == "NEGATED":
            finding(_pick(rng, _NEGATED), "negated")
        elif key == "NEGATED_LOWER":
            finding(_pick(rng, _NEGATED), "negated", lower=True)
        elif key == "FAMILY":
            finding(_pick(rng, _FAMILY), "family")
        else:
            raise KeyError(key)
    return "".join(out), spans, clinical


def simulate_notes(n_patients: int = 200, seed: int = 0, families: tuple[str, ...] | None = None,
                   notes_per_patient: int = 3, pool: str | None = None,
                   annotate: str = "phi") -> tuple[pd.DataFrame, dict]:
    """SYNTHETIC notes and their spans: (frame with note_id, patient_id, family, text, problem, icd10;
    {note_id: [spans]}). `annotate`: "phi" (the PHI spans) or "clinical" (PROBLEM spans with their assertion,
    DRUG, DOSE, ROUTE, FREQUENCY). `families` defaults to the training families (all but `HELD_OUT`); `pool`
    ("train" / "test") picks the name, hospital and city pools (default: "test" when only the held-out family is
    asked for)."""
    families = tuple(families or [f for f in FAMILIES if f != HELD_OUT])
    pool = pool or ("test" if families == (HELD_OUT,) else "train")
    rng = np.random.default_rng(seed)
    rows, spans = [], {}
    for p in range(n_patients):
        person = _person(rng, pool)
        city, state = _pick(rng, _CITY[pool])
        problem, icd = _pick(rng, _PROBLEMS)
        pat = {**person, "age": int(rng.choice([int(rng.integers(18, 90)), int(rng.integers(90, 104))], p=[0.7, 0.3])),
               "sex": _pick(rng, ["male", "female"]), "mrn": _pick(rng, [_digits(rng, 8), f"MR{_digits(rng, 7)}"]),
               "admit": date(2018, 1, 1) + timedelta(days=int(rng.integers(0, 2000))), "city": city, "state": state,
               "hospital": _pick(rng, _HOSPITAL[pool]), "doctors": [_person(rng, pool) for _ in range(2)],
               "problem": problem, "pool": pool}
        pat["dob"] = pat["admit"] - timedelta(days=int(365.25 * pat["age"]) + int(rng.integers(1, 360)))
        for k in range(notes_per_patient):
            family = _pick(rng, list(families))
            text, sp, clinical = _render(_pick(rng, _TEMPLATES[family]), rng, pat)
            nid = f"syn-{seed}-{p}-{k}"
            rows.append({"note_id": nid, "patient_id": f"P{seed}-{p:05d}", "family": family, "text": text,
                         "problem": problem, "icd10": icd})
            spans[nid] = sp if annotate == "phi" else clinical
    return pd.DataFrame(rows), spans
