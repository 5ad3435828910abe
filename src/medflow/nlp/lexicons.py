"""Target lexicons: phrases that mention a finding, keyed by the label they evidence.

`CHEST_XRAY` covers the seven findings of the IU reports' extraction benchmark with exactly the phrases
`../shared/anchors/text/anchor_negation.py` gives medspaCy, keyed by the `iu_reports` label columns, so the
rule sets and not the vocabularies are compared.
"""

from __future__ import annotations

__all__ = ["CHEST_XRAY", "LEXICONS"]

CHEST_XRAY: dict[str, list[str]] = {
    "cardiomegaly": ["cardiomegaly", "enlarged heart", "heart is enlarged", "cardiac enlargement",
                     "enlarged cardiac silhouette"],
    "pleural_effusion": ["pleural effusion", "pleural effusions", "effusion", "effusions"],
    "pneumothorax": ["pneumothorax"],
    "atelectasis": ["atelectasis", "atelectatic"],
    "nodule": ["nodule", "nodules", "nodular opacity"],
    "edema": ["edema", "pulmonary edema"],
    "pneumonia": ["pneumonia"],
}
LEXICONS = {"chest_xray": CHEST_XRAY}
