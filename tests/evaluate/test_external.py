"""External validation: calibration intercept and slope, recalibration, drift, and the CLI end to end."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from medflow.evaluate.external import _logit, apply_recalibration, calibration_intercept_slope, fit_recalibration
from tests.conftest import make_frame, run_cli


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_calibration_slope_and_intercept_are_the_textbook_fits():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=5000)
    p = _sigmoid(lp)
    y = (rng.random(5000) < _sigmoid(0.5 + 0.6 * lp)).astype(float)  # too extreme and too low: slope < 1
    c = calibration_intercept_slope(y, p)
    ref = LogisticRegression(C=np.inf).fit(_logit(p)[:, None], y)
    assert abs(c["slope"] - ref.coef_[0, 0]) < 1e-4
    # calibration-in-the-large solves sum(y - sigmoid(a + logit p)) = 0
    assert abs(np.sum(y - _sigmoid(c["citl"] + _logit(p)))) < 1e-6
    assert 0.5 < c["slope"] < 0.7 and c["citl"] > 0.2
    calibrated = (rng.random(5000) < p).astype(float)
    good = calibration_intercept_slope(calibrated, p)
    assert abs(good["slope"] - 1) < 0.1 and abs(good["citl"]) < 0.08


@pytest.mark.parametrize("method", ["logistic", "isotonic"])
def test_recalibration_repairs_a_miscalibrated_model(method):
    rng = np.random.default_rng(1)
    lp = rng.normal(size=6000)
    y = (rng.random(6000) < _sigmoid(-1 + 0.5 * lp)).astype(float)
    p = _sigmoid(lp)  # the model ignores the lower rate and the flatter slope
    fitted = fit_recalibration(y[:3000], p[:3000], method)
    json.dumps(fitted)  # plain JSON, saved beside the results
    q = apply_recalibration(fitted, p[3000:])
    before, after = calibration_intercept_slope(y[3000:], p[3000:]), calibration_intercept_slope(y[3000:], q)
    assert abs(after["citl"]) < abs(before["citl"]) / 4
    assert abs(np.mean(q) - np.mean(y[3000:])) < 0.02


def test_external_validation_end_to_end(tmp_path):
    make_frame(500, seed=0).to_csv(tmp_path / "site_a.csv", index=False)
    other = make_frame(400, seed=5)
    other["x1"] = other["x1"] + 0.8  # the same outcomes, a shifted measurement: predictions run too high
    other.loc[:40, "cat"] = "z"  # a category never seen in training
    other.to_csv(tmp_path / "site_b.csv", index=False)
    (tmp_path / "s.yaml").write_text(
        "name: ext\ndata: {path: site_a.csv, patient_id: pid}\ntask: {kind: binary, label: y}\n"
        "models: [logistic_regression, mlp]\ntrain: {max_epochs: 15, patience: 5, progress: false}\n"
        "evaluate: {n_bootstrap: 100, subgroups: [sex]}\n")
    assert run_cli("run", "s.yaml", cwd=tmp_path).returncode == 0
    run = next(p.parent for p in tmp_path.glob("runs/ext/*/manifest.json"))
    res = run_cli("evaluate", run, "--data", "site_b.csv", "--recalibrate", "logistic", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "EXTERNAL validation" in res.stdout and "drift: x1: standardized mean difference +0.7" in res.stderr
    assert "warning: site_b.csv: 41 value(s) of 'cat' were not seen in training" in res.stderr
    result = json.loads((run / "external" / "site_b" / "metrics.json").read_text())
    internal = json.loads((run / "metrics.json").read_text())
    for m in ("logistic_regression", "mlp"):
        e = result["models"][m]
        assert e["threshold"] == internal["models"][m]["threshold"]  # never re-chosen on external data
        assert e["conformal"]["qhat"] == internal["models"][m]["conformal"]["qhat"]
        citl = e["calibration_fit"]["citl"]
        assert citl["high"] < 0  # predictions too high: a negative intercept, and its CI says so
        assert "sex" in e["subgroups"]
        rc = result["recalibration"]["models"][m]
        assert abs(rc["after"]["calibration_fit"]["citl"]["value"]) < abs(rc["before"]["calibration_fit"]["citl"]
                                                                          ["value"]) / 3
        auc_b, auc_a = (rc[k]["metrics"]["auroc"]["value"] for k in ("before", "after"))
        assert abs(auc_a - auc_b) < 1e-9  # a monotone map: discrimination unchanged
    assert any(f.startswith("cat:") for f in result["drift"]["flagged"])
    assert result["selected_model"] == internal["selected_model"]
    html = (run / "report.html").read_text()
    assert "<h2>External validation</h2>" in html and "Externally validated on site_b" in html
    preds = pd.read_parquet(run / "external" / "site_b" / "predictions.parquet")
    assert len(preds) == 800 and set(preds["split"]) == {"test"}

    res = run_cli("evaluate", run, "--data", "site_b.csv", "--recalibrate", "linear", cwd=tmp_path)
    assert res.returncode == 1 and "binary runs take 'logistic'" in res.stderr and "Traceback" not in res.stderr
    pd.read_csv(tmp_path / "site_b.csv").drop(columns=["y"]).to_csv(tmp_path / "nolabel.csv", index=False)
    res = run_cli("evaluate", run, "--data", "nolabel.csv", cwd=tmp_path)
    assert res.returncode == 1 and "label column 'y' is missing" in res.stderr


def test_event_drift_finds_a_shifted_lab_and_unseen_codes():
    import polars as pl

    from medflow.data.sources.meds import EventData
    from medflow.evaluate.external import event_drift
    from medflow.features.codes import EventFeaturizer
    from tests.conftest import make_events

    data, samples = make_events(300, seed=0)
    feat = EventFeaturizer(max_len=64).fit(data, samples)
    same = event_drift(feat.transform(data, samples), feat)
    assert same["flagged"] == [] and same["unknown_code_share"] == 0.0
    assert abs(same["columns"][0]["smd"]) < 0.1 and same["columns"][0]["column"] == "LAB//K"
    shifted = data.events.with_columns(
        pl.when(pl.col("code") == "LAB//K").then(pl.col("numeric_value") + 1.0).otherwise(pl.col("numeric_value"))
        .alias("numeric_value"),
        pl.when(pl.col("code") == "C").then(pl.lit("NEW_CODE")).otherwise(pl.col("code")).alias("code"))
    other = event_drift(feat.transform(EventData(events=shifted, source="site_b"), samples), feat)
    assert 0.7 < other["columns"][0]["smd"] < 1.3  # values one training sd higher
    assert other["unknown_code_share"] > 0.05
    assert any("never seen in training" in f for f in other["flagged"])
    assert any(f.startswith("LAB//K: standardized mean difference +") for f in other["flagged"])


def test_external_data_in_latin1_reads_with_encoding(tmp_path):
    frame = make_frame(200, seed=0)
    frame["cat"] = frame["cat"].map({"a": "a", "b": "b", "c": "é"})
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.csv", index=False, encoding="latin-1")
    (tmp_path / "s.yaml").write_text(
        "name: enc\ndata: {path: a.csv, patient_id: pid}\ntask: {kind: binary, label: y}\n"
        "models: [logistic_regression]\nevaluate: {n_bootstrap: 50}\n")
    assert run_cli("run", "s.yaml", cwd=tmp_path).returncode == 0
    run = next(p.parent for p in tmp_path.glob("runs/enc/*/manifest.json"))
    res = run_cli("evaluate", run, "--data", "b.csv", cwd=tmp_path)
    assert res.returncode == 1 and "--encoding latin-1" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("evaluate", run, "--data", "b.csv", "--encoding", "latin-1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    result = json.loads((run / "external" / "b" / "metrics.json").read_text())
    assert result["drift"]["flagged"] == []  # the same patients, decoded right: no unseen categories
