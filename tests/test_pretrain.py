"""Pretraining on unlabeled timelines (`medflow pretrain`) and studies that start from it: the run's contents,
exact resume after a kill, both objectives beating their history-free references, the three modes, the
vocabulary mapping, the overlap check, embeddings, and bad input as one-line errors. SYNTHETIC data throughout."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medflow.data.simulate.ehr import simulate_ehr
from tests.conftest import run_cli

PRE = "model: {d: 16, layers: 1, heads: 2}\ntrain: {max_epochs: 3, batch_size: 32, lr: 0.003, progress: false}\n"
FAST = ("train: {max_epochs: 3, patience: 2, batch_size: 64, progress: false}\nevaluate: {n_bootstrap: 50}\n"
        "explain: {max_records: 10, n_repeats: 1, examples: 1}\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A pretraining cohort (ids from 1,000,000) and a separate study cohort (ids from 0)."""
    tmp = tmp_path_factory.mktemp("pretrain")
    simulate_ehr(tmp / "pre", patients=500, seed=3, first_id=1_000_000)
    simulate_ehr(tmp / "cohort", patients=400, seed=4)
    return tmp


def _pretrain(tmp: Path, name: str, extra: str = "", meds: str = "pre") -> Path:
    (tmp / f"{name}.yaml").write_text(f"name: {name}\ndata: {{meds: {meds}}}\n{PRE}{extra}output_dir: runs\n")
    r = run_cli("pretrain", f"{name}.yaml", cwd=tmp)
    assert r.returncode == 0, r.stderr
    runs = sorted((tmp / "runs" / name).iterdir())
    return runs[-1]


@pytest.fixture(scope="module")
def next_code_run(data):
    return _pretrain(data, "clmbr")


def test_pretrained_run_contents_and_held_out_figures(data, next_code_run):
    run = next_code_run
    for part in ("pretrain.json", "featurizer.json", "model.safetensors", "subjects.parquet", "report.html",
                 "SYNTHETIC.txt", "history.parquet"):
        assert (run / part).is_file(), part
    assert not (run / "tokens").exists() and not run.name.endswith(".incomplete")
    meta = json.loads((run / "pretrain.json").read_text())
    held = meta["holdout"]
    # the network must have learned from order and context: far below the code-frequency reference
    assert held["perplexity"]["high"] < 0.75 * held["reference_perplexity"]
    assert held["perplexity"]["low"] <= held["perplexity"]["value"] <= held["perplexity"]["high"]
    assert 0.3 < held["next_code_accuracy"]["value"] <= held["next_code_top10"]["value"] <= 1
    subjects = pl.read_parquet(run / "subjects.parquet")
    assert subjects.height == 500 and subjects["subject_id"].min() >= 1_000_000
    assert set(subjects["split"]) == {"pretrain", "holdout"}
    assert meta["data"]["subjects"]["holdout"] == (subjects["split"] == "holdout").sum()
    assert meta["tokens_per_second"] > 0 and meta["synthetic"] is True
    html = (run / "report.html").read_text()
    assert "SYNTHETIC" in html and "perplexity" in html and "data:image/png;base64" in html


def test_motor_objective_beats_constant_hazards(data):
    run = _pretrain(data, "motor", "objective: motor\nmotor_codes: 16\nholdout: 0.2\n")
    meta = json.loads((run / "pretrain.json").read_text())
    assert meta["objective"] == "motor" and len(meta["task_codes"]) == 16
    assert meta["holdout"]["nll"]["value"] < 0.95 * meta["holdout"]["reference_nll"]
    assert meta["holdout"]["events"] > 1000


def test_resume_after_a_kill_gives_the_uninterrupted_weights(data, next_code_run, monkeypatch):
    from safetensors.torch import load_file

    import medflow as mf
    from medflow.train.callbacks import Checkpoint

    cfg = mf.pretrain.load_pretrain_config(data / "clmbr.yaml")
    cfg.output_dir, cfg.name = str(data / "runs"), "killed"
    original = Checkpoint.on_epoch_end

    def killed(self, trainer):
        original(self, trainer)
        raise KeyboardInterrupt  # a kill right after the first epoch's checkpoint

    monkeypatch.setattr(Checkpoint, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        mf.pretrain(cfg, progress=False)
    monkeypatch.setattr(Checkpoint, "on_epoch_end", original)
    work = next((data / "runs" / "killed").glob("*.incomplete"))
    assert (work / "checkpoints" / "last.pt").exists() and (work / "tokens" / "cache.json").exists()
    final = mf.pretrain(cfg, resume=work, progress=False)
    assert json.loads((final / "pretrain.json").read_text())["resumed_from"] == 0
    a, b = load_file(final / "model.safetensors"), load_file(next_code_run / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_study_starts_from_the_pretrained_run_in_three_modes(data, next_code_run):
    pt = next_code_run
    (data / "study.yaml").write_text(
        "name: fewshot\ndata: {meds: cohort, cohort: readmission_30d}\ntask: {kind: binary, label: readmission_30d}\n"
        f"models:\n  - {{name: timeline_transformer, init_from: {pt}, mode: finetune, label: ft}}\n"
        f"  - {{name: transformer, init_from: {pt}, mode: linear_probe, label: probe}}\n"
        f"  - {{name: timeline_transformer, init_from: {pt}, mode: frozen_features, label: frozen}}\n" + FAST)
    r = run_cli("run", "study.yaml", cwd=data)
    assert r.returncode == 0, r.stderr
    run = sorted((data / "runs" / "fewshot").iterdir())[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    t = metrics["transfer"]
    assert t["ft"]["freeze"] == "none" and t["probe"]["freeze"] == "backbone" and t["frozen"]["freeze"] == "features"
    assert t["probe"]["trainable_parameters"] == 16 + 1 + 1  # the linear head only: d + dt + bias
    assert t["frozen"]["logistic_regression"]["C_chosen_by"].endswith("cross-validation")
    for key in ("ft", "probe", "frozen"):
        assert t[key]["tensors_copied"] == t[key]["tensors_total"] - 2  # all but the new head
        assert t[key]["test_patients_in_pretraining"] == 0 and t[key]["study_code_share"] == 1.0
        auroc = metrics["models"][key]["metrics"]["auroc"]
        assert auroc["low"] <= auroc["value"] <= auroc["high"]
    model = json.loads((run / "fold_0" / "frozen" / "model.json").read_text())
    assert model["name"] == "timeline_transformer"
    html = (run / "report.html").read_text()
    assert "Starting weights" in html and str(pt) in html


def test_vocabulary_mapping_warns_when_the_pretraining_coded_differently(data, tmp_path):
    """Pretraining on records whose codes are mostly spelled otherwise: study codes map to <unknown>, the share is
    reported and a warning names it."""
    src = data / "pre"
    other = tmp_path / "other"
    for f in src.rglob("*"):
        dest = other / f.relative_to(src)
        if f.is_dir():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.suffix == ".parquet" and "data" in f.parts:
            ev = pl.read_parquet(f)
            ev = ev.with_columns(pl.when(pl.col("code").str.starts_with("LOINC") | pl.col("code").str.starts_with(
                "RXNORM") | pl.col("code").str.starts_with("ICD10")).then("LOCAL//" + pl.col("code").hash().cast(
                    pl.String)).otherwise(pl.col("code")).alias("code"))
            ev.write_parquet(dest)
        else:
            dest.write_bytes(f.read_bytes())
    (tmp_path / "cohort").symlink_to(data / "cohort")
    pt = _pretrain(tmp_path, "local", meds="other")
    (tmp_path / "study.yaml").write_text(
        "name: mapped\ndata: {meds: cohort, cohort: readmission_30d}\ntask: {kind: binary, label: readmission_30d}\n"
        f"models:\n  - {{name: timeline_transformer, init_from: {pt}, mode: frozen_features}}\n" + FAST)
    r = run_cli("run", "study.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "of the study's" in r.stderr
    run = sorted((tmp_path / "runs" / "mapped").iterdir())[-1]
    t = json.loads((run / "metrics.json").read_text())["transfer"]["timeline_transformer"]
    assert t["study_code_share"] < 0.5 and t["unknown_event_share"] > 0.5


def test_overlap_with_the_pretraining_is_refused_unless_allowed(data, next_code_run):
    pt = next_code_run
    base = ("data: {meds: pre, cohort: readmission_30d}\ntask: {kind: binary, label: readmission_30d}\n"
            f"models:\n  - {{name: timeline_transformer, init_from: {pt}, mode: frozen_features ALLOW}}\n" + FAST)
    (data / "overlap.yaml").write_text("name: overlap\n" + base.replace(" ALLOW", ""))
    r = run_cli("run", "overlap.yaml", cwd=data)
    assert r.returncode == 1 and "test patients were in the pretraining data" in r.stderr
    assert "allow_pretrain_overlap" in r.stderr and "Traceback" not in r.stderr
    (data / "overlap.yaml").write_text("name: overlap\n" + base.replace(" ALLOW", ", allow_pretrain_overlap: true"))
    r = run_cli("run", "overlap.yaml", cwd=data)
    assert r.returncode == 0, r.stderr
    run = sorted(p for p in (data / "runs" / "overlap").iterdir() if not p.name.endswith(".incomplete"))[-1]
    t = json.loads((run / "metrics.json").read_text())["transfer"]["timeline_transformer"]
    assert t["test_patients_in_pretraining"] == t["test_patients"] > 0


def test_embeddings_from_a_pretrained_run(data, next_code_run):
    r = run_cli("embed", next_code_run, "--meds", "cohort", "--out", "emb.parquet", cwd=data)
    assert r.returncode == 0, r.stderr
    emb = pl.read_parquet(data / "emb.parquet")
    assert emb.height == 400 and emb.width == 2 + 17 and emb["subject_id"].n_unique() == 400
    assert np.isfinite(emb.select(pl.col("^z_.*$")).to_numpy()).all()
    summary = json.loads((data / "emb.summary.json").read_text())
    assert summary["unknown_share"] == 0.0 and summary["synthetic"] is True
    r = run_cli("embed", next_code_run, cwd=data)
    assert r.returncode == 1 and "--meds" in r.stderr


@pytest.mark.parametrize("entry,message", [
    ("{name: gru, init_from: PT}", "use it with name: timeline_transformer"),
    ("{name: timeline_transformer, mode: finetune}", "applies to a pretrained run"),
    ("{name: timeline_transformer, init_from: PT, params: {d: 64}}", "contradicts the pretrained encoder"),
    ("{name: timeline_transformer, init_from: PT, freeze: backbone}", "mode: linear_probe instead of freeze"),
    ("{name: timeline_transformer, init_from: BROKEN}", "has no model.safetensors"),
])
def test_bad_pretrained_starts_are_one_line_errors(data, next_code_run, entry, message, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for part in ("pretrain.json", "featurizer.json", "subjects.parquet"):
        (broken / part).write_bytes((next_code_run / part).read_bytes())
    entry = entry.replace("PT", str(next_code_run)).replace("BROKEN", str(broken))
    (tmp_path / "cohort").symlink_to(data / "cohort")
    (tmp_path / "s.yaml").write_text("name: bad\ndata: {meds: cohort, cohort: readmission_30d}\n"
                                     f"task: {{kind: binary, label: readmission_30d}}\nmodels: [{entry}]\n")
    r = run_cli("run", "s.yaml", cwd=tmp_path)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_bad_pretraining_files_are_one_line_errors(tmp_path):
    (tmp_path / "a.yaml").write_text("data: {meds: nowhere}\nobjectiv: motor\n")
    r = run_cli("pretrain", "a.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "unknown key 'objectiv'" in r.stderr
    (tmp_path / "b.yaml").write_text("data: {meds: nowhere}\n")
    r = run_cli("pretrain", "b.yaml", cwd=tmp_path)
    assert r.returncode == 1 and "nowhere" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("pretrain", "b.yaml", "--resume", "runs/x", cwd=tmp_path)
    assert r.returncode == 1 and "no interrupted pretraining" in r.stderr


def test_pretrains_and_embeds_a_meds_folder_written_by_another_tool(tmp_path):
    """meds-testing-helpers' generator writes the MEDS folder (its own sharding, metadata and code spellings): the
    tokenization, pretraining and embeddings read it as they read medflow's."""
    import subprocess
    import sys

    out = tmp_path / "other"
    subprocess.run([sys.executable, "-c", "from meds_testing_helpers.dataset_generator import main; main()",
                    "N_subjects=200", f"output_dir={out}"], check=True, capture_output=True, cwd=tmp_path)
    (tmp_path / "p.yaml").write_text("name: other\ndata: {meds: other}\nsequence: {min_count: 1, max_len: 32}\n"
                                     + PRE + "holdout: 0.2\noutput_dir: runs\n")
    r = run_cli("pretrain", "p.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = sorted((tmp_path / "runs" / "other").iterdir())[-1]
    meta = json.loads((run / "pretrain.json").read_text())
    assert sum(meta["data"]["subjects"].values()) == 200 and meta["synthetic"] is False
    assert np.isfinite(meta["holdout"]["perplexity"]["value"]) and meta["holdout"]["predicted_codes"] > 0
    assert "SYNTHETIC" not in (run / "report.html").read_text()
    r = run_cli("embed", run, "--meds", "other", "--out", "emb.parquet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    emb = pl.read_parquet(tmp_path / "emb.parquet")
    assert emb["subject_id"].n_unique() == 200 and np.isfinite(emb.select(pl.col("^z_.*$")).to_numpy()).all()
