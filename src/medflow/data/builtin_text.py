"""Built-in clinical text, real: the Indiana University chest X-ray reports, read from torchxrayvision's wheel
kept at install time (`data.molecules.wheel_file`)."""

from __future__ import annotations

import io
import re
import tarfile

import numpy as np
import pandas as pd

from medflow.data.dataset import Dataset
from medflow.data.molecules import wheel_file
from medflow.data.text import TextSource, notes_dataset
from medflow.registry import dataset_info, register_dataset

__all__ = ["IU_LABELS", "iu_reports_frame", "PADCHEST_LABELS", "padchest_frame"]

# MeSH major heads (the text before '/') -> label columns: the 8 most frequent, then three findings the
# extraction benchmark adds (pneumothorax, edema, pneumonia)
IU_LABELS = {"normal": "normal", "Opacity": "opacity", "Cardiomegaly": "cardiomegaly",
             "Pulmonary Atelectasis": "atelectasis", "Calcified Granuloma": "calcified_granuloma",
             "Pleural Effusion": "pleural_effusion", "Nodule": "nodule", "Airspace Disease": "airspace_disease",
             "Pneumothorax": "pneumothorax", "Pulmonary Edema": "edema", "Pneumonia": "pneumonia"}
_SECTION = re.compile(r'<AbstractText Label="(\w+)">(.*?)</AbstractText>', flags=re.S)


def iu_reports_frame() -> pd.DataFrame:
    """Every IU report with FINDINGS or IMPRESSION text: report id, indication, text (FINDINGS + IMPRESSION, as
    the anchor reads it), the MeSH major heads, and one 0/1 column per label in IU_LABELS."""
    raw = wheel_file("torchxrayvision", "torchxrayvision/data/NLMCXR_reports.tgz")
    rows = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf.getmembers():
            if not m.name.endswith(".xml"):
                continue
            x = tf.extractfile(m).read().decode("utf-8")
            sec = dict(_SECTION.findall(x))
            text = " ".join(filter(None, [sec.get("FINDINGS"), sec.get("IMPRESSION")])).strip()
            if not text:
                continue
            uid = re.search(r'<uId id="([^"]+)"', x)
            heads = [t.split("/")[0].strip() for t in re.findall(r"<major>(.*?)</major>", x)]
            rows.append({"note_id": uid.group(1) if uid else m.name, "indication": sec.get("INDICATION") or "",
                         "text": text, "mesh": "; ".join(dict.fromkeys(heads)),
                         **{col: int(head in heads) for head, col in IU_LABELS.items()}})
    return pd.DataFrame(rows)


@register_dataset("iu_reports")
@dataset_info(task="multilabel: normal, opacity, cardiomegaly, atelectasis, calcified_granuloma, pleural_effusion, "
              "nodule, airspace_disease (also pneumothorax, edema, pneumonia)", size="3,927 radiology reports",
              source="Indiana University chest X-ray collection (Demner-Fushman et al. 2016, CC BY-NC-ND 4.0) inside "
                     "torchxrayvision's wheel, real data")
def iu_reports() -> Dataset:
    """3,927 de-identified English chest X-ray reports (FINDINGS + IMPRESSION) with the MeSH findings indexed
    by hand from them. The collection gives no patient ids: each report is its own patient."""
    return notes_dataset(iu_reports_frame(), "text", "builtin:iu_reports", TextSource(path="builtin:iu_reports",
                                                                                    id_column="note_id"),
                         "iu_reports", description="Indiana University chest X-ray reports (Open-i): FINDINGS and "
                         "IMPRESSION text of 3,927 reports with hand-indexed MeSH findings; each report its own "
                         "patient (the collection has no patient ids).", label_hint="cardiomegaly")


PADCHEST_LABELS = ["normal", "COPD signs", "cardiomegaly", "aortic elongation", "pleural effusion", "scoliosis",
                   "interstitial pattern", "NSG tube", "pneumonia", "chronic changes", "alveolar pattern",
                   "infiltrates"]


def padchest_frame() -> tuple[pd.DataFrame, list[dict]]:
    """One row per PadChest report (the file has one row per image: reports repeat), its patient, the (stemmed,
    Spanish) report text, who labelled it (Physician or RNN_model), and one 0/1 column per label in
    PADCHEST_LABELS; plus the reports left out (no text, or a label list that does not parse)."""
    import ast

    raw = wheel_file("torchxrayvision",
                     "torchxrayvision/data/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz")
    df = pd.read_csv(io.BytesIO(raw), compression="gzip", low_memory=False,
                     usecols=["ReportID", "PatientID", "Report", "Labels", "MethodLabel", "PatientSex_DICOM"])
    df = df.drop_duplicates("ReportID").reset_index(drop=True)
    dropped, labels, keep = [], [], []
    for i, (rid, text, lab) in enumerate(zip(df["ReportID"], df["Report"], df["Labels"], strict=True)):
        if not isinstance(text, str) or not text.strip(" ."):
            dropped.append({"report": str(rid), "reason": "no report text"})
            continue
        try:
            found = {str(x).strip() for x in ast.literal_eval(lab)}
        except (ValueError, SyntaxError):
            dropped.append({"report": str(rid), "reason": f"label list does not parse: {str(lab)[:40]!r}"})
            continue
        keep.append(i)
        labels.append(found)
    df = df.iloc[keep].reset_index(drop=True)
    cols = {lab: lab.lower().replace(" ", "_") for lab in PADCHEST_LABELS}
    frame = pd.DataFrame({"note_id": df["ReportID"].astype(str), "patient_id": df["PatientID"].astype(str),
                          "text": df["Report"].str.strip(), "labelled_by": df["MethodLabel"].astype(str),
                          "sex": df["PatientSex_DICOM"].astype(str),
                          **{c: np.fromiter((lab in s for s in labels), dtype=np.int8, count=len(labels))
                             for lab, c in cols.items()}})
    return frame, dropped


@register_dataset("padchest_reports")
@dataset_info(task="multilabel: normal, copd_signs, cardiomegaly, aortic_elongation, pleural_effusion, scoliosis, "
              "interstitial_pattern, nsg_tube, pneumonia, chronic_changes, alveolar_pattern, infiltrates",
              size="107,689 Spanish radiology reports from 66,842 patients",
              source="PadChest (Bustos et al. 2020; research-use licence) inside torchxrayvision's wheel, real data")
def padchest_reports() -> Dataset:
    """PadChest's 107,783 chest X-ray reports (Spanish, stemmed as released), one row per report, split by
    patient. A quarter were labelled by physicians, the rest by the authors' RNN trained on those (`labelled_by`):
    label classification here partly re-learns that model. Reports without text or with an unreadable label list
    are left out and counted."""
    frame, dropped = padchest_frame()
    ds = notes_dataset(frame, "text", "builtin:padchest_reports",
                       TextSource(path="builtin:padchest_reports", id_column="note_id", patient_column="patient_id"),
                       "padchest_reports", description="PadChest chest X-ray reports (Spanish, stemmed), one row per "
                       "report; 25% physician-labelled, 75% labelled by the authors' RNN (column labelled_by).",
                       label_hint="pleural_effusion")
    ds.text.dropped = dropped
    return ds


@register_dataset("synthetic_notes")
@dataset_info(task="spans: PROBLEM (with assertion), DRUG, DOSE, ROUTE, FREQUENCY and PHI; multilabel: chf, copd, "
              "dm, ckd, htn, afib; multiclass: acute, icd10", size="589 discharge summaries of 300 patients",
              source="SYNTHETIC: rendered from medflow's EHR simulator's patients (seed 0); not real data")
def synthetic_notes() -> Dataset:
    """SYNTHETIC discharge summaries, one per admission of 300 simulated EHR patients (`simulate_ehr`, seed 0),
    written from the patients' own events (`data.simulate.ehr_notes`): chronic conditions, the acute reason,
    earlier admissions, drugs given, labs, outcome; gold spans for problems (with assertion), medications and
    PHI; labels from the events (chronic conditions, acute reason and its ICD-10-CM code)."""
    from medflow.data.simulate.ehr_notes import notes_from_ehr

    frame, spans = notes_from_ehr(patients=300, seed=0)
    return notes_dataset(frame, "text", "builtin:synthetic_notes",
                         TextSource(path="builtin:synthetic_notes", id_column="note_id", patient_column="patient_id"),
                         "synthetic_notes", synthetic=True, spans=spans, label_hint="chf",
                         description="SYNTHETIC discharge summaries rendered from the EHR simulator's patients "
                         "(seed 0), with gold spans and labels from the simulated events; not real patients.")
