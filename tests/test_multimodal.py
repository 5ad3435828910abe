"""Multimodal datasets: joining by patient and time, the leakage guard per modality, missing modalities, bad input,
the fusion models' masking, and a study from YAML files through the report and predict."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from medflow.data.builtin_multimodal import simulated_multimodal
from medflow.data.dataset import Dataset, FeatureType
from medflow.data.multimodal import SAMPLE, join_modalities
from medflow.errors import ConfigError, DataError
from medflow.features import featurize, make_featurizer


@pytest.fixture(scope="module")
def sim():
    return simulated_multimodal(160, seed=1, image_size=16)


@pytest.fixture(scope="module")
def inputs(sim):
    return featurize(make_featurizer(sim, [], sim.frame), sim, sim.frame)


def _table(frame, name="t", pid="pid"):
    types = {c: FeatureType.NUMERIC for c in frame.columns if c not in (pid, "time")}
    return Dataset(frame=frame, name=name, patient_id=pid, feature_types=types, source=f"{name}.csv")


def _samples():
    frame = pd.DataFrame({"pid": ["a", "a", "b", "c"], "label": [0, 1, 1, 0],
                          "prediction_time": pd.to_datetime(["2024-01-10", "2024-03-01", "2024-01-10",
                                                             "2024-01-10"])})
    return Dataset(frame=frame, name="s", patient_id="pid", feature_types={"label": FeatureType.BINARY},
                   source="samples.csv")


def test_each_sample_reads_its_latest_item_at_or_before_its_time():
    labs = pd.DataFrame({"pid": ["a", "a", "a", "b", "b"], "crp": [1.0, 2.0, 3.0, 10.0, 99.0],
                         "time": ["2024-01-01", "2024-02-01", "2024-04-01", "2024-01-10", "2024-01-11"]})
    ds = join_modalities(_samples(), {"labs": (_table(labs), "time", "latest")})
    m = ds.modalities.parts["labs"]
    got = [None if r < 0 else m.data.frame["crp"].iloc[r] for r in m.rows]
    # a@Jan 10 reads Jan 1; a@Mar 1 reads Feb 1 (not Apr 1); b reads the row at exactly its time; c has none
    assert got == [1.0, 2.0, 10.0, None]
    assert m.after == 2 and ds.modalities.coverage()["labs"]["present"] == 3
    assert ds.modality == "multimodal" and list(ds.frame[SAMPLE]) == [0, 1, 2, 3]


def test_planted_future_items_never_enter_any_modality(sim):
    oracle = sim.meta["oracle"]  # the Bayes rule given the latents, and given what the data reveal of them
    assert 0.5 < oracle["observed"]["present_modalities"] < oracle["all_latents"]
    assert oracle["observed"]["events_only"] < oracle["observed"]["present_modalities"]
    parts = sim.modalities.parts
    notes = parts["notes"].data.frame["text"]
    assert not notes.str.contains("Readmitted|doing well").any()  # every patient has such a note after the time
    assert parts["notes"].after > 0 and parts["images"].after > 0 and parts["labs"].after > 0
    assert not parts["images"].data.frame["image"].str.endswith("-later").any()
    assert parts["labs"].data.frame["creatinine"].max() < 2.5  # the planted panels read 3.0 for every outcome
    # and the events after the prediction time stay out of the event windows (the event featurizer's cut)
    feat = make_featurizer(sim, [], sim.frame)
    x = featurize(feat, sim, sim.frame)
    ev = x.parts["events"]
    assert (ev.times[np.concatenate([np.arange(s, e) for s, e in zip(ev.timed_start, ev.end, strict=True)])]
            <= np.repeat(ev.pred_time, ev.end - ev.timed_start)).all()


def test_notes_are_the_last_ones_before_the_time_oldest_first():
    notes = pd.DataFrame({"pid": ["a"] * 3, "text": ["first", "second", "later"],
                          "time": ["2024-01-01", "2024-01-05", "2024-05-01"]})
    from medflow.data.text import TextSource, notes_dataset

    nd = notes_dataset(notes, "text", "notes.csv", TextSource(path="notes.csv", patient_column="pid"))
    ds = join_modalities(_samples(), {"notes": (nd, "time", "notes")}, max_notes=5)
    part = ds.modalities.parts["notes"]
    assert part.data.frame["text"].iloc[part.rows[0]] == "first\n\nsecond"
    assert part.data.frame["text"].iloc[part.rows[1]] == "first\n\nsecond"  # May's note is after March
    assert (part.rows[2:] == -1).all()


def test_bad_inputs_name_the_source_and_the_fix():
    s = _samples()
    with pytest.raises(DataError, match=r"labs.csv: none of its 1 patient ids matches the samples' 3"):
        join_modalities(s, {"labs": (_table(pd.DataFrame({"pid": ["zz"], "v": [1.0], "time": ["2024-01-01"]}),
                                            "labs"), "time", "latest")})
    with pytest.raises(DataError, match=r"needs a time column.*static: true"):
        join_modalities(s, {"labs": (_table(pd.DataFrame({"pid": ["a"], "v": [1.0]}), "labs"), None, "latest")})
    with pytest.raises(DataError, match=r"row 2 has no readable time in column 'time'"):
        join_modalities(s, {"labs": (_table(pd.DataFrame({"pid": ["a", "b"], "v": [1.0, 2.0],
                                                          "time": ["2024-01-01", "soon"]}), "labs"), "time", "latest")})
    with pytest.raises(DataError, match=r"patient 'a' has several rows"):
        join_modalities(s, {"g": (_table(pd.DataFrame({"pid": ["a", "a"], "v": [1.0, 2.0]}), "g"), None, "static")})
    with pytest.raises(DataError, match=r"column 'label' of modality 'labs' disagrees .* 2 sample"):
        join_modalities(s, {"labs": (_table(pd.DataFrame({"pid": ["a", "b"], "label": [0, 0], "v": [1.0, 2.0],
                                                          "time": ["2024-01-01", "2024-01-01"]}), "labs"),
                                     "time", "latest")})


def test_a_modality_almost_nobody_has_is_warned_with_its_share():
    frame = pd.DataFrame({"pid": [str(i) for i in range(40)], "label": [i % 2 for i in range(40)]})
    s = Dataset(frame=frame, name="s", patient_id="pid", feature_types={"label": FeatureType.BINARY}, source="s.csv")
    with pytest.warns(UserWarning, match=r"modality 'g' is present for only 1 of 40 samples \(2.5%\)"):
        join_modalities(s, {"g": (_table(pd.DataFrame({"pid": ["3"], "v": [1.0]}), "g"), None, "static")})


def test_inputs_batch_matrix_and_removal(inputs):
    x = inputs[:50]
    b = x.batch(np.arange(10))
    present = x.present()[:10]
    assert b["present"].shape == (10, 5) and torch.equal(b["present"], torch.from_numpy(present))
    for j, k in enumerate(x.names):  # each modality's batch holds exactly the samples that have it
        n = int(present[:, j].sum())
        got = b[k]
        if n == 0:
            assert got is None
        else:
            assert (len(got["codes"] if k == "events" else got["ids"] if k == "notes" else got)) >= n
    m = x.to_matrix()
    names = x.matrix_names()
    assert m.shape == (50, len(names)) and "images:present" in names
    assert np.array_equal(m[:, names.index("images:present")], (x.index["images"] >= 0).astype(np.float32))
    gone = x.without(["images"])
    assert (gone.index["images"] == -1).all() and (gone.to_matrix()[:, names.index("images:present")] == 0).all()


@pytest.mark.parametrize("name", ["fusion_late", "fusion_masked", "fusion_attention"])
def test_fusion_masks_missing_modalities(sim, inputs, name):
    from medflow.models import build_estimator
    from medflow.tasks import Binary

    x = inputs
    est = build_estimator(name, {"d": 8}, Binary(label="outcome").fit(sim.frame))
    est.layout = x.input_layout()
    net = est.build_module(len(x.names)).eval()
    b = x.batch(np.arange(20))
    out = net(b)
    assert out.shape == (20, 1) and torch.isfinite(out).all()
    # what a missing modality's encoder would have said does not matter: only present modalities count
    k = "images"
    j = x.names.index(k)
    absent = ~b["present"][:, j]
    assert absent.any()
    img = b[k]
    b2 = dict(b, **{k: img + 5.0})  # change every present image: only samples with an image may change
    out2 = net(b2)
    assert torch.allclose(out[absent], out2[absent]) and not torch.allclose(out[~absent], out2[~absent])
    # training-time modality dropout never hides all of a sample's modalities
    net.train()
    kept = net._dropped(b["present"])
    assert (kept.sum(dim=1) >= 1).all() and not (kept & ~b["present"]).any()


def test_study_from_yaml_files_through_report_and_predict(tmp_path, monkeypatch):
    from medflow.config import load_config
    from medflow.data.simulate.multimodal_files import write_multimodal
    from medflow.runs import load_run
    from medflow.study import run_study
    from medflow.study.data import load_multimodal

    folder = write_multimodal(tmp_path / "mm", patients=160, seed=2)
    monkeypatch.chdir(folder)
    text = (folder / "study.yaml").read_text().replace("- fusion_masked\n", "- {name: fusion_masked, params: {d: 8}}\n")
    (folder / "study.yaml").write_text(text + "train: {max_epochs: 2, progress: false}\nexplain: {examples: 2}\n")
    cfg = load_config("study.yaml")
    run = run_study(cfg)
    manifest = json.loads((run.path / "manifest.json").read_text())
    cov = manifest["data"]["modalities"]
    assert list(cov) == ["events", "notes", "images", "labs", "omics"] and cov["omics"]["share"] < 0.7
    assert cov["notes"]["after_prediction_time"] > 0
    expl = json.loads((run.path / "explanations.json").read_text())
    assert expl["fusion_masked"]["method"] == "modality_ablation"
    assert set(expl["gradient_boosting"]["modalities"]) == set(cov)
    within = expl["fusion_masked"]["within_tables"]  # the table modalities' own columns, by permutation
    assert set(within) == {"labs", "omics"} and "creatinine" in within["labs"] and len(within["omics"]) == 40
    html = (run.path / "report.html").read_text()
    assert "SYNTHETIC" in html and "<h3>Modalities</h3>" in html and "Modality ablation" in html
    again = load_run(run.path)
    ds = load_multimodal(cfg.data)
    p = again.predict(ds, explain=True, model="fusion_masked")
    assert len(p) == len(ds.frame) and {"subject_id", "prediction_time"} <= set(p.columns)
    assert {e["modality"] for e in p["explanation"].iloc[0]} == set(cov)
    from typer.testing import CliRunner

    from medflow.cli import app

    res = CliRunner().invoke(app, ["predict", str(run.path), "study.yaml", "-o", "p.csv", "--model", "fusion_masked"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv("p.csv")["probability"].to_numpy() == pytest.approx(p["probability"].to_numpy(), abs=1e-6)
    res = CliRunner().invoke(app, ["predict", str(run.path), "labs.csv"])
    assert res.exit_code != 0 and "a multimodal run predicts from a YAML file" in str(res.exception)
    # a leak of the planted future items would make the outcome near-perfectly predictable
    preds = pd.read_parquet(run.path / "predictions.parquet")
    from medflow.evaluate.metrics import auroc

    test = preds[(preds["split"] == "test") & (preds["model"] == "gradient_boosting")]
    assert auroc(test["y_true"].to_numpy(), test["score"].to_numpy()) < 0.95


def test_config_joins_one_event_source_with_notes_images_and_tables(tmp_path):
    from medflow.config import parse_config

    with pytest.raises(ConfigError, match=r"data.path cannot join them"):
        parse_config({"data": {"path": "x.csv", "tables": [{"path": "labs.csv"}]},
                      "task": {"kind": "binary", "label": "y"}}, "study.yaml")
    with pytest.raises(ConfigError, match=r"without event data needs data.labels"):
        parse_config({"data": {"text": {"path": "n.csv"}, "tables": [{"path": "labs.csv"}]},
                      "task": {"kind": "binary", "label": "y"}}, "study.yaml")
    cfg = parse_config({"data": {"meds": "m", "labels": "l.parquet", "text": {"path": "n.csv", "time_column": "t"}},
                        "task": {"kind": "binary", "label": "label"}}, "study.yaml")
    assert cfg.data.is_multimodal and cfg.data.is_events


def test_compare_modalities_answers_per_modality_with_paired_cis(sim):
    from medflow.config import ModalitiesConfig
    from medflow.study.modalities import compare_modalities
    from medflow.tasks import Binary
    from medflow.train.trainer import TrainConfig

    cfg = ModalitiesConfig(model="logistic_regression", k=3, n_bootstrap=100)
    out = compare_modalities(sim, Binary(label="outcome"), cfg, TrainConfig(progress=False), seed=0)
    names = ["events", "notes", "images", "labs", "omics"]
    assert list(out["configs"]) == [f"{m} only" for m in names] + [f"without {m}" for m in names] + ["all modalities"]
    for c, r in out["configs"].items():
        assert r["low"] <= r["value"] <= r["high"] and r["set"]
        if c != "all modalities":  # paired with all modalities, on the same resampled patients
            assert r["vs_all"]["low"] <= r["vs_all"]["value"] <= r["vs_all"]["high"]
            assert 0 <= r["decisions_changed"] <= 1
    assert set(out["added_value"]) == set(names) and out["best_single"].endswith(" only")
    # images are missing for about 40% of patients: both the best single and the best fused set are scored there
    assert out["missing"]["images"]["n"] > 40 and out["best_fused"] in out["missing"]["images"]
    assert out["verdict"].startswith(out["best_fused"]) and out["cost"]["ratio"] > 0
    # the simulator gives every modality part of the signal: together they beat the best one alone
    assert out["configs"]["all modalities"]["value"] > out["configs"][out["best_single"]]["value"]


def test_an_encoder_starts_from_a_single_modality_run(sim, tmp_path):
    import medflow as mf
    from medflow.data.images import image_dataset

    part = sim.modalities.parts["images"]
    has = part.present
    frame = part.data.frame.assign(outcome=sim.frame["outcome"].to_numpy()[has])
    images = image_dataset(part.data.images, frame[["subject_id", "image", "outcome"]], "subject_id", "cxr")
    cnn = mf.Study(dataset=images, task=mf.tasks.Binary(label="outcome"),
                   model=[{"name": "small_cnn", "params": {"channels": [8, 16], "dropout": 0.1}}],
                   train={"max_epochs": 1, "progress": False}, output_dir=tmp_path, explain={"examples": 0}).fit()
    run = mf.Study(dataset=sim, task=mf.tasks.Binary(label="outcome"),
                   model=[{"name": "fusion_masked", "params": {"d": 8}, "init_modalities": {"images": str(cnn.path)}}],
                   train={"max_epochs": 1, "progress": False}, output_dir=tmp_path, explain={"examples": 0}).fit()
    report = json.loads((run.path / "metrics.json").read_text())["transfer"]["fusion_masked"]
    # every convolution of the image encoder came from the image run; its 1-output head (here 8 wide) did not
    assert report["model"] == "per-modality" and report["tensors_copied"] >= 10
    with pytest.raises(ConfigError, match="init_modalities applies to fusion models"):
        mf.Study(dataset=sim, task=mf.tasks.Binary(label="outcome"),
                 model=[{"name": "mlp", "init_modalities": {"images": str(cnn.path)}}], output_dir=tmp_path,
                 train={"max_epochs": 1, "progress": False}).fit()
