"""FHIR R4 -> EventData (MEDS codes): Bundle JSON files (as Synthea writes them) and bulk-export NDJSON.

Resources read, and the MEDS events they become:

=======================================  ==============================================================
Patient                                  MEDS_BIRTH (birthDate), GENDER//F|M|O|U (static),
                                         MEDS_DEATH (deceasedDateTime)
Encounter                                ENCOUNTER//<INPATIENT|AMBULATORY|EMERGENCY|...>//START and //END
Condition                                <SYSTEM>//<code> at onsetDateTime (else recordedDate)
Observation                              <SYSTEM>//<code> with valueQuantity.value as numeric_value
MedicationRequest / -Administration      <SYSTEM>//<code> at authoredOn / effective time
Procedure                                <SYSTEM>//<code> at performed time
=======================================  ==============================================================

SYSTEM is ICD10CM, ICD10PCS, SNOMED, LOINC, RXNORM, CPT (from the coding's system URL), or the URL's
last segment in upper case. Other resource types are counted and reported (`metadata["fhir"]`), not
fatal. Patient ids (strings in FHIR) are numbered in sorted order; the map is kept in
`metadata["fhir"]["subject_ids"]`. Date-times with an offset are converted to UTC; a source that mixes
date-times with and without offsets is refused (their order would be ambiguous). Malformed JSON,
resources without a subject, and references to unknown patients are errors that name the file and record.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from medflow.data.sources.meds import EventData
from medflow.errors import DataError

__all__ = ["read_fhir", "SYSTEMS"]

SYSTEMS = {
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD10CM", "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://www.cms.gov/medicare/coding/icd10": "ICD10PCS", "http://hl7.org/fhir/sid/icd-10-pcs": "ICD10PCS",
    "http://snomed.info/sct": "SNOMED", "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM", "http://www.ama-assn.org/go/cpt": "CPT",
    "http://hl7.org/fhir/sid/ndc": "NDC",
}
CLASSES = {"IMP": "INPATIENT", "ACUTE": "INPATIENT", "NONAC": "INPATIENT", "AMB": "AMBULATORY",
           "EMER": "EMERGENCY", "HH": "HOME", "VR": "VIRTUAL", "OBSENC": "OBSERVATION", "SS": "SHORT_STAY"}
READ = {"Patient", "Encounter", "Condition", "Observation", "MedicationRequest", "MedicationAdministration",
        "Procedure"}


class _Where:
    def __init__(self, file: Path, line: int | None, rtype: str, rid: str) -> None:
        self.file, self.line, self.rtype, self.rid = file, line, rtype, rid

    def __str__(self) -> str:
        at = f" line {self.line}" if self.line else ""
        return f"{self.file}{at}: {self.rtype}/{self.rid or '?'}"


class _Reader:
    def __init__(self) -> None:
        self.rows: list[tuple[str, datetime | None, str, float | None]] = []
        self.patients: set[str] = set()
        self.skipped: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.aware: _Where | None = None
        self.naive: _Where | None = None

    def time(self, value: Any, where: _Where, field: str) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise DataError(f"{where}: {field} must be a FHIR date or dateTime string, got {value!r}.")
        text = value.replace("Z", "+00:00")
        try:
            t = datetime.fromisoformat(text) if "T" in text else datetime.fromisoformat(text[:10])
        except ValueError as exc:
            raise DataError(f"{where}: {field} {value!r} is not a FHIR date/dateTime (e.g. 2021-03-04T10:00:00Z).") \
                from exc
        if "T" in text:
            if t.tzinfo is None:
                self.naive = self.naive or where
            else:
                self.aware = self.aware or where
        if t.tzinfo is not None:
            t = t.astimezone(UTC).replace(tzinfo=None)
        return t

    def subject(self, res: dict, where: _Where) -> str:
        ref = (res.get("subject") or res.get("patient") or {}).get("reference")
        if not ref:
            raise DataError(f"{where}: no subject reference (subject.reference such as 'Patient/123'); every "
                            f"{where.rtype} must point at its patient.")
        return ref.split("/")[-1].removeprefix("urn:uuid:").split(":")[-1]

    def code(self, concept: dict | None, where: _Where, field: str) -> str | None:
        codings = (concept or {}).get("coding") or []
        for c in codings:
            if c.get("code"):
                system = str(c.get("system", "")).rstrip("/")
                prefix = SYSTEMS.get(system.lower()) or (system.split("/")[-1].upper() or "CODE")
                return f"{prefix}//{c['code']}"
        text = (concept or {}).get("text")
        return f"TEXT//{text}" if text else None

    def add(self, res: dict, where: _Where) -> None:
        rtype = where.rtype
        self.counts[rtype] = self.counts.get(rtype, 0) + 1
        if rtype == "Patient":
            pid = res.get("id")
            if not pid:
                raise DataError(f"{where}: Patient without an id.")
            self.patients.add(pid)
            if res.get("birthDate"):
                self.rows.append((pid, self.time(res["birthDate"], where, "birthDate"), "MEDS_BIRTH", None))
            if res.get("gender"):
                self.rows.append((pid, None, f"GENDER//{str(res['gender'])[0].upper()}", None))
            if res.get("deceasedDateTime"):
                self.rows.append((pid, self.time(res["deceasedDateTime"], where, "deceasedDateTime"), "MEDS_DEATH",
                                  None))
            return
        pid = self.subject(res, where)
        if rtype == "Encounter":
            cls = res.get("class") or {}
            cls = cls[0] if isinstance(cls, list) and cls else cls
            code = cls.get("code", "UNKNOWN") if isinstance(cls, dict) else "UNKNOWN"
            kind = CLASSES.get(str(code).upper(), str(code).upper())
            period = res.get("period") or {}
            start = self.time(period.get("start"), where, "period.start")
            if start is None:
                raise DataError(f"{where}: Encounter without period.start.")
            self.rows.append((pid, start, f"ENCOUNTER//{kind}//START", None))
            end = self.time(period.get("end"), where, "period.end")
            if end is not None:
                self.rows.append((pid, end, f"ENCOUNTER//{kind}//END", None))
            return
        if rtype == "Condition":
            code = self.code(res.get("code"), where, "code")
            t = self.time(res.get("onsetDateTime") or res.get("recordedDate"), where, "onsetDateTime")
        elif rtype == "Observation":
            code = self.code(res.get("code"), where, "code")
            t = self.time(res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
                          or res.get("issued"), where, "effectiveDateTime")
            value = (res.get("valueQuantity") or {}).get("value")
            if code:
                self.rows.append((pid, t, code, float(value) if isinstance(value, int | float) else None))
            return
        elif rtype in ("MedicationRequest", "MedicationAdministration"):
            code = self.code(res.get("medicationCodeableConcept"), where, "medicationCodeableConcept")
            t = self.time(res.get("authoredOn") or res.get("effectiveDateTime")
                          or (res.get("effectivePeriod") or {}).get("start"), where, "authoredOn")
        else:  # Procedure
            code = self.code(res.get("code"), where, "code")
            t = self.time(res.get("performedDateTime") or (res.get("performedPeriod") or {}).get("start"),
                          where, "performedDateTime")
        if code:
            self.rows.append((pid, t, code, None))

    def resource(self, res: Any, file: Path, line: int | None) -> None:
        if not isinstance(res, dict) or "resourceType" not in res:
            raise DataError(f"{file}{f' line {line}' if line else ''}: not a FHIR resource (no resourceType).")
        rtype = res["resourceType"]
        if rtype == "Bundle":
            for i, entry in enumerate(res.get("entry") or []):
                inner = (entry or {}).get("resource")
                if inner is None:
                    raise DataError(f"{file}: Bundle entry {i} has no resource.")
                self.resource(inner, file, line)
            return
        if rtype not in READ:
            self.skipped[rtype] = self.skipped.get(rtype, 0) + 1
            return
        self.add(res, _Where(file, line, rtype, str(res.get("id", ""))))


def _manifest_files(path: Path, manifest: Path) -> list[Path] | None:
    """The NDJSON files a FHIR Bulk Data manifest lists in `output` (matched by file name in the folder)."""
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{manifest}: not valid JSON ({exc}); a Bulk Data manifest is a JSON object with an "
                        "'output' list.") from exc
    if not isinstance(doc, dict) or "output" not in doc:
        return None
    files = []
    for i, item in enumerate(doc.get("output") or []):
        url = str((item or {}).get("url", ""))
        name = url.rstrip("/").rsplit("/", 1)[-1]
        local = next(iter(path.rglob(name)), None) if name else None
        if local is None:
            raise DataError(f"{manifest}: output[{i}] lists {url!r}, but no file named {name!r} is in {path}; "
                            "download every file of the export into this folder.")
        files.append(local)
    if doc.get("error"):
        warnings.warn(f"{manifest}: the export reports {len(doc['error'])} error file(s) (OperationOutcome); "
                      "they are not read.", stacklevel=3)
    if not files:
        raise DataError(f"{manifest}: the Bulk Data manifest lists no output files.")
    return sorted(set(files))


def _files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataError(f"{path}: no such FHIR file or folder.")
    if path.is_file():
        return [path]
    if (path / "manifest.json").is_file():
        listed = _manifest_files(path, path / "manifest.json")
        if listed is not None:
            return listed
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".json", ".ndjson"))
    if not files:
        raise DataError(f"{path}: no .json (Bundle) or .ndjson (bulk export) files found.")
    return files


def read_fhir(path: str | Path) -> EventData:
    """Read FHIR R4 Bundles and/or bulk-export NDJSON under `path` into EventData."""
    root = Path(path)
    reader = _Reader()
    for f in _files(root):
        try:
            text = f.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{f}: not UTF-8 ({exc.reason} at byte {exc.start}); FHIR JSON is UTF-8.") from exc
        if f.suffix.lower() == ".ndjson":
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    res = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{f} line {n}: malformed JSON ({exc.msg} at column {exc.colno}).") from exc
                reader.resource(res, f, n)
        else:
            try:
                res = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{f}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno}).") from exc
            if f != root and not (isinstance(res, dict) and "resourceType" in res):
                warnings.warn(f"{f}: not a FHIR resource or Bundle (no resourceType); skipped.", stacklevel=2)
                continue
            reader.resource(res, f, None)
    if reader.aware and reader.naive:
        raise DataError(f"{reader.naive}: a dateTime without a time-zone offset, while {reader.aware} has one. "
                        "Mixed conventions make the order of events ambiguous; give every dateTime an offset "
                        "(e.g. 2021-03-04T10:00:00Z).")
    if not reader.patients:
        raise DataError(f"{root}: no Patient resources found.")
    unknown = {pid for pid, *_ in reader.rows} - reader.patients
    if unknown:
        raise DataError(f"{root}: resources refer to patient(s) with no Patient resource, e.g. "
                        f"'{sorted(unknown)[0]}' ({len(unknown)} such id(s)); include the Patient resources.")
    ids = {pid: i for i, pid in enumerate(sorted(reader.patients))}
    pids, times, codes, values = zip(*reader.rows, strict=True) if reader.rows else ((), (), (), ())
    events = pl.DataFrame({"subject_id": [ids[p] for p in pids], "time": list(times), "code": list(codes),
                           "numeric_value": list(values)},
                          schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                  "numeric_value": pl.Float32})
    events = events.sort(["subject_id", "time", "code"], nulls_last=False)
    meta = {"dataset_name": root.name, "fhir": {"resources": reader.counts, "skipped_resource_types": reader.skipped,
                                                "subject_ids": {v: k for k, v in ids.items()}}}
    return EventData(events=events, metadata=meta, source=str(root))
