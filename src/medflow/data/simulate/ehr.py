"""A known-truth EHR cohort simulator, written as MEDS. SYNTHETIC: every output says so.

Patients (age, sex, race) carry chronic conditions (heart failure, COPD, type 2 diabetes, chronic
kidney disease, hypertension, atrial fibrillation) coded in ICD-10-CM. Each inpatient admission has an
acute reason (pneumonia, sepsis, acute kidney injury, heart-failure exacerbation, ...), day-1 vitals and
labs (LOINC; values move with the conditions), daily creatinine and haemoglobin whose values drift over
the stay, medications (RxNorm) and procedures (ICD-10-PCS), then a discharge or an in-hospital death.

Outcomes come from a documented risk model in which order and recency matter (`RISK_MODEL`):

* 30-day readmission, at discharge: chronic conditions, the recency-weighted count of earlier
  discharges sum_j exp(-(admit - discharge_j) / 60 d) (timing, not just the count), the creatinine
  *trend* over the stay (last minus first value: order, not a summary), low haemoglobin at discharge,
  age. A readmission draw fixes the next admission 0.5-29.5 days later; otherwise any next admission
  comes more than 31 days later, so the label follows the draw exactly.
* In-hospital mortality and length of stay, 24 h after admission: age, the acute reason, day-1
  lactate, heart failure, the recency score. A death happens at the end of the stay, so the length of
  stay is untouched and every admission lasts more than 24 h.

Because each outcome is a Bernoulli (or log-normal) draw from a probability computed from the
recorded history, the oracle probability of every sample is known: it is written to
`metadata/oracle.parquet` and its AUROC to `metadata/dataset.json` (`medflow.oracle_auroc`).

`bias_group` (e.g. "B", a value of the static RACE code) injects a measurement bias: that group's
creatinine values are recorded with 4x the measurement noise, while outcomes follow the true values;
a fair model cannot recover the signal there, and the fairness audit should show the gap.

Generation is vectorized over patients and streamed shard by shard (10,000 subjects each), so memory
stays flat however many patients are asked for.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from medflow.data.sources.meds import atomic_dir, write_codes, write_shard

__all__ = ["simulate_ehr", "RISK_MODEL", "CODES"]

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
YEAR_US = int(365.25 * DAY_US)
T0 = 1_420_070_400 * 1_000_000  # 2015-01-01 UTC
STATIC_TIME = np.iinfo(np.int64).min
SHARD = 10_000

CHRONIC = {  # name: (ICD-10-CM code, base log-odds at 65, log-odds per decade of age)
    "chf": ("ICD10CM//I50.9", -1.9, 0.45), "copd": ("ICD10CM//J44.9", -2.0, 0.3),
    "dm": ("ICD10CM//E11.9", -1.2, 0.15), "ckd": ("ICD10CM//N18.3", -1.9, 0.5),
    "htn": ("ICD10CM//I10", -0.2, 0.4), "afib": ("ICD10CM//I48.91", -2.3, 0.55),
}
ACUTE = {  # name: (ICD-10-CM code, probability of being the admission's reason)
    "none": ("ICD10CM//R69", 0.22), "pneumonia": ("ICD10CM//J18.9", 0.18), "sepsis": ("ICD10CM//A41.9", 0.12),
    "aki": ("ICD10CM//N17.9", 0.1), "hf_exac": ("ICD10CM//I50.23", 0.1), "uti": ("ICD10CM//N39.0", 0.1),
    "mi": ("ICD10CM//I21.4", 0.06), "gi_bleed": ("ICD10CM//K92.2", 0.06), "stroke": ("ICD10CM//I63.9", 0.06),
}
LABS = {"creatinine": "LOINC//2160-0", "lactate": "LOINC//2524-7", "wbc": "LOINC//6690-2",
        "hemoglobin": "LOINC//718-7", "glucose": "LOINC//2345-7", "bnp": "LOINC//30934-4",
        "sodium": "LOINC//2951-2", "potassium": "LOINC//2823-3", "heart_rate": "LOINC//8867-4",
        "sbp": "LOINC//8480-6"}
MEDS_RX = {"furosemide": "RXNORM//4603", "metoprolol": "RXNORM//6918", "metformin": "RXNORM//6809",
           "insulin": "RXNORM//5856", "lisinopril": "RXNORM//29046", "warfarin": "RXNORM//11289",
           "albuterol": "RXNORM//435", "ceftriaxone": "RXNORM//2193", "vancomycin": "RXNORM//11124",
           "heparin": "RXNORM//5224", "aspirin": "RXNORM//1191", "pantoprazole": "RXNORM//40790"}
PROCS = {"central_line": "ICD10PCS//02HV33Z", "dialysis": "ICD10PCS//5A1D70Z",
         "ventilation": "ICD10PCS//5A1955Z", "transfusion": "ICD10PCS//30233N1"}
OTHER = ["MEDS_BIRTH", "MEDS_DEATH", "ENCOUNTER//INPATIENT//START", "ENCOUNTER//INPATIENT//END",
         "GENDER//F", "GENDER//M", "RACE//W", "RACE//B", "RACE//A", "RACE//H", "RACE//O"]
CODES = (OTHER + [c for c, *_ in CHRONIC.values()] + [c for c, _ in ACUTE.values()] + list(LABS.values())
         + list(MEDS_RX.values()) + list(PROCS.values()))
CODE_ID = {c: i for i, c in enumerate(CODES)}
RACES = np.array(["W", "B", "A", "H", "O"])

RISK_MODEL = {
    "readmission_30d": "logit = -2.6 + 0.6 chf + 0.45 copd + 0.35 ckd + 0.3 dm + 0.5 hf_exac + 1.4 recency "
                       "+ 1.8 (creatinine_last - creatinine_first) + 0.7 [hemoglobin_last < 10] + 0.015 (age - 65); "
                       "recency = sum over earlier discharges of exp(-(admit - discharge) / 60 days)",
    "in_hospital_mortality": "logit = -4.1 + 0.045 (age - 65) + 1.0 sepsis + 0.6 (lactate_day1 - 1.5) + 0.5 chf "
                             "+ 0.6 recency + 0.5 mi + 0.6 stroke",
    "los": "log(los - 1.05 days) = log 3.2 + 0.35 sepsis + 0.25 pneumonia + 0.3 stroke + 0.12 (lactate_day1 - 2) "
           "+ 0.05 (age - 65) / 10 + N(0, 0.55^2)",
}
LOS_SD = 0.55


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _phi(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


class _Events:
    """Column buffers of one shard's events."""

    def __init__(self) -> None:
        self.subject: list[np.ndarray] = []
        self.time: list[np.ndarray] = []
        self.code: list[np.ndarray] = []
        self.value: list[np.ndarray] = []

    def add(self, subject: np.ndarray, time: np.ndarray, code: np.ndarray | int, value: np.ndarray | None = None,
            mask: np.ndarray | None = None) -> None:
        subject, time = np.asarray(subject), np.asarray(time, dtype=np.int64)
        code = np.broadcast_to(np.asarray(code, dtype=np.int32), subject.shape)
        value = np.full(subject.shape, np.nan, np.float32) if value is None else np.asarray(value, np.float32)
        if mask is not None:
            subject, time, code, value = subject[mask], time[mask], code[mask], value[mask]
        self.subject.append(subject.astype(np.int64))
        self.time.append(time)
        self.code.append(np.asarray(code, np.int32))
        self.value.append(value)

    def frame(self) -> pl.DataFrame:
        s, t = np.concatenate(self.subject), np.concatenate(self.time)
        c, v = np.concatenate(self.code), np.concatenate(self.value)
        order = np.lexsort((c, t, s))  # by subject, then time (static first), then code
        s, t, c, v = s[order], t[order], c[order], v[order]
        time = pl.Series("time", t).cast(pl.Datetime("us"))
        time = pl.when(pl.Series(t == STATIC_TIME)).then(None).otherwise(time)
        return pl.DataFrame({"subject_id": s}).with_columns(
            pl.select(time.alias("time")).to_series(),
            pl.Series("code", CODES, pl.String).gather(c),
            pl.Series("numeric_value", v, pl.Float32).fill_nan(None))


def _shard(rng: np.random.Generator, ids: np.ndarray, bias_group: str | None,
           max_admissions: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    n = len(ids)
    ev = _Events()
    female = rng.random(n) < 0.52
    race = RACES[np.searchsorted(np.cumsum([0.6, 0.15, 0.08, 0.12, 0.05]), rng.random(n) * 0.99999)]
    age0 = rng.uniform(35, 90, n)
    start = T0 + (rng.random(n) * 4 * YEAR_US).astype(np.int64)
    birth = start - (age0 * YEAR_US).astype(np.int64)
    chronic = {k: rng.random(n) < _sig(b + s * (age0 - 65) / 10) for k, (_, b, s) in CHRONIC.items()}
    ev.add(ids, np.full(n, STATIC_TIME), np.where(female, CODE_ID["GENDER//F"], CODE_ID["GENDER//M"]))
    ev.add(ids, np.full(n, STATIC_TIME), np.array([CODE_ID[f"RACE//{r}"] for r in race], np.int32))
    ev.add(ids, birth, CODE_ID["MEDS_BIRTH"])
    biased = race == bias_group if bias_group else np.zeros(n, bool)

    oracle = []
    active = np.arange(n)
    admit = start.copy()
    recency_at_discharge = np.zeros(n)
    last_discharge = np.zeros(n, np.int64)
    acute_names = list(ACUTE)
    acute_cum = np.cumsum([p for _, p in ACUTE.values()])
    for k in range(max_admissions):
        if len(active) == 0:
            break
        m = len(active)
        sid, a = ids[active], admit[active]
        age = (a - birth[active]) / YEAR_US
        ch = {name: flags[active].astype(float) for name, flags in chronic.items()}
        recency = np.where(k > 0, recency_at_discharge[active] * np.exp(-(a - last_discharge[active]) / (60 * DAY_US)),
                           0.0)
        acute_idx = np.searchsorted(acute_cum / acute_cum[-1], rng.random(m))
        ac = {name: (acute_idx == j).astype(float) for j, name in enumerate(acute_names)}
        ac["hf_exac"] = np.maximum(ac["hf_exac"], (ch["chf"] > 0) & (rng.random(m) < 0.08))
        # day-1 physiology (true values)
        creat1 = np.clip(0.9 + 0.9 * ch["ckd"] + 0.6 * ac["aki"] + 0.2 * ac["sepsis"] + rng.normal(0, 0.15, m), 0.4, 9)
        trend = rng.normal(0.4 * ac["aki"] + 0.25 * ac["sepsis"] - 0.1, 0.35, m)
        creat_last = np.clip(creat1 + trend, 0.3, 10)
        lactate = 1.2 + 1.8 * ac["sepsis"] + 0.4 * ac["mi"] + np.abs(rng.normal(0, 0.6, m))
        wbc = 8 + 6 * ac["sepsis"] + 4 * ac["pneumonia"] + rng.normal(0, 2, m)
        hgb1 = 13 - 1.5 * ch["ckd"] - 3 * ac["gi_bleed"] + rng.normal(0, 1.2, m)
        hgb_last = hgb1 + rng.normal(-0.3, 0.6, m)
        glucose = 110 + 60 * ch["dm"] + rng.normal(0, 25, m)
        bnp = 100 + 700 * ac["hf_exac"] + 250 * ch["chf"] + np.abs(rng.normal(0, 100, m))
        hr = 85 + 15 * ac["sepsis"] + rng.normal(0, 10, m)
        sbp = 128 - 15 * ac["sepsis"] + rng.normal(0, 15, m)
        # outcomes from the risk model
        mean_log = (math.log(3.2) + 0.35 * ac["sepsis"] + 0.25 * ac["pneumonia"] + 0.3 * ac["stroke"]
                    + 0.12 * (lactate - 2) + 0.05 * (age - 65) / 10)
        los_days = 1.05 + np.exp(mean_log + rng.normal(0, LOS_SD, m))
        p_long = 1 - _phi((math.log(7 - 1.05) - mean_log) / LOS_SD)
        p_death = _sig(-4.1 + 0.045 * (age - 65) + 1.0 * ac["sepsis"] + 0.6 * (lactate - 1.5) + 0.5 * ch["chf"]
                       + 0.6 * recency + 0.5 * ac["mi"] + 0.6 * ac["stroke"])
        died = rng.random(m) < p_death
        p_readm = _sig(-2.6 + 0.6 * ch["chf"] + 0.45 * ch["copd"] + 0.35 * ch["ckd"] + 0.3 * ch["dm"]
                       + 0.5 * ac["hf_exac"] + 1.4 * recency + 1.8 * (creat_last - creat1)
                       + 0.7 * (hgb_last < 10) + 0.015 * (age - 65))
        readm = (rng.random(m) < p_readm) & ~died
        los_us = (los_days * DAY_US).astype(np.int64)
        disch = a + los_us
        # --- events of this admission ---
        ev.add(sid, a, CODE_ID["ENCOUNTER//INPATIENT//START"])
        ev.add(sid, a + 10 * 60 * 1_000_000, np.array([CODE_ID[ACUTE[acute_names[j]][0]] for j in range(len(ACUTE))],
                                                      np.int32)[acute_idx])
        ev.add(sid, a + 10 * 60 * 1_000_000, CODE_ID["ICD10CM//I50.23"], mask=(ac["hf_exac"] > 0) & (acute_idx != 4))
        for name, (code, *_) in CHRONIC.items():
            ev.add(sid, a + 10 * 60 * 1_000_000, CODE_ID[code], mask=(ch[name] > 0) & (rng.random(m) < 0.85))
        noise = np.where(biased[active], 0.6, 0.15)
        t1 = a + 2 * HOUR_US
        ev.add(sid, a + HOUR_US, CODE_ID[LABS["heart_rate"]], hr)
        ev.add(sid, a + HOUR_US, CODE_ID[LABS["sbp"]], sbp)
        ev.add(sid, t1, CODE_ID[LABS["creatinine"]], np.clip(creat1 + rng.normal(0, noise), 0.2, None))
        ev.add(sid, t1, CODE_ID[LABS["wbc"]], np.clip(wbc, 0.5, None))
        ev.add(sid, t1, CODE_ID[LABS["hemoglobin"]], hgb1)
        ev.add(sid, t1, CODE_ID[LABS["glucose"]], glucose)
        ev.add(sid, t1, CODE_ID[LABS["sodium"]], rng.normal(139, 3, m))
        ev.add(sid, t1, CODE_ID[LABS["potassium"]], rng.normal(4.2, 0.4, m))
        ev.add(sid, t1, CODE_ID[LABS["lactate"]], lactate, mask=(ac["sepsis"] > 0) | (rng.random(m) < 0.35))
        ev.add(sid, t1, CODE_ID[LABS["bnp"]], bnp, mask=(ch["chf"] + ac["hf_exac"] > 0) | (rng.random(m) < 0.2))
        # daily creatinine and haemoglobin: a line from the first to the last value, the last on discharge day
        n_daily = np.floor(los_days - 0.2).astype(np.int64)
        rep = np.repeat(np.arange(m), n_daily)
        day = np.arange(rep.size) - np.repeat(np.cumsum(n_daily) - n_daily, n_daily) + 1
        frac = day / np.maximum(n_daily[rep], 1)
        t_daily = np.minimum(a[rep] + day * DAY_US + 6 * HOUR_US, disch[rep] - 2 * HOUR_US)
        creat_d = creat1[rep] + frac * (creat_last - creat1)[rep] + rng.normal(0, noise[rep])
        ev.add(sid[rep], t_daily, CODE_ID[LABS["creatinine"]], np.clip(creat_d, 0.2, None))
        ev.add(sid[rep], t_daily, CODE_ID[LABS["hemoglobin"]], hgb1[rep] + frac * (hgb_last - hgb1)[rep]
               + rng.normal(0, 0.2, rep.size))
        tm = a + 3 * HOUR_US
        for drug, cond in (("furosemide", ch["chf"] + ac["hf_exac"]), ("metoprolol", ch["chf"] + ch["afib"]),
                           ("metformin", ch["dm"] * (1 - ch["ckd"])), ("insulin", ch["dm"] * (rng.random(m) < 0.5)),
                           ("lisinopril", ch["htn"]), ("warfarin", ch["afib"]), ("albuterol", ch["copd"]),
                           ("ceftriaxone", ac["pneumonia"] + ac["uti"]), ("vancomycin", ac["sepsis"]),
                           ("heparin", ac["mi"] + 0.3), ("aspirin", ac["mi"] + ac["stroke"] + 0.2),
                           ("pantoprazole", ac["gi_bleed"] + 0.3)):
            ev.add(sid, tm, CODE_ID[MEDS_RX[drug]], mask=rng.random(m) < np.clip(cond, 0, 1) * 0.9)
        ev.add(sid, a + 4 * HOUR_US, CODE_ID[PROCS["central_line"]], mask=(ac["sepsis"] > 0) & (rng.random(m) < 0.5))
        ev.add(sid, a + 5 * HOUR_US, CODE_ID[PROCS["ventilation"]], mask=(lactate > 3.5) & (rng.random(m) < 0.6))
        ev.add(sid, a + DAY_US + 3 * HOUR_US, CODE_ID[PROCS["dialysis"]],
               mask=(creat_last > 2.5) & (rng.random(m) < 0.4) & (los_days > 1.3))
        ev.add(sid, a + 6 * HOUR_US, CODE_ID[PROCS["transfusion"]], mask=(hgb1 < 8.5) & (rng.random(m) < 0.7))
        ev.add(sid, disch, CODE_ID["ENCOUNTER//INPATIENT//END"])
        ev.add(sid, disch, CODE_ID["MEDS_DEATH"], mask=died)
        oracle.append(pl.DataFrame({
            "subject_id": sid, "admit": a, "discharge": disch, "p_readmission_30d": p_readm,
            "readmission_30d": readm.astype(np.int8), "died_in_hospital": died.astype(np.int8),
            "p_in_hospital_mortality": p_death, "in_hospital_mortality": died.astype(np.int8),
            "p_long_los": p_long, "long_los": (los_days > 7).astype(np.int8), "los": los_days,
            "los_expected": 1.05 + np.exp(mean_log + LOS_SD**2 / 2)}))
        # --- the next admission ---
        later = ~died & ~readm & (rng.random(m) < 0.45)
        gap = np.where(readm, rng.uniform(0.5, 29.5, m), 31 + rng.exponential(250, m)) * DAY_US
        recency_at_discharge[active] = recency * np.exp(-(disch - a) / (60 * DAY_US)) + 1.0
        last_discharge[active] = disch
        admit[active] = disch + gap.astype(np.int64)
        stop = ~(readm | later)
        outside = stop & ~died & (rng.random(m) < 0.15)
        ev.add(sid, disch + ((31 + rng.exponential(400, m)) * DAY_US).astype(np.int64), CODE_ID["MEDS_DEATH"],
               mask=outside)
        active = active[readm | later]
    return ev.frame(), pl.concat(oracle)


def _auroc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")


def simulate_ehr(out: str | Path, patients: int = 2000, seed: int = 0, bias_group: str | None = None,
                 max_admissions: int = 40, overwrite: bool = False,
                 progress: Callable[[int], None] | None = None, first_id: int = 0) -> Path:
    """Write a simulated MEDS cohort to `out` (shards by split, metadata, oracle). Returns the folder.

    Deterministic for a given (patients, seed, bias_group). Memory is bounded by one shard of
    10,000 subjects, so a million patients stream through in constant RAM. Subject ids run from `first_id`
    (e.g. a pretraining cohort written with ids that cannot collide with a study's).
    """
    if bias_group is not None and bias_group not in RACES:
        from medflow.errors import ConfigError

        raise ConfigError(f"--bias-group '{bias_group}': must be one of the simulated RACE values {list(RACES)}.")
    out = Path(out)
    with atomic_dir(out, overwrite) as tmp:
        split_parts, oracle_parts, n_events = [], [], 0
        counts = {"train": 0, "tuning": 0, "held_out": 0}
        for shard, first in enumerate(range(0, patients, SHARD)):
            rng = np.random.default_rng([seed, shard])
            ids = first_id + np.arange(first, min(first + SHARD, patients), dtype=np.int64)
            events, oracle = _shard(rng, ids, bias_group, max_admissions)
            split = np.array(["train", "tuning", "held_out"])[np.searchsorted([0.8, 0.9], rng.random(len(ids)))]
            splits = pl.DataFrame({"subject_id": ids, "split": split})
            events = events.join(splits, on="subject_id", how="left", maintain_order="left")
            for (name,), part in events.partition_by("split", as_dict=True).items():
                path = tmp / "data" / str(name) / f"{counts[str(name)]}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_shard(part, path)
                counts[str(name)] += 1
            n_events += events.height
            split_parts.append(splits)
            oracle_parts.append(oracle.select(pl.exclude("admit", "discharge"),
                                              pl.col("admit").cast(pl.Datetime("us")),
                                              pl.col("discharge").cast(pl.Datetime("us"))))
            if progress:
                progress(len(ids))
        meta = tmp / "metadata"
        meta.mkdir()
        pl.concat(split_parts).write_parquet(meta / "subject_splits.parquet")
        oracle = pl.concat(oracle_parts)
        oracle.write_parquet(meta / "oracle.parquet")
        alive = oracle.filter(pl.col("died_in_hospital") == 0)
        auroc = {
            "readmission_30d": _auroc(alive["readmission_30d"].to_numpy(), alive["p_readmission_30d"].to_numpy()),
            "in_hospital_mortality": _auroc(oracle["in_hospital_mortality"].to_numpy(),
                                            oracle["p_in_hospital_mortality"].to_numpy()),
            "long_los": _auroc(oracle["long_los"].to_numpy(), oracle["p_long_los"].to_numpy()),
        }
        write_codes(pl.DataFrame({"code": CODES}), meta / "codes.parquet")
        info = {"dataset_name": f"medflow_simulated_ehr_{patients}_seed{seed}", "dataset_version": "1",
                "etl_name": "medflow.simulate_ehr", "etl_version": _version(), "meds_version": "0.4.1",
                "medflow": {"synthetic": True, "simulator": "medflow.data.simulate.ehr", "seed": seed,
                            "patients": patients, "events": n_events, "bias_group": bias_group,
                            "risk_model": RISK_MODEL, "oracle_auroc": auroc,
                            "note": "SYNTHETIC DATA from a documented risk model; not real patients."}}
        (meta / "dataset.json").write_text(json.dumps(info, indent=1))
        (tmp / "SYNTHETIC.txt").write_text("Simulated patients (medflow simulate ehr). Not real data.\n")
    return out


def _version() -> str:
    import medflow

    return medflow.__version__
