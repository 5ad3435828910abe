"""A multimodal run over REST: one patient's events, notes, images (PNG) and tables in one request, answered as
`Run.predict` answers the same record; a modality left out is missing, as in training; bad items are named."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from medflow.runs import load_run
from medflow.serve import ServiceConfig, Store, create_app


@pytest.fixture(scope="module")
def mm(tmp_path_factory):
    import medflow as mf
    from medflow.data.builtin_multimodal import simulated_multimodal

    ds = simulated_multimodal(120, seed=4, image_size=16)
    root = tmp_path_factory.mktemp("mm")
    run = mf.Study(dataset=ds, task=mf.tasks.Binary(label="outcome"), model=[{"name": "fusion_masked",
                                                                               "params": {"d": 8}}],
                   train={"max_epochs": 2, "progress": False}, output_dir=root, explain={"examples": 1},
                   evaluate={"n_bootstrap": 50}).fit()
    cfg = ServiceConfig(db=str(root / "s.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("mm")
    with TestClient(create_app([run.path], cfg)) as c:
        yield c, {"Authorization": f"Bearer {key}"}, run.path, ds


def _png(a: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.clip((a[0] + 1) / 3.5 * 255, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _body(ds, i: int) -> dict:
    """Sample i's record as a request: every item of the patient (later ones too: the service must drop them)."""
    row = ds.frame.iloc[i]
    sid, pt = str(row["subject_id"]), pd.Timestamp(row["prediction_time"])
    parts = ds.modalities.parts
    events = parts["events"].data.events.events
    mine = events.filter(events["subject_id"] == int(sid))
    body = {"patient_id": sid, "prediction_time": pt.isoformat(), "events": {"meds": [
        {"subject_id": sid, "time": None if t is None else t.isoformat(), "code": c,
         "numeric_value": None if v is None else float(v)} for _, t, c, v in mine.iter_rows()]}}
    labs = parts["labs"]
    if labs.rows[i] >= 0:
        r = labs.data.frame.iloc[labs.rows[i]]
        body["labs"] = [{"time": (pt - pd.Timedelta(hours=1)).isoformat(),
                         **{c: float(r[c]) for c in ("creatinine", "sodium", "wbc")}},
                        {"time": (pt + pd.Timedelta(days=3)).isoformat(), "creatinine": 9.0, "sodium": 140.0,
                         "wbc": 8.0}]
    return body


def test_one_request_with_several_inputs_matches_run_predict(mm):
    from medflow.data.dataset import Dataset

    c, auth, path, ds = mm
    i = int(np.flatnonzero((ds.modalities.parts["labs"].rows >= 0) & (ds.modalities.parts["images"].rows < 0)
                           & (ds.modalities.parts["notes"].rows < 0))[0])
    body = _body(ds, i)
    r = c.post("/models/multimodal_sim/predict", headers=auth, json={**body, "explain": True})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == 1 and got[0]["subject_id"] == body["patient_id"] and r.json()["synthetic"] is True
    assert {e["modality"] for e in got[0]["explanation"]} == {"events", "notes", "images", "labs", "omics"}
    # the same patient through Run.predict, with only events and labs (omics, notes, images missing)
    parts = ds.modalities.parts
    one = Dataset(frame=ds.frame.iloc[[i]], name=ds.name, patient_id=ds.patient_id, feature_types=ds.feature_types,
                  source=ds.source, meta=ds.meta,
                  modalities=type(ds.modalities)({k: parts[k] for k in ("events", "labs")}))
    direct = load_run(path).predict(one)
    assert got[0]["probability"] == pytest.approx(float(direct["probability"].iloc[0]), abs=1e-5)
    # the lab panel after the prediction time was not read: changing it changes nothing
    body["labs"][1]["creatinine"] = 0.1
    again = c.post("/models/multimodal_sim/predict", headers=auth, json=body).json()["predictions"]
    assert again[0]["probability"] == pytest.approx(got[0]["probability"], abs=1e-9)


def test_images_and_notes_in_the_request_count(mm):
    c, auth, _, ds = mm
    i = int(np.flatnonzero(ds.modalities.parts["images"].rows >= 0)[0])
    body = _body(ds, i)
    pt = pd.Timestamp(body["prediction_time"])
    img = ds.modalities.parts["images"]
    arr = img.data.images.arrays[img.data.frame["image"].iloc[img.rows[i]]]
    with_image = {**body, "images": [{"time": (pt - pd.Timedelta(days=1)).isoformat(), "png_base64": _png(arr)}],
                  "notes": [{"time": (pt - pd.Timedelta(days=1)).isoformat(),
                             "text": "Severe dyspnea at rest with orthopnea and leg swelling."}]}
    a = c.post("/models/multimodal_sim/predict", headers=auth, json=body)
    b = c.post("/models/multimodal_sim/predict", headers=auth, json=with_image)
    assert a.status_code == b.status_code == 200, b.text
    assert a.json()["predictions"][0]["probability"] != b.json()["predictions"][0]["probability"]


@pytest.mark.parametrize("change,field", [
    ({"prediction_time": "soon"}, "prediction_time"),
    ({"images": [{"time": "2024-01-01", "png_base64": "bm90IGEgcG5n"}]}, "images[0].png_base64"),
    ({"labs": [{"time": "2024-01-01", "potassium": 4.0}]}, "labs[0].potassium"),
    ({"notes": [{"text": "no time"}]}, "notes[0].time"),
    ({"genes": []}, "genes"),
])
def test_bad_items_are_named(mm, change, field):
    c, auth, _, ds = mm
    r = c.post("/models/multimodal_sim/predict", headers=auth, json={**_body(ds, 0), **change})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == field, r.text


def test_a_datasets_record_as_a_request_body(mm):
    """`record_body` (what a client sends for a sample) is answered as `Run.predict` answers that sample."""
    from medflow.serve.multimodal import record_body

    c, auth, path, ds = mm
    parts = ds.modalities.parts  # images go through PNG (8 bits): a patient without one compares exactly
    i = int(np.flatnonzero((parts["omics"].rows >= 0) & (parts["notes"].rows >= 0) & (parts["images"].rows < 0))[0])
    body = record_body(ds, i)
    assert {"events", "notes", "labs", "omics"} <= set(body) and "images" not in body
    r = c.post("/models/multimodal_sim/predict", headers=auth, json=body)
    assert r.status_code == 200, r.text
    from medflow.data.dataset import Dataset

    one = Dataset(frame=ds.frame.iloc[[i]], name=ds.name, patient_id=ds.patient_id, feature_types=ds.feature_types,
                  source=ds.source, meta=ds.meta, modalities=ds.modalities)  # one record, as the request: one batch
    direct = load_run(path).predict(one).iloc[0]
    assert r.json()["predictions"][0]["probability"] == pytest.approx(float(direct["probability"]), abs=1e-5)


def test_openapi_describes_each_modality(mm):
    c, auth, _, _ = mm
    schema = c.get("/openapi.json", headers=auth).json()
    text = str(schema)
    assert "MultimodalPredictRequest" in text and "png_base64" in text and "creatinine" in text
