"""medspaCy 1.3.1's TargetMatcher with one target rule per drug-lexicon phrase (the fair dictionary baseline for
drug recognition). Multi-word phrases match with optional punctuation between words ("piperacillin-tazobactam").
Run by bench_text_style.py inside `benchmarks/.venv-medspacy`:
    python text_medspacy_drugs.py IN.json OUT.json
IN: {"phrases": [phrase, ...], "notes": [{"note_id", "text"}]}; writes {"found": {note_id: [{start, end}]},
"seconds": pipe time, "n": notes}.
"""

import json
import sys
import time

import medspacy
from medspacy.ner import TargetRule


def main(src: str, out: str) -> None:
    data = json.load(open(src, encoding="utf-8"))
    nlp = medspacy.load()
    try:  # PyRuSH logs every sentence at DEBUG through loguru: silenced, so the timing is the pipeline's
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    rules = []
    for phrase in data["phrases"]:
        words = phrase.split()
        pattern = []
        for k, w in enumerate(words):
            if k:
                pattern.append({"IS_PUNCT": True, "OP": "?"})
            pattern.append({"LOWER": w})
        rules.append(TargetRule(phrase, "DRUG", pattern=pattern))
    nlp.get_pipe("medspacy_target_matcher").add(rules)
    t0 = time.perf_counter()
    found = {}
    for note, doc in zip(data["notes"], nlp.pipe([n["text"] for n in data["notes"]]), strict=True):
        found[note["note_id"]] = [{"start": e.start_char, "end": e.end_char, "label": "DRUG"} for e in doc.ents]
    seconds = time.perf_counter() - t0
    with open(out, "w") as fh:
        json.dump({"found": found, "seconds": seconds, "n": len(data["notes"])}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
