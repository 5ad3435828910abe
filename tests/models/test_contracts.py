"""One battery over every registered model and every task kind it supports."""

import numpy as np
import pytest

from medflow.data.dataset import FeatureType
from medflow.errors import ConfigError
from medflow.features.tabular import TabularFeaturizer
from medflow.models import build_estimator, load_estimator
from medflow.registry import models as registry
from medflow.tasks import Binary, Multiclass, Regression, Survival
from medflow.tasks.effects import TreatmentEffect
from medflow.tasks.multilabel import Multilabel
from medflow.tasks.segmentation import Segmentation
from medflow.tasks.spans import SpanExtraction
from medflow.train.trainer import TrainConfig
from tests.conftest import make_frame

TASKS = {"binary": Binary, "multiclass": Multiclass, "regression": Regression,
         "survival": lambda label: Survival(time="time", event="event"),
         "segmentation": lambda label: Segmentation(labels=["square", "disc"]),
         "multilabel": lambda label: Multilabel(labels=["y", "is_a"]),
         "treatment_effect": lambda label: TreatmentEffect(treatment="t", outcome="y", true_effect="tau"),
         "spans": lambda label: SpanExtraction()}
CASES = [(name, kind) for name, spec in registry.items() for kind in sorted(spec.task_kinds)]
PARAMS = {"late_fusion": {"blocks": {"numbers": ["x1", "x2"]}, "hidden": 16},  # 'cat' becomes block "other"
          "densenet121": {"init_features": 8, "growth_rate": 4}, "resnet18": {"widen_factor": 0.25},
          # 15 epochs on 160 molecules: descriptors at the readout let the small D-MPNN learn within them
          "mpnn": {"hidden": 64, "ffn_hidden": 64, "descriptors": True},
          "gin": {"hidden": 48, "layers": 2, "ffn_hidden": 48},
          "dti": {"hidden": 64, "filters": 16, "ffn_hidden": 64, "descriptors": True},
          "random_forest": {"n_estimators": 50},
          # the battery's labels: y = cardiomegaly, is_a = atelectasis (real IU reports, _text_data)
          "context_rules": {"targets": {"y": ["cardiomegaly", "enlarged heart", "heart is enlarged"],
                                        "is_a": ["atelectasis", "atelectatic"]}},
          "context_learned": {"targets": {"y": ["cardiomegaly", "enlarged heart", "heart is enlarged"],
                                          "is_a": ["atelectasis", "atelectatic"]}},
          "text_cnn": {"d": 32, "filters": 16},
          # the battery checks each model's contract and that it learns; the smallest widths that do keep it fast
          "bilstm_attention": {"d": 32, "hidden": 32},
          "transformer_encoder": {"d": 32, "heads": 2, "layers": 1, "ff": 64},
          # attention over five modality tokens learns slowest of the fusion models on 160 patients: narrower, and
          # without modality dropout, it learns within the battery's 15 epochs
          "fusion_attention": {"d": 16, "heads": 2, "modality_dropout": 0.0}}
# deep models whose every epoch is slow (DenseNet-121's 121 layers, SegResNet at full resolution): fewer epochs,
# still asserted to learn
EPOCHS = {"densenet121": 6, "segresnet": 8}
SOURCES: list[str] = []


def _event_data(kind):
    from medflow.features.codes import EventFeaturizer
    from tests.conftest import make_events

    data, samples = make_events(240, kind=kind)
    frame = samples.to_pandas()
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    feat = EventFeaturizer(max_len=32).fit(data, samples[:160])
    x, y = feat.transform(data, samples), task.encode(frame)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


def _image_data(kind):
    """32 x 32 images carrying the table's signal (tests.conftest.make_images), or squares and discs to segment."""
    from medflow.features.image import ImageFeaturizer
    from tests.conftest import make_images, make_shapes

    frame = make_frame(240, kind="binary" if kind in ("segmentation", "multilabel") else kind)
    frame["is_a"] = (frame["cat"] == "a").astype(int)  # multilabel: the label and the corner blob
    images = make_images(frame) if kind != "segmentation" else make_shapes(240)
    ids = [str(i) for i in range(len(frame))]
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    feat = ImageFeaturizer(intensity="none").fit(images, ids[:160])
    y = task.encode(frame) if kind != "segmentation" else feat.transform_masks(images, ids)
    x = feat.transform(images, ids)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


_MOLS: dict = {}
_PAIRS: dict = {}


def _pair_data(kind):
    """240 SYNTHETIC drug-target pairs (12 targets in 3 families, real drugs): the affinity and pKd >= its median."""
    from medflow.data.simulate.dti import simulate_dti
    from medflow.features.molecule import MoleculeFeaturizer

    if not _PAIRS:
        frame = simulate_dti(n_drugs=100, n_targets=12, families=3, density=0.2, seed=1).head(240)
        feat = MoleculeFeaturizer(protein_column="protein").fit(frame.iloc[:160])
        _PAIRS.update(frame=frame, x=feat.transform(frame))
    frame, x = _PAIRS["frame"].copy(), _PAIRS["x"]
    frame["y"] = frame["pKd"] if kind == "regression" else (frame["pKd"] >= frame["pKd"].median()).astype(int)
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    y = task.encode(frame)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


def _graph_data(kind):
    """240 real molecules (RDKit's solubility set, every 5th) with labels made from their measured solubility:
    the table battery's label recipes with the standardized log-solubility as the signal."""
    import medflow as mf
    from medflow.features.molecule import MoleculeFeaturizer

    if not _MOLS:
        ds = mf.datasets.load("solubility")
        frame = ds.frame.iloc[::5].head(240).reset_index(drop=True)
        feat = MoleculeFeaturizer().fit(frame.iloc[:160])
        _MOLS.update(frame=frame, x=feat.transform(frame))
    frame, x = _MOLS["frame"].copy(), _MOLS["x"]
    rng = np.random.default_rng(0)
    z = ((frame["SOL"] - frame["SOL"].mean()) / frame["SOL"].std()).to_numpy() * 1.5
    if kind in ("binary", "multilabel"):
        frame["y"] = (rng.random(len(z)) < 1 / (1 + np.exp(-2 * z))).astype(int)
        frame["is_a"] = frame["canonical_smiles"].str.contains("N|n").astype(int)
    elif kind == "multiclass":
        frame["y"] = np.digitize(z + rng.normal(scale=0.3, size=len(z)), [-0.5, 0.5])
    elif kind == "survival":
        t = rng.exponential(100 * np.exp(-z))
        c = rng.uniform(0, 250, size=len(z))
        frame["time"], frame["event"] = np.minimum(t, c).round(2) + 0.01, (t <= c).astype(int)
    else:
        frame["y"] = 10 + 3 * z + rng.normal(scale=0.5, size=len(z))
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    y = task.encode(frame)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


_NOTES: dict = {}


def _text_data(kind, name=None):
    """240 real IU chest X-ray reports (80 with cardiomegaly, 80 with atelectasis, the rest drawn at random)
    with labels from their MeSH findings: y = cardiomegaly, is_a = atelectasis."""
    import medflow as mf
    from medflow.features.text import TextFeaturizer

    if kind == "spans":  # 240 SYNTHETIC discharge summaries with gold spans (the EHR simulator's patients)
        from medflow.data.simulate.ehr_notes import notes_from_ehr

        frame, spans = notes_from_ehr(patients=130, seed=2, max_notes=240)
        x = TextFeaturizer(max_len=32).fit(frame.iloc[:160]).transform(frame)
        y = np.empty(len(frame), dtype=object)
        y[:] = [spans[n] for n in frame["note_id"]]
        task = TASKS[kind](label="y").fit(frame.iloc[:160])
        return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]
    if not _NOTES:
        f = mf.datasets.load("iu_reports").frame
        rng = np.random.default_rng(0)
        pick = np.concatenate([rng.choice(np.flatnonzero(f["cardiomegaly"] == 1), 80, replace=False),
                               rng.choice(np.flatnonzero((f["atelectasis"] == 1) & (f["cardiomegaly"] == 0)), 80,
                                          replace=False),
                               rng.choice(np.flatnonzero((f["atelectasis"] == 0) & (f["cardiomegaly"] == 0)), 80,
                                          replace=False)])
        frame = f.iloc[rng.permutation(pick)].reset_index(drop=True)
        feat = TextFeaturizer(max_len=32).fit(frame.iloc[:160])  # short windows: several per note are pooled
        _NOTES.update(frame=frame, x=feat.transform(frame))
    frame, x = _NOTES["frame"].copy(), _NOTES["x"]
    frame["y"], frame["is_a"] = frame["cardiomegaly"], frame["atelectasis"]
    if kind == "multiclass":
        frame["y"] = frame["cardiomegaly"] + 2 * frame["atelectasis"] * (1 - frame["cardiomegaly"])
        if name == "icd_coder":  # ICD-10-CM codes: cardiomegaly, atelectasis, neither (observation, ruled out)
            frame["y"] = frame["y"].map({0: "Z03.89", 1: "I51.7", 2: "J98.11"})
    elif kind == "regression":
        frame["y"] = 3.0 * frame["cardiomegaly"] + 2.0 * frame["atelectasis"] + \
            np.random.default_rng(1).normal(scale=0.5, size=len(frame))
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    y = task.encode(frame)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


_MULTI: dict = {}


def _multimodal_data(kind):
    """240 SYNTHETIC patients of the multimodal simulator (events, notes, images, labs, omics; some missing), labels
    made from the latent factors every modality carries part of: the table battery's recipes on their weighted sum."""
    from medflow.data.builtin_multimodal import multimodal_from_simulation
    from medflow.data.simulate.multimodal import simulate_multimodal
    from medflow.features import featurize, make_featurizer

    if not _MULTI:
        sim = simulate_multimodal(240, seed=3, image_size=16)
        ds = multimodal_from_simulation(sim, "battery")
        feat = make_featurizer(ds, [], ds.frame.iloc[:160])
        z = sim["latents"].set_index("subject_id").loc[ds.frame["subject_id"].astype(int)]
        _MULTI.update(frame=ds.frame, x=featurize(feat, ds, ds.frame),
                      signal=sum(w * z[f"z_{m}"].to_numpy() for m, w in sim["weights"].items()))
    frame, x, z = _MULTI["frame"].copy(), _MULTI["x"], _MULTI["signal"] / _MULTI["signal"].std()
    rng = np.random.default_rng(0)
    frame["y"] = (z > 0).astype(int) if kind in ("binary", "multilabel") else \
        np.digitize(z, [-0.5, 0.5]) if kind == "multiclass" else 10 + 3 * z
    frame["is_a"] = (z + 0.5 * rng.normal(size=len(z)) > 0).astype(int)
    if kind == "survival":
        t, c = rng.exponential(100 * np.exp(-2 * z)), rng.uniform(0, 250, size=len(z))
        frame["time"], frame["event"] = np.minimum(t, c).round(2) + 0.01, (t <= c).astype(int)
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    y = task.encode(frame)
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


def _data(kind, name=None):
    if name is not None and registry.get(name).inputs == "multimodal":
        return _multimodal_data(kind)
    if name is not None and registry.get(name).inputs == "text":
        return _text_data(kind, name)
    if name == "dti":
        return _pair_data(kind)
    if name is not None and registry.get(name).inputs == "graphs":
        return _graph_data(kind)
    if name is not None and registry.get(name).inputs == "events":
        return _event_data(kind)
    if name is not None and registry.get(name).inputs == "images":
        return _image_data(kind)
    frame = make_frame(240, kind="binary" if kind == "multilabel" else kind)
    frame["is_a"] = (frame["cat"] == "a").astype(int)  # multilabel: y and whether cat is 'a'
    feat = TabularFeaturizer({"x1": FeatureType.NUMERIC, "x2": FeatureType.NUMERIC,
                              "cat": FeatureType.CATEGORICAL}).fit(frame.iloc[:160])
    task = TASKS[kind](label="y").fit(frame.iloc[:160])
    x, y = feat.transform(frame), task.encode(frame)
    SOURCES[:] = feat.output_sources
    return task, x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:]


def _build(name, task):
    params = PARAMS.get(name, {})
    if name == "hf_classifier":  # a local checkpoint built by the tests (tests/conftest.py): nothing downloaded
        from tests.conftest import tiny_checkpoint

        params = {"checkpoint": tiny_checkpoint(), "max_len": 64, "stride": 16}
    est = build_estimator(name, params, task)
    est.sources = list(SOURCES)
    return est


@pytest.mark.parametrize("name,kind", CASES)
def test_fit_save_load_predict(name, kind, tmp_path, fast_train):
    task, xtr, ytr, xva, yva, xte, yte = _data(kind, name)
    train = fast_train.model_copy(update={"max_epochs": EPOCHS[name]}) if name in EPOCHS else fast_train
    est = _build(name, task).fit(xtr, ytr, xva, yva, train, seed=0)
    p = est.predict(xte)
    if kind == "binary":
        assert p.shape == (len(xte),) and ((p >= 0) & (p <= 1)).all()
    elif kind == "multiclass":
        assert p.shape == (len(xte), 3) and np.allclose(p.sum(1), 1)
    elif kind == "survival":  # risk, then survival curves: within [0, 1] and never increasing
        assert p.shape == (len(xte), 1 + len(task.grid))
        curves = p[:, 1:]
        assert ((curves >= 0) & (curves <= 1)).all() and (np.diff(curves, axis=1) <= 1e-12).all()
        direct = est.predict_survival(xte, task.grid)
        assert np.allclose(direct, curves)
    elif kind == "segmentation":
        assert p.shape == yte.shape and set(np.unique(p)) <= {0, 1, 2}
    elif kind == "multilabel":
        assert p.shape == (len(xte), 2) and ((p >= 0) & (p <= 1)).all()
    elif kind == "treatment_effect":  # mu0, mu1, cate
        assert p.shape == (len(xte), 3) and np.isfinite(p).all()
    else:
        assert p.shape == (len(xte),)
    est.save(tmp_path / name)
    again = load_estimator(tmp_path / name, task)
    assert np.array_equal(again.predict(xte), p)
    # it learned something: better than the no-information prediction
    if kind == "binary":
        from medflow.evaluate.metrics import auroc
        assert auroc(yte, p) > 0.7
    elif kind == "regression":
        assert np.mean((p - yte) ** 2) < np.var(yte)
    elif kind == "multilabel":
        from medflow.evaluate.metrics import get_metric
        assert get_metric("auroc_labels")(yte, p) > 0.7
    elif kind == "segmentation":  # both shapes found (all-square everywhere would score about 0.1)
        from medflow.tasks.segmentation import case_metrics
        assert np.nanmean(case_metrics(p, yte, 2)[:, 0]) > 0.5
    elif kind == "treatment_effect":  # the effect's heterogeneity (tau = 3 + 3 x1) is found, not just its mean
        from medflow.evaluate.metrics import get_metric
        assert np.corrcoef(p[:, 2], yte[:, 2])[0, 1] > 0.6
        assert get_metric("sqrt_pehe")(yte, p) < 0.75 * np.sqrt(np.mean(yte[:, 2] ** 2))
    elif kind == "spans":  # strict F1 over all labels, from the per-note counts the evaluator uses
        from medflow.evaluate.metrics import get_metric
        assert get_metric("span_f1")(yte, task.case_values(p, yte)) > 0.9
    elif kind == "survival":
        from medflow.evaluate.metrics import get_metric
        c = get_metric("c_harrell")(yte, p)
        assert c == 0.5 if name == "kaplan_meier" else c > 0.65


@pytest.mark.parametrize("name,kind", CASES)
def test_same_seed_same_predictions(name, kind):
    """Two fits with one seed give identical predictions. Two epochs are enough to show it (every random draw of
    training, initialization, shuffling and dropout, happens in each epoch); learning is the battery above."""
    task, xtr, ytr, xva, yva, xte, _ = _data(kind, name)
    short = TrainConfig(max_epochs=2, patience=2, batch_size=32, progress=False)
    a = _build(name, task).fit(xtr, ytr, xva, yva, short, seed=1).predict(xte)
    b = _build(name, task).fit(xtr, ytr, xva, yva, short, seed=1).predict(xte)
    assert np.array_equal(a, b)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown model 'mpl'\. Did you mean 'mlp'\?.*Known models: .*resnet_mlp"):
        build_estimator("mpl", {}, Binary(label="y"))


def test_unknown_param_is_an_error():
    with pytest.raises(ConfigError, match=r"model 'mlp' params: hiden: Extra inputs.*Valid params: hidden"):
        build_estimator("mlp", {"hiden": 3}, Binary(label="y"))


def test_wrong_task_kind():
    with pytest.raises(ConfigError, match="does not support regression"):
        build_estimator("logistic_regression", {}, Regression(label="y"))


def test_saved_model_is_not_a_pickle(tmp_path, fast_train):
    task, xtr, ytr, xva, yva, _, _ = _data("binary")
    build_estimator("mlp", {}, task).fit(xtr, ytr, xva, yva, fast_train, 0).save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.safetensors"]
