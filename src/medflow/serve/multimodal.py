"""Request bodies for multimodal runs: one patient's record with several inputs, joined by the study's own code.

    {"patient_id": "17", "prediction_time": "2024-03-01T08:00:00",
     "events": {"meds": [...]} | {"fhir": Bundle},          # the event modality, as for event runs
     "notes": [{"time": "...", "text": "..."}],               # a text modality: the patient's notes
     "images": [{"time": "...", "png_base64": "..."}],        # an image modality: PNG files, base64
     "labs": [{"time": "...", "creatinine": 1.2, ...}],       # a table modality: its rows (static: no time)
     "explain": false}

Keys are the run's modality names. A modality left out is missing for the patient (predicted from the others, as
in training); items dated after the prediction time are not read (the same `join_modalities` as the study).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
import pandas as pd

from medflow.errors import MedflowError
from medflow.serve.errors import RequestError

__all__ = ["multimodal_body_schema", "multimodal_from_body", "record_body"]

_PID = "patient_id"
MAX_ITEMS = 1000


def _item_schema(kind: str, timed: bool, columns: list[str]) -> dict[str, Any]:
    time = {"time": {"type": "string", "description": "ISO date-time the item was recorded"}} if timed else {}
    if kind == "text":
        props = {**time, "text": {"type": "string", "minLength": 1}}
    elif kind == "images":
        props = {**time, "png_base64": {"type": "string", "minLength": 8, "description": "a PNG file, base64"}}
    else:
        props = {**time, **{c: {"type": ["number", "string", "boolean", "null"]} for c in columns}}
    req = [*time, *(["text"] if kind == "text" else ["png_base64"] if kind == "images" else [])]
    return {"type": "array", "maxItems": MAX_ITEMS, "items": {"type": "object", "additionalProperties": False,
                                                             "required": req, "properties": props}}


def multimodal_body_schema(feat: Any) -> dict[str, Any]:
    from medflow.serve.events import event_body_schema

    props: dict[str, Any] = {_PID: {"type": ["string", "integer"]},
                             "prediction_time": {"type": "string", "description": "ISO date-time of the prediction"},
                             "explain": {"type": "boolean", "default": False}}
    for name, kind in feat.kinds.items():
        join = feat.joins.get(name, {})
        if kind == "events":
            ev = event_body_schema()
            props[name] = {k: v for k, v in ev.items() if k != "title"}
            props[name]["properties"] = {k: v for k, v in ev["properties"].items() if k != "explain"}
        else:
            cols = list(getattr(feat.parts[name], "feature_types", {}))
            props[name] = _item_schema(kind, bool(join.get("timed")), cols)
    return {"type": "object", "title": "MultimodalPredictRequest", "additionalProperties": False,
            "required": [_PID], "properties": props}


def _time(value: Any, field: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(str(value).replace("Z", "+00:00"))
    except (ValueError, TypeError):
        problem = [{"field": field, "problem": "not an ISO date-time"}]
        raise RequestError(f"{field}: {value!r} is not an ISO date-time", problem) from None
    return t.tz_convert(None) if t.tzinfo else t


def _items(body: dict, name: str) -> list[dict[str, Any]]:
    items = body[name]
    if not isinstance(items, list) or len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
        raise RequestError(f"{name}: a list of up to {MAX_ITEMS} objects", [{"field": name, "problem": "not a list "
                                                                              "of objects"}])
    return items


def multimodal_from_body(run: Any, body: Any) -> tuple[Any, bool, str]:
    """The request as a one-patient multimodal Dataset (joined as in the study), the explain flag, the patient id."""
    feat = run.featurizer()
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", [{"field": "body", "problem": "not an object"}])
    allowed = {_PID, "prediction_time", "explain", *feat.kinds}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RequestError(f"{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})",
                           [{"field": k, "problem": "unknown field"} for k in unknown])
    if not isinstance(body.get(_PID), str | int) or isinstance(body.get(_PID), bool) or body.get(_PID) == "":
        raise RequestError(f"{_PID}: required (a string or an integer)", [{"field": _PID, "problem": "missing"}])
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError("explain: must be true or false", [{"field": "explain", "problem": "not a boolean"}])
    timed = any(j.get("timed") for j in feat.joins.values())
    if timed and "prediction_time" not in body:
        raise RequestError("prediction_time: required (this run joins its inputs on time)",
                           [{"field": "prediction_time", "problem": "missing"}])
    pt = _time(body["prediction_time"], "prediction_time") if "prediction_time" in body else None
    pid = str(body[_PID])
    label = run.task.label_columns[0]
    try:
        anchor, key = _anchor(feat, body, pid, pt, label)
        sources = {name: _source(name, kind, feat, body, key) for name, kind in feat.kinds.items()
                   if kind != "events" and name in body and body[name]}
        from medflow.data.multimodal import join_modalities

        ds = join_modalities(anchor, sources, max_notes=int(run.config["data"].get("max_notes", 5)))
    except MedflowError as e:
        raise RequestError(str(e), [{"field": "body", "problem": str(e)}]) from None
    return ds, explain, pid  # a modality the request leaves out is missing for the patient, as in training


def _anchor(feat: Any, body: dict, pid: str, pt: Any, label: str) -> tuple[Any, str]:
    from medflow.data.dataset import Dataset, FeatureType

    if "events" in feat.kinds.values():
        import polars as pl

        from medflow.data.ehr import event_dataset
        from medflow.serve.events import events_from_body

        name = next(k for k, v in feat.kinds.items() if v == "events")
        if not isinstance(body.get(name), dict):
            raise RequestError(f"{name}: required ({{\"meds\": [...]}} or {{\"fhir\": Bundle}})",
                               [{"field": name, "problem": "missing"}])
        data, _ = events_from_body(body[name])
        if data.n_subjects != 1:
            raise RequestError(f"{name}: one patient's events per request (got {data.n_subjects} subjects)",
                               [{"field": name, "problem": "several subjects"}])
        sid = int(data.events["subject_id"][0])
        labels = pl.DataFrame({"subject_id": [sid], "prediction_time": [pt.to_pydatetime()], "boolean_value": [False]},
                              schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                      "boolean_value": pl.Boolean})
        return event_dataset(data, labels=labels, label_name=label), str(sid)
    frame = pd.DataFrame({_PID: [pid], label: [0], **({"prediction_time": [pt]} if pt is not None else {})})
    return Dataset(frame=frame, name="request", patient_id=_PID, feature_types={label: FeatureType.NUMERIC},
                   source="request"), pid


def _source(name: str, kind: str, feat: Any, body: dict, key: str) -> tuple[Any, str | None, str]:
    from medflow.data.dataset import Dataset

    join = feat.joins.get(name, {})
    how, timed = join.get("how", "latest"), bool(join.get("timed"))
    items = _items(body, name)
    if timed:
        for i, it in enumerate(items):
            if "time" not in it:
                raise RequestError(f"{name}[{i}].time: required", [{"field": f"{name}[{i}].time",
                                                                     "problem": "missing"}])
            _time(it["time"], f"{name}[{i}].time")
    time_col = "time" if timed else None
    if kind == "text":
        from medflow.data.text import TextSource, notes_dataset

        frame = pd.DataFrame({"pid": key, "time": [it.get("time") for it in items],
                              "text": [str(it.get("text", "")) for it in items]})
        return notes_dataset(frame, "text", f"request.{name}", TextSource(path="request", patient_column="pid")), \
            time_col, how
    if kind == "images":
        from medflow.data.images import ImageData, image_dataset

        arrays = {f"{name}-{i}": _png(it.get("png_base64"), f"{name}[{i}].png_base64") for i, it in enumerate(items)}
        frame = pd.DataFrame({"pid": key, "image": list(arrays), "time": [it.get("time") for it in items]})
        return image_dataset(ImageData(arrays, f"request.{name}"), frame, "pid", name), time_col, how
    types = feat.parts[name].feature_types
    for i, it in enumerate(items):
        extra = sorted(set(it) - set(types) - {"time"})
        if extra:
            raise RequestError(f"{name}[{i}].{extra[0]}: unknown field (the model reads {sorted(types)})",
                               [{"field": f"{name}[{i}].{extra[0]}", "problem": "unknown field"}])
    frame = pd.DataFrame([{c: it.get(c) for c in types} for it in items], columns=list(types))
    frame.insert(0, "pid", key)
    if timed:
        frame["time"] = [it["time"] for it in items]
    from medflow.data.dataset import coerce_types

    frame = coerce_types(frame, dict(types), f"request.{name}")
    return Dataset(frame=frame, name=name, patient_id="pid", feature_types=dict(types), source=f"request.{name}"), \
        time_col, how


def _png(value: Any, field: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(base64.b64decode(str(value), validate=True)))
        return np.asarray(img.convert("L"), dtype=np.float32)[None]
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        raise RequestError(f"{field}: not a base64-encoded PNG image", [{"field": field,
                                                                          "problem": "not a PNG (base64)"}]) from None


def record_body(ds: Any, i: int) -> dict[str, Any]:
    """Sample `i` of a multimodal Dataset as a request body (what a client sends for that patient): the patient's
    events as MEDS rows, and per other modality the item the sample reads (notes as one text; images as PNG, min-max
    windowed), stamped at the prediction time."""
    from PIL import Image

    row = ds.frame.iloc[i]
    pid = str(row[ds.patient_id])
    pt = pd.Timestamp(row["prediction_time"]) if "prediction_time" in ds.frame.columns else None
    body: dict[str, Any] = {_PID: pid, **({"prediction_time": pt.isoformat()} if pt is not None else {})}
    stamp = {"time": pt.isoformat()} if pt is not None else {}
    for name, m in ds.modalities.parts.items():
        r = m.rows[i]
        if r < 0:
            continue
        part = m.data.frame.iloc[r]
        if m.how == "events":
            ev = m.data.events.events
            mine = ev.filter(ev["subject_id"] == int(row["subject_id"]))
            body[name] = {"meds": [{"subject_id": pid, "time": None if t is None else t.isoformat(), "code": c,
                                    "numeric_value": None if v is None else float(v)}
                                   for _, t, c, v in mine.iter_rows()]}
        elif m.data.text is not None:
            body[name] = [{**stamp, "text": str(part[m.data.text.text_column])}]
        elif m.data.images is not None:
            a = m.data.images.arrays[part["image"]][0]
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6) * 255
            buf = io.BytesIO()
            Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
            body[name] = [{**stamp, "png_base64": base64.b64encode(buf.getvalue()).decode()}]
        else:
            values = {c: (None if pd.isna(part[c]) else part[c].item() if hasattr(part[c], "item") else part[c])
                      for c in m.data.feature_types}
            body[name] = [{**(stamp if m.timed else {}), **values}]
    return body
