"""EHR studies end to end through the real CLI (the simulator in a subprocess, the rest through the console
script's entry point in this process): simulate, then MEDS, FHIR and event-table studies, predict on new event
data, external validation on another site, the report, and bad event input as one-line errors."""

import json
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from medflow.data.sources.meds import read_meds
from tests.conftest import run_cli
from tests.ehr.fhir_export import write_ndjson
from tests.test_cli import _complete_runs, medflow

FAST = ("train: {max_epochs: 4, patience: 2, batch_size: 64, progress: false}\n"
        "evaluate: {n_bootstrap: 50, subgroups: [sex]}\nexplain: {max_records: 40, n_repeats: 1, examples: 2}\n"
        "data_extra\n")


def _study(tmp: Path, data: str, task: str, models: str = "[gru, retain, logistic_regression]") -> Path:
    text = (f"name: ehr\ndata:\n{data}\ntask: {task}\nmodels: {models}\n"
            + FAST.replace("data_extra\n", ""))
    (tmp / "study.yaml").write_text(text)
    return tmp / "study.yaml"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ehr")
    r = medflow("simulate", "ehr", "--patients", 500, "--seed", 2, "--out", "cohort", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "SYNTHETIC" in r.stdout and "oracle AUROC" in r.stdout
    return tmp


@pytest.fixture(scope="module")
def meds_run(cohort):
    """One MEDS study (GRU, RETAIN, logistic regression) shared by the tests that read a finished run."""
    _study(cohort, "  meds: cohort\n  cohort: readmission_30d\n  sequence: {max_len: 96}",
           "{kind: binary, label: readmission_30d}")
    r = run_cli("run", "study.yaml", cwd=cohort)
    assert r.returncode == 0, r.stderr
    return _complete_runs(cohort)[0], r


def test_meds_study_end_to_end_with_predict(cohort, meds_run):
    run, r = meds_run
    assert "using the source's subject splits" in r.stderr and "SYNTHETIC" in r.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["models"]) == {"gru", "retain", "logistic_regression"}
    auroc = metrics["models"]["logistic_regression"]["metrics"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"] and auroc["value"] > 0.55
    expl = json.loads((run / "explanations.json").read_text())
    assert expl["retain"]["method"] == "retain_contributions"
    assert expl["gru"]["method"] == "integrated_gradients" and expl["gru"]["examples"][0]["events"]
    assert next(iter(expl["logistic_regression"]["permutation_importance"])).startswith(("count:", "mean:", "age"))
    html = (run / "report.html").read_text()
    assert "SYNTHETIC" in html and "Events behind example predictions of <b>retain" in html
    # test subjects are exactly the MEDS held_out split
    preds = pd.read_parquet(run / "predictions.parquet")
    splits = pl.read_parquet(cohort / "cohort" / "metadata" / "subject_splits.parquet").to_pandas()
    held = set(splits.loc[splits.split == "held_out", "subject_id"].astype(str))
    assert set(preds.loc[preds.split == "test", "patient_id"]) <= held
    r = run_cli("predict", run, "cohort", "-o", "p.csv", "--explain", cwd=cohort)
    assert r.returncode == 0, r.stderr
    p = pd.read_csv(cohort / "p.csv")
    assert {"subject_id", "prediction_time", "probability", "explanation"} <= set(p.columns)
    assert p["probability"].between(0, 1).all()
    # embeddings and anomaly scores of the same run (`medflow embed`)
    r = run_cli("embed", run, "--dim", 8, "--epochs", 3, "--top", 5, cwd=cohort)
    assert r.returncode == 0, r.stderr
    emb = pd.read_parquet(run / "embedding" / "embeddings.parquet")
    assert {"subject_id", "anomaly_score", "z_0", "z_7"} <= set(emb.columns) and emb["anomaly_score"].gt(0).all()
    html = (run / "embedding" / "anomalies.html").read_text()
    assert "SYNTHETIC" in html and html.count("<tr>") == 6


def test_fhir_study_end_to_end(cohort, tmp_path):
    write_ndjson(read_meds(cohort / "cohort").events, tmp_path / "export")
    _study(tmp_path, "  fhir: export\n  cohort: in_hospital_mortality\n  synthetic: true",
           "{kind: binary, label: in_hospital_mortality}", "[gru, logistic_regression]")
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = _complete_runs(tmp_path)[0]
    assert json.loads((run / "manifest.json").read_text())["synthetic"] is True
    assert (run / "report.html").exists()


def test_event_table_study_regression(cohort, tmp_path):
    ev = read_meds(cohort / "cohort").events
    ev.rename({"subject_id": "pid", "code": "item"}).write_parquet(tmp_path / "events.parquet")
    data = "  events: {path: events.parquet, subject_id: pid, code: item}\n  cohort: los\n  synthetic: true"
    _study(tmp_path, data + "\n  sequence: {max_len: 48}", "{kind: regression, label: los}",
           "[transformer, lstm, bag_of_codes_mlp, linear_regression]")
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((_complete_runs(tmp_path)[0] / "metrics.json").read_text())
    assert set(metrics["models"]) == {"transformer", "lstm", "bag_of_codes_mlp", "linear_regression"}


def test_meds_label_file_as_the_task(cohort, tmp_path):
    ev = read_meds(cohort / "cohort").events
    last = ev.filter(pl.col("code") == "ENCOUNTER//INPATIENT//END").group_by("subject_id").agg(
        pl.col("time").min().alias("prediction_time"))
    death = ev.filter(pl.col("code") == "MEDS_DEATH").select("subject_id").unique().with_columns(
        pl.lit(True).alias("died"))
    labels = last.join(death, on="subject_id", how="left").with_columns(
        pl.col("died").fill_null(False).alias("boolean_value")).drop("died")
    labels.write_parquet(tmp_path / "labels.parquet")
    _study(tmp_path, f"  meds: {cohort / 'cohort'}\n  labels: labels.parquet", "{kind: binary, label: label}",
           "[bag_of_codes_mlp, logistic_regression]")
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("data,message", [
    ("  meds: nowhere", "nowhere: no such MEDS folder"),
    ("  dataset: ehr_sim\n  cohort: readmision_30d", "unknown cohort 'readmision_30d'. Did you mean 'readmission_30d'"),
    ("  meds: bad", "bad/data/0.parquet: MEDS column 'code' is missing"),
])
def test_bad_event_input_is_one_line(tmp_path, data, message):
    (tmp_path / "bad" / "data").mkdir(parents=True)
    pl.DataFrame({"subject_id": [1], "time": [None], "numeric_value": [1.0]}).write_parquet(
        tmp_path / "bad" / "data" / "0.parquet")
    _study(tmp_path, data, "{kind: binary, label: readmission_30d}")
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not _complete_runs(tmp_path)


def test_sequence_model_on_a_table_is_refused(tmp_path):
    from medflow.data.builtin import frame_of

    frame_of("breast_cancer").to_csv(tmp_path / "bc.csv", index=False)
    _study(tmp_path, "  path: bc.csv\n  patient_id: patient_id", "{kind: binary, label: malignant}", "[gru]")
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    msg = " ".join(r.stderr.split())
    assert r.returncode == 1 and "model 'gru' reads events but" in msg and "give it event data (data.meds" in msg


def test_autoencoder_ranks_planted_anomalies_first():
    import numpy as np

    from medflow.features.codes import EventFeaturizer
    from medflow.models.autoencoder import AutoencoderConfig, embed_and_score, fit_autoencoder
    from tests.conftest import make_events

    data, samples = make_events(400, seed=4)
    odd = np.arange(390, 400)  # ten subjects get rare codes the others rarely or never have together
    rare = pl.DataFrame({"subject_id": np.repeat(odd, 4), "time": [None] * 40,
                         "code": ["R1", "R2", "R3", "R4"] * 10, "numeric_value": [None] * 40},
                        schema=data.events.schema)
    seen = pl.DataFrame({"subject_id": [0, 1, 2, 3], "time": [None] * 4, "code": ["R1", "R2", "R3", "R4"],
                         "numeric_value": [None] * 4}, schema=data.events.schema)
    data.events = pl.concat([data.events, rare, seen]).sort(["subject_id", "time"], nulls_last=False,
                                                            maintain_order=True)
    feat = EventFeaturizer().fit(data, samples[:300])
    x = feat.transform(data, samples)
    model = fit_autoencoder(x.subset(np.arange(300)), x.subset(np.arange(300, 350)),
                            AutoencoderConfig(dim=8, max_epochs=15), seed=0)
    _, score = embed_and_score(model, x)
    normal = score[350:390]
    assert score[odd].min() > np.quantile(normal, 0.9)


def test_external_validation_on_another_sites_meds(cohort, meds_run):
    r = run_cli("simulate", "ehr", "--patients", 300, "--seed", 9, "--out", "site_b", cwd=cohort)
    assert r.returncode == 0, r.stderr
    run = meds_run[0]
    r = run_cli("evaluate", run, "--data", "site_b", "--recalibrate", "logistic", cwd=cohort)
    assert r.returncode == 0, r.stderr
    result = json.loads((run / "external" / "site_b" / "metrics.json").read_text())
    assert result["external"]["synthetic"] and result["external"]["n_patients"] > 200
    for m in ("gru", "retain", "logistic_regression"):
        auc = result["models"][m]["metrics"]["auroc"]
        assert 0.5 < auc["value"] < 1 and auc["low"] <= auc["value"] <= auc["high"]
        assert "after" in result["recalibration"]["models"][m]
    drift = result["drift"]
    assert 0 <= drift["unknown_code_share"] < 0.05 and drift["columns"]  # the same simulator: labs barely move
    assert "External validation" in (run / "report.html").read_text()
