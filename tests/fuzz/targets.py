"""Every reader medflow exposes to a user's files, as a fuzz target: a valid seed file (written here, offline) and
the call that reads it. `harness.py` mutates the seed's bytes and checks the property: the reader returns, or
raises medflow's own error whose message names the file (or its folder); never another exception, a hang or
runaway memory."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["Target", "TARGETS"]


@dataclass(frozen=True)
class Target:
    name: str
    filename: str  # the mutated file's name inside the case folder
    seed: Callable[[], bytes]
    read: Callable[[Path], object]
    others: Callable[[Path], None] | None = None  # the valid files beside it (folders: BRAT, MEDS, i2b2 2009)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ["p1", "p2", "p3", "p4"], "age": [61, 72.5, None, 45],
                         "sex": ["F", "M", "F", "M"], "note": ['said "ok", left', "x", "", "y"],
                         "label": [0, 1, 0, 1]})


def _csv() -> bytes:
    return _frame().to_csv(index=False).encode()


def _parquet() -> bytes:
    buf = io.BytesIO()
    _frame().to_parquet(buf)
    return buf.getvalue()


def _read_frame(p: Path) -> object:
    from medflow.data.sources.tabular import read_frame

    return read_frame(p)


def _yaml() -> bytes:
    return (b"name: fuzz\ndata: {dataset: breast_cancer}\ntask: {kind: binary, target: malignant}\n"
            b"split: {kind: holdout, test_size: 0.3}\nmodels: [logistic_regression, {name: mlp, params: "
            b"{hidden: [8]}}]\ntrain: {epochs: 2, batch_size: 32}\nevaluate: {n_bootstrap: 20}\n")


def _load_config(p: Path) -> object:
    from medflow.config import load_config

    return load_config(p)


def _events_csv() -> bytes:
    return (b"subject_id,time,code,numeric_value\n1,2020-01-01 10:00,DX//I10,\n1,2020-01-02,LAB//glucose,5.4\n"
            b"2,2021-03-04T08:00:00,MED//metformin,\n")


def _read_events(p: Path) -> object:
    from medflow.data.sources.event_table import read_event_table

    return read_event_table(p)


def _labels() -> bytes:
    from datetime import datetime

    import polars as pl

    buf = io.BytesIO()
    pl.DataFrame({"subject_id": [1, 2], "prediction_time": [datetime(2020, 1, 2), datetime(2021, 3, 5)],
                  "boolean_value": [True, False]}).write_parquet(buf)
    return buf.getvalue()


def _read_labels(p: Path) -> object:
    from medflow.data.sources.meds import read_meds_labels

    return read_meds_labels(p)


def _meds_shard() -> bytes:
    from datetime import datetime

    import polars as pl

    buf = io.BytesIO()
    pl.DataFrame({"subject_id": [1, 1, 2], "time": [datetime(2020, 1, 1), datetime(2020, 1, 2), datetime(2021, 1, 1)],
                  "code": ["DX//I10", "LAB//glucose", "DX//E11"], "numeric_value": [None, 5.4, None]},
                 schema_overrides={"numeric_value": pl.Float32}).write_parquet(buf)
    return buf.getvalue()


def _meds_others(case: Path) -> None:
    (case / "metadata").mkdir(exist_ok=True)
    (case / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "fuzz", "meds_version": "0.4.1"}))


def _read_meds(p: Path) -> object:
    from medflow.data.sources.meds import read_meds

    return read_meds(p.parent.parent)


def _fhir() -> bytes:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-02-03"}
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]},
            "onsetDateTime": "2020-01-01T10:00:00Z"}
    obs = {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
           "effectiveDateTime": "2020-01-02", "valueQuantity": {"value": 5.4, "unit": "mmol/L"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in (patient, cond, obs)]}
    return json.dumps(bundle).encode()


def _read_fhir(p: Path) -> object:
    from medflow.data.sources.fhir import read_fhir

    return read_fhir(p)


def _dicom() -> bytes:
    import pydicom.data

    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()


def _read_image(p: Path) -> object:
    from medflow.data.sources.images import read_image

    return read_image(p)


def _nifti() -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3), np.diag([1.0, 1.2, 2.0, 1.0]))
    return img.to_bytes()


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3).save(buf, format="PNG")
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, train_images=rng.integers(0, 255, (4, 8, 8), dtype=np.uint8), train_labels=np.array([[0], [1], [0],
             [1]]), test_images=rng.integers(0, 255, (2, 8, 8), dtype=np.uint8), test_labels=np.array([[1], [0]]))
    return buf.getvalue()


def _read_npz(p: Path) -> object:
    from medflow.data.sources.images import read_npz

    return read_npz(p)


def _smi() -> bytes:
    return b"SMILES name\nCCO ethanol\nc1ccccc1O phenol\nCC(=O)Oc1ccccc1C(=O)O aspirin\n"


def _sdf() -> bytes:
    from rdkit import Chem

    buf = io.StringIO()
    w = Chem.SDWriter(buf)
    for smi, val in (("CCO", 1.5), ("c1ccccc1O", -0.2)):
        m = Chem.MolFromSmiles(smi)
        m.SetProp("logS", str(val))
        w.write(m)
    w.close()
    return buf.getvalue().encode()


def _read_molecules(p: Path) -> object:
    from medflow.data.molecules import read_molecules

    return read_molecules(str(p))


def _notes_csv() -> bytes:
    return b'note_id,patient_id,text\nn1,p1,"Denies chest pain. Lasix 40 mg IV BID."\nn2,p2,MRN 84-227-991 seen\n'


def _notes_jsonl() -> bytes:
    text = "Lasix 40 mg IV BID. Denies chest pain."
    return (json.dumps({"note_id": "n1", "text": text, "spans": [{"start": 0, "end": 5, "label": "DRUG"},
            {"start": 27, "end": 37, "label": "PROBLEM", "attributes": {"assertion": "negated"}}]}) + "\n").encode()


def _read_notes(p: Path) -> object:
    from medflow.data.text import read_notes

    return read_notes(str(p))


def _read_notes_folder(p: Path) -> object:
    from medflow.data.text import read_notes

    return read_notes(str(p.parent))


def _beside(files: dict[str, str]) -> Callable[[Path], None]:
    """The valid files a folder reader needs beside the mutated one."""
    def write(case: Path) -> None:
        for name, text in files.items():
            (case / name).write_text(text)
    return write


ANN = (b"T1\tDrug 0 5\tLasix\nT2\tStrength 6 11\t40 mg\nT3\tProblem 27 37\tchest pain\nA1\tNegation T3\n"
       b"R1\tStrength-Drug Arg1:T2 Arg2:T1\n")
ENTRIES = (b'm="lasix" 2:0 2:0||do="40 mg" 2:1 2:2||mo="po" 2:3 2:3||f="bid" 2:4 2:4||du="nm"||r="nm"||ln="list"\n'
           b'm="coumadin" 3:0 3:0||do="5 mg" 3:1 3:2||mo="nm"||f="qhs" 3:3 3:3||du="for 3 days" 3:4 3:6||r="nm"\n')
LEXICON = b"name,id,synonyms\nZynterol,SITE-1,ztl|zyn-terol\nwarfarin,W1,\n"


def _ann() -> bytes:
    return ANN


def _i2b2_xml() -> bytes:
    text = "Record date: 2067-05-03. Mr. Lopez, MRN 8472291."
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n<deIdi2b2>\n<TEXT><![CDATA[{text}]]></TEXT>\n<TAGS>\n'
            f'<DATE id="P0" start="13" end="23" text="2067-05-03" TYPE="DATE" comment="" />\n'
            f'<NAME id="P1" start="29" end="34" text="Lopez" TYPE="PATIENT" comment="" />\n'
            f'<ID id="P2" start="40" end="47" text="8472291" TYPE="MEDICALRECORD" comment="" />\n</TAGS>\n'
            f'</deIdi2b2>\n').encode()




def _read_lexicon(p: Path) -> object:
    from medflow.nlp.drugs import load_lexicon

    return load_lexicon([p])


TARGETS = [
    Target("csv table", "t.csv", _csv, _read_frame),
    Target("parquet table", "t.parquet", _parquet, _read_frame),
    Target("study yaml", "study.yaml", _yaml, _load_config),
    Target("event table", "events.csv", _events_csv, _read_events),
    Target("meds labels", "labels.parquet", _labels, _read_labels),
    Target("meds folder", "data/0.parquet", _meds_shard, _read_meds, _meds_others),
    Target("fhir bundle", "bundle.json", _fhir, _read_fhir),
    Target("dicom", "ct.dcm", _dicom, _read_image),
    Target("nifti", "img.nii", _nifti, _read_image),
    Target("png", "img.png", _png, _read_image),
    Target("npz", "set.npz", _npz, _read_npz),
    Target("smiles", "mols.smi", _smi, _read_molecules),
    Target("sdf", "mols.sdf", _sdf, _read_molecules),
    Target("notes csv", "notes.csv", _notes_csv, _read_notes),
    Target("notes jsonl", "notes.jsonl", _notes_jsonl, _read_notes),
    Target("brat", "n1.ann", _ann, _read_notes_folder, _beside({"n1.txt": "Lasix 40 mg IV BID. Denies chest pain."})),
    Target("i2b2 2014 xml", "r1.xml", _i2b2_xml, _read_notes_folder),
    Target("i2b2 2009 entries", "245096.i2b2.entries", lambda: ENTRIES, _read_notes_folder,
           _beside({"245096": "DISCHARGE MEDICATIONS :\nLasix 40 mg po bid\nCoumadin 5 mg qhs for 3 days\n"})),
    Target("drug lexicon", "lex.csv", lambda: LEXICON, _read_lexicon),
]
