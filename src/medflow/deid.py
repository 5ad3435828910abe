"""`medflow deid`: notes in, the same notes with PHI replaced by consistent surrogates out (`nlp.deid`).

Notes are read as training data are (`data.text.read_notes`: CSV / TSV / Parquet / JSONL / BRAT, every note
checked), de-identified per patient (one date shift and one set of surrogate names per patient, so a patient's
notes stay consistent with each other), and written with the text column replaced; the PHI offsets are not
written (they would point at what was removed). When the source carries gold PHI spans (JSONL `spans` or BRAT
annotations with PHI labels), the summary adds recall per PHI kind and the leaked PHI tokens.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from medflow.data.text import TextSource, read_notes
from medflow.nlp.deid import Deidentifier, evaluate_deid

__all__ = ["deidentify_notes"]


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
