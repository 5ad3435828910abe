"""Treatment effects end to end: CATE recovery on the simulator, overlap refusal, bad input, metrics, predict."""

import json

import numpy as np
import pandas as pd
import pytest

import medflow as mf
from medflow.data.simulate.effects import simulate_effects
from medflow.data.sources.tabular import dataset_from_frame
from medflow.errors import ConfigError, DataError
from medflow.evaluate.effects import aipw_ate, pseudo_outcome, qini, smd, uplift_curve
from medflow.evaluate.metrics import get_metric
from medflow.tasks import TreatmentEffect

TRAIN = {"max_epochs": 40, "patience": 8, "batch_size": 64, "progress": False}
EVAL = {"n_bootstrap": 100}


def _ds(frame, name="te"):
    return dataset_from_frame(frame, source=name, name=name, patient_id="patient_id", synthetic=True)


def _task(**kw):
    return TreatmentEffect(treatment="treated", outcome="sbp_fall", true_effect="true_effect", **kw)


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """One study on 1,200 simulated patients (known CATE) with a meta-learner and TARNet."""
    frame = simulate_effects(1200, seed=1)
    study = mf.Study(dataset=_ds(frame), task=_task(), model=["x_learner", "tarnet"], train=TRAIN, evaluate=EVAL,
                     output_dir=tmp_path_factory.mktemp("runs"), seed=0)
    return study.fit(), frame


def test_cate_recovered_on_the_simulator(sim_run):
    run, frame = sim_run
    m = run.metrics.data
    sd_tau = float(frame["true_effect"].std())  # sqrt(PEHE) of the best constant (the true ATE)
    for model in ("x_learner", "tarnet"):
        pehe = m["models"][model]["metrics"]["sqrt_pehe"]["value"]
        assert pehe < {"x_learner": 0.8, "tarnet": 0.7}[model] * sd_tau, (model, pehe, sd_tau)
        ate = m["models"][model]["metrics"]["ate"]
        assert abs(ate["value"] - frame["true_effect"].mean()) < 1.0
        assert ate["low"] < ate["value"] < ate["high"]
    assert m["models"]["tarnet"]["metrics"]["sqrt_pehe"]["value"] < 2.5


def test_reference_estimates_and_balance(sim_run):
    run, frame = sim_run
    a = json.loads((run.path / "task_analysis.json").read_text())
    true_ate = a["true_ate"]
    aipw, naive = a["reference"]["aipw"], a["reference"]["difference_in_means"]
    assert aipw["low"] < true_ate < aipw["high"]  # the doubly robust CI covers the truth ...
    assert not naive["low"] < true_ate < naive["high"]  # ... the confounded difference in means does not
    worst = {r["column"]: r for r in a["balance"]}
    assert abs(worst["sbp_baseline"]["smd"]) > 0.3 > abs(worst["sbp_baseline"]["smd_weighted"]) * 2
    assert a["overlap"]["outside"] == 0.0 and 0.55 < a["overlap"]["propensity_auroc"] < 0.85


def test_report_and_extras(sim_run):
    run, _ = sim_run
    html = (run.path / "report.html").read_text()
    for text in ("Treatment effects", "No unmeasured confounding", "AIPW", "uplift curve", "CATE calibration",
                 "SYNTHETIC", "sqrt(PEHE)"):
        assert text in html, text
    entry = run.metrics.data["models"]["tarnet"]
    assert entry["uplift"]["gain"][0] == 0 and len(entry["cate_calibration"]["bins"]) >= 2
    iv = entry["interval"]
    assert iv["qhat"] > 0 and iv["test_coverage_true"] >= iv["coverage"] - 0.05  # conservative for the CATE


def test_predict_returns_cate_interval_and_recommendation(sim_run):
    run, frame = sim_run
    new = frame.drop(columns=["treated", "sbp_fall", "true_effect"]).head(50)
    out = run.predict(new, model="tarnet")
    low = next(c for c in out.columns if c.startswith("cate_low_"))
    high = next(c for c in out.columns if c.startswith("cate_high_"))
    assert (out[low] < out["cate"]).all() and (out["cate"] < out[high]).all()
    assert np.allclose(out["cate"], out["outcome_if_treated"] - out["outcome_if_control"])
    assert set(out["recommendation"]) <= {"treat", "do not treat"}
    assert ((out["benefit"] > 0) == (out["recommendation"] == "treat")).all()
    assert np.corrcoef(out["cate"], frame["true_effect"].head(50))[0, 1] > 0.5
    assert out["synthetic"].all()


def test_lower_is_better_flips_the_recommendation(tmp_path):
    frame = simulate_effects(500, seed=2)
    study = mf.Study(dataset=_ds(frame), task=_task(outcome_direction="lower_is_better", benefit_threshold=1.0),
                     model=["s_learner"], evaluate=EVAL, output_dir=tmp_path)
    out = study.fit().predict(frame.head(40))
    assert np.allclose(out["benefit"], -out["cate"])
    assert ((out["cate"] < -1.0) == (out["recommendation"] == "treat")).all()


def test_poor_overlap_is_refused_with_a_figure_and_trimming_recovers(tmp_path):
    frame = simulate_effects(600, seed=3)
    rng = np.random.default_rng(0)
    # treatment decided by age alone (almost deterministically): the arms barely overlap
    frame["treated"] = (frame["age"] + rng.normal(0, 1.0, len(frame)) > 60).astype(int)
    with pytest.raises(DataError, match=r"(?s)poor overlap between arms of 'treated'.*outside.*task.trim") as err:
        mf.Study(dataset=_ds(frame), task=_task(), model=["s_learner"], output_dir=tmp_path).fit()
    fig = next((tmp_path / "te").glob("overlap-refused-*.png"))
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(fig) in str(err.value)
    assert "treated" in str(err.value) and "control" in str(err.value)
    assert not list((tmp_path / "te").glob("*.incomplete"))  # no run folder was started
    run = mf.Study(dataset=_ds(frame), task=_task(trim=[0.05, 0.95], max_without_overlap=0.5, min_arm=10),
                   model=["s_learner"], evaluate=EVAL, output_dir=tmp_path).fit()
    a = json.loads((run.path / "task_analysis.json").read_text())
    assert a["n_trimmed"] > 100 and a["n"] + a["n_trimmed"] == 600
    html = (run.path / "report.html").read_text()
    assert "removed" in html and "propensity overlap before trimming" in html


@pytest.mark.parametrize("change,message", [
    (lambda f: f.assign(treated=f["treated"] + f.index % 3), r"treatment column 'treated' must be binary"),
    (lambda f: f.assign(sbp_fall=np.where(f["treated"] == 1, np.nan, f["sbp_fall"])),
     r"outcome 'sbp_fall' is missing for every treated patient"),
    (lambda f: f.assign(treated=(f.index < 5).astype(int)), r"only 5 treated patient\(s\).*task.min_arm = 20"),
    (lambda f: f.assign(sbp_fall=f["sbp_fall"].astype(object).where(f.index != 7, "n/a")),
     r"column 'sbp_fall' is numeric but row 8 holds 'n/a'"),
    (lambda f: f.drop(columns=["treated"]), r"treatment column 'treated' is missing"),
])
def test_bad_input_names_the_column(change, message, tmp_path):
    frame = change(simulate_effects(300, seed=4))
    with pytest.raises(DataError, match=message):
        mf.Study(dataset=_ds(frame), task=_task(), model=["s_learner"], output_dir=tmp_path).fit()


def test_post_treatment_covariate_is_refused(tmp_path):
    frame = simulate_effects(300, seed=5)
    frame["sbp_week4"] = frame["sbp_baseline"] - frame["treated"] * 5
    with pytest.raises(ConfigError, match=r"\['sbp_week4'\] are declared post-treatment.*data.drop"):
        mf.Study(dataset=_ds(frame), task=_task(post_treatment=["sbp_week4"]), model=["s_learner"],
                 output_dir=tmp_path).fit()


def test_binary_outcome_needs_zero_one(tmp_path):
    frame = simulate_effects(300, seed=6)
    with pytest.raises(DataError, match=r"outcome_kind is binary but outcome 'sbp_fall'"):
        mf.Study(dataset=_ds(frame), task=_task(outcome_kind="binary"), model=["s_learner"], output_dir=tmp_path).fit()


def test_binary_outcome_runs_as_risk_difference(tmp_path):
    frame = simulate_effects(800, seed=7)
    frame["event"] = (frame["sbp_fall"] > 8).astype(int)  # "controlled" blood pressure: higher is better
    frame["true_effect"] = np.nan
    study = mf.Study(dataset=_ds(frame.drop(columns=["sbp_fall", "true_effect"])),
                     task=TreatmentEffect(treatment="treated", outcome="event", outcome_kind="binary"),
                     model=["x_learner", "dragonnet"], train=TRAIN, evaluate=EVAL, output_dir=tmp_path)
    run = study.fit()
    for model, e in run.metrics.data["models"].items():
        assert 0.05 < e["metrics"]["ate"]["value"] < 0.6, model  # treating raises the chance of control
        assert "sqrt_pehe" not in e["metrics"]  # no truth, no PEHE
    out = run.predict(frame.drop(columns=["sbp_fall", "true_effect"]).head(20))
    assert ((out["outcome_if_control"] >= 0) & (out["outcome_if_treated"] <= 1)).all()


def test_metric_functions_by_hand():
    rng = np.random.default_rng(0)
    n = 400
    t = rng.integers(0, 2, n).astype(float)
    tau = rng.normal(2, 1, n)
    y = rng.normal(0, 1, n) + t * tau
    e, m0, m1 = np.full(n, 0.5), np.zeros(n), tau.copy()
    ymat = np.column_stack([t, y, tau, e, m0, m1, np.ones(n)])
    # with the right outcome models and a 0.5 propensity the pseudo-outcome is tau + 2 (+/-) residual
    phi = pseudo_outcome(ymat)
    assert np.allclose(phi, tau + np.where(t == 1, 2 * (y - tau), -2 * y))
    perfect = np.column_stack([m0, m1, tau])
    assert get_metric("sqrt_pehe")(ymat, perfect) == 0.0
    shifted = np.column_stack([m0, m1, tau + 0.5])
    assert get_metric("sqrt_pehe")(ymat, shifted) == pytest.approx(0.5)
    assert get_metric("ate_error")(ymat, shifted) == pytest.approx(0.5)
    assert get_metric("tau_risk")(ymat, perfect) == pytest.approx(np.mean((phi - tau) ** 2))
    assert get_metric("factual_rmse")(ymat, perfect) == pytest.approx(np.sqrt(np.mean((y - t * tau) ** 2)))
    assert qini(ymat, perfect) > qini(ymat, np.column_stack([m0, m1, -tau])) and qini(ymat, perfect) > 0
    share, gain, rand = uplift_curve(ymat, perfect)
    assert gain[0] == 0 and gain[-1] == pytest.approx(rand[-1]) == pytest.approx(phi.mean())
    assert aipw_ate(phi)["low"] < tau.mean() < aipw_ate(phi)["high"]


def test_smd_by_hand():
    x = np.array([[1.0], [3.0], [0.0], [2.0]])
    t = np.array([1, 1, 0, 0])
    pooled = np.sqrt((np.var([1, 3]) + np.var([0, 2])) / 2)
    assert smd(x, t)[0] == pytest.approx((2 - 1) / pooled)
    assert smd(x, t, np.array([1, 0, 1, 1]))[0] == pytest.approx((1 - 1) / pooled)


def test_nhefs_matches_the_published_estimate(tmp_path):
    """Real data: quitting smoking and weight gain; the book's IP-weighted ATE is 3.4 kg (2.4 to 4.5)."""
    ds = mf.datasets.load("nhefs")
    study = mf.Study(dataset=ds, task=TreatmentEffect(treatment="qsmk", outcome="wt82_71"), model=["s_learner"],
                     evaluate=EVAL, output_dir=tmp_path)
    run = study.fit()
    a = json.loads((run.path / "task_analysis.json").read_text())
    for key in ("aipw", "ipw"):
        ref = a["reference"][key]
        assert 2.4 < ref["value"] < 4.6 and ref["low"] < 3.4 < ref["high"], (key, ref)
    assert a["published"]["value"] == 3.4
    assert "published: IP weighting" in (run.path / "report.html").read_text()


def test_builtins_are_labelled():
    ds = mf.datasets.load("acic16_1")
    assert ds.synthetic and len(ds) == 4802 and {"treated", "outcome", "true_effect"} <= set(ds.frame.columns)
    assert ds.frame["treated"].mean() == pytest.approx(0.179, abs=0.01)
    sim = mf.datasets.load("te_sim")
    assert sim.synthetic and "SYNTHETIC" in sim.description
    assert isinstance(sim.frame, pd.DataFrame) and sim.frame["true_effect"].std() > 2


def test_genomic_block_changes_who_benefits():
    """compare_blocks on the simulator: the effect depends on a SNP and an expression score, so the clinical
    block alone estimates it worse than both blocks together, and recommends treatment to other patients."""
    from medflow.study.fusion import BlocksConfig, compare_blocks
    from medflow.train.trainer import TrainConfig

    ds = mf.datasets.load("te_sim")
    task = TreatmentEffect(treatment="treated", outcome="sbp_fall", true_effect="true_effect", benefit_threshold=7)
    cfg = BlocksConfig(model="x_learner", k=3, repeats=1, metric="sqrt_pehe", n_bootstrap=100)
    out = compare_blocks(ds, task, cfg, TrainConfig(progress=False), seed=0)
    c = out["configs"]
    assert set(c) == {"clinical only", "genomic only", "early fusion"}  # late fusion serves no effect task
    assert c["early fusion"]["value"] < c["clinical only"]["value"] < c["genomic only"]["value"]
    assert out["difference"]["high"] < 0 and "fusion helps" in out["verdict"]
    assert out["decision_changes"]["clinical only"] > 0.05


def test_yaml_run_and_predict_through_the_cli(tmp_path):
    """`medflow run` on a CSV with a treatment_effect task, then `medflow predict` on new patients."""
    from tests.conftest import run_cli
    from tests.test_cli import _complete_runs

    frame = simulate_effects(600, seed=8)
    frame.to_csv(tmp_path / "cohort.csv", index=False)
    frame.drop(columns=["treated", "sbp_fall", "true_effect"]).head(25).to_csv(tmp_path / "new.csv", index=False)
    (tmp_path / "study.yaml").write_text(
        "name: bp\ndata: {path: cohort.csv, patient_id: patient_id, synthetic: true}\n"
        "task: {kind: treatment_effect, treatment: treated, outcome: sbp_fall, true_effect: true_effect,\n"
        "       trim: [0.02, 0.98], benefit_threshold: 5}\n"
        "models: [s_learner, x_learner]\nevaluate: {n_bootstrap: 100, subgroups: [diabetes]}\n")
    res = run_cli("run", "study.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run_dir = _complete_runs(tmp_path)[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    sel = metrics["selected_model"]
    groups = metrics["models"][sel]["subgroups"]["diabetes"]["groups"]  # CATE by subgroup with CIs
    assert groups["1"]["metrics"]["ate"]["value"] < groups["0"]["metrics"]["ate"]["value"]  # tau has -3 diabetes
    res = run_cli("predict", run_dir, "new.csv", "-o", "out.csv", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 25 and {"cate", "benefit", "recommendation"} <= set(out.columns)
    assert ((out["benefit"] > 5) == (out["recommendation"] == "treat")).all()


def test_external_validation_refits_the_nuisances_at_the_new_site(sim_run):
    """At another site the DR scores need that site's own propensity and outcome models (Task.prepare there)."""
    from medflow.evaluate.external import external_validation

    run, _ = sim_run
    site = simulate_effects(500, seed=21)
    result, preds = external_validation(run, site, "site_b", "site_b.csv", seed=0)
    assert result["task_analysis"]["n"] == 500 and "aipw" in result["task_analysis"]["reference"]
    for model, entry in result["models"].items():
        assert np.isfinite(entry["metrics"]["tau_risk"]["value"]) and np.isfinite(entry["metrics"]["qini"]["value"])
        assert entry["metrics"]["sqrt_pehe"]["value"] < site["true_effect"].std(), model
    assert preds["target_3"].between(0, 1).all()  # the new site's cross-fitted propensities


def test_acic_instance_1_is_refused_by_default_and_runs_trimmed(tmp_path):
    """ACIC 2016 instance 1 has a region where treatment never happens (by design): refused by default, and with
    trim: [0.01, 0.99] the study runs end to end on the patients who could have received either arm."""
    ds = mf.datasets.load("acic16_1")
    task = dict(treatment="treated", outcome="outcome", true_effect="true_effect")
    with pytest.raises(DataError, match=r"poor overlap between arms of 'treated': 4\d\.\d% of patients"):
        mf.Study(dataset=ds, task=TreatmentEffect(**task), model=["s_learner"], output_dir=tmp_path).fit()
    run = mf.Study(dataset=ds, task=TreatmentEffect(**task, trim=[0.01, 0.99]), model=["x_learner"], evaluate=EVAL,
                   explain={"n_repeats": 1, "max_records": 50}, output_dir=tmp_path).fit()
    a = json.loads((run.path / "task_analysis.json").read_text())
    assert 2000 < a["n"] < 3000 and a["n"] + a["n_trimmed"] == 4802
    assert run.metrics.data["models"]["x_learner"]["metrics"]["sqrt_pehe"]["value"] < 1.2
