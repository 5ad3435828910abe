"""The real CLI: a study from YAML on a CSV in a subprocess, the run directory, predict/evaluate/report, a run
killed and resumed, and every bad input the foundation issue lists (through the console script's entry point in
this process: the same one-line errors and exit codes, without a fresh interpreter's imports per case)."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_frame, run_cli

FAST_TRAIN = "train: {max_epochs: 15, patience: 5, progress: false}\nevaluate: {n_bootstrap: 100}\n"


def medflow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medflow", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _complete_runs(root: Path) -> list[Path]:
    return [p.parent for p in root.glob("runs/*/*/manifest.json") if not p.parent.name.endswith(".incomplete")]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One study run through the CLI on breast_cancer written out as a CSV."""
    from medflow.data.builtin import frame_of

    root = tmp_path_factory.mktemp("cli")
    frame_of("breast_cancer").to_csv(root / "bc.csv", index=False)
    (root / "study.yaml").write_text(
        "name: bc\ndata: {path: bc.csv, patient_id: patient_id}\ntask: {kind: binary, label: malignant}\n"
        "models: [mlp, logistic_regression]\n"
        "evaluate: {n_bootstrap: 200, subgroups: [{column: mean_radius, quantiles: 2}]}\n"
        "train: {max_epochs: 40, patience: 8, progress: false}\n")
    res = medflow("run", "study.yaml", cwd=root)
    assert res.returncode == 0, res.stderr
    return root, res


def test_run_end_to_end(finished):
    root, res = finished
    runs = _complete_runs(root)
    assert len(runs) == 1
    run = runs[0]
    assert f"Report: {run / 'report.html'}" in res.stdout.strip().splitlines()[-1]
    metrics = json.loads((run / "metrics.json").read_text())
    for model in ("mlp", "logistic_regression"):
        auroc = metrics["models"][model]["metrics"]["auroc"]
        assert auroc["value"] > 0.95 and auroc["low"] < auroc["value"] <= auroc["high"]
    html = (run / "report.html").read_text()
    for section in ("Intended use", "Model comparison", "Calibration", "Subgroups", "Explanations",
                    "Limitations", "Environment", "data:image/png;base64,"):
        assert section in html, section
    assert "SYNTHETIC" not in html
    assert "AUROC" in res.stdout and "(" in res.stdout


def test_predict_evaluate_report(finished):
    root, _ = finished
    run = _complete_runs(root)[0]
    new = pd.read_csv(root / "bc.csv").head(20).drop(columns=["malignant"]).assign(note="x")
    new.to_csv(root / "new.csv", index=False)
    res = medflow("predict", run, "new.csv", "-o", "out.csv", "--explain", cwd=root)
    assert res.returncode == 0, res.stderr
    assert "ignoring column(s) not used by the model: ['note']" in res.stderr
    out = pd.read_csv(root / "out.csv")
    assert len(out) == 20 and out["probability"].between(0, 1).all() and "explanation" in out
    new.drop(columns=["mean_radius"]).to_csv(root / "bad.csv", index=False)
    res = run_cli("predict", run, "bad.csv", cwd=root)
    assert res.returncode == 1 and "missing feature column(s) ['mean_radius']" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("evaluate", run, "--n-bootstrap", "100", "--sensitivity", "0.95", cwd=root)
    assert res.returncode == 0 and "Sensitivity" in res.stdout
    res = run_cli("report", run, "-o", "card.html", cwd=root)
    assert res.returncode == 0 and (root / "card.html").stat().st_size > 10_000


def test_listings(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a narrow, piped terminal: names a user types are never cut
    res = medflow("datasets", cwd=tmp_path)
    assert "breast_cancer_genomic " in res.stdout and "diabetes" in res.stdout and "…" not in res.stdout
    res = medflow("models", cwd=tmp_path)
    for name in ("mlp", "resnet_mlp", "logistic_regression", "gradient_boosting", "random_survival_forest"):
        assert f" {name} " in res.stdout
    res = run_cli("models", "--json", cwd=tmp_path)
    rows = json.loads(res.stdout)
    assert {"random_survival_forest", "retain"} <= {r["name"] for r in rows}
    assert {r["name"]: r["complexity"] for r in rows}["logistic_regression"] == "1"
    listed = json.loads(run_cli("datasets", "--json", cwd=tmp_path).stdout)
    assert {"breast_cancer_genomic", "freesolv", "solubility"} <= {r["name"] for r in listed}


def _bad(tmp_path: Path, yaml: str, files: dict | None = None) -> subprocess.CompletedProcess:
    for name, content in (files or {}).items():
        if isinstance(content, pd.DataFrame):
            content.to_csv(tmp_path / name, index=False)
        elif isinstance(content, bytes):
            (tmp_path / name).write_bytes(content)
        else:
            (tmp_path / name).write_text(content)
    (tmp_path / "s.yaml").write_text(yaml + FAST_TRAIN)
    res = run_cli("run", "s.yaml", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert _complete_runs(tmp_path) == []
    return res


TASK = "task: {kind: binary, label: y}\n"
CSV = "data: {path: d.csv, patient_id: pid}\n"


@pytest.mark.parametrize("case,yaml,files,message", [
    ("missing label", CSV + "task: {kind: binary, label: outcome}\n", {"d.csv": make_frame(60)},
     "d.csv: label column 'outcome' is missing"),
    ("three classes", CSV + TASK, {"d.csv": make_frame(60).assign(y=[0, 1, 2] * 20)},
     "label 'y' has 3 distinct values [0, 1, 2], but the task is binary"),
    ("one class", CSV + TASK, {"d.csv": make_frame(60).assign(y=1)}, "label 'y' is 1 in every record"),
    ("text in numeric", CSV + TASK,
     {"d.csv": make_frame(60).assign(x1=["1.5"] * 30 + ["high"] + ["2.5"] * 29)},
     "column 'x1' is numeric but row 31 holds 'high'"),
    ("empty file", CSV + TASK, {"d.csv": ""}, "d.csv: the file is empty"),
    ("not csv", "data: {path: d.xlsx}\n" + TASK, {"d.xlsx": b"PK\x03\x04"}, "unsupported file type '.xlsx'"),
    ("unknown model", CSV + TASK + "models: [mlp, xgboostt]\n", {"d.csv": make_frame(60)},
     "unknown model 'xgboostt'"),
    ("unknown dataset", "data: {dataset: breast_cancr}\n" + TASK, {},
     "unknown dataset 'breast_cancr'. Did you mean 'breast_cancer'? Known datasets: acic16_1, acic16_10, acic16_2, "
     "acic16_3, acic16_4, acic16_5, acic16_6, acic16_7, acic16_8, acic16_9, bmt, breast_cancer, "
     "breast_cancer_genomic, cgvhd, diabetes, dti_sim, ehr_sim, flchain, freesolv, gbsg2, iu_reports, mni_gm_wm, "
     "multimodal_sim, nhefs, padchest_reports, phantoms_2d, "
     "phantoms_3d, solubility, synthetic_notes, te_sim, veterans"),
    ("misspelled key", CSV + TASK + "spilt: {test: 0.3}\n", {"d.csv": make_frame(60)},
     "unknown key 'spilt'. Did you mean 'split'?"),
])
def test_bad_input(tmp_path, case, yaml, files, message):
    res = _bad(tmp_path, yaml, files)
    assert message in " ".join(res.stderr.split()), res.stderr


def test_demo_fast(tmp_path):
    res = run_cli("demo", "--fast", "--output-dir", "out", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("Report: ") and Path(last[len("Report: "):]).exists()
    assert "demo-breast_cancer" in last and "demo-diabetes" in res.stdout and "R²" in res.stdout
    assert "demo-phantoms-imaging" in res.stdout and "demo-nhefs-treatment-effect" in res.stdout
    assert "demo-freesolv-molecules" in res.stdout and "demo-iu-reports-text" in res.stdout
    assert "demo-synthetic-notes-spans" in res.stdout
    assert "demo-freesolv-generator: 200 GENERATED molecules" in res.stdout + res.stderr
    # the service section: a REST prediction, a CDS Hooks card, an audit row each, an ONNX export checked
    assert "REST: P(malignant)" in res.stderr and "CDS Hooks card" in res.stderr, res.stderr
    assert "audit trail: 2 row(s)" in res.stderr and "max difference" in res.stderr


def test_survival_study_end_to_end(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "name: vet\ndata: {dataset: veterans}\n"
        "task: {kind: survival, time: time, event: event, horizons: [30, 90, 180]}\n"
        "models: [deepsurv, cox_ph, kaplan_meier]\n"
        "train: {max_epochs: 30, patience: 8, progress: false}\nevaluate: {n_bootstrap: 100}\n")
    res = run_cli("run", "s.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = _complete_runs(tmp_path)[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["models"]["cox_ph"]["metrics"]["c_harrell"]["value"] > 0.65
    assert metrics["models"]["kaplan_meier"]["metrics"]["c_harrell"]["value"] == 0.5
    html = (run / "report.html").read_text()
    for text in ("C-index (Harrell)", "Kaplan-Meier by predicted risk", "hazard ratio", "AUC at 90"):
        assert text in html, text
    from medflow.data.builtin import frame_of

    frame_of("veterans").head(5).to_csv(tmp_path / "new.csv", index=False)
    res = run_cli("predict", run, "new.csv", "-o", "p.csv", "--horizons", "30,365", "--model", "cox_ph", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "p.csv")
    assert (out["survival_at_30"] >= out["survival_at_365"]).all() and out["risk"].notna().all()


SURV = "data: {path: d.csv, patient_id: pid}\ntask: {kind: survival, time: time, event: event}\nmodels: [cox_ph]\n"


@pytest.mark.parametrize("case,change,message", [
    ("negative time", {"time": -5.0}, "time column 'time' is negative (-5.0) at row 4"),
    ("event not 0/1", {"event": 2}, "event column 'event' holds 2 at row 4; expected 1/0"),
    ("time text", {"time": "later"}, "column 'time' is numeric but row 4 holds 'later'"),
    ("all censored", None, "every record is censored"),
])
def test_bad_survival_input(tmp_path, case, change, message):
    frame = make_frame(80, kind="survival")
    if change is None:
        frame["event"] = 0
    else:
        frame[list(change)[0]] = frame[list(change)[0]].astype(object)
        frame.loc[3, list(change)[0]] = list(change.values())[0]
    res = _bad(tmp_path, SURV, {"d.csv": frame})
    assert message in " ".join(res.stderr.split()), res.stderr


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    """Kill `medflow run` (SIGKILL) mid-training, resume it, and get the weights of an uninterrupted run."""
    import os
    import signal
    import time

    from medflow.data.builtin import frame_of

    yaml = ("name: k\ndata: {path: bc.csv, patient_id: patient_id}\ntask: {kind: binary, label: malignant}\n"
            "models: [mlp]\ntrain: {max_epochs: 200, patience: 1000, progress: false}\n"
            "evaluate: {n_bootstrap: 50}\n")
    dirs = {}
    for name in ("reference", "killed"):
        d = tmp_path / name
        d.mkdir()
        frame_of("breast_cancer").to_csv(d / "bc.csv", index=False)
        (d / "s.yaml").write_text(yaml)
        dirs[name] = d
    assert run_cli("run", "s.yaml", cwd=dirs["reference"]).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "medflow", "run", "s.yaml"], cwd=dirs["killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(dirs["killed"].glob("runs/k/*.incomplete/checkpoints/fold_0/mlp/last.pt")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)  # let it train some more epochs past the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    work = next(dirs["killed"].glob("runs/k/*.incomplete"))
    assert not (work / "manifest.json").exists()
    res = run_cli("run", "s.yaml", "--resume", work, cwd=dirs["killed"])
    assert res.returncode == 0, res.stderr
    weights = [next(d.glob("runs/k/*/fold_0/mlp/model.safetensors")).read_bytes() for d in dirs.values()]
    assert weights[0] == weights[1]
    meta = [json.loads(next(d.glob("runs/k/*/fold_0/mlp/model.json")).read_text()) for d in dirs.values()]
    assert meta[0]["resumed_from"] is None and 0 <= meta[1]["resumed_from"] < 199  # really resumed mid-way
    assert meta[0]["history"] == meta[1]["history"]
