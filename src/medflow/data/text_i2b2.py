"""Annotated corpora in the i2b2 / n2c2 challenge formats, read as notes with gold spans.

- **2014 de-identification** (`*.xml`, one note per file): `<deIdi2b2><TEXT><![CDATA[...]]></TEXT><TAGS>` with
  one element per PHI `<DATE id="P0" start="16" end="26" text="2067-05-03" TYPE="DATE"/>`. Each span keeps its
  TYPE as the label, mapped to medflow's kinds where they differ (MEDICALRECORD -> MRN, HEALTHPLAN -> ACCOUNT,
  IDNUM -> ID; the original in `attributes.i2b2_type`), so `medflow deid` scores per kind on it.
- **2009 medication** (a note's text file `NAME` or `NAME.txt` beside its entries `NAME.m` or
  `NAME.i2b2.entries`): one medication per line, `m="lasix" 14:5 14:5||do="40 mg" 14:6 14:7||mo="po" ...||f=
  ...||du=...||r=...||ln="list"`, offsets as line:token (lines from 1, whitespace tokens from 0), "nm" when not
  mentioned, several fragments separated by commas. m -> DRUG, do -> DOSE, mo -> ROUTE, f -> FREQUENCY,
  du -> DURATION, r -> REASON; each attribute's `attributes.drug` is its medication's start (the relation).

A file that does not parse is named with its line.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd

from medflow.data.text_spans import check_spans
from medflow.errors import DataError

__all__ = ["read_i2b2_2014", "read_i2b2_2009", "I2B2_KINDS"]

I2B2_KINDS = {"MEDICALRECORD": "MRN", "HEALTHPLAN": "ACCOUNT", "IDNUM": "ID", "BIOID": "ID", "USERNAME": "ID"}
_FIELDS = {"m": "DRUG", "do": "DOSE", "mo": "ROUTE", "f": "FREQUENCY", "du": "DURATION", "r": "REASON"}
_FIELD = re.compile(r'^\s*(\w+)="(.*)"\s*(.*)$')


def _utf8(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8.") from exc


def read_i2b2_2014(folder: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    rows, spans = [], {}
    for i, p in enumerate(sorted(folder.glob("*.xml")), start=1):
        try:
            root = ET.fromstring(_utf8(p))
        except ET.ParseError as exc:
            raise DataError(f"{p}: line {exc.position[0]} is not well-formed XML ({exc}); an i2b2 2014 file is "
                            f"<deIdi2b2><TEXT>...</TEXT><TAGS>...</TAGS></deIdi2b2>.") from exc
        node = root.find("TEXT")
        if node is None or node.text is None:
            raise DataError(f"{p}: no <TEXT> element; not an i2b2 2014 de-identification file.")
        text, found = node.text, []
        for tag in list(root.find("TAGS") if root.find("TAGS") is not None else []):
            a = tag.attrib
            try:
                start, end = int(a["start"]), int(a["end"])
            except (KeyError, ValueError) as exc:
                raise DataError(f"{p}: tag {tag.tag} {a.get('id', '')} needs whole-number start and end "
                                f"attributes.") from exc
            kind = a.get("TYPE") or tag.tag
            found.append({"start": start, "end": end, "label": I2B2_KINDS.get(kind, kind), "text": a.get("text"),
                          "attributes": {"i2b2_type": kind, "i2b2_category": tag.tag}})
        spans[p.stem] = check_spans(found, text, str(p))
        rows.append({"_record": i, "note_id": p.stem, "text": text})
    return pd.DataFrame(rows), spans


def _char_offsets(lines: list[tuple[int, list[tuple[int, int]]]], ref: str, where: str) -> tuple[int, int]:
    """'14:5 14:7' (line:token, inclusive) -> character offsets in the note."""
    try:
        (l0, t0), (l1, t1) = [tuple(int(v) for v in x.split(":")) for x in ref.split()]
        return lines[l0 - 1][1][t0][0], lines[l1 - 1][1][t1][1]
    except (ValueError, IndexError) as exc:
        raise DataError(f"{where}: offsets {ref!r} are not 'line:token line:token' inside the note (lines count "
                        f"from 1, tokens from 0).") from exc


def read_i2b2_2009(folder: Path) -> tuple[pd.DataFrame, dict[str, list[dict[str, Any]]]]:
    entries = sorted([*folder.glob("*.m"), *folder.glob("*.i2b2.entries")])
    rows, spans = [], {}
    for i, e in enumerate(entries, start=1):
        stem = e.name.removesuffix(".i2b2.entries").removesuffix(".m")
        note = next((c for c in (folder / stem, folder / f"{stem}.txt") if c.exists()), None)
        if note is None:
            raise DataError(f"{e}: no note {stem} or {stem}.txt beside it; i2b2 2009 entries need their text.")
        text = _utf8(note)
        lines, pos = [], 0
        for raw in text.split("\n"):
            lines.append((pos, [(pos + m.start(), pos + m.end()) for m in re.finditer(r"\S+", raw)]))
            pos += len(raw) + 1
        found = []
        for n, line in enumerate(_utf8(e).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{e}: line {n}"
            drug_at = None
            for part in line.split("||"):
                m = _FIELD.match(part)
                if m is None:
                    raise DataError(f'{where}: {part!r} is not field="value" offsets (e.g. m="lasix" 14:5 14:5).')
                key, value, refs = m.groups()
                if key not in _FIELDS or value == "nm" or not refs.strip():
                    continue
                for ref in refs.split(","):
                    start, end = _char_offsets(lines, ref, where)
                    span = {"start": start, "end": end, "label": _FIELDS[key], "attributes": {}}
                    if key == "m":
                        drug_at = start if drug_at is None else drug_at
                    elif drug_at is not None:
                        span["attributes"]["drug"] = drug_at
                    found.append(span)
        spans[stem] = check_spans(found, text, str(e))
        rows.append({"_record": i, "note_id": stem, "text": text})
    return pd.DataFrame(rows), spans
