"""Hugging Face checkpoints on notes: masked-language pretraining from scratch (`medflow pretrain`, kind: text),
`hf_classifier` fine-tuned from a local folder or a pretrained run through a study, long notes in windows (never
truncated), explanations mapped to the note's characters, and bad checkpoints as one-line errors. Every checkpoint
is built here from real IU chest X-ray reports (a tokenizer trained by `tokenizers`, random weights): nothing is
downloaded, and none of them is a pretrained clinical model."""

import json
import shutil

import numpy as np
import pytest

from tests.conftest import run_cli, tiny_checkpoint


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    import medflow as mf

    tmp = tmp_path_factory.mktemp("notes")
    f = mf.datasets.load("iu_reports").frame
    rng = np.random.default_rng(0)
    pick = np.concatenate([rng.choice(np.flatnonzero(f["cardiomegaly"] == 1), 150, replace=False),
                           rng.choice(np.flatnonzero(f["cardiomegaly"] == 0), 250, replace=False)])
    study = f.iloc[pick][["text", "cardiomegaly"]].reset_index(drop=True)
    study["patient"] = [f"s{i}" for i in range(len(study))]
    study.to_csv(tmp / "labelled.csv", index=False)
    rest = f.drop(f.index[pick]).head(800)[["text"]].reset_index(drop=True)
    rest["patient"] = [f"u{i}" for i in range(len(rest))]
    rest.to_csv(tmp / "unlabelled.csv", index=False)
    return tmp


@pytest.fixture(scope="module")
def mlm_run(notes):
    (notes / "mlm.yaml").write_text(
        "name: mlm\nkind: text\ndata: {text: {path: unlabelled.csv, text_column: text, patient_column: patient}}\n"
        "model: {hidden: 32, layers: 2, heads: 2, vocab_size: 1500}\nmax_len: 64\nholdout: 0.1\n"
        "train: {max_epochs: 6, batch_size: 32, lr: 0.003, progress: false}\noutput_dir: runs\n")
    r = run_cli("pretrain", "mlm.yaml", cwd=notes)
    assert r.returncode == 0, r.stderr
    assert "hf_classifier" in r.stdout
    return sorted((notes / "runs" / "mlm").iterdir())[-1]


def test_masked_language_pretraining_from_scratch(mlm_run):
    meta = json.loads((mlm_run / "pretrain.json").read_text())
    assert meta["kind"] == "text" and meta["objective"] == "masked_lm"
    held = meta["holdout"]
    # better than the tokens' frequencies: the network reads the context around each masked token
    assert held["perplexity"]["value"] < 0.95 * held["reference_perplexity"]
    assert held["perplexity"]["low"] <= held["perplexity"]["value"] <= held["perplexity"]["high"]
    assert meta["data"]["held_out_notes"] > 40 and meta["data"]["pretraining_notes"] > 600
    for part in ("hf/config.json", "hf/model.safetensors", "hf/tokenizer.json", "subjects.parquet", "report.html"):
        assert (mlm_run / part).is_file(), part
    assert not (mlm_run / "scratch").exists() and not (mlm_run / "checkpoints").exists()
    assert "masked" in (mlm_run / "report.html").read_text()


def test_hf_classifier_study_from_the_pretrained_run_with_explanations(notes, mlm_run):
    (notes / "study.yaml").write_text(
        "name: cardio\ndata: {text: {path: labelled.csv, text_column: text, patient_column: patient}}\n"
        "task: {kind: binary, label: cardiomegaly}\n"
        f"models: [{{name: hf_classifier, params: {{checkpoint: {mlm_run}, max_len: 64, stride: 16}}}}]\n"
        "train: {max_epochs: 10, patience: 4, batch_size: 32, lr: 0.003, progress: false}\n"
        "evaluate: {n_bootstrap: 50}\nexplain: {max_records: 20, examples: 2}\n")
    r = run_cli("run", "study.yaml", cwd=notes)
    assert r.returncode == 0, r.stderr
    run_dir = sorted((notes / "runs" / "cardio").iterdir())[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    auroc = metrics["models"]["hf_classifier"]["metrics"]["auroc"]
    assert auroc["value"] > 0.7 and auroc["low"] <= auroc["value"] <= auroc["high"]
    assert (run_dir / "fold_0" / "hf_classifier" / "hf" / "tokenizer.json").is_file()  # loads without the source
    expl = json.loads((run_dir / "explanations.json").read_text())["hf_classifier"]
    token, start, end, _ = expl["examples"][0]["tokens"][0]
    import pandas as pd

    from medflow.runs import load_run

    frame = pd.read_csv(notes / "labelled.csv")
    run = load_run(run_dir)
    out = run.predict(frame.head(3), explain=True)
    assert out["probability"].between(0, 1).all()
    top = out["explanation"].iloc[0][0]
    assert frame["text"].iloc[0][top["start"]:top["end"]].lower() == top["token"].lower().removeprefix("##")


def test_long_notes_are_read_in_overlapping_windows_not_truncated():
    from pathlib import Path

    from medflow.models.hf import HFWindows, load_tokenizer

    tok = load_tokenizer(Path(tiny_checkpoint()))
    long = " ".join(["the lungs are clear."] * 60) + " mild cardiomegaly."
    x = HFWindows.tokenize([long, "no acute disease."], tok, max_len=32, stride=8)
    assert x.windows(0) > 5 and x.windows(1) == 1
    assert x.tokens(0)[-2][0] == "cardiomegaly" or any(t[0] == "cardiomegaly" for t in x.tokens(0)[-6:])
    b = x.batch(np.array([0, 1]))
    assert b["input_ids"].shape[0] == x.windows(0) + 1 and b["owner"].tolist().count(0) == x.windows(0)


def test_bad_checkpoints_are_one_line_errors(notes, tmp_path):
    from medflow.models.hf import small_bert

    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_checkpoint(), no_weights)
    for f in no_weights.glob("model.safetensors"):
        f.unlink()
    mismatched = tmp_path / "mismatched"  # a model whose embedding is smaller than its tokenizer
    shutil.copytree(tiny_checkpoint(), mismatched)
    other = small_bert(tmp_path / "other", ["completely different words here"] * 50 + ["x y z"], hidden=16,
                       layers=1, heads=1, vocab_size=120)
    shutil.copy(other / "config.json", mismatched / "config.json")
    shutil.copy(other / "model.safetensors", mismatched / "model.safetensors")
    shutil.copy(notes / "labelled.csv", tmp_path / "labelled.csv")
    for folder, message in ((tmp_path / "nowhere", "no such folder"), (empty, "no config.json"),
                            (no_weights, "the model does not load"), (mismatched, "do not belong together")):
        (tmp_path / "s.yaml").write_text(
            "name: bad\ndata: {text: {path: labelled.csv, text_column: text}}\ntask: {kind: binary, label: "
            f"cardiomegaly}}\nmodels: [{{name: hf_classifier, params: {{checkpoint: {folder}}}}}]\n"
            "train: {max_epochs: 1, progress: false}\n")
        r = run_cli("run", "s.yaml", cwd=tmp_path)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, (folder, r.stderr)
