"""SYNTHETIC multimodal patients with known cross-modal truth: one latent state per modality drives the outcome.

Every patient has five independent latent factors, one per modality, and the outcome is drawn from
    logit P(outcome) = b0 + sum_m w_m z_m,
so each modality carries part of the signal that the others lack, and what fusion can gain is known:
- events (z_events): the rate of decompensation diagnoses (heart failure, COPD exacerbation) in the year before the
  prediction time, among unrelated codes;
- notes (z_notes): the symptom severity the clinician wrote ("severe dyspnea at rest" ... "denies dyspnea"),
  in five levels, with negation;
- images (z_images): the radius of an opacity in a phantom chest image (32 x 32 by default) with noise;
- labs (z_labs): creatinine of the latest lab panel (several panels per patient, with sodium and WBC as noise);
- omics (z_omics): five signature genes of a 40-gene panel (static: one panel per patient, no time).
Notes, images and labs are missing for a share of patients (`coverage`), omics for more.

Planted future items (the leakage test): each patient also has a note, an image and a lab panel dated after the
prediction time that reveal the outcome ("readmitted with ...", a large opacity, creatinine 3.0). A join that lets
them in shows it at once (AUROC near 1).

The oracle: the true probability from all five latents (AUROC of the Bayes rule with every modality), and the
probability given only the modalities each patient has (the other latents integrated out by Monte Carlo), which
is the best any model reading these data can do in expectation up to the measurement noise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

__all__ = ["simulate_multimodal", "MODALITY_WEIGHTS", "COVERAGE"]

MODALITY_WEIGHTS = {"events": 1.0, "notes": 1.0, "images": 1.0, "labs": 0.9, "omics": 0.9}
COVERAGE = {"events": 1.0, "notes": 0.85, "images": 0.6, "labs": 0.9, "omics": 0.4}
_B0 = -0.8
_SIGNAL_CODES = ["ICD10CM//I50.9", "ICD10CM//J44.1"]
_NOISE_CODES = [f"ICD10CM//{c}" for c in ("E11.9", "I10", "E78.5", "K21.9", "M54.5", "F32.9", "N39.0", "J06.9",
                                          "R51.9", "Z00.00", "M25.561", "H52.4", "L30.9", "R10.9", "G47.00")]
_LEVELS = [  # symptom severity, lowest first: (threshold on z_notes, sentence)
    (-0.8, "Denies dyspnea. Ambulating independently without difficulty."),
    (-0.25, "No dyspnea at rest; mild fatigue reported."),
    (0.25, "Reports dyspnea on exertion after one flight of stairs."),
    (0.8, "Reports worsening dyspnea on minimal exertion and orthopnea."),
    (np.inf, "Severe dyspnea at rest with orthopnea and leg swelling."),
]
_FILLER = ["Vitals reviewed.", "Medications reconciled.", "Family at bedside.", "Diet tolerated.",
           "Plan discussed with patient.", "Follow-up arranged with primary care.", "Sleeping well overnight."]
_US_DAY = 86_400 * 1_000_000


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def _image(rng: np.random.Generator, size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    c = rng.uniform(size * 0.35, size * 0.65, 2)
    disc = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius**2).astype(np.float32)
    lungs = 0.3 * np.exp(-((xx - size / 2) ** 2) / (2 * (size / 3) ** 2))
    return (lungs + disc + rng.normal(0, 0.35, (size, size))).astype(np.float32)[None]


def _note(rng: np.random.Generator, z: float) -> str:
    level = next(s for t, s in _LEVELS if z <= t)
    filler = list(rng.choice(_FILLER, size=int(rng.integers(1, 4)), replace=False))
    parts = filler + [level]
    rng.shuffle(parts)
    return " ".join(parts)


def simulate_multimodal(n_patients: int = 1000, seed: int = 0, image_size: int = 32,
                        coverage: dict[str, float] | None = None, future: bool = True,
                        oracle_draws: int = 200) -> dict[str, Any]:
    """SYNTHETIC patients (see the module docstring). Returns events (polars, MEDS columns), `samples` (subject_id,
    prediction_time, outcome), `notes`, `images` (id -> array) with `image_table`, `labs`, `omics`, the latents and
    the oracle's figures (`oracle`)."""
    rng = np.random.default_rng(seed)
    cov = {**COVERAGE, **(coverage or {})}
    n = n_patients
    names = list(MODALITY_WEIGHTS)
    z = {m: rng.normal(size=n) for m in names}
    w = np.array([MODALITY_WEIGHTS[m] for m in names])
    logit = _B0 + sum(MODALITY_WEIGHTS[m] * z[m] for m in names)
    y = (rng.random(n) < _sig(logit)).astype(np.int64)
    has = {m: rng.random(n) < cov[m] for m in names}
    ids = np.arange(1, n + 1, dtype=np.int64)
    start = datetime(2020, 1, 1)
    pt = np.array([start + timedelta(days=int(d), hours=int(h)) for d, h in
                   zip(rng.integers(400, 1500, n), rng.integers(8, 18, n), strict=True)])
    birth = np.array([p - timedelta(days=int(a * 365.25)) for p, a in zip(pt, rng.uniform(40, 90, n), strict=True)])

    # events: demographics, then a year of diagnoses whose decompensation share follows z_events
    obs_k, obs_creat = np.zeros(n), np.full(n, np.nan)  # what the data reveal, for the observation oracle
    ev: list[tuple[int, Any, str, float | None]] = []
    for i in range(n):
        sid = int(ids[i])
        ev.append((sid, None, "GENDER//" + ("F" if rng.random() < 0.5 else "M"), None))
        ev.append((sid, birth[i], "MEDS_BIRTH", None))
        k_sig = rng.poisson(np.exp(0.2 + 0.9 * z["events"][i]))
        obs_k[i] = k_sig
        k_noise = rng.poisson(8)
        days = rng.uniform(1, 365, k_sig + k_noise)
        codes = list(rng.choice(_SIGNAL_CODES, k_sig)) + list(rng.choice(_NOISE_CODES, k_noise))
        for d, c in sorted(zip(days, codes, strict=True), key=lambda t: -t[0]):
            ev.append((sid, pt[i] - timedelta(days=float(d)), str(c), None))
        if future:  # a decompensation after the prediction time, for those with the outcome
            ev.append((sid, pt[i] + timedelta(days=10), _SIGNAL_CODES[0] if y[i] else _NOISE_CODES[0], None))
    events = pl.DataFrame({"subject_id": [e[0] for e in ev], "time": [e[1] for e in ev],
                           "code": [e[2] for e in ev], "numeric_value": [e[3] for e in ev]},
                          schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                  "numeric_value": pl.Float32})

    notes, images, image_rows, labs = [], {}, [], []
    for i in range(n):
        sid = int(ids[i])
        if has["notes"][i]:
            for _ in range(int(rng.integers(1, 3))):
                notes.append((sid, pt[i] - timedelta(days=float(rng.uniform(0.1, 20))), _note(rng, z["notes"][i])))
        if future:
            notes.append((sid, pt[i] + timedelta(days=12), "Readmitted with acute decompensation." if y[i] else
                          "Seen in clinic, doing well, no complaints."))
        if has["images"][i]:
            key = f"img-{sid}"
            images[key] = _image(rng, image_size, float(np.clip(4.0 + 1.6 * z["images"][i], 0.5, 9.0))
                                 * image_size / 32)
            image_rows.append((sid, key, pt[i] - timedelta(days=float(rng.uniform(0.1, 5)))))
        if future:
            key = f"img-{sid}-later"
            images[key] = _image(rng, image_size, (11.0 if y[i] else 0.5) * image_size / 32)
            image_rows.append((sid, key, pt[i] + timedelta(days=15)))
        if has["labs"][i]:
            for j in range(int(rng.integers(1, 4))):  # older panels carry less of z_labs
                weight = 1.0 if j == 0 else 0.3
                labs.append((sid, pt[i] - timedelta(days=float(0.2 + 30 * j + rng.uniform(0, 5))),
                             1.0 + 0.35 * weight * z["labs"][i] + rng.normal(0, 0.08),
                             140 + rng.normal(0, 3), 8 + rng.normal(0, 2)))
                if j == 0:
                    obs_creat[i] = labs[-1][2]
        if future:
            labs.append((sid, pt[i] + timedelta(days=8), 3.0 if y[i] else 0.9, 140.0, 8.0))
    genes = rng.normal(size=(n, 40))
    genes[:, :5] = 0.8 * z["omics"][:, None] + 0.6 * rng.normal(size=(n, 5))
    omics = pd.DataFrame(genes[has["omics"]], columns=[f"gene_{j + 1:02d}" for j in range(40)])
    omics.insert(0, "subject_id", ids[has["omics"]])

    samples = pd.DataFrame({"subject_id": ids, "prediction_time": pd.to_datetime(pt), "outcome": y})
    oracle = _oracle(rng, z, has, y, names, w, oracle_draws)
    obs = {"events": obs_k, "notes": z["notes"], "images": z["images"], "labs": obs_creat, "omics": genes[:, :5]}
    oracle["observed"] = observed_oracle(obs, has, y, names, w, seed)
    return {
        "events": events, "samples": samples,
        "notes": pd.DataFrame(notes, columns=["subject_id", "charttime", "text"]).assign(
            note_id=lambda f: [f"note-{k}" for k in range(len(f))]),
        "images": images,
        "image_table": pd.DataFrame(image_rows, columns=["subject_id", "image", "study_time"]),
        "labs": pd.DataFrame(labs, columns=["subject_id", "charttime", "creatinine", "sodium", "wbc"]),
        "omics": omics, "latents": pd.DataFrame({"subject_id": ids, **{f"z_{m}": z[m] for m in names}}),
        "present": pd.DataFrame({"subject_id": ids, **{m: has[m] for m in names}}),
        "oracle": oracle, "weights": dict(MODALITY_WEIGHTS), "coverage": cov, "seed": seed,
    }


def _oracle(rng: np.random.Generator, z: dict[str, np.ndarray], has: dict[str, np.ndarray], y: np.ndarray,
            names: list[str], w: np.ndarray, draws: int) -> dict[str, Any]:
    """The Bayes rule's AUROC with every latent, with the latents each patient's present modalities carry, and per
    set of modalities (for the ablation): missing latents integrated out by Monte Carlo."""
    zz = np.stack([z[m] for m in names], axis=1)
    pres = np.stack([has[m] for m in names], axis=1)
    noise = rng.normal(size=(draws, len(names)))

    def given(mask: np.ndarray) -> np.ndarray:  # E[p | the latents where mask is True]
        known = _B0 + (zz * w * mask).sum(axis=1)
        unknown = noise * w  # draws x M
        return _sig(known[:, None] + (unknown[None] * ~mask[:, None, :]).sum(axis=2)).mean(axis=1)

    out = {"all_latents": _auroc(y, _sig(_B0 + zz @ w)), "present_modalities": _auroc(y, given(pres))}
    for j, m in enumerate(names):
        only = np.zeros_like(pres)
        only[:, j] = pres[:, j]
        out[f"{m}_only"] = _auroc(y, given(only))
        drop = pres.copy()
        drop[:, j] = False
        out[f"without_{m}"] = _auroc(y, given(drop))
    return out


_GRID = np.linspace(-5, 5, 401)


def _likelihood(m: str, o: Any) -> np.ndarray:
    """p(observation | z) on the grid, for one patient's modality m (how the simulator wrote it)."""
    g = _GRID
    if m == "events":  # the count of decompensation codes: Poisson(exp(0.2 + 0.9 z))
        lam = np.exp(0.2 + 0.9 * g)
        return np.exp(o * np.log(lam) - lam)
    if m == "notes":  # the written severity level: z within the level's bounds
        bounds = [-np.inf] + [t for t, _ in _LEVELS]
        k = next(j for j, (t, _) in enumerate(_LEVELS) if o <= t)
        return ((g > bounds[k]) & (g <= bounds[k + 1])).astype(float)
    if m == "images":  # the opacity's radius, read exactly (pixel noise ignored: an upper bound), clipped
        r = float(np.clip(4.0 + 1.6 * o, 0.5, 9.0))
        rg = np.clip(4.0 + 1.6 * g, 0.5, 9.0)
        return np.exp(-0.5 * ((rg - r) / 0.05) ** 2)
    if m == "labs":  # the latest creatinine: 1 + 0.35 z + N(0, 0.08)
        return np.exp(-0.5 * ((o - 1.0 - 0.35 * g) / 0.08) ** 2)
    return np.exp(-0.5 * (((np.asarray(o)[None, :] - 0.8 * g[:, None]) / 0.6) ** 2).sum(axis=1))  # 5 genes


def observed_oracle(obs: dict[str, Any], has: dict[str, np.ndarray], y: np.ndarray, names: list[str], w: np.ndarray,
                    seed: int, draws: int = 200) -> dict[str, float]:
    """The Bayes rule given what each patient's data reveal (not the latents themselves): per patient and modality,
    the posterior of its latent on a grid (prior N(0, 1) times the likelihood of the observation), then
    E[P(outcome)] over independent draws from those posteriors. The ceiling for a model reading these data (the
    image's radius is taken as read exactly, so it is a little above what pixels allow). Overall, per single
    modality and without each one, with the modalities each patient has."""
    rng = np.random.default_rng(seed + 7919)
    n, prior = len(y), np.exp(-0.5 * _GRID**2)
    samples = {}
    for m in names:  # draws x n samples of z_m from each patient's posterior (the prior where m is absent)
        out = np.empty((draws, n))
        for i in range(n):
            post = prior * (_likelihood(m, obs[m][i]) if has[m][i] else 1.0)
            cdf = np.cumsum(post)
            out[:, i] = _GRID[np.minimum(np.searchsorted(cdf, rng.random(draws) * cdf[-1]), len(_GRID) - 1)]
        samples[m] = out

    def given(use: list[str]) -> float:
        logit = _B0 + sum(w[names.index(m)] * (samples[m] if m in use else rng.normal(size=(draws, n)))
                          for m in names)
        return _auroc(y, _sig(logit).mean(axis=0))

    res = {"present_modalities": given(names)}
    for m in names:
        res[f"{m}_only"] = given([m])
        res[f"without_{m}"] = given([k for k in names if k != m])
    return res

