"""Built-in treatment-effect data: ACIC 2016 and NHEFS (inside causallib's wheel) and a SYNTHETIC cohort.

ACIC 2016 (Dorie et al. 2019): real covariates of 4,802 patients (the Collaborative Perinatal Project),
simulated treatment and potential outcomes; causallib ships one instance of 10 of the 77 data-generating
processes. `true_effect` is mu1 - mu0, the noiseless individual effect. NHEFS (Hernan & Robins, Causal
Inference: What If, ch. 12): 1,566 smokers, quitting smoking (qsmk) and weight gain 1971-1982 (kg); no truth,
but the book's IP-weighted estimate (3.4 kg, 95% CI 2.4 to 4.5) to compare against.
"""

from __future__ import annotations

import numpy as np

from medflow.data.dataset import Dataset
from medflow.data.sources.tabular import dataset_from_frame
from medflow.registry import dataset_info, register_dataset

__all__: list[str] = []


def _acic(instance: int) -> Dataset:
    from causallib.datasets import load_acic16

    x, zymu = load_acic16(instance=instance, raw=True)  # raw: x_2, x_21, x_24 stay categorical (medflow encodes)
    frame = x.copy()
    frame.insert(0, "patient_id", [f"acic-{i:04d}" for i in range(len(frame))])
    z = zymu["z"].astype(int).to_numpy()
    frame["treated"] = z
    frame["outcome"] = np.where(z == 1, zymu["y1"], zymu["y0"]).astype(float)
    frame["true_effect"] = (zymu["mu1"] - zymu["mu0"]).astype(float).to_numpy()
    ds = dataset_from_frame(
        frame, source=f"builtin:acic16_{instance}", name=f"acic16_{instance}", patient_id="patient_id",
        types={c: "categorical" for c in frame.columns if frame[c].dtype == object},
        synthetic=True, label_hint="outcome",
        description=(f"ACIC 2016 data challenge (Dorie et al. 2019), instance {instance} of the 10 in causallib: real "
                     "covariates of 4,802 patients (Collaborative Perinatal Project), SIMULATED treatment and "
                     "outcomes with the true individual effect (true_effect = mu1 - mu0)."))
    return ds


for _k in range(1, 11):
    register_dataset(f"acic16_{_k}")(dataset_info(
        task="treatment_effect: treated -> outcome (true_effect known)", size="4,802 patients, 58 covariates",
        source=f"causallib wheel (ACIC 2016 instance {_k}): real covariates, SIMULATED outcomes")(
        lambda k=_k: _acic(k)))


@register_dataset("nhefs")
@dataset_info(task="treatment_effect: qsmk -> wt82_71 (kg)", size="1,566 smokers, 9 covariates",
              source="causallib wheel (NHEFS, Hernan & Robins), real data; published IPW ATE 3.4 kg")
def nhefs() -> Dataset:
    """NHEFS: did quitting smoking change weight gain? Covariates as in Hernan & Robins' IP-weighting model."""
    from causallib.datasets import load_nhefs

    d = load_nhefs(augment=False, onehot=False)
    frame = d["X"].copy()
    frame.insert(0, "patient_id", [f"nhefs-{i:04d}" for i in range(len(frame))])
    frame["qsmk"] = d["a"].astype(int).to_numpy()
    frame["wt82_71"] = d["y"].astype(float).to_numpy()
    ds = dataset_from_frame(
        frame, source="builtin:nhefs", name="nhefs", patient_id="patient_id", label_hint="wt82_71",
        types={c: "categorical" for c in ("race", "sex", "education", "exercise", "active") if c in frame.columns},
        description=("NHEFS (National Health and Nutrition Examination Survey I Epidemiologic Follow-up Study) as "
                     "used in Hernan & Robins, Causal Inference: What If, ch. 12: 1,566 cigarette smokers aged "
                     "25-74, quitting smoking between 1971 and 1982 (qsmk) and weight change in kg (wt82_71). "
                     "Shipped with causallib. Real data; no individual truth."))
    ds.meta["published_effect"] = {"value": 3.4, "low": 2.4, "high": 4.5, "method": "IP weighting (stabilized)",
                                   "source": "Hernan & Robins, Causal Inference: What If, section 12.2"}
    return ds


@register_dataset("te_sim")
@dataset_info(task="treatment_effect: treated -> sbp_fall (true_effect known)",
              size="2,000 simulated patients, 7 clinical + 19 genomic covariates",
              source="medflow treatment-effect simulator (SYNTHETIC, known CATE)")
def te_sim() -> Dataset:
    """SYNTHETIC antihypertensive cohort with known individual effects (`medflow.data.simulate.effects`)."""
    from medflow.data.simulate.effects import CLINICAL, GENOMIC, simulate_effects

    frame = simulate_effects(2000, seed=0)
    ds = dataset_from_frame(
        frame, source="builtin:te_sim", name="te_sim", patient_id="patient_id", synthetic=True,
        label_hint="sbp_fall",
        description=("SYNTHETIC: 2,000 simulated patients given an antihypertensive at the clinician's discretion "
                     "(confounded by age, diabetes and baseline pressure); outcome the fall in systolic pressure at "
                     "12 weeks (mmHg); the individual effect depends on a SNP carrier status, an expression score, "
                     "age, eGFR and diabetes (true_effect). See medflow.data.simulate.effects."))
    ds.meta["blocks"] = {"clinical": list(CLINICAL), "genomic": list(GENOMIC)}  # for compare_blocks
    return ds
