"""Span extraction as a study task from YAML: SYNTHETIC discharge summaries rendered from the EHR simulator's
patients, the span tagger trained and scored per note (strict / lenient, per label, assertion) with patient-
bootstrap CIs, the spans written beside the model, the report, predictions on raw text, and bad input."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

import medflow as mf
from medflow.data.simulate.ehr import CHRONIC, simulate_ehr
from medflow.data.simulate.ehr_notes import CONDITION_NAMES, notes_from_ehr
from medflow.data.text import notes_dataset
from medflow.errors import ConfigError, DataError
from medflow.nlp.drugs import BUILTIN_LEXICONS, load_lexicon
from medflow.nlp.tagger import span_scores
from medflow.tasks.spans import SpanExtraction, note_counts, vote


@pytest.fixture(scope="module")
def span_run(tmp_path_factory):
    """The YAML a researcher writes, run through `medflow.Study.from_yaml`."""
    d = tmp_path_factory.mktemp("spans")
    (d / "study.yaml").write_text(yaml.safe_dump({
        "name": "notes-spans", "output_dir": str(d / "runs"), "seed": 0,
        "data": {"dataset": "synthetic_notes"},
        "task": {"kind": "spans", "labels": ["PROBLEM", "DRUG", "DOSE", "ROUTE", "FREQUENCY"]},
        "models": ["span_tagger"], "evaluate": {"n_bootstrap": 200}}))
    return mf.Study.from_yaml(d / "study.yaml").fit()


def test_metrics_are_span_counts_with_cis(span_run):
    m = span_run.metrics.data["models"]["span_tagger"]["metrics"]
    for name in ("span_f1", "span_precision", "span_recall", "span_lenient_f1", "span_f1_DRUG", "assertion_accuracy",
                 "relation_accuracy"):
        assert m[name]["low"] <= m[name]["value"] <= m[name]["high"], name
    assert m["span_f1"]["value"] > 0.95 and m["assertion_accuracy"]["value"] > 0.9
    assert m["relation_accuracy"]["value"] > 0.95  # doses, routes, frequencies linked to their drug
    assert m["span_lenient_f1"]["value"] >= m["span_f1"]["value"]
    # the evaluator's ratio of per-note counts = the span scorer on the spans written beside the model
    out = span_run.path / "fold_0" / "span_tagger" / "test_outputs" / "spans.jsonl"
    pred = {r["note_id"]: r["spans"] for r in map(json.loads, out.read_text().splitlines())}
    ds = mf.datasets.load("synthetic_notes")
    labels = set(span_run.task.labels)
    gold = [[s for s in ds.text.spans[n] if s["label"] in labels] for n in pred]
    direct = span_scores(gold, list(pred.values()), n_boot=50)
    assert direct["strict"]["micro"]["f1"] == pytest.approx(m["span_f1"]["value"])
    assert direct["assertion_accuracy"]["value"] == pytest.approx(m["assertion_accuracy"]["value"])
    assert direct["relation_accuracy"]["value"] == pytest.approx(m["relation_accuracy"]["value"])
    drugs = [s for sp in pred.values() for s in sp if s["label"] == "DRUG"]
    lex = load_lexicon(BUILTIN_LEXICONS)  # every drug ChEMBL knows gets its id; insulin and heparin are not in it
    for s in drugs:
        hit = lex.find(s["text"])
        assert s["attributes"]["normalized_id"] == (hit[0]["id"] if hit else ""), s["text"]
    assert {s["text"] for s in drugs if not s["attributes"]["normalized_id"]} <= {"insulin glargine", "heparin"}
    test = span_run.predictions()
    assert len(pred) == (test[(test["split"] == "test")]["row"].nunique())
    html = (span_run.path / "report.html").read_text()
    assert "Strict match: same start" in html and "Predicted:" in html and "SYNTHETIC" in html
    assert "spans of &#x27;PROBLEM&#x27;" in html


def test_held_out_family_and_saved_tagger(span_run):
    """The run loads back and reads notes of the template family it never saw (other wording, section names,
    names and hospitals): lower than in-family, and still well above chance."""
    frame, spans = notes_from_ehr(patients=60, seed=3, families=("transfer",))
    pred = span_run.predict(frame[["note_id", "text"]])
    labels = set(span_run.task.labels)
    gold = [[s for s in spans[n] if s["label"] in labels] for n in frame["note_id"]]
    got = span_scores(gold, list(pred["spans"]), n_boot=50)
    assert got["strict"]["micro"]["f1"] > 0.8 and got["strict"]["PROBLEM"]["f1"] > 0.85
    assert got["assertion_accuracy"]["value"] > 0.75
    assert (pred["n_spans"] == pred["spans"].map(len)).all() and pred["synthetic"].all()
    expl = span_run.predict(frame[["text"]].head(2), explain=True)
    assert expl.loc[0, "explanation_method"] == "span_tagger"


def test_note_counts_and_vote():
    gold = [{"start": 0, "end": 5, "label": "DRUG"}, {"start": 10, "end": 20, "label": "PROBLEM",
                                                      "attributes": {"assertion": "negated"}}]
    pred = [{"start": 0, "end": 5, "label": "DRUG"}, {"start": 12, "end": 20, "label": "PROBLEM",
                                                      "attributes": {"assertion": "negated"}},
            {"start": 30, "end": 33, "label": "DOSE"}]
    task = SpanExtraction(labels=["PROBLEM", "DRUG"])
    row = dict(zip(task.case_columns(), note_counts(gold, pred, task.labels), strict=True))
    # the DOSE span is outside the task's labels: ignored
    assert [row[f"case_strict_all_{c}"] for c in ("tpg", "tpp", "gold", "pred")] == [1, 1, 2, 2]
    assert [row[f"case_lenient_all_{c}"] for c in ("tpg", "tpp", "gold", "pred")] == [2, 2, 2, 2]
    assert row["case_strict_PROBLEM_tpg"] == 0 and row["case_lenient_PROBLEM_tpg"] == 1
    assert row["case_assertion_n"] == 0  # assertion is scored on strictly matched spans only
    a, b, c = ({"start": 0, "end": 2, "label": "X"},), ({"start": 5, "end": 7, "label": "X"},), ()
    folds = [np.array([list(a + b)], dtype=object), np.array([list(a)], dtype=object),
             np.array([list(b + c)], dtype=object)]
    assert vote(folds)[0] == [a[0], b[0]]  # each in 2 of 3 folds
    assert vote(folds[:2])[0] == [a[0]]  # b in 1 of 2: not a majority


def test_notes_tell_the_ehr_story(tmp_path):
    """Labels come from the simulated events, and the text agrees with them span by span."""
    meds = simulate_ehr(tmp_path / "ehr", patients=40, seed=1)
    frame, spans = notes_from_ehr(meds)
    ev = pl.read_parquet(sorted(Path(meds).glob("data/**/*.parquet")))
    assert frame["subject_id"].nunique() == ev["subject_id"].n_unique()
    assert len(frame) == int((ev["code"] == "ENCOUNTER//INPATIENT//START").sum())
    codes = {k: c for k, (c, *_) in CHRONIC.items()}
    for rec in frame.to_dict("records"):
        has = set(ev.filter(pl.col("subject_id") == rec["subject_id"])["code"].to_list())
        for k in CHRONIC:  # a condition coded at the admission is a flag, and never ever coded if it is absent
            assert rec[k] == 0 or codes[k] in has
        text = rec["text"]
        for s in spans[rec["note_id"]]:
            assert text[s["start"]:s["end"]] and text[s["start"]:s["end"]] == text[s["start"]:s["end"]].strip()
            if s["label"] != "PROBLEM":
                continue
            name = text[s["start"]:s["end"]]
            cond = [k for k, v in CONDITION_NAMES.items() if v == name]
            if cond and s["attributes"]["assertion"] == "present":
                assert rec[cond[0]] == 1
            if cond and s["attributes"]["assertion"] in ("negated", "family"):
                assert rec[cond[0]] == 0
    assert {s["attributes"]["assertion"] for sp in spans.values() for s in sp if s["label"] == "PROBLEM"} >= {
        "present", "negated", "family", "historical", "possible"}


def test_bad_span_input(tmp_path):
    notes = notes_dataset(pd.DataFrame({"text": ["no spans here", "none here either"] * 10}), "text", "notes.csv")
    study = mf.Study(dataset=notes, task=SpanExtraction(), model=["span_tagger"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match="needs gold spans"):
        study.fit()
    frame, spans = notes_from_ehr(patients=20, seed=0)
    ds = notes_dataset(frame, "text", "ehr-notes", mf.data.TextSource(path="x", id_column="note_id",
                                                                      patient_column="patient_id"), spans=spans)
    study = mf.Study(dataset=ds, task=SpanExtraction(labels=["PROBLEM", "TUMOR_SIZE"]), model=["span_tagger"],
                     output_dir=tmp_path)
    with pytest.raises(DataError, match=r"\['TUMOR_SIZE'\] have no gold span"):
        study.fit()
    with pytest.raises(ConfigError, match="not among task.labels"):
        SpanExtraction(labels=["DRUG"]).check(frame, "x")
    with pytest.raises(ConfigError, match="span_tagger"):
        mf.Study(dataset=ds, task=mf.tasks.Binary(label="chf"), model=["span_tagger"], output_dir=tmp_path).fit()


def test_external_validation_on_the_held_out_family(span_run, tmp_path):
    """`medflow evaluate RUN --data notes.jsonl`: the core's external validation reads notes with gold spans and
    scores the run on them unchanged, with patient-bootstrap CIs; the same figure as scoring its predictions."""
    from typer.testing import CliRunner

    from medflow.cli import app

    frame, spans = notes_from_ehr(patients=60, seed=3, families=("transfer",))
    path = tmp_path / "transfer.jsonl"
    path.write_text("".join(json.dumps({"note_id": r["note_id"], "patient_id": r["patient_id"], "text": r["text"],
                                        "spans": spans[r["note_id"]]}) + "\n" for r in frame.to_dict("records")))
    res = CliRunner().invoke(app, ["evaluate", str(span_run.path), "--data", str(path)])
    assert res.exit_code == 0, res.output
    got = json.loads((span_run.path / "external" / "transfer" / "metrics.json").read_text())
    m = got["models"]["span_tagger"]["metrics"]["span_f1"]
    assert got["external"]["n_patients"] == 60 and m["low"] <= m["value"] <= m["high"]
    pred = span_run.predict(frame[["note_id", "text"]])
    labels = set(span_run.task.labels)
    gold = [[s for s in spans[n] if s["label"] in labels] for n in frame["note_id"]]
    assert m["value"] == pytest.approx(span_scores(gold, list(pred["spans"]), n_boot=50)["strict"]["micro"]["f1"])
