"""Write simulated MEDS events as FHIR R4 (Synthea-style Bundles or bulk-export NDJSON), for tests."""

import json
from pathlib import Path

import polars as pl

SYS = {"ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm", "LOINC": "http://loinc.org",
       "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm", "ICD10PCS": "http://www.cms.gov/Medicare/Coding/ICD10"}
TYPE = {"ICD10CM": "Condition", "LOINC": "Observation", "RXNORM": "MedicationRequest", "ICD10PCS": "Procedure"}


def _iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def resources(events: pl.DataFrame) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    open_enc: dict[int, dict] = {}
    for n, (sid, t, code, value) in enumerate(events.iter_rows()):
        pid = f"pt-{sid:05d}"
        res = out.setdefault(sid, [])
        ref = {"reference": f"Patient/{pid}"}
        if not res:
            res.append({"resourceType": "Patient", "id": pid})
        patient = res[0]
        if code.startswith("GENDER//"):
            patient["gender"] = {"F": "female", "M": "male"}[code[-1]]
        elif code == "MEDS_BIRTH":
            patient["birthDate"] = t.strftime("%Y-%m-%d")
        elif code == "MEDS_DEATH":
            patient["deceasedDateTime"] = _iso(t)
        elif code == "ENCOUNTER//INPATIENT//START":
            enc = {"resourceType": "Encounter", "id": f"enc-{n}", "class": {"code": "IMP"}, "subject": ref,
                   "period": {"start": _iso(t)}}
            open_enc[sid] = enc
            res.append(enc)
        elif code == "ENCOUNTER//INPATIENT//END":
            open_enc.pop(sid)["period"]["end"] = _iso(t)
        elif "//" in code and code.split("//")[0] in TYPE:
            system, c = code.split("//", 1)
            rtype = TYPE[system]
            r = {"resourceType": rtype, "id": f"r-{n}", "subject": ref}
            concept = {"coding": [{"system": SYS[system], "code": c}]}
            if rtype == "Condition":
                r.update(code=concept, onsetDateTime=_iso(t))
            elif rtype == "Observation":
                r.update(code=concept, effectiveDateTime=_iso(t), valueQuantity={"value": float(value)})
            elif rtype == "MedicationRequest":
                r.update(medicationCodeableConcept=concept, authoredOn=_iso(t))
            else:
                r.update(code=concept, performedDateTime=_iso(t))
            res.append(r)
    return out


def write_bundles(events: pl.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for sid, res in resources(events).items():
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": r} for r in res] + [{"resource": {"resourceType": "Claim", "id": "c"}}]}
        (folder / f"patient_{sid}.json").write_text(json.dumps(bundle))
    return folder


def write_ndjson(events: pl.DataFrame, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for res in resources(events).values():
        for r in res:
            by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    return folder
