"""Each HIPAA Safe Harbor identifier with a written form, in the forms hospitals write it: found by `find_phi`
with its kind and its whole value, and gone from the de-identified note (issue: MRN 84-227-991 was left)."""

import re

import pytest

from medflow.nlp.deid import Deidentifier, _shift_date
from medflow.nlp.phi import find_phi

# (kind, note, the identifier's value in it)
CASES = [
    ("MRN", "Patient seen today, MRN 84-227-991, for follow-up.", "84-227-991"),
    ("MRN", "MR#: 1234567 admitted via ED.", "1234567"),
    ("MRN", "MRN: 1234567-8 (check digit)", "1234567-8"),
    ("MRN", "Medical Record No. 00-12-345", "00-12-345"),
    ("MRN", "medical record number 84 227 991 on file", "84 227 991"),
    ("MRN", "Pt ID: HX12345678", "HX12345678"),
    ("MRN", "Chart #A0098123 reviewed", "A0098123"),
    ("MRN", "Unit No. 5512340", "5512340"),
    ("MRN", "MR0048812 transferred", "MR0048812"),
    ("ACCOUNT", "Acct# 000123456", "000123456"),
    ("ACCOUNT", "Account No: 1234-5678-90", "1234-5678-90"),
    ("ACCOUNT", "FIN 900012345 for this encounter", "900012345"),
    ("ACCOUNT", "Medicare ID 1EG4-TE5-MK73", "1EG4-TE5-MK73"),
    ("ACCOUNT", "Member ID: XJH123456789", "XJH123456789"),
    ("SSN", "SSN 123-45-6789", "123-45-6789"),
    ("SSN", "SSN: 123 45 6789", "123 45 6789"),
    ("SSN", "social security number 123456789", "123456789"),
    ("PHONE", "call (317) 555-0199", "(317) 555-0199"),
    ("PHONE", "Tel: 317.555.0199", "317.555.0199"),
    ("PHONE", "cell 317 555 0199", "317 555 0199"),
    ("PHONE", "+1 (317) 555-0199 x204", "+1 (317) 555-0199 x204"),
    ("PHONE", "1-800-555-0199 after hours", "1-800-555-0199"),
    ("FAX", "Fax: (317) 555-0142", "(317) 555-0142"),
    ("FAX", "fax to 317 555 0142", "317 555 0142"),
    ("EMAIL", "e-mail j.doe+clinic@mail.example.org", "j.doe+clinic@mail.example.org"),
    ("URL", "portal https://mychart.example.org/patient/8841", "https://mychart.example.org/patient/8841"),
    ("IP", "logged in from 10.21.4.199", "10.21.4.199"),
    ("DATE", "admitted 03/14/2024", "03/14/2024"),
    ("DATE", "admitted March 14, 2024", "March 14, 2024"),
    ("DATE", "drawn 14-Mar-24", "14-Mar-24"),
    ("DATE", "drawn 14-Mar-2024", "14-Mar-2024"),
    ("DATE", "seen on 2024/03/14", "2024/03/14"),
    ("DATE", "seen on the 14th", "14th"),
    ("DATE", "on the 14th of March, 2024", "14th of March, 2024"),
    ("DATE", "surgery March 14th", "March 14th"),
    ("AGE", "a 93 y.o. man", "93"),
    ("AGE", "93-year-old woman", "93"),
    ("AGE", "95 yrs, lives alone", "95"),
    ("AGE", "aged 101", "101"),
    ("STREET", "lives at 221 Baker Street Apt 4B, with daughter", "221 Baker Street Apt 4B"),
    ("ZIP", "Indianapolis, IN 46202", "46202"),
    ("ZIP", "zip code: 46202-1234", "46202-1234"),
    ("LICENSE", "DL# D123-4567-8901", "D123-4567-8901"),
    ("LICENSE", "NPI 1234567893", "1234567893"),
    ("LICENSE", "DEA AB1234563", "AB1234563"),
    ("VEHICLE", "license plate ABC-1234", "ABC-1234"),
    ("VEHICLE", "VIN 1HGCM82633A004352", "1HGCM82633A004352"),
    ("DEVICE", "pacemaker serial number PJN709812K", "PJN709812K"),
    ("DEVICE", "UDI (01)00643169007222", "(01)00643169007222"),
    ("HOSPITAL", "transferred from Riverside Medical Center", "Riverside Medical Center"),
]


@pytest.mark.parametrize("kind,note,value", CASES, ids=[f"{k}:{v}" for k, _, v in CASES])
def test_each_identifier_form_is_found_whole(kind, note, value):
    found = [(s["label"], note[s["start"]:s["end"]]) for s in find_phi(note)]
    start = note.index(value)
    covering = [s for s in find_phi(note) if s["start"] <= start and s["end"] >= start + len(value)]
    assert covering and covering[0]["label"] == kind, found


def test_no_mrn_is_left_in_notes_written_every_way():
    """Every MRN and account form above, several to a note, across patients: none survives de-identification,
    and each patient's dates keep their intervals."""
    ids = [(n, v) for k, n, v in CASES if k in ("MRN", "ACCOUNT")]
    notes = [f"{a} Follow-up 03/01/2024. {b} Next visit 03/15/2024." for (a, _), (b, _) in zip(ids, ids[1:] + ids[:1],
                                                                                              strict=True)]
    clean, found = Deidentifier().deidentify(notes, [f"p{i % 3}" for i in range(len(notes))])
    for (_, value), text in zip(ids, clean, strict=True):
        assert value not in text and re.sub(r"\D", "", value) not in re.sub(r"\D", "", text), text
    assert all({"MRN", "ACCOUNT"} & {s["label"] for s in f} for f in found)


def test_clinical_numbers_are_not_identifiers():
    """Doses, vitals, lab values, scores and counts written beside the new labels' words stay."""
    text = ("Plan: start 2 tabs of metformin 500 mg. Unit 4 West. Visit 2 of 3. Record BP 128/76, HR 88. "
            "Group B strep negative. Lot of pain. 10 units insulin. Tag removed from IV. Pt 93 kg.")
    assert find_phi(text) == []


@pytest.mark.parametrize("value,days,expected", [("14-Mar-24", -10, "04-Mar-24"), ("14-Mar-2024", 30, "13-Apr-2024"),
                                                 ("2024/03/14", -14, "2024/02/29"),
                                                 ("14th of March, 2024", 1, "15 of March, 2024")])
def test_new_date_forms_shift_in_their_own_format(value, days, expected):
    assert _shift_date(value, days) == expected


def test_a_day_without_month_is_replaced_not_shifted():
    clean, _ = Deidentifier().deidentify(["Seen on the 14th by the team."])
    assert "14th" not in clean[0] and "[DATE]" in clean[0]
