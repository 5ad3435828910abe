"""Clinical text through the whole flow on real IU chest X-ray reports: classification and finding extraction
with negation, from Python and YAML, the report, predictions on raw text with explanations, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import medflow as mf
from medflow.cli import app
from medflow.data.text import notes_dataset

FAST = {"max_epochs": 12, "patience": 4, "progress": False, "batch_size": 32}
FINDINGS = ["cardiomegaly", "pleural_effusion", "atelectasis", "pneumonia"]


@pytest.fixture(scope="module")
def iu_subset():
    """1,200 real reports: every one with an effusion or pneumonia, the rest at random (seed 0)."""
    f = mf.datasets.load("iu_reports").frame
    rng = np.random.default_rng(0)
    rare = np.flatnonzero((f["pleural_effusion"] == 1) | (f["pneumonia"] == 1))
    rest = rng.choice(np.setdiff1d(np.arange(len(f)), rare), 1200 - len(rare), replace=False)
    frame = f.iloc[np.sort(np.concatenate([rare, rest]))].reset_index(drop=True)
    return notes_dataset(frame, "text", "builtin:iu_reports", name="iu_subset")


@pytest.fixture(scope="module")
def text_run(iu_subset, tmp_path_factory):
    study = mf.Study(dataset=iu_subset, task=mf.tasks.Multilabel(labels=FINDINGS), seed=0,
                     output_dir=tmp_path_factory.mktemp("runs"),
                     model=["context_rules", "context_learned", {"name": "logistic_regression", "params": {"C": 4.0}},
                            {"name": "text_cnn", "params": {"d": 64, "filters": 32}}],
                     split={"kind": "holdout", "test": 0.3, "valid": 0.15}, train=FAST,
                     evaluate={"n_bootstrap": 200}, explain={"max_records": 60, "examples": 4})
    return study.fit()


def _f1(run, model):
    return run.metrics.data["models"][model]["metrics"]["f1_labels"]


def test_every_model_reads_the_reports(text_run):
    m = text_run.metrics.data["models"]
    for name in ("logistic_regression", "text_cnn", "context_learned"):
        auroc = m[name]["metrics"]["auroc_labels"]
        assert auroc["low"] <= auroc["value"] <= auroc["high"] and auroc["value"] > 0.9, name
    # negation matters: the learned assertion beats fixed rules on held-out reports
    assert _f1(text_run, "context_learned")["value"] > _f1(text_run, "context_rules")["value"]
    assert _f1(text_run, "context_learned")["value"] > 0.8


def test_predict_raw_text_with_explanations(text_run):
    notes = [{"text": "No pleural effusion or pneumothorax. Heart size is normal."},
             {"text": "Large right pleural effusion with adjacent atelectasis. Cardiomegaly."}]
    learned = text_run.predict(notes, model="context_learned", explain=True)
    assert learned.loc[0, "probability_pleural_effusion"] < 0.5 < learned.loc[1, "probability_pleural_effusion"]
    spans = learned.loc[0, "explanation"]
    assert {(s["label"], s["assertion"]) for s in spans} == {("pleural_effusion", "negated")}
    assert notes[0]["text"][spans[0]["start"]:spans[0]["end"]] == "pleural effusion"
    cnn = text_run.predict(notes, model="text_cnn", explain=True)
    tok = cnn.loc[1, "explanation"][0]
    assert notes[1]["text"][tok["start"]:tok["end"]] == tok["token"]
    assert cnn.loc[1, "explanation_method"] == "gradient_x_embedding"
    lr = text_run.predict(notes, model="logistic_regression", explain=True)
    assert lr.loc[0, "explanation_method"] == "coefficient_x_tfidf"
    assert lr.loc[1, "explanation"][0]["feature"].startswith("tfidf:")


def test_a_long_note_is_read_whole(text_run):
    """A finding after 2,000 words of filler still counts: windows are pooled, nothing is cut."""
    filler = "The osseous structures are intact. " * 400
    late = text_run.predict([{"text": filler + "Large left pleural effusion."}], model="text_cnn")
    short = text_run.predict([{"text": filler}], model="text_cnn")
    assert late.loc[0, "probability_pleural_effusion"] > short.loc[0, "probability_pleural_effusion"] + 0.2


def test_report_shows_mentions_and_words(text_run):
    html = (text_run.path / "report.html").read_text()
    assert "Finding mentions with their ConText status" in html or "Words shaded" in html
    expl = json.loads((text_run.path / "explanations.json").read_text())
    assert expl["context_learned"]["method"] == "context_mentions"
    assert "negated" in json.dumps(expl["context_learned"]["assertion_counts"])
    assert expl["text_cnn"]["method"] == "gradient_x_embedding" and expl["text_cnn"]["examples"]
    assert "each note is treated as its own patient" in html


def test_yaml_study_on_a_notes_file(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(120):
        y = int(rng.random() < 0.4)
        text = ("Patient reports chest pain." if y else rng.choice(["Denies chest pain.", "No chest pain today."]))
        rows.append({"pid": f"p{i // 2}", "note": f"Seen in clinic. {text} Follow up.", "chest_pain": y})
    pd.DataFrame(rows).to_csv(tmp_path / "notes.csv", index=False)
    cfg = {"name": "notes", "data": {"text": {"path": str(tmp_path / "notes.csv"), "text_column": "note",
                                              "patient_column": "pid"}},
           "task": {"kind": "binary", "label": "chest_pain"},
           "models": [{"name": "context_rules", "params": {"lexicon": "none",
                                                           "targets": {"chest_pain": ["chest pain"]}}}],
           "output_dir": str(tmp_path / "runs")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "study.yaml")])
    assert res.exit_code == 0, res.output
    run = mf.load_run(next((tmp_path / "runs" / "notes").iterdir()))
    assert run.metrics.data["models"]["context_rules"]["metrics"]["auroc"]["value"] == 1.0


def test_bad_notes_file_is_one_line(tmp_path):
    pd.DataFrame({"id": [1, 2], "text": ["fine", " "], "y": [0, 1]}).to_csv(tmp_path / "n.csv", index=False)
    cfg = {"name": "bad", "data": {"text": {"path": str(tmp_path / "n.csv")}}, "task": {"kind": "binary", "label": "y"},
           "models": ["logistic_regression"], "output_dir": str(tmp_path / "runs")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml")])
    assert res.exit_code == 1 and "n.csv: row 2 has an empty note" in str(res.exception)
    assert not (tmp_path / "runs" / "bad").exists() or not any((tmp_path / "runs" / "bad").iterdir())


def test_served_over_http_with_notes_checked(text_run, tmp_path):
    from fastapi.testclient import TestClient

    from medflow.serve import ServiceConfig, Store, create_app

    cfg = ServiceConfig(db=str(tmp_path / "svc.db"), rate_per_minute=0)
    key = Store(cfg.db).create_key("ward")
    auth = {"Authorization": f"Bearer {key}"}
    notes = [{"text": "No pleural effusion. Cardiomegaly."}, {"text": "Right lower lobe pneumonia."}]
    with TestClient(create_app([text_run.path], cfg)) as client:
        name = client.get("/models", headers=auth).json()[0]["name"]
        r = client.post(f"/models/{name}/predict", headers=auth, json={"records": notes, "explain": True})
        assert r.status_code == 200, r.text
        expected = text_run.predict(notes)
        got = r.json()["predictions"]
        assert [p["prediction"] for p in got] == expected["prediction"].tolist()
        r = client.post(f"/models/{name}/predict", headers=auth,
                        json={"records": [{"text": "   "}, {"note": "x"}]})
        assert r.status_code == 422
        fields = {p["field"] for p in r.json()["problems"]}
        assert "records[0].text" in fields and any(f.startswith("records[1]") for f in fields)


def test_cli_predict_keeps_note_ids(text_run, tmp_path):
    pd.DataFrame({"note_id": ["a", "b"], "text": ["No effusion.", "Large effusion."]}).to_csv(tmp_path / "n.csv",
                                                                                             index=False)
    res = CliRunner().invoke(app, ["predict", str(text_run.path), str(tmp_path / "n.csv"), "-o",
                                   str(tmp_path / "out.csv"), "--model", "context_learned", "--explain"])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["note_id"].tolist() == ["a", "b"] and "ignoring" not in res.output
    assert json.loads(out.loc[0, "explanation"])[0]["assertion"] == "negated"
