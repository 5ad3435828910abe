"""Built-in clinical text, real: the Indiana University chest X-ray reports, read from torchxrayvision's wheel
kept at install time (`data.molecules.wheel_file`)."""

from __future__ import annotations

import io
import re
import tarfile

import pandas as pd

from medflow.data.dataset import Dataset
from medflow.data.molecules import wheel_file
from medflow.data.text import TextSource, notes_dataset
from medflow.registry import dataset_info, register_dataset

__all__ = ["IU_LABELS", "iu_reports_frame"]

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
