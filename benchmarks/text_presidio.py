"""Presidio 2.2's recognizers on notes, offline: a blank spaCy pipeline (no downloaded model, so no name
detection: the pattern recognizers for phone, e-mail, dates, SSN-like numbers, URLs, IPs, ...), as
`../shared/ENVIRONMENT.md` describes. Run by bench_text.py inside `benchmarks/.venv-presidio`:
    python text_presidio.py NOTES.jsonl OUT.json
Writes {"found": {note_id: [{start, end, label}]}, "seconds": analysis time, "n": notes}.
"""

import json
import sys
import tempfile
import time

import spacy
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider


def main(src: str, out: str) -> None:
    notes = [json.loads(line) for line in open(src, encoding="utf-8") if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        spacy.blank("en").to_disk(tmp)
        provider = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy",
                                                        "models": [{"lang_code": "en", "model_name": tmp}]})
        engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
        t0 = time.perf_counter()
        found = {n["note_id"]: [{"start": r.start, "end": r.end, "label": r.entity_type}
                                for r in engine.analyze(text=n["text"], language="en")] for n in notes}
        seconds = time.perf_counter() - t0
    with open(out, "w") as fh:
        json.dump({"found": found, "seconds": seconds, "n": len(notes)}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
