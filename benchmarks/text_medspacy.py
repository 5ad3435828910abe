"""medspaCy 1.3.1 ConText on the IU reports, exactly as `../shared/anchors/text/anchor_negation.py` runs it, with
each report's positive findings written out so the benchmark scores it beside medflow on the same reports.

Run by bench_text.py inside `benchmarks/.venv-medspacy` (medspacy==1.3.1 and its spaCy, no torch):
    python text_medspacy.py WHEEL OUT.json
Writes {"reports": {uId: {"context": [findings], "naive": [findings]}}, "seconds": pipe time, "n": reports}.
"""

import io
import json
import re
import sys
import tarfile
import time
import zipfile

import medspacy
from medspacy.ner import TargetRule

FINDINGS = {  # the anchor's targets, verbatim
    "Cardiomegaly": ["cardiomegaly", "enlarged heart", "heart is enlarged", "cardiac enlargement",
                     "enlarged cardiac silhouette"],
    "Pleural Effusion": ["pleural effusion", "pleural effusions", "effusion", "effusions"],
    "Pneumothorax": ["pneumothorax"],
    "Pulmonary Atelectasis": ["atelectasis", "atelectatic"],
    "Nodule": ["nodule", "nodules", "nodular opacity"],
    "Pulmonary Edema": ["edema", "pulmonary edema"],
    "Pneumonia": ["pneumonia"],
}


def main(src: str, out: str) -> None:
    raw = zipfile.ZipFile(src).read("torchxrayvision/data/NLMCXR_reports.tgz")
    ids, docs = [], []
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        for m in tf.getmembers():
            if m.name.endswith(".xml"):
                x = tf.extractfile(m).read().decode("utf-8")
                sec = dict(re.findall(r'<AbstractText Label="(\w+)">(.*?)</AbstractText>', x, flags=re.S))
                text = " ".join(filter(None, [sec.get("FINDINGS"), sec.get("IMPRESSION")])).strip()
                if text:
                    uid = re.search(r'<uId id="([^"]+)"', x)
                    ids.append(uid.group(1) if uid else m.name)
                    docs.append(text)
    nlp = medspacy.load()
    try:  # PyRuSH logs every sentence at DEBUG through loguru: silenced, so the timing is the pipeline's
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    nlp.get_pipe("medspacy_target_matcher").add([TargetRule(p, lab) for lab, ps in FINDINGS.items() for p in ps])
    t0 = time.perf_counter()
    reports = {}
    for uid, doc in zip(ids, nlp.pipe(docs), strict=True):
        ctx, naive = set(), set()
        for e in doc.ents:
            naive.add(e.label_)
            if not (e._.is_negated or e._.is_hypothetical or e._.is_historical or e._.is_family):
                ctx.add(e.label_)
        reports[uid] = {"context": sorted(ctx), "naive": sorted(naive)}
    seconds = time.perf_counter() - t0
    with open(out, "w") as fh:
        json.dump({"reports": reports, "seconds": seconds, "n": len(docs)}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
