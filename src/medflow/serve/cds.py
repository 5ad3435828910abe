"""CDS Hooks 2.0 (`patient-view`): each served model is a CDS service; the EHR sends FHIR prefetch (Patient,
Observations, Conditions, MedicationRequests, Encounters), the service answers with one card.

Prefetch to model input:
- event-data runs: every prefetched resource goes through the study's FHIR reader (`read_fhir`) and the run's
  cohort, exactly as `medflow predict` reads a FHIR export; the card is about the latest prediction point.
- table runs: `age` from Patient.birthDate (years at the hook's time), `sex`/`gender` from Patient.gender, and each
  other feature from the patient's latest Observation whose code (coding.code, coding.display or text, ignoring
  case, spaces and underscores) names it: valueQuantity.value for numbers, valueString/valueCodeableConcept for
  categories, valueBoolean for flags. Features not found are sent as missing (imputed as in training) and listed
  on the card, so a clinician sees what the model did not know.

The card: summary (<= 140 characters, with the risk and SYNTHETIC when the model was trained on simulated data),
indicator by risk band (binary: `critical` at or above the run's threshold and in the upper half of the
probabilities above it, `warning` at or above the threshold, `info` below), detail (markdown: the risk, the
decision rule, the top factors, inputs imputed or outside the training range, the validation AUROC with its CI),
and source naming model and version.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Any

from medflow.serve.errors import RequestError

__all__ = ["services_document", "prefetch_templates", "hook_inputs", "card"]

PREFETCH = {"patient": "Patient/{{context.patientId}}",
            "observations": "Observation?patient={{context.patientId}}",
            "conditions": "Condition?patient={{context.patientId}}",
            "medications": "MedicationRequest?patient={{context.patientId}}",
            "encounters": "Encounter?patient={{context.patientId}}"}


def prefetch_templates() -> dict[str, str]:
    return dict(PREFETCH)


def services_document(models: dict[str, Any]) -> dict[str, Any]:
    return {"services": [{
        "hook": "patient-view", "id": name, "title": f"medflow: {served.run.config.get('name', name)}",
        "description": (served.run.config.get("intended_use") or f"{served.run.task.kind} model {name}")[:500]
        + (" [trained on SYNTHETIC data]" if served.run.synthetic else ""),
        "prefetch": prefetch_templates(), "usageRequirements": "an API key (Authorization: Bearer KEY)"}
        for name, served in models.items()]}


def _resources(value: Any) -> list[dict[str, Any]]:
    """A prefetch value: one resource, a searchset Bundle, or null."""
    if value is None:
        return []
    if not isinstance(value, dict) or "resourceType" not in value:
        raise ValueError("not a FHIR resource or Bundle")
    if value["resourceType"] == "Bundle":
        return [e["resource"] for e in value.get("entry") or [] if isinstance(e, dict) and e.get("resource")]
    return [value]


def hook_inputs(served: Any, body: Any) -> tuple[Any, dict[str, Any]]:
    """The model input from a CDS Hooks request, and what the card should say about it (missing inputs)."""
    if not isinstance(body, dict):
        raise RequestError("the CDS Hooks request must be a JSON object",
                           [{"field": "body", "problem": "not an object"}])
    problems = []
    if body.get("hook") != "patient-view":
        problems.append({"field": "hook", "problem": f"this service answers 'patient-view', got {body.get('hook')!r}"})
    if not isinstance(body.get("hookInstance"), str) or not body.get("hookInstance"):
        problems.append({"field": "hookInstance", "problem": "missing (a UUID for this hook call)"})
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        problems.append({"field": "context.patientId", "problem": "missing"})
    prefetch = body.get("prefetch")
    if not isinstance(prefetch, dict) or not prefetch.get("patient"):
        problems.append({"field": "prefetch.patient", "problem": "missing: this service reads only prefetched data "
                         "(it does not call back the FHIR server)"})
    resources: list[dict[str, Any]] = []
    if isinstance(prefetch, dict):
        for key, value in prefetch.items():
            try:
                resources += _resources(value)
            except ValueError as e:
                problems.append({"field": f"prefetch.{key}", "problem": str(e)})
    if problems:
        raise RequestError("; ".join(f"{p['field']}: {p['problem']}" for p in problems), problems)
    if served.schema.kind == "events":
        from medflow.serve.events import fhir_events

        bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
        try:
            return fhir_events(bundle), {"missing": []}
        except Exception as e:  # noqa: BLE001 - the reader's message names the resource at fault
            raise RequestError(f"prefetch: {e}", [{"field": "prefetch", "problem": str(e)}]) from None
    return _table_record(served.schema, resources, context["patientId"])


def _norm(text: Any) -> str:
    return re.sub(r"[\s_\-]+", "", str(text)).lower()


def _table_record(schema: Any, resources: list[dict[str, Any]], patient_id: str) -> tuple[Any, dict[str, Any]]:
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), {})
    found: dict[str, tuple[str, Any]] = {}  # normalized name -> (time, value)
    if patient.get("birthDate"):
        born = date.fromisoformat(str(patient["birthDate"])[:10])
        found["age"] = ("", (datetime.now(UTC).date() - born).days / 365.25)
    if patient.get("gender"):
        g = {"female": "F", "male": "M"}.get(patient["gender"], patient["gender"])
        found["sex"] = found["gender"] = ("", g)
    for obs in (r for r in resources if r.get("resourceType") == "Observation"):
        code = obs.get("code") or {}
        names = {_norm(code.get("text", ""))} | {_norm(c.get(k, "")) for c in code.get("coding") or []
                                                 for k in ("code", "display")}
        value = (obs.get("valueQuantity") or {}).get("value")
        if value is None:
            value = obs.get("valueString", obs.get("valueBoolean"))
        if value is None and obs.get("valueCodeableConcept"):
            cc = obs["valueCodeableConcept"]
            value = cc.get("text") or next((c.get("code") for c in cc.get("coding") or []), None)
        when = str(obs.get("effectiveDateTime") or obs.get("issued") or "")
        for n in names - {""}:
            if n not in found or when >= found[n][0]:
                found[n] = (when, value)
    record, missing = {}, []
    for col, f in schema.fields.items():
        hit = found.get(_norm(col))
        value = None if hit is None else hit[1]
        if value is not None and f["type"] == "numeric":
            value = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if value is not None and f["type"] == "binary":
            value = next((v for v in f["values"] if str(v).lower() == str(value).lower()), value)
        if value is None:
            missing.append(col)
        record[col] = value
    frame, _ = schema.validate({"records": [record]})
    return frame, {"missing": missing, "patient": patient_id}


def card(served: Any, result: dict[str, Any], notes: dict[str, Any]) -> dict[str, Any]:
    """One CDS Hooks card for the (latest) prediction."""
    run, name = served.run, served.name
    kind = run.task.kind
    synthetic = " [SYNTHETIC]" if run.synthetic else ""
    metrics = run.metrics.data["models"][run.metrics.selected_model]["metrics"]
    if kind == "binary":
        p, t = result["probability"], result["threshold"]
        indicator = "critical" if p >= t + (1 - t) / 2 else "warning" if p >= t else "info"
        summary = f"{run.task.label_columns[0]}: {100 * p:.0f}% risk" + \
            (" (above the decision threshold)" if p >= t else "")
        rule = f"Decision threshold {100 * t:.0f}% (chosen on validation data)."
    elif kind == "survival":
        hs = [k for k in result if k.startswith("survival_at_")]
        indicator = "info"
        summary = "survival " + ", ".join(f"{100 * result[k]:.0f}% at {k[12:]}" for k in hs[:3])
        rule = ""
    else:
        indicator = "info"
        summary = f"prediction: {result.get('prediction', result.get('cate'))}"
        rule = ""
    lines = [f"**{summary}**{synthetic}", "", rule]
    top = result.get("explanation") or []
    if top:
        lines += ["", "Top factors (attribution; positive raises the prediction):"]
        lines += [f"- {e.get('feature', e.get('code'))}: {e['attribution']:+.3g}" for e in top[:5]]
    if notes.get("missing"):
        lines += ["", f"Not in the record, imputed as in training: {', '.join(notes['missing'])}."]
    if result.get("out_of_training_range"):
        lines += ["", f"Outside the training range (extrapolated): {', '.join(result['out_of_training_range'])}."]
    main = next(iter(metrics.items()), None)
    if main:
        m = main[1]
        lines += ["", f"Validation {main[0]}: {m['value']:.3f} (95% CI {m['low']:.3f}-{m['high']:.3f})."]
    if run.config.get("intended_use"):
        lines += ["", f"Intended use: {run.config['intended_use']}"]
    return {"uuid": str(uuid.uuid4()), "summary": (summary + synthetic)[:140], "indicator": indicator,
            "detail": "\n".join(x for x in lines if x is not None).strip(),
            "source": {"label": f"medflow {name} v{served.version}"[:140], "topic": {
                "code": name, "system": "https://medflow.dev/models", "display": f"{name} v{served.version}"}}}
