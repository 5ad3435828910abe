"""Request bodies for event-data runs: a patient's events as MEDS rows or as a FHIR R4 Bundle, read by the same
readers a study uses (`read_fhir`, the MEDS schema), then turned into prediction samples by the run's cohort
(e.g. one sample per discharge for 30-day readmission), so the service predicts exactly as `medflow predict` does.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from medflow.errors import MedflowError

__all__ = ["event_body_schema", "events_from_body", "events_dataset"]

MEDS_ROW = {"type": "object", "required": ["subject_id", "code"], "additionalProperties": False, "properties": {
    "subject_id": {"type": ["integer", "string"]},
    "time": {"type": ["string", "null"], "description": "ISO date-time; null for static events (e.g. GENDER//F)"},
    "code": {"type": "string", "minLength": 1}, "numeric_value": {"type": ["number", "null"]}}}


def event_body_schema(max_rows: int = 100_000) -> dict[str, Any]:
    return {"type": "object", "title": "EventPredictRequest", "additionalProperties": False, "properties": {
        "fhir": {"type": "object", "required": ["resourceType"], "description":
                 "a FHIR R4 Bundle (or one resource) holding the Patient and their Encounters, Conditions, "
                 "Observations, MedicationRequests, Procedures",
                 "properties": {"resourceType": {"type": "string"}}},
        "meds": {"type": "array", "minItems": 1, "maxItems": max_rows, "items": MEDS_ROW,
                 "description": "the patient's events as MEDS rows"},
        "explain": {"type": "boolean", "default": False}},
        "oneOf": [{"required": ["fhir"]}, {"required": ["meds"]}]}


def events_from_body(body: Any) -> tuple[Any, bool]:
    """EventData from `{"fhir": Bundle}` or `{"meds": [rows]}`; raises RequestError naming the field."""
    from medflow.serve.errors import RequestError

    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object with 'fhir' or 'meds'", [{"field": "body",
                                                                                     "problem": "not an object"}])
    unknown = sorted(set(body) - {"fhir", "meds", "explain"})
    if unknown or ("fhir" in body) == ("meds" in body):
        problems = [{"field": k, "problem": "unknown field (allowed: fhir, meds, explain)"} for k in unknown] or \
            [{"field": "fhir|meds", "problem": "give exactly one of them"}]
        raise RequestError("; ".join(f"{p['field']}: {p['problem']}" for p in problems), problems)
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError("explain: must be true or false", [{"field": "explain", "problem": "not a boolean"}])
    try:
        if "fhir" in body:
            return fhir_events(body["fhir"]), explain
        return meds_events(body["meds"]), explain
    except MedflowError as e:
        field = "fhir" if "fhir" in body else "meds"
        raise RequestError(f"{field}: {e}", [{"field": field, "problem": str(e)}]) from None


def fhir_events(bundle: Any) -> Any:
    """FHIR JSON -> EventData with the study's FHIR reader (through a private temporary file it reads)."""
    from medflow.data.sources.fhir import read_fhir

    with tempfile.TemporaryDirectory(prefix="medflow-fhir-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(bundle))
        data = read_fhir(path)
    data.source = "request"
    return data


def meds_events(rows: Any) -> Any:
    from medflow.data.sources.meds import EventData
    from medflow.serve.errors import RequestError

    if not isinstance(rows, list) or not rows:
        raise RequestError("meds: give a list of event rows", [{"field": "meds", "problem": "empty or not a list"}])
    subjects, times, codes, values = [], [], [], []
    for i, r in enumerate(rows):
        where = f"meds[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("code"), str) or not r["code"]:
            raise RequestError(f"{where}: each row needs a code", [{"field": f"{where}.code", "problem": "missing"}])
        extra = sorted(set(r) - {"subject_id", "time", "code", "numeric_value"})
        if extra:
            raise RequestError(f"{where}.{extra[0]}: unknown field", [{"field": f"{where}.{extra[0]}",
                                                                       "problem": "unknown field"}])
        t = r.get("time")
        try:
            times.append(None if t is None else datetime.fromisoformat(str(t).replace("Z", "+00:00"))
                         .replace(tzinfo=None))
        except ValueError:
            raise RequestError(f"{where}.time: {t!r} is not an ISO date-time",
                               [{"field": f"{where}.time", "problem": "not an ISO date-time"}]) from None
        v = r.get("numeric_value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise RequestError(f"{where}.numeric_value: must be a number or null",
                               [{"field": f"{where}.numeric_value", "problem": "not a number"}])
        subjects.append(str(r.get("subject_id", "")))
        codes.append(r["code"])
        values.append(None if v is None else float(v))
    ids = {s: i for i, s in enumerate(sorted(set(subjects)))}
    events = pl.DataFrame({"subject_id": [ids[s] for s in subjects], "time": times, "code": codes,
                           "numeric_value": values},
                          schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                  "numeric_value": pl.Float32}).sort(["subject_id", "time", "code"], nulls_last=False)
    return EventData(events=events, metadata={"fhir": {"subject_ids": {v: k for k, v in ids.items()}}},
                     source="request")


def events_dataset(run: Any, data: Any) -> Any:
    """The run's cohort applied to the request's events: one prediction sample per cohort point (e.g. each
    discharge); refuses a record that holds none."""
    from medflow.data.ehr import event_dataset
    from medflow.serve.errors import RequestError

    cohort = run.config["data"].get("cohort")
    try:
        ds = event_dataset(data, cohort, None, label_name=run.task.label_columns[0])
    except MedflowError as e:
        raise RequestError(str(e), [{"field": "events", "problem": str(e)}]) from None
    if ds.frame.empty:
        raise RequestError(f"the record holds no prediction point of the run's cohort ({cohort}); e.g. a "
                           "readmission model predicts at a discharge (an inpatient Encounter with period.end)",
                           [{"field": "events", "problem": "no prediction point"}])
    return ds


def request_subject_ids(out: Any, data: Any) -> Any:
    """Predictions named by the request's own patient ids (not the reader's numbering)."""
    names = (data.metadata.get("fhir") or {}).get("subject_ids")
    if names and "subject_id" in out.columns:
        out["subject_id"] = [names.get(int(s), s) if str(s).isdigit() else s for s in out["subject_id"]]
    return out
