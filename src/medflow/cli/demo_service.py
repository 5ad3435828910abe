"""The demo's service section: the breast-cancer and EHR demo runs served with a key and an audit trail, one
prediction over REST, one CDS Hooks card, and the deep model exported to ONNX and checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["service_demo"]


def service_demo(runs: dict[str, Any], output_dir: Path) -> list[str]:
    """Serve the demo runs in process; returns the lines to print."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note on httpx versions
        from fastapi.testclient import TestClient

    from medflow.data.builtin import load
    from medflow.export import compare_with_run, export_onnx
    from medflow.serve import ServiceConfig, Store, create_app

    db = Path(output_dir) / "service.db"
    cfg = ServiceConfig(db=str(db), rate_per_minute=0)
    store = Store(cfg.db)
    key = store.create_key(f"demo-{len(store.list_keys()) + 1}")
    bc = runs["demo-breast_cancer"]
    app = create_app([bc.path], cfg, names=["breast-cancer"])
    ds = load("breast_cancer")
    record = ds.frame.drop(columns=["malignant", ds.patient_id]).iloc[[10]].to_dict(orient="records")[0]
    lines = [f"Service (medflow serve {bc.path}): key stored as a hash in {db}"]
    with TestClient(app) as client:
        auth = {"Authorization": f"Bearer {key}"}
        r = client.post("/models/breast-cancer/predict", headers=auth, json={"records": [record],
                                                                             "explain": True}).json()
        p = r["predictions"][0]
        top = ", ".join(f"{e['feature']} {e['attribution']:+.2f}" for e in p["explanation"][:3])
        lines.append(f"  REST: P(malignant) {p['probability']:.3f}, decision "
                     f"{'positive' if p['decision']['positive'] else 'negative'} at threshold "
                     f"{p['threshold']:.3f}; top factors {top}")
        obs = [{"resource": {"resourceType": "Observation", "code": {"text": k}, "valueQuantity": {"value": v},
                             "effectiveDateTime": "2026-11-01"}} for k, v in record.items()]
        hook = {"hook": "patient-view", "hookInstance": "demo", "context": {"patientId": "demo-1"},
                "prefetch": {"patient": {"resourceType": "Patient", "id": "demo-1", "gender": "female"},
                             "observations": {"resourceType": "Bundle", "entry": obs}}}
        card = client.post("/cds-services/breast-cancer", headers=auth, json=hook).json()["cards"][0]
        lines.append(f"  CDS Hooks card ({card['indicator']}): {card['summary']} ({card['source']['label']})")
        audited = len(store.audit_rows(model="breast-cancer"))
        lines.append(f"  audit trail: {audited} row(s) for breast-cancer in {db.name}")
    if "mlp" in bc.models:
        folder = export_onnx(bc.path, "mlp", Path(output_dir) / "onnx" / f"breast-cancer-mlp-{bc.path.name}")
        diff, n = compare_with_run(folder)
        lines.append(f"  ONNX: {folder} (ONNX Runtime vs PyTorch on {n} records: max difference {diff:.1e})")
    lines.append(f"  serve it: medflow keys create --name me --db {db}  (prints a key), then medflow serve {bc.path} "
                 f"--db {db}  (page at http://127.0.0.1:8000/)")
    return lines
