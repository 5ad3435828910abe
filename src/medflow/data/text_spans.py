"""Notes with gold spans: JSONL (`{"text", "spans": [{start, end, label, attributes}], ...}`) and BRAT standoff
folders (`name.txt` + `name.ann`: `T` text-bound annotations, `A` attributes such as Negation or
`Assertion T3 negated`, `R` relations: an attribute related to a Drug span gets `attributes.drug`, its start,
as n2c2 2018 writes them), the forms n2c2-style corpora come in (i2b2's XML and 2009 formats: `text_i2b2`).
Offsets are character offsets into the note's text, end exclusive. Every span is checked: offsets inside the
text, start before end, and no two spans that cross (partly overlap; nested and identical ranges with different
labels are allowed). A problem stops the read with the file and line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from medflow.errors import DataError

__all__ = ["read_jsonl", "read_brat", "check_spans"]


def check_spans(spans: list[dict[str, Any]], text: str, where: str) -> list[dict[str, Any]]:
    """Spans as {start, end, label, attributes}, validated against the note's text (`where` names the note)."""
    out = []
    for j, s in enumerate(spans):
        if not isinstance(s, dict) or not {"start", "end", "label"} <= set(s):
            raise DataError(f"{where}: span {j + 1} needs start, end and label; got {s!r}.")
        start, end = s["start"], s["end"]
        if not (isinstance(start, int) and isinstance(end, int)) or isinstance(start, bool):
            raise DataError(f"{where}: span {j + 1} has offsets {start!r}..{end!r}; offsets are whole characters.")
        if not 0 <= start < end <= len(text):
            raise DataError(f"{where}: span {j + 1} ({s['label']}) runs {start}..{end}, outside the note's "
                            f"{len(text)} characters (offsets count characters from 0, end exclusive).")
        given = s.get("text")
        if given is not None and text[start:end] != given:
            raise DataError(f"{where}: span {j + 1} says {given!r} but the note holds {text[start:end]!r} at "
                            f"{start}..{end}; the offsets are shifted.")
        out.append({"start": start, "end": end, "label": str(s["label"]),
                    "attributes": dict(s.get("attributes") or {})})
    ordered = sorted(out, key=lambda s: (s["start"], -s["end"]))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a["start"] < b["start"] < a["end"] < b["end"]:
            raise DataError(f"{where}: spans {a['label']} {a['start']}..{a['end']} and {b['label']} "
                            f"{b['start']}..{b['end']} cross; spans may nest but not partly overlap.")
    return ordered


def read_jsonl(path: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """One note per line; keys other than text and spans become columns (note_id names the note)."""
    rows, spans = [], {}
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}: line {n} is not UTF-8 ({exc.reason} at byte {exc.start}); save the file "
                                "as UTF-8.") from exc
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {n} is not JSON ({exc.msg} at column {exc.colno}).") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
                raise DataError(f"{path}: line {n} needs a \"text\" string; got keys "
                                f"{sorted(rec) if isinstance(rec, dict) else type(rec).__name__}.")
            note = str(rec.get("note_id", f"note-{n}"))
            if note in spans:
                raise DataError(f"{path}: line {n} repeats note_id {note!r}; note ids must be unique.")
            spans[note] = check_spans(rec.get("spans") or [], rec["text"], f"{path}: line {n}")
            rows.append({"_record": n, **{k: v for k, v in rec.items() if k != "spans"}, "note_id": note})
    if not rows:
        raise DataError(f"{path}: no notes (the file is empty).")
    return pd.DataFrame(rows), spans


def read_brat(folder: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    """A BRAT folder: each `name.txt` is a note (`name` its id), `name.ann` its spans (a `.txt` without `.ann`
    has none)."""
    texts = {p.stem: p for p in sorted(folder.glob("*.txt"))}
    for ann in sorted(folder.glob("*.ann")):
        if ann.stem not in texts:
            raise DataError(f"{ann}: no {ann.stem}.txt beside it; BRAT needs each note's text with its .ann.")
    if not texts:
        raise DataError(f"{folder}: no .txt notes in this folder (BRAT standoff: name.txt + name.ann).")
    rows, spans = [], {}
    for i, (stem, p) in enumerate(texts.items(), start=1):
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{p}: not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8.") from exc
        ann = p.with_suffix(".ann")
        spans[stem] = _read_ann(ann, text) if ann.exists() else []
        rows.append({"_record": i, "note_id": stem, "text": text})
    return pd.DataFrame(rows), spans


def _read_ann(ann: Path, text: str) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    attrs: list[tuple[int, str, str, str]] = []
    rels: list[tuple[int, str, str]] = []
    try:
        lines = ann.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{ann}: not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8.") from exc
    for n, line in enumerate(lines, start=1):
        if line[:1] == "R" and "\t" in line:  # R1<TAB>Dosage-Drug Arg1:T2 Arg2:T1
            args = dict(a.split(":", 1) for a in line.split("\t")[1].split()[1:] if ":" in a)
            if len(args) < 2:
                raise DataError(f"{ann}: line {n}: a relation needs 'R1<TAB>Type Arg1:T1 Arg2:T2'.")
            a1, a2 = list(args.values())[:2]
            rels.append((n, a1, a2))
            continue
        if not line.strip() or line[0] not in "TA":
            continue  # events, notes: not used here
        parts = line.split("\t")
        where = f"{ann}: line {n}"
        if line[0] == "T":
            if len(parts) < 2 or len(parts[1].split(" ", 1)) < 2:
                raise DataError(f"{where}: a text-bound annotation needs 'T1<TAB>Label start end<TAB>text'.")
            label, offsets = parts[1].split(" ", 1)
            try:
                frags = [tuple(int(v) for v in f.split()) for f in offsets.split(";")]
                start, end = frags[0][0], frags[-1][1]
            except (ValueError, IndexError) as exc:
                raise DataError(f"{where}: offsets {offsets!r} are not 'start end' numbers.") from exc
            span = check_spans([{"start": start, "end": end, "label": label}], text, where)[0]
            found[parts[0]] = span
        else:
            fields = parts[1].split() if len(parts) > 1 else []
            if len(fields) < 2:
                raise DataError(f"{where}: an attribute needs 'A1<TAB>Name T1 [value]'.")
            attrs.append((n, fields[0], fields[1], fields[2] if len(fields) > 2 else "true"))
    for n, name, target, value in attrs:
        if target not in found:
            raise DataError(f"{ann}: line {n} sets {name} on {target}, which is not a text-bound annotation here.")
        found[target]["attributes"][name] = value
    for n, a1, a2 in rels:  # an attribute's drug (n2c2 2018: Arg1 the attribute, Arg2 the drug)
        if a1 not in found or a2 not in found:
            raise DataError(f"{ann}: line {n} relates {a1} and {a2}; both must be text-bound annotations here.")
        drug, other = (a2, a1) if found[a2]["label"].lower() == "drug" else (a1, a2)
        if found[drug]["label"].lower() == "drug":
            found[other]["attributes"]["drug"] = found[drug]["start"]
    return check_spans(list(found.values()), text, str(ann))
