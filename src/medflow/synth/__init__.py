"""Synthetic patients: a generator fitted on real training patients, sampled, and measured for fidelity and privacy.

`synthesize(source, model="tvae", n=10000, output="synthetic.parquet")` reads `source` (a finished run directory,
a study YAML, a CSV/Parquet file or a built-in dataset name; with `model="sequence"`, event data:
`synth/events.py`), keeps a share of the patients out (a run's own test
patients, or `holdout` of them drawn by patient), fits the generator (`synth/generators.py`) on the others, samples
`n` records and writes them with a fidelity and privacy report (`synth/fidelity.py`) beside them:
`<output>`, `<output stem>.fidelity.json` and `<output stem>.report.html`. Every output says SYNTHETIC: the Parquet
file carries `medflow.synthetic` in its metadata (medflow reads it back as synthetic data), a CSV a `synthetic`
column whose every value is SYNTHETIC, the patient ids read `SYN-000001`, ..., and the report's title.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.dataset import Dataset, FeatureType
from medflow.errors import ConfigError, DataError

__all__ = ["synthesize", "SYNTHETIC_KEY"]

SYNTHETIC_KEY = b"medflow.synthetic"
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv", ".tsv")


def _source(source: str | Path, patient_id: str | None) -> tuple[Dataset, str | None, set[str] | None]:
    """The dataset, its label column (when a study names one) and, for a run, its test patients."""
    from medflow.config import load_config
    from medflow.data.builtin import describe
    from medflow.data.builtin import load as load_builtin
    from medflow.data.sources.tabular import read_table
    from medflow.study.data import load_study_data

    p = Path(source)
    if p.is_dir() and (p / "study.yaml").exists():  # a finished run: its data, label and test patients
        import yaml

        from medflow.config import parse_config

        cfg = parse_config(yaml.safe_load((p / "study.yaml").read_text()), str(p / "study.yaml"))
        preds = pd.read_parquet(p / "predictions.parquet", columns=["patient_id", "split", "fold"])
        test = set(preds.loc[(preds["split"] == "test") & (preds["fold"] == 0), "patient_id"].astype(str))
        return load_study_data(cfg.data), _one_label(cfg), test
    if p.suffix.lower() in (".yaml", ".yml"):
        cfg = load_config(p)
        return load_study_data(cfg.data), _one_label(cfg), None
    if p.exists():
        if patient_id is None:
            head = pd.read_parquet(p).columns if p.suffix.lower() in (".parquet", ".pq") else \
                pd.read_csv(p, nrows=0).columns
            patient_id = "patient_id" if "patient_id" in head else None
        return read_table(p, patient_id=patient_id), None, None
    if str(source) in {d["name"] for d in describe()}:
        ds = load_builtin(str(source))
        return ds, ds.label_hint, None
    raise ConfigError(f"{source}: not a run directory, study YAML, CSV/Parquet file or built-in dataset.")


def _one_label(cfg: Any) -> str | None:
    cols = cfg.task.label_columns
    return cols[0] if len(cols) == 1 else None


def synthesize(source: str | Path | Dataset, model: str = "tvae", n: int | None = None,
               output: str | Path | None = None, label: str | None = None, columns: list[str] | None = None,
               holdout: float = 0.2, seed: int = 0, params: dict[str, Any] | None = None,
               train: Any = None, patient_id: str | None = None, cohort: str = "readmission_30d") -> dict[str, Any]:
    """Fit `model` on the real training patients of `source`, sample `n` records (default: as many as the
    training rows) and measure them; returns the fidelity report with the synthetic frame under "frame".

    A file's patient id column is `patient_id` (the column of that name, when there is one); without one, every
    row is its own patient. Identifier columns are never generated: the synthetic ids read SYN-000001, ...
    `model="sequence"`: event data (a MEDS folder or `ehr_sim`) synthesized as whole patients' event sequences
    (`synth/events.py`), measured on `cohort`'s prediction samples; `output` is then a folder."""
    from medflow.synth.fidelity import fidelity_report
    from medflow.synth.generators import make_generator

    if model == "sequence":  # event data: whole patients' event sequences, written as a MEDS folder
        from medflow.synth.events import synthesize_events

        return synthesize_events(source, n, output, cohort, holdout, seed, params, train)
    if output is not None and Path(output).suffix.lower() not in OUTPUT_SUFFIXES:
        raise ConfigError(f"-o {output}: write .parquet (it carries the SYNTHETIC mark) or .csv.")
    if isinstance(source, Dataset):
        ds, run_label, test = source, source.label_hint, None
    else:
        ds, run_label, test = _source(source, patient_id)
    if ds.modality != "tabular":
        raise ConfigError(f"{ds.source}: {model} generates tables; for event data use --model sequence (whole "
                          f"patients' event sequences), or data.as_table: true for their count features; "
                          f"{ds.modality} data are not supported otherwise.")
    label = label or run_label
    available = [c for c in ds.feature_types if c != ds.patient_id]
    if label is not None and label not in ds.frame.columns:
        raise DataError(f"{ds.source}: label column '{label}' is not in the data.")
    if columns:
        unknown = [c for c in columns if c not in available]
        if unknown:
            raise DataError(f"{ds.source}: columns {unknown} are not in the data the generator is trained on; it "
                            f"has {len(available)} columns: {available[:20]}{' ...' if len(available) > 20 else ''}.")
        available = list(dict.fromkeys(columns + ([label] if label and label not in columns else [])))
    types = {c: ds.feature_types[c] for c in available}
    if label is not None and (types.get(label) is None or ds.frame[label].nunique() <= 2):
        # the outcome is generated as a category (a 0/1 label read as numeric, too), so samples keep its values
        types[label] = FeatureType.BINARY if ds.frame[label].nunique() <= 2 else FeatureType.CATEGORICAL
    frame = ds.frame
    pid = frame[ds.patient_id].astype(str)
    if test is None:
        if not 0 < holdout < 1:
            raise ConfigError(f"--holdout must be between 0 and 1, got {holdout}.")
        patients = pid.unique()
        rng = np.random.default_rng(seed)
        test = set(rng.choice(patients, max(1, round(holdout * len(patients))), replace=False).tolist())
    is_test = pid.isin(test).to_numpy()
    train_rows, holdout_rows = frame.loc[~is_test, list(types)], frame.loc[is_test, list(types)]
    if len(holdout_rows) == 0 or len(train_rows) < 10:
        raise DataError(f"{ds.source}: {len(train_rows)} training and {len(holdout_rows)} held-out rows; "
                        "synthesizing needs at least 10 training rows and some held-out rows.")
    n = len(train_rows) if n is None else n
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}.")
    gen = make_generator(model, types, **(params or {}))
    t0 = time.perf_counter()
    gen.fit(train_rows.reset_index(drop=True), seed, train)
    fit_s = time.perf_counter() - t0
    syn = gen.sample(n, seed + 1)
    report = fidelity_report(train_rows, holdout_rows, syn, types, label, seed)
    report.update(model=model, fit_seconds=fit_s, source=str(ds.source), synthetic=True, seed=seed,
                  real_data_synthetic=bool(ds.synthetic), columns=list(types))
    id_col = "patient_id" if ds.patient_id == "__row__" else ds.patient_id
    syn.insert(0, id_col, [f"SYN-{i + 1:06d}" for i in range(n)])
    if output is not None:
        write_synthetic(Path(output), syn, report)
    report["frame"] = syn
    return report


def write_synthetic(path: Path, frame: pd.DataFrame, report: dict[str, Any]) -> None:
    """The records (Parquet with the SYNTHETIC mark, or CSV with a synthetic column), the report JSON and HTML;
    each written to a temp file and renamed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medflow.artifacts import atomic_write_bytes, write_text
    from medflow.synth.report import report_html

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), SYNTHETIC_KEY: b"true"})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        atomic_write_bytes(path, sink.getvalue().to_pybytes())
    elif suffix in (".csv", ".tsv"):
        out = frame.copy()
        out.insert(0, "synthetic", "SYNTHETIC")
        atomic_write_bytes(path, out.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",").encode())
    else:
        raise ConfigError(f"-o {path}: write .parquet (it carries the SYNTHETIC mark) or .csv.")
    stem = path.with_suffix("")
    write_text(stem.with_name(stem.name + ".fidelity.json"), json.dumps(report, indent=1, default=str))
    write_text(stem.with_name(stem.name + ".report.html"), report_html(report, frame))
