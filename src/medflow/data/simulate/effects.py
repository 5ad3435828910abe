"""A SYNTHETIC treatment-effect cohort with known individual effects, clinical and genomic covariates.

The story: an antihypertensive given at the clinician's discretion; the outcome is the fall in systolic
blood pressure at 12 weeks (mmHg, higher is better). Treatment is confounded: older patients, patients with
diabetes and higher baseline pressure are treated more often (propensity between about 0.1 and 0.9, so the
arms overlap). The effect differs between patients by design:

    tau(x) = 6 + 5 * carrier(snp_03) - 0.15 * (age - 60) + 2 * expr_01 * [egfr >= 60] - 3 * diabetes

so a genomic variant (snp_03, additive coding 0/1/2, counted as carrier when >= 1) and an expression score
modify the effect beside clinical factors, and the other 14 SNPs and 3 expression scores are noise. The
untreated outcome depends non-linearly on age, baseline pressure and BMI. Every column is simulated: results
on this cohort measure recovery of a known truth, not clinical facts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate_effects", "CLINICAL", "GENOMIC"]

CLINICAL = ["age", "sex", "bmi", "sbp_baseline", "diabetes", "egfr", "smoker"]
GENOMIC = [f"snp_{k:02d}" for k in range(1, 16)] + [f"expr_{k:02d}" for k in range(1, 5)]


def simulate_effects(n: int = 2000, seed: int = 0, noise: float = 4.0) -> pd.DataFrame:
    """`n` patients: covariates, `treated`, `sbp_fall` (the observed outcome) and `true_effect` (tau(x))."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(60, 11, n), 25, 90)
    sex = rng.integers(0, 2, n)
    bmi = np.clip(rng.normal(28, 5, n), 16, 50)
    sbp = np.clip(rng.normal(148, 14, n), 110, 200)
    diabetes = (rng.random(n) < 1 / (1 + np.exp(-(-2.0 + 0.12 * (bmi - 28) + 0.03 * (age - 60))))).astype(int)
    egfr = np.clip(rng.normal(85 - 0.6 * (age - 60) - 8 * diabetes, 15, n), 10, 130)
    smoker = (rng.random(n) < 0.2).astype(int)
    snps = rng.binomial(2, rng.uniform(0.1, 0.4, len(GENOMIC) - 4), size=(n, len(GENOMIC) - 4))
    expr = rng.normal(0, 1, (n, 4))
    expr[:, 1] = 0.6 * expr[:, 0] + 0.8 * expr[:, 1]  # correlated expression scores
    logit = -0.3 + 0.04 * (age - 60) + 0.7 * diabetes + 0.04 * (sbp - 148) - 0.3 * smoker
    treated = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    carrier = (snps[:, 2] >= 1).astype(float)
    tau = 6 + 5 * carrier - 0.15 * (age - 60) + 2 * expr[:, 0] * (egfr >= 60) - 3 * diabetes
    mu0 = 0.25 * (sbp - 148) + 3 * np.sin((age - 60) / 8) - 0.02 * (bmi - 28) ** 2 + 1.5 * sex
    y = mu0 + treated * tau + rng.normal(0, noise, n)
    frame = pd.DataFrame({"patient_id": [f"te-{i:05d}" for i in range(n)], "age": age.round(1), "sex": sex,
                          "bmi": bmi.round(1), "sbp_baseline": sbp.round(0), "diabetes": diabetes,
                          "egfr": egfr.round(0), "smoker": smoker})
    for j, name in enumerate(GENOMIC[:-4]):
        frame[name] = snps[:, j]
    for j, name in enumerate(GENOMIC[-4:]):
        frame[name] = expr[:, j].round(3)
    frame["treated"], frame["sbp_fall"], frame["true_effect"] = treated, y.round(2), tau
    return frame
