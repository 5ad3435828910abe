"""(l) Synthetic patients: medflow's copula, TVAE and CTGAN beside SDV's GaussianCopula and CTGAN, in one run, every
generator measured by the same code (`medflow.synth.fidelity`) and by sdmetrics' QualityReport.

1. Breast cancer (569 real patients), the anchor's folds (`../shared/anchors/privacy`: StratifiedKFold(5, shuffle,
   random_state 0), folds 0-2): each generator fitted on the training fold, as many rows sampled, TSTR tested on
   the real test fold, which is also the membership-inference attack's non-members.
2. The EHR simulator (SYNTHETIC) at 20,000 patients as a table of count features (`data.as_table`), 30-day
   readmission; 20% of patients held out. SDV's CTGAN is left out of this table by default (tens of minutes on 2
   cores at 300 epochs); `--sdv-ctgan-large` adds it.
Goal (issue #19): the best medflow generator reaches TSTR AUROC >= 0.970 at DCR share <= 0.01 and
membership-inference AUROC <= 0.55, on both tables. Real data cap the EHR table's AUROC near 0.70 (TRTR), so
there the TSTR goal is read as the same share of TRTR (0.970 / 0.994 = 97.6%).

3. (`--only events`) whole patients' event sequences from the simulator (2,000 patients), `--model sequence`.

    python benchmarks/bench_synthetic.py [--patients 20000] [--folds 3] [--only breast_cancer|ehr|events]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

MEDFLOW = ("copula", "tvae", "ctgan")


def _sdv(name: str, train: pd.DataFrame, label: str, n: int, epochs: int = 300) -> tuple[pd.DataFrame, float]:
    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer

    md = Metadata.detect_from_dataframes({"t": train}, infer_keys=None)
    md.update_column(label, table_name="t", sdtype="categorical")
    t0 = time.perf_counter()
    syn = (CTGANSynthesizer(md, epochs=epochs) if name == "sdv_ctgan" else GaussianCopulaSynthesizer(md))
    syn.fit({"t": train})
    fake = syn.sample(n)
    fake = fake["t"] if isinstance(fake, dict) else fake
    return fake, time.perf_counter() - t0


def _sdmetrics_quality(real: pd.DataFrame, fake: pd.DataFrame, types: dict) -> float:
    from sdmetrics.reports.single_table import QualityReport

    from medflow.data.dataset import FeatureType

    meta = {"columns": {c: {"sdtype": "numerical" if k == FeatureType.NUMERIC else "categorical"}
                        for c, k in types.items()}}
    qr = QualityReport()
    qr.generate(real[list(types)], fake[list(types)], meta, verbose=False)
    return float(qr.get_score())


def _one(table: str, fold: int, name: str, train: pd.DataFrame, test: pd.DataFrame, types: dict, label: str,
         seed: int) -> dict:
    from medflow.synth.fidelity import fidelity_report
    from medflow.synth.generators import make_generator

    cols = list(types)
    if name.startswith("sdv_"):
        fake, fit_s = _sdv(name, train[cols].reset_index(drop=True), label, len(train))
    else:
        t0 = time.perf_counter()
        gen = make_generator(name, types).fit(train[cols].reset_index(drop=True), seed)
        fake = gen.sample(len(train), seed + 1)
        fit_s = time.perf_counter() - t0
    rep = fidelity_report(train[cols], test[cols], fake[cols], types, label, seed)
    row = {"table": table, "fold": fold, "generator": name, "quality": rep["quality"],
           "sdmetrics_quality": _sdmetrics_quality(train, fake, types), "tstr": rep["tstr_auroc"],
           "trtr": rep["trtr_auroc"], "dcr_share": rep["dcr"]["share"], "mia_auroc": rep["membership_auroc"],
           "fit_s": fit_s}
    print(row, flush=True)
    return row


def breast_cancer(folds: int = 3, generators: tuple[str, ...] = (*MEDFLOW, "sdv_copula", "sdv_ctgan")) -> list[dict]:
    from sklearn.model_selection import StratifiedKFold

    from medflow.data.builtin import load

    ds = load("breast_cancer")
    label = "malignant"
    types = {c: t for c, t in ds.feature_types.items() if c != ds.patient_id}
    frame = ds.frame
    rows = []
    skf = StratifiedKFold(5, shuffle=True, random_state=0)
    for fold, (tr, te) in enumerate(skf.split(frame, frame[label])):
        if fold >= folds:
            break
        for name in generators:
            rows.append(_one("breast_cancer", fold, name, frame.iloc[tr], frame.iloc[te], types, label, fold))
    return rows


def ehr_table(patients: int = 20_000, generators: tuple[str, ...] = (*MEDFLOW, "sdv_copula")) -> list[dict]:
    from medflow.config import DataConfig
    from medflow.data.dataset import FeatureType
    from medflow.study.data import load_study_data

    ds = load_study_data(DataConfig(dataset="ehr_sim", as_table=True, simulate={"patients": patients},
                                    sequence={"min_count": 20}))
    label = "readmission_30d"
    drop = {ds.patient_id, "source_split"}
    types = {c: t for c, t in ds.feature_types.items() if c not in drop} | {label: FeatureType.BINARY}
    pid = ds.frame[ds.patient_id].astype(str)
    rng = np.random.default_rng(0)
    patients_ = pid.unique()
    test = set(rng.choice(patients_, len(patients_) // 5, replace=False).tolist())
    is_test = pid.isin(test).to_numpy()
    train, hold = ds.frame[~is_test], ds.frame[is_test]
    return [_one(f"ehr_sim {patients} (SYNTHETIC)", 0, name, train, hold, types, label, 0) for name in generators]


def markdown(rows: list[dict]) -> list[str]:
    df = pd.DataFrame(rows)
    lines = ["| table | generator | quality (medflow / sdmetrics) | TSTR AUROC | TRTR AUROC | DCR share | "
             "membership AUROC | fit s | goal met |", "|---|---|---|---|---|---|---|---|---|"]
    for (table, gen), g in df.groupby(["table", "generator"], sort=False):
        m = g.mean(numeric_only=True)
        # breast cancer: the absolute TSTR 0.970; a table whose real ceiling (TRTR) is lower: the same
        # share of TRTR that 0.970 is of the anchor's 0.994
        floor = 0.970 if table == "breast_cancer" else 0.970 / 0.994 * m["trtr"]
        met = m["tstr"] >= floor and m["dcr_share"] <= 0.01 and m["mia_auroc"] <= 0.55
        lines.append(f"| {table} | {gen} | {m['quality']:.3f} / {m['sdmetrics_quality']:.3f} | {m['tstr']:.3f} | "
                     f"{m['trtr']:.3f} | {m['dcr_share']:.4f} | {m['mia_auroc']:.3f} | {m['fit_s']:.1f} | "
                     f"{'yes' if met else 'no'}{'' if gen in MEDFLOW else ' (reference)'} |")
    return lines


def run(patients: int = 20_000, folds: int = 3) -> list[dict]:
    warnings.filterwarnings("ignore")
    return breast_cancer(folds) + ehr_table(patients)


def events(patients: int = 2000, seed: int = 0) -> dict:
    """3. Whole patients' event sequences (`--model sequence`): the simulator's cohort (SYNTHETIC, `patients`,
    seed 0; its own held_out split kept out), the GRU generator on the other patients, as many sampled; measured
    on the 30-day readmission samples as count tables, plus the sequences' shape."""
    import tempfile

    from medflow.data.simulate.ehr import simulate_ehr
    from medflow.synth.events import synthesize_events
    from medflow.train.trainer import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        meds = simulate_ehr(f"{tmp}/meds", patients=patients, seed=seed)
        t0 = time.perf_counter()
        rep = synthesize_events(meds, seed=seed, train=TrainConfig(max_epochs=30, patience=4, lr=3e-3, batch_size=32,
                                                                   progress=False))
        rep["wall_s"] = time.perf_counter() - t0
    rep.pop("events")
    return rep


def events_markdown(r: dict) -> list[str]:
    sq = r["sequences"]
    rows = [("quality (sdmetrics definition)", r["quality"]), ("TSTR AUROC / TRTR AUROC",
                                                               f"{r['tstr_auroc']:.3f} / {r['trtr_auroc']:.3f}"),
            ("DCR share / exact copies", f"{r['dcr']['share']:.4f} / {r['dcr']['exact_copies']:.4f}"),
            ("membership-inference AUROC", r["membership_auroc"])]
    rows += [(f"{k.replace('_', ' ')}: real / synthetic", f"{sq['real'][k]:.3f} / {sq['synthetic'][k]:.3f}")
             for k in ("events_per_patient", "admissions_per_patient", "readmitted_within_30d")]
    rows += [("code frequency correlation", sq["code_frequency_correlation"]),
             ("sampled patients dropped as invalid",
              f"{r['patients']['invalid_dropped']} of {r['patients']['sampled']}"),
             ("fit seconds", r["fit_seconds"])]
    return ["| measure | value |", "|---|---|"] + [f"| {k} | {v if isinstance(v, str) else f'{v:.3f}'} |"
                                                 for k, v in rows]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--only", choices=["breast_cancer", "ehr", "events"], default=None)
    ap.add_argument("--generators", default=None, help="comma-separated subset")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    gens = tuple(args.generators.split(",")) if args.generators else None
    rows = []
    if args.only in (None, "breast_cancer"):
        rows += breast_cancer(args.folds, *([gens] if gens else []))
    if args.only in (None, "ehr"):
        rows += ehr_table(args.patients, *([gens] if gens else []))
    if rows:
        print("\n".join(markdown(rows)))
    if args.only in (None, "events"):
        print("\n".join(events_markdown(events())))
