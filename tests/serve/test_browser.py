"""The clinicians' page in a real headless Chromium (Debian's, driven by Playwright; no browser download):
connect with a key, pick a model, fill the form generated from its schema, read the risk, the decision and the
top-factor bars, which must equal what the REST API returns for the same record."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import sync_playwright

from medflow.serve import ServiceConfig, Store, create_app
from tests.serve.conftest import live_server

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def live(runs_root, event_run, tmp_path_factory):
    cfg = ServiceConfig(db=str(tmp_path_factory.mktemp("page") / "page.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("ward7")
    with live_server(create_app([runs_root["risk"], runs_root["surv"], event_run], cfg)) as base:
        yield base, key


def test_page_predicts_like_the_api(live):
    base, key = live
    record = {"x1": 1.2, "x2": None, "cat": "b", "sex": "M"}
    api = httpx.post(f"{base}/models/risk/predict", headers={"Authorization": f"Bearer {key}"},
                     json={"records": [record], "explain": True}).json()["predictions"][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        page.goto(base + "/")
        page.fill("#apikey", "mf_not_a_key")
        page.click("#connect")
        page.wait_for_function("document.getElementById('connect-error').textContent.length > 0")
        assert "unknown or revoked" in page.text_content("#connect-error")
        page.fill("#apikey", key)
        page.click("#connect")
        page.wait_for_selector("#model:not([disabled])")
        page.select_option("#model", "risk")
        assert "training range" in page.get_attribute("#f-x1", "placeholder")
        page.fill("#f-x1", "1.2")  # x2 left empty: sent as missing
        page.select_option("#f-cat", "b")
        page.select_option("#f-sex", "M")
        page.click("#predict")
        page.wait_for_selector("#result-body:not([hidden])")
        assert page.text_content("#risk") == f"{100 * api['probability']:.1f}%"
        decision = page.text_content("#decision")
        assert ("Above" in decision) == api["decision"]["positive"]
        bars = page.eval_on_selector_all("#factors g.bar", "els => els.map(e => e.dataset.feature)")
        assert bars == [e["feature"] for e in api["explanation"]]
        assert "Not for clinical use" in page.text_content("#model-info")
        if shot := __import__("os").environ.get("MEDFLOW_PAGE_SCREENSHOT"):
            page.screenshot(path=shot, full_page=True)
        # an out-of-range value is predicted and flagged on the page
        page.fill("#f-x1", "25")
        page.click("#predict")
        page.wait_for_function("document.getElementById('range-warning').textContent.includes('x1')")
        # the model card opens (fetched with the key)
        with page.context.expect_page() as card:
            page.click("#card-link")
        card.value.wait_for_load_state()
        assert "risk" in card.value.content()
        browser.close()


def test_page_predicts_an_event_run_from_a_pasted_fhir_bundle(live):
    """Event-data runs: the page swaps the form for a FHIR Bundle box and shows the latest prediction point."""
    import json

    import polars as pl

    from medflow.data.ehr import simulated_ehr
    from tests.ehr.fhir_export import resources

    base, key = live
    events = simulated_ehr(patients=400, seed=0).events.events
    sid = events.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END")["subject_id"][0]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": r} for r in resources(events.filter(pl.col("subject_id") == sid))[sid]]}
    api = httpx.post(f"{base}/models/readmit/predict", headers={"Authorization": f"Bearer {key}"},
                     json={"fhir": bundle, "explain": True}).json()["predictions"][-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        page.goto(base + "/")
        page.fill("#apikey", key)
        page.click("#connect")
        page.wait_for_selector("#model:not([disabled])")
        page.select_option("#model", "readmit")
        assert page.is_visible("#bundle") and page.eval_on_selector_all("#form input", "e => e.length") == 0
        page.fill("#bundle", json.dumps(bundle))
        page.click("#predict")
        page.wait_for_selector("#result-body:not([hidden])")
        assert page.text_content("#risk") == f"{100 * api['probability']:.1f}%"
        assert page.is_visible("#result-synthetic")  # the simulator's patients are labelled SYNTHETIC
        page.fill("#bundle", '{"resourceType": "Patient", "id": "x"}')
        page.click("#predict")
        page.wait_for_function("document.getElementById('result-error').textContent.length > 0")
        assert "readmission_30d" in page.text_content("#result-error")
        browser.close()
