"""Simulator truth, cohort labels, the event featurizer and the leakage guard."""

import json

import numpy as np
import polars as pl
import pytest

from medflow.data.cohort import extract_samples
from medflow.data.simulate.ehr import simulate_ehr
from medflow.data.sources.meds import read_meds
from medflow.errors import DataError
from medflow.evaluate.metrics import auroc
from medflow.features.codes import UNKNOWN, EventFeaturizer
from medflow.models import build_estimator
from medflow.tasks import Binary
from medflow.train.trainer import TrainConfig
from tests.conftest import make_events


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate_ehr(tmp_path_factory.mktemp("sim") / "cohort", patients=1500, seed=3)


def test_simulator_is_marked_synthetic_and_deterministic(sim, tmp_path):
    meta = json.loads((sim / "metadata" / "dataset.json").read_text())["medflow"]
    assert meta["synthetic"] is True and (sim / "SYNTHETIC.txt").exists()
    assert 0.65 < meta["oracle_auroc"]["readmission_30d"] < 0.9
    again = simulate_ehr(tmp_path / "again", patients=1500, seed=3)
    assert read_meds(again).events.equals(read_meds(sim).events)
    other = simulate_ehr(tmp_path / "other", patients=1500, seed=4)
    assert not read_meds(other).events.equals(read_meds(sim).events)


@pytest.mark.parametrize("task,anchor", [("readmission_30d", "discharge"), ("in_hospital_mortality", "admit"),
                                         ("long_los", "admit")])
def test_cohort_labels_equal_the_simulators_draws(sim, task, anchor):
    data = read_meds(sim)
    samples = extract_samples(data, task)
    oracle = pl.read_parquet(sim / "metadata" / "oracle.parquet")
    if anchor == "admit":
        oracle = oracle.with_columns((pl.col("admit") + pl.duration(hours=24)).alias("prediction_time"))
    else:
        oracle = oracle.filter(pl.col("died_in_hospital") == 0).rename({"discharge": "prediction_time"})
    joined = samples.join(oracle, on=["subject_id", "prediction_time"], how="full", suffix="_truth")
    assert joined["subject_id"].null_count() == 0 and joined["subject_id_truth"].null_count() == 0  # same samples
    assert (joined[task] == joined[f"{task}_truth"]).all()
    assert set(samples.columns) >= {"sex", "race", "age"}


def test_window_never_reaches_past_the_prediction_time(sim):
    data = read_meds(sim)
    samples = extract_samples(data, "readmission_30d")
    x = EventFeaturizer(max_len=10_000).fit(data, samples).transform(data, samples)
    for i in np.random.default_rng(0).choice(len(x), 300, replace=False):
        w = x.window(i)
        timed = w["times"][w["times"] > -(2**62)]
        assert (timed <= x.pred_time[i]).all()
        # and nothing at or before the prediction time was left out (full window, no truncation)
        sub_end = x.end[i]
        if sub_end < len(x.times) and x.times[sub_end] > -(2**62):
            same_subject = x.static_start[i] <= sub_end
            assert not same_subject or x.times[sub_end] > x.pred_time[i] or x.times[sub_end] == -(2**62)


def test_vocabulary_is_fitted_on_training_patients_only():
    data, samples = make_events(100)
    extra = pl.DataFrame({"subject_id": [99], "time": [None], "code": ["ONLY_IN_TEST"], "numeric_value": [None]},
                         schema=data.events.schema)
    data.events = pl.concat([data.events, extra]).sort(["subject_id", "time"], nulls_last=False,
                                                       maintain_order=True)
    feat = EventFeaturizer().fit(data, samples.filter(pl.col("subject_id") < 80))
    assert "ONLY_IN_TEST" not in feat.vocab
    x = feat.transform(data, samples)
    assert (x.window(99)["codes"] == UNKNOWN).sum() == 1  # unseen codes map to <unknown>, not an error


def test_truncation_keeps_static_and_most_recent_events():
    data, samples = make_events(20)
    feat = EventFeaturizer(max_len=4).fit(data, samples)
    x = feat.transform(data, samples)
    b = x.batch(np.arange(20))
    assert b["codes"].shape[1] <= 4 and (b["lengths"] <= 4).all()
    full = EventFeaturizer(max_len=1000).fit(data, samples).transform(data, samples)
    w, wf = x.window(0), full.window(0)
    assert w["codes"][0] == wf["codes"][0]  # the static GENDER event survives truncation
    assert (w["times"][-3:] == wf["times"][-3:]).all()  # the most recent events are kept


def test_planted_event_after_prediction_time_cannot_be_used():
    """The leakage guard: LEAK occurs right after the prediction time of every positive sample."""
    data, samples = make_events(400, seed=1, plant_after=True)
    frame = samples.to_pandas()
    task = Binary(label="y").fit(frame.iloc[:300])
    feat = EventFeaturizer().fit(data, samples[:300])
    assert "LEAK" not in feat.vocab  # the vocabulary never sees events after a prediction time
    x = feat.transform(data, samples)
    y = task.encode(frame)
    cfg = TrainConfig(max_epochs=15, patience=5, batch_size=32, progress=False)
    for name in ("gru", "logistic_regression"):
        est = build_estimator(name, {}, task).fit(x[:250], y[:250], x[250:300], y[250:300], cfg, seed=0)
        assert abs(auroc(y[300:], est.predict(x[300:])) - 0.5) < 0.15, name
    # the same code planted *before* the prediction time is found at once: the check above has power
    shifted = data.events.with_columns(
        pl.when(pl.col("code") == "LEAK").then(pl.col("time") - pl.duration(hours=2)).otherwise(pl.col("time"))
        .alias("time")).sort(["subject_id", "time"], nulls_last=False)
    data.events = shifted
    feat = EventFeaturizer().fit(data, samples[:300])
    x = feat.transform(data, samples)
    est = build_estimator("logistic_regression", {}, task).fit(x[:250], y[:250], None, None, cfg, seed=0)
    assert auroc(y[300:], est.predict(x[300:])) > 0.95


def test_subject_without_events_is_named():
    data, samples = make_events(10)
    feat = EventFeaturizer().fit(data, samples)
    ghost = pl.DataFrame({"subject_id": [1234], "prediction_time": samples["prediction_time"][:1],
                          "y": [1]}, schema=samples.schema)
    with pytest.raises(DataError, match="subject 1234 has a prediction time but no events"):
        feat.transform(data, pl.concat([samples, ghost]))


def test_tabular_models_read_count_features():
    data, samples = make_events(200, seed=2)
    x = EventFeaturizer().fit(data, samples).transform(data, samples)
    m = x.to_matrix()
    names = x.matrix_names()
    assert m.shape == (200, len(names)) and "count:SIG" in names and "mean:LAB//K" in names
    counts = samples["y"].to_numpy()
    assert np.allclose(m[:, names.index("count:SIG")] > 0, counts == 1)


def test_bias_group_gets_noisier_creatinine(tmp_path):
    """--bias-group: one race group's creatinine is recorded with more noise (outcomes follow true values)."""
    data = read_meds(simulate_ehr(tmp_path / "b", patients=1500, seed=1, bias_group="B"))
    ev = data.events
    race = ev.filter(pl.col("code").str.starts_with("RACE//")).select(
        "subject_id", pl.col("code").str.slice(6).alias("race"))
    creat = ev.filter(pl.col("code") == "LOINC//2160-0").join(race, on="subject_id")
    # day-to-day jumps of creatinine within a subject's history: measurement noise dominates them
    jumps = creat.with_columns(pl.col("numeric_value").diff().over("subject_id").abs().alias("jump"))
    by = jumps.group_by("race").agg(pl.col("jump").median()).to_dict(as_series=False)
    med = dict(zip(by["race"], by["jump"], strict=True))
    assert med["B"] > 2 * med["W"]
    meta = json.loads((tmp_path / "b" / "metadata" / "dataset.json").read_text())["medflow"]
    assert meta["bias_group"] == "B"


def test_streaming_shard_by_shard_equals_the_in_memory_path(sim):
    from medflow.features.codes import stream_meds

    x, s, feat = stream_meds(str(sim), "readmission_30d", EventFeaturizer(max_len=64))
    data = read_meds(sim)
    s2 = extract_samples(data, "readmission_30d")
    train = s2.join(data.splits.filter(pl.col("split") == "train"), on="subject_id", how="semi")
    feat2 = EventFeaturizer(max_len=64).fit(data, train)
    assert feat.vocab == feat2.vocab
    assert all(abs(feat.value_std[c] - feat2.value_std[c]) < 1e-4 for c in feat.value_std)
    x2 = feat2.transform(data, s2)
    o = np.lexsort((x.pred_time, s["subject_id"].to_numpy()))
    o2 = np.lexsort((x2.pred_time, s2["subject_id"].to_numpy()))
    b, b2 = x.batch(o), x2.batch(o2)
    assert all(np.allclose(b[k].float().numpy(), b2[k].float().numpy(), atol=1e-4) for k in b)
