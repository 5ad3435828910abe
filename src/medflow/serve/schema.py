"""A served run's input schema: one field per feature the model was trained on, typed from the run's featurizer,
with the training range and categories from the run's quality summary.

Every field is required and nullable: `null` is a missing value (imputed as in training), an absent field is an
error that names it, and a field the model does not know is an error too (a typo would otherwise be dropped in
silence). Numbers are strict (a JSON `true` or `"5"` is not a number) and finite.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, create_model

from medflow.artifacts import read_json
from medflow.features.tabular import numbers
from medflow.serve.errors import RequestError

__all__ = ["InputSchema", "RequestError", "field_errors"]

MAX_RECORDS = 1000
PLAUSIBLE_WIDTHS = 1000.0


def _no_bool(allowed: list[Any]):
    def check(v: Any) -> Any:
        if isinstance(v, bool) and not any(isinstance(a, bool) for a in allowed):
            raise ValueError(f"expected one of {allowed}, got {str(v).lower()}")
        return v
    return check


def _datetime(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, str) or pd.isna(pd.to_datetime(v, errors="coerce", utc=True)):
        raise ValueError("expected a date or date-time string such as 2024-03-01 or 2024-03-01T08:30:00Z")
    return v


# runs whose records are one string: kind -> (featurizer attribute naming the field, type, description, max length)
_ONE_STRING = {"molecules": ("smiles_column", "smiles", "a SMILES string", 10_000),
               "text": ("text_column", "text", "the note's text (long notes are read whole, in windows)", 1_000_000)}


class InputSchema:
    """The fields a run's model reads, as a pydantic model (validation) and as JSON Schema (OpenAPI, the web page)."""

    def __init__(self, run: Any) -> None:
        self.run = run
        feat = run.featurizer()
        self.kind = {"codes-v1": "events", "image-v1": "images", "mol-v1": "molecules", "text-v1": "text",
                     "multimodal-v1": "multimodal"}.get(getattr(feat, "name", ""), "table")
        quality_path = run.path / "quality.json"
        quality = read_json(quality_path) if quality_path.exists() else {}
        self.columns = {c["column"]: c for c in quality.get("columns", [])}
        self.fields: dict[str, dict[str, Any]] = {}
        self.protein: str | None = None
        if self.kind in _ONE_STRING:  # one SMILES (parsed by RDKit before predicting) or one note per record
            col = getattr(feat, _ONE_STRING[self.kind][0])
            self.fields[col] = {"name": col, "type": _ONE_STRING[self.kind][1]}
            strings = {"f0": (Annotated[str, Field(min_length=1, max_length=_ONE_STRING[self.kind][3])],
                              Field(..., alias=col))}
            self.protein = getattr(feat, "protein_column", None)  # drug-target runs: the target's sequence too
            if self.protein:
                self.fields[self.protein] = {"name": self.protein, "type": "protein"}
                strings["f1"] = (Annotated[str, Field(min_length=1, max_length=100_000)],
                                 Field(..., alias=self.protein))
            self.model = create_model("Record", __config__=ConfigDict(extra="forbid", strict=True), **strings)
        if self.kind == "table":
            for col, kind in feat.feature_types.items():
                self.fields[col] = self._field(col, kind.value, feat.state[col])
            self.model = create_model(
                "Record", __config__=ConfigDict(extra="forbid", strict=True),
                **{f"f{i}": (self._annotation(col), Field(..., alias=col)) for i, col in enumerate(self.fields)})

    def _field(self, col: str, kind: str, state: dict[str, Any]) -> dict[str, Any]:
        q = self.columns.get(col, {})
        f: dict[str, Any] = {"name": col, "type": kind, "missing_in_training": q.get("missing"),
                             "imputed_with": state.get("median", state.get("mode"))}
        if kind == "numeric":
            f["training_range"] = [q["min"], q["max"]] if "min" in q else None
            f["plausible_range"] = _plausible(f["training_range"])
            f["training_mean"] = q.get("mean", state.get("mean"))
        elif kind == "binary":
            f["values"] = state["values"]
        elif kind == "categorical":
            f["categories"] = state["categories"]
        return f

    def _annotation(self, col: str) -> Any:
        f = self.fields[col]
        if f["type"] == "numeric":
            lo, hi = f["plausible_range"]
            return Annotated[float, Field(allow_inf_nan=False, ge=lo, le=hi)] | None
        if f["type"] == "binary":
            values = tuple(f["values"]) or (0, 1)
            return Annotated[Literal[values], BeforeValidator(_no_bool(list(values)))] | None  # type: ignore[valid-type]
        if f["type"] == "datetime":
            return Annotated[str, BeforeValidator(_datetime)] | None
        return str | None

    def record_json_schema(self) -> dict[str, Any]:
        """JSON Schema of one record (plain: no $refs), with each field's training range or categories."""
        if self.kind in _ONE_STRING:
            col = next(iter(self.fields))
            props = {col: {"type": "string", "minLength": 1, "maxLength": _ONE_STRING[self.kind][3],
                           "description": _ONE_STRING[self.kind][2]}}
            if self.protein:
                props[self.protein] = {"type": "string", "minLength": 1, "maxLength": 100_000,
                                       "description": "the target's amino-acid sequence (one-letter codes)"}
            return {"type": "object", "title": "Record", "additionalProperties": False, "required": list(props),
                    "properties": props}
        if self.kind != "table":
            return {"type": "object"}
        schema = self.model.model_json_schema(by_alias=True)
        for col, prop in schema["properties"].items():
            f = self.fields[col]
            prop.pop("title", None)
            desc = [f"{f['type']}; null = missing (imputed with {f['imputed_with']!r})"]
            if f.get("training_range"):
                desc.append(f"training range {f['training_range'][0]:g} to {f['training_range'][1]:g} (outside it: "
                            "predicted and flagged)")
            if f.get("categories"):
                desc.append(f"training categories {f['categories'][:20]}; others go to an unknown bucket")
            prop["description"] = "; ".join(desc)
        schema["title"] = "Record"
        return schema

    def body_json_schema(self) -> dict[str, Any]:
        if self.kind == "multimodal":
            from medflow.serve.multimodal import multimodal_body_schema

            return multimodal_body_schema(self.run.featurizer())
        if self.kind == "events":
            from medflow.serve.events import event_body_schema

            return event_body_schema()
        return {"type": "object", "title": "PredictRequest", "additionalProperties": False, "required": ["records"],
                "properties": {
                    "records": {"type": "array", "minItems": 1, "maxItems": MAX_RECORDS,
                                "items": self.record_json_schema(),
                                "description": "records in the run's raw input form (one or many)"},
                    "explain": {"type": "boolean", "default": False,
                                "description": "add each record's top factors (attributions)"}}}

    def validate(self, body: Any) -> tuple[Any, bool]:
        """The request body as a frame of records (columns in training order) and the explain flag; raises
        RequestError (422) naming each bad field as `records[i].field`. Event runs: the patient's EventData;
        multimodal runs: the patient's record joined as in the study (a Dataset) and the patient's id."""
        if self.kind == "multimodal":
            from medflow.serve.multimodal import multimodal_from_body

            ds, explain, pid = multimodal_from_body(self.run, body)
            ds.meta["request_patient"] = pid
            return ds, explain
        if self.kind == "events":
            from medflow.serve.events import events_from_body

            return events_from_body(body)
        records, explain = self.check(body)
        return self.frame(records), explain

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Checked records (of one request or of a whole micro-batch) as one frame, columns in training order."""
        cols = list(self.fields)
        if self.kind == "table" and all(f["type"] == "numeric" for f in self.fields.values()):
            # all numbers (checked): one float block, a tenth of the cost of pandas' per-column inference
            return pd.DataFrame(np.array([[r[c] for c in cols] for r in records], dtype=float), columns=cols)
        return pd.DataFrame.from_records(records, columns=cols)

    def check(self, body: Any) -> tuple[list[dict[str, Any]], bool]:
        """`validate` without building the frame: the checked records and the explain flag (the batcher builds
        one frame per batch: a frame per one-record request had cost a third of the service's time under load)."""
        if self.kind not in ("table", *_ONE_STRING):
            raise RequestError(f"this run reads {self.kind}; the service predicts tables, molecules, notes, event "
                               "data and multimodal records",
                               [{"field": "body", "problem": f"{self.kind} runs are not served"}])
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object {\"records\": [...], \"explain\": false}",
                               [{"field": "body", "problem": f"got {type(body).__name__}"}])
        unknown = sorted(set(body) - {"records", "explain"})
        problems = [{"field": k, "problem": "unknown field (allowed: records, explain)"} for k in unknown]
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            problems.append({"field": "explain", "problem": "must be true or false"})
        records = body.get("records")
        if not isinstance(records, list) or not records or len(records) > MAX_RECORDS:
            problems.append({"field": "records", "problem": f"must be a list of 1 to {MAX_RECORDS} records"})
            records = []
        for i, rec in enumerate(records):
            try:
                self.model.model_validate(rec)  # strict: a valid record's values are the ones sent, so the frame
            except ValidationError as e:      # is built from them directly (no dump back to dicts)
                problems += field_errors(e, f"records[{i}]")
                continue
            if self.kind == "molecules":
                from medflow.data.molecules import parse_smiles, protein_problem

                col = next(iter(self.fields))
                _, why = parse_smiles(rec[col])
                if why:
                    problems.append({"field": f"records[{i}].{col}", "problem": why})
                why = protein_problem(rec[self.protein]) if self.protein else None
                if why:
                    problems.append({"field": f"records[{i}].{self.protein}", "problem": why})
            elif self.kind == "text":
                (col,) = self.fields
                if not rec[col].strip():
                    problems.append({"field": f"records[{i}].{col}", "problem": "an empty note (only white space)"})
        if problems:
            raise RequestError(_summary(problems), problems)
        return records, explain

    def out_of_range(self, frame: pd.DataFrame) -> list[list[str]]:
        """Per record: the numeric fields outside the training range (predicted anyway, and flagged)."""
        flags: list[list[str]] = [[] for _ in range(len(frame))]
        if self.kind != "table":
            return flags
        cols = [c for c, f in self.fields.items() if f.get("training_range")]
        if not cols:
            return flags
        v = numbers(frame, cols)  # one pass over every ranged column
        lo = np.array([self.fields[c]["training_range"][0] for c in cols])
        hi = np.array([self.fields[c]["training_range"][1] for c in cols])
        with np.errstate(invalid="ignore"):
            outside = (v < lo) | (v > hi)  # NaN (missing) compares False: not flagged
        for i, j in zip(*np.nonzero(outside), strict=True):
            flags[i].append(cols[j])
        return flags

    def describe(self) -> dict[str, Any]:
        return {"input": self.kind, "fields": list(self.fields.values())}


def _plausible(rng: list[float] | None, widths: float = PLAUSIBLE_WIDTHS) -> list[float]:
    """Values this far outside the training range are data errors (a unit slip is 10-1000x, not 100 ranges
    out): refused with 422; values between the training and plausible ranges are predicted and flagged."""
    if not rng:
        return [-1e30, 1e30]
    width = max(rng[1] - rng[0], abs(rng[0]), abs(rng[1]), 1.0)
    return [rng[0] - widths * width, rng[1] + widths * width]


def field_errors(e: ValidationError, prefix: str) -> list[dict[str, str]]:
    out = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal[", "float",
                                                                               "str", "none")))
        problem = "missing (send null for a missing value)" if err["type"] == "missing" else \
            "unknown field: the model has no such input" if err["type"] == "extra_forbidden" else err["msg"]
        out.append({"field": f"{prefix}.{loc}" if loc else prefix, "problem": problem})
    # one problem per field (a union reports each branch)
    seen: dict[str, dict[str, str]] = {}
    for p in out:
        seen.setdefault(p["field"], p)
    return list(seen.values())


def _summary(problems: list[dict[str, str]]) -> str:
    head = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    return head + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
