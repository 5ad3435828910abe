"""Notes readers: CSV / JSONL / BRAT, every bad input a DataError naming the file and row or line."""

import json

import numpy as np
import pandas as pd
import pytest

import medflow as mf
from medflow.data.text import TextSource, read_notes
from medflow.errors import DataError


def _csv(tmp_path, rows, name="notes.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_csv_notes_with_patients_and_ids(tmp_path):
    path = _csv(tmp_path, {"pid": ["p1", "p1", "p2"], "nid": ["a", "b", "c"],
                           "note": ["No effusion.", "Mild cardiomegaly.", "Clear lungs."], "y": [0, 1, 0]})
    ds = read_notes(TextSource(path=str(path), text_column="note", id_column="nid", patient_column="pid"))
    assert ds.modality == "text" and ds.patient_id == "pid" and ds.n_patients == 2
    assert ds.frame["note_id"].tolist() == ["a", "b", "c"]
    assert ds.id_columns == ["pid", "note_id"]
    assert "patient_column" not in ds.summary()


def test_without_patient_column_each_note_is_its_own_patient(tmp_path):
    ds = read_notes(str(_csv(tmp_path, {"text": ["one", "two"]})))
    assert ds.patient_id == "note_id" and ds.summary()["patient_column"].startswith("none")


@pytest.mark.parametrize("policy", ["fail", "drop"])
def test_empty_note(tmp_path, policy):
    path = _csv(tmp_path, {"id": [1, 2, 3], "text": ["fine", "  ", "also fine"]})
    if policy == "fail":
        with pytest.raises(DataError, match=r"notes\.csv: row 2 has an empty note in 'text'.*on_empty: drop"):
            read_notes(TextSource(path=str(path)))
    else:
        ds = read_notes(TextSource(path=str(path), on_empty="drop"))
        assert len(ds) == 2 and ds.text.dropped == [{"row": 2, "reason": "empty note"}]
        assert ds.summary()["empty_notes_dropped"] == 1


def test_note_over_the_size_limit_names_its_row(tmp_path):
    path = _csv(tmp_path, {"text": ["short", "x " * 1_000_001]})
    with pytest.raises(DataError, match=r"row 2 is a note of 2,000,002 characters, over data\.text\.max_chars"):
        read_notes(str(path))


def test_non_utf8_csv(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_bytes(b"text\nok\ncaf\xe9 au lait\n")
    with pytest.raises(DataError, match=r"notes\.csv"):
        read_notes(str(path))


def test_missing_text_column(tmp_path):
    with pytest.raises(DataError, match=r"no text column .*Set data\.text\.text_column"):
        read_notes(str(_csv(tmp_path, {"body": ["x"]})))


def _jsonl(tmp_path, records, name="notes.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_jsonl_spans(tmp_path):
    text = "Denies chest pain. Mild cardiomegaly."
    ds = read_notes(str(_jsonl(tmp_path, [{"note_id": "n1", "text": text, "y": 1, "spans": [
        {"start": 7, "end": 17, "label": "problem", "attributes": {"negated": True}},
        {"start": 24, "end": 36, "label": "problem", "text": "cardiomegaly"}]}])))
    assert ds.frame["note_id"].tolist() == ["n1"] and "y" in ds.frame.columns
    spans = ds.text.spans["n1"]
    assert [text[s["start"]:s["end"]] for s in spans] == ["chest pain", "cardiomegaly"]
    assert spans[0]["attributes"] == {"negated": True}


@pytest.mark.parametrize("span,message", [
    ({"start": 5, "end": 99, "label": "x"}, r"line 1: span 1 \(x\) runs 5\.\.99, outside the note's 10 characters"),
    ({"start": 4, "end": 2, "label": "x"}, r"runs 4\.\.2"),
    ({"start": 0, "end": 4, "label": "x", "text": "nope"}, r"says 'nope' but the note holds 'abcd'"),
    ({"start": 0, "label": "x"}, r"needs start, end and label"),
])
def test_jsonl_bad_spans(tmp_path, span, message):
    with pytest.raises(DataError, match=message):
        read_notes(str(_jsonl(tmp_path, [{"text": "abcdefghij", "spans": [span]}])))


def test_crossing_spans_are_refused_nested_ones_kept(tmp_path):
    ok = [{"start": 0, "end": 6, "label": "a"}, {"start": 2, "end": 4, "label": "b"}]
    assert len(read_notes(str(_jsonl(tmp_path, [{"text": "abcdefghij", "spans": ok}]))).text.spans["note-1"]) == 2
    bad = [{"start": 0, "end": 6, "label": "a"}, {"start": 4, "end": 8, "label": "b"}]
    with pytest.raises(DataError, match=r"spans a 0\.\.6 and b 4\.\.8 cross"):
        read_notes(str(_jsonl(tmp_path, [{"text": "abcdefghij", "spans": bad}], "bad.jsonl")))


def test_jsonl_bad_lines(tmp_path):
    path = tmp_path / "n.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"n\.jsonl: line 2 is not UTF-8"):
        read_notes(str(path))
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DataError, match=r"n\.jsonl: line 2 is not JSON"):
        read_notes(str(path))
    path.write_text('{"body": "ok"}\n')
    with pytest.raises(DataError, match=r'line 1 needs a "text" string'):
        read_notes(str(path))


def test_brat_folder(tmp_path):
    (tmp_path / "r1.txt").write_text("No pleural effusion. Heart enlarged.")
    (tmp_path / "r1.ann").write_text("T1\tFinding 3 19\tpleural effusion\nT2\tFinding 27 35\tenlarged\n"
                                     "A1\tNegation T1\nR1\tRel Arg1:T1 Arg2:T2\n")
    (tmp_path / "r2.txt").write_text("Clear.")
    ds = read_notes(str(tmp_path))
    assert ds.frame["note_id"].tolist() == ["r1", "r2"]
    spans = ds.text.spans["r1"]
    assert spans[0]["attributes"] == {"Negation": "true"} and ds.text.spans["r2"] == []


def test_brat_ann_without_txt(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.ann").write_text("T1\tX 0 1\tx\n")
    with pytest.raises(DataError, match=r"b\.ann: no b\.txt beside it"):
        read_notes(str(tmp_path))


def test_brat_offsets_outside_the_text(tmp_path):
    (tmp_path / "a.txt").write_text("short")
    (tmp_path / "a.ann").write_text("T1\tX 2 40\tx\n")
    with pytest.raises(DataError, match=r"a\.ann: line 1: span 1 \(X\) runs 2\.\.40, outside"):
        read_notes(str(tmp_path))


def test_iu_reports_are_the_anchor_reports():
    ds = mf.datasets.load("iu_reports")
    f = ds.frame
    assert len(f) == 3927 and f["note_id"].is_unique and ds.modality == "text"
    # the anchor's label counts (../shared/anchors/text/README.md)
    assert {c: int(f[c].sum()) for c in ("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule", "edema",
                                          "pneumonia")} == {"cardiomegaly": 375, "pleural_effusion": 161,
                                                            "pneumothorax": 23, "nodule": 111, "edema": 46,
                                                            "pneumonia": 42}
    assert f["text"].str.len().min() > 0 and np.isin(f["normal"].unique(), [0, 1]).all()


def test_missing_wheel_says_how_to_get_it(monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("MEDFLOW_WHEELS", str(tmp_path))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(DataError, match=r"torchxrayvision wheel .*pip download --no-deps torchxrayvision"):
        mf.datasets.load("iu_reports")


def test_padchest_one_row_per_report_split_by_patient():
    ds = mf.datasets.load("padchest_reports")
    f = ds.frame
    assert len(f) == 107_689 and f["note_id"].is_unique and ds.patient_id == "patient_id"
    assert ds.n_patients == 66_842 and len(ds.text.dropped) == 94  # no text, or an unreadable label list
    assert set(f["labelled_by"]) == {"Physician", "RNN_model"}
    assert int(f["pleural_effusion"].sum()) == 6747 and f["text"].str.strip().str.len().min() > 0
