"""De-identification and `medflow extract` on the other-style notes (nursing, triage, medication reconciliation,
SOAP; `data.simulate.notes_other`), which no model here was trained on: every HIPAA kind replaced, names with
initials and credentials, every MRN format, the CLI's medication table."""

import json

import pandas as pd
import pytest

from medflow.data.simulate.notes_other import simulate_other_notes
from medflow.nlp.deid import Deidentifier, evaluate_deid
from tests.conftest import run_cli

KINDS = {"PATIENT", "DOCTOR", "DATE", "AGE", "PHONE", "FAX", "EMAIL", "SSN", "MRN", "ACCOUNT", "LICENSE", "DEVICE",
         "STREET", "CITY", "ZIP", "HOSPITAL", "URL", "IP", "VEHICLE"}


def test_every_kind_replaced_on_another_style():
    frame, spans = simulate_other_notes(120, seed=5, annotate="phi")
    texts = frame["text"].tolist()
    clean, found = Deidentifier().deidentify(texts, frame["patient_id"].tolist())
    ev = evaluate_deid(texts, [spans[n] for n in frame["note_id"]], found)
    assert set(ev["recall"]) == KINDS
    low = {k: round(v["recall"], 3) for k, v in ev["recall"].items() if v["recall"] < 0.99}
    assert not low, low
    assert ev["leaked_tokens"] <= 2 and ev["precision"] > 0.75


@pytest.mark.parametrize("line", [
    "MRN 84-227-991", "MR#: 1234567", "MRN: 00123456", "Med Rec # 4471-22-0", "Chart no. A1234567",
    "Medical record number 84 227 991", "MRN 8472291-4", "Acct# 000123456", "FIN 7712345", "CSN: 123456789",
    "Medicare MBI 1EG4-TE5-MK73", "Pt: Declan T. Sorensen, 96yo M", "-- S. Haddad, RN", "Dr. SORENSEN, LUCA",
    "Pharmacist: BRENNAN, KWAME, PharmD", "Imani H. Abernathy (96 y.o. F)"])
def test_no_identifier_left_in_its_forms(line):
    note = f"NURSING NOTE\n{line}\nPatient stable."
    clean = Deidentifier().deidentify([note])[0][0]
    kept = [w for w in line.replace(",", " ").split() if any(c.isdigit() for c in w) or w[:1].isupper()]
    values = [w for w in kept if w.strip(".#:-") and w.strip(".#:-").lower() not in
              {"mrn", "mr", "med", "rec", "chart", "no", "medical", "acct", "fin", "csn", "medicare", "mbi", "pt",
               "dr", "rn", "pharmacist", "pharmd", "m", "f"} and len(w.strip(".#:-,()")) > 1]
    assert values and not [v for v in values if v.strip("(),") in clean], (line, clean)
    assert clean.endswith("Patient stable.")  # "Patient" stays a word


def test_extract_cli_on_another_style(tmp_path):
    frame, spans = simulate_other_notes(15, seed=2, annotate="clinical")
    with open(tmp_path / "other.jsonl", "w") as fh:
        for r in frame.to_dict("records"):
            fh.write(json.dumps({**r, "spans": spans[r["note_id"]]}) + "\n")
    r = run_cli("extract", "other.jsonl", "-o", "spans.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "attributes linked to their drug" in r.stdout and "medications" in r.stdout
    meds = pd.read_csv(tmp_path / "spans.medications.csv", keep_default_na=False)
    assert len(meds) > 40 and (meds["normalized_id"].str.startswith("CHEMBL").mean() > 0.7)
    assert (meds["dose"] != "").mean() > 0.8 and (meds["frequency"] != "").mean() > 0.5
    rows = pd.read_csv(tmp_path / "spans.csv", keep_default_na=False)
    assert {"normalized_id", "normalized_name", "drug_start"} <= set(rows.columns)
    summary = json.loads((tmp_path / "spans.csv.summary.json").read_text())
    assert summary["relation_accuracy"]["value"] > 0.85
    assert "Medications (" in (tmp_path / "spans.csv.report.html").read_text()
    r = run_cli("extract", "other.jsonl", "-o", "x.csv", "--lexicon", "missing.csv", cwd=tmp_path)
    assert r.returncode != 0 and "drug lexicon 'missing.csv': no such file" in r.stderr
    assert "Traceback" not in r.stderr
