"""OMOP benchmarks, measured side by side in one run on the simulator's OMOP export (SYNTHETIC patients).

(a) OMOP -> MEDS: `medflow convert` against meds_etl's OMOP converter (`meds_etl_omop`, 0.3.11, in its own
    environment `benchmarks/.venv-meds-etl`: it pulls meds 0.3.3 where medflow has 0.4.1, and needs polars < 1.25;
    `make bench` creates it) on the same Parquet files. Wall seconds and peak RSS of each child process
    (/usr/bin/time), and the events compared: counts per clinical code (ICD10CM, SNOMED, LOINC, RxNorm,
    ICD10PCS; both write `vocabulary_id/concept_code`; medflow with `--codes source`, as meds_etl prefers the
    source concept) and in all.
(b) Time to the first trained model: the same study (readmission_30d, logistic regression on code counts) with
    the OMOP tables read from the Parquet folder, a DuckDB file and a throwaway PostgreSQL server on loopback,
    each `medflow run` in a child process.

    python benchmarks/bench_omop.py --patients 100000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(tempfile.gettempdir()) / "medflow-bench-omop"
METL = ROOT / "benchmarks" / ".venv-meds-etl" / "bin" / "meds_etl_omop"
CLINICAL = r"^(SNOMED|ICD10CM|LOINC|RxNorm|ICD10PCS)/"


def _timed(cmd: list[str], cwd: Path = WORK, env: dict | None = None) -> dict:
    """Wall seconds and peak RSS (GB) of one child process, via GNU time."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    rss_kb = int(r.stderr.strip().splitlines()[-1])
    return {"seconds": wall, "peak_rss_gb": rss_kb / 1024 ** 2}


def _code_counts(folder: Path):
    import polars as pl

    return (pl.scan_parquet(folder / "data" / "**" / "*.parquet").group_by("code").agg(pl.len().alias("n"))
            .collect())


def convert(patients: int) -> dict:
    """(a) medflow convert vs meds_etl_omop on the same OMOP Parquet folder."""
    import polars as pl

    from medflow.data.simulate.omop import simulate_omop

    WORK.mkdir(exist_ok=True)
    omop = WORK / f"omop_{patients}"
    if not (omop / "person.parquet").exists():
        t0 = time.perf_counter()
        simulate_omop(omop, patients=patients, seed=0, overwrite=True)
        print(f"simulated {patients:,} patients as OMOP in {time.perf_counter() - t0:.0f} s", flush=True)
    for d in ("meds_medflow", "meds_etl"):
        shutil.rmtree(WORK / d, ignore_errors=True)
    ours = _timed([sys.executable, "-m", "medflow", "convert", str(omop), "-o", str(WORK / "meds_medflow"),
                   "--codes", "source", "--chunk-persons", "20000"])
    if not METL.exists():
        raise SystemExit(f"{METL} not found: `make bench` creates it (python -m venv benchmarks/.venv-meds-etl && "
                         "benchmarks/.venv-meds-etl/bin/pip install meds_etl==0.3.11)")
    theirs = _timed([str(METL), str(omop), str(WORK / "meds_etl"), "--num_shards", "10", "--num_proc", "1"])
    a, b = _code_counts(WORK / "meds_medflow"), _code_counts(WORK / "meds_etl")
    both = a.join(b, on="code", how="full", suffix="_etl", coalesce=True).fill_null(0)
    clinical = both.filter(pl.col("code").str.contains(CLINICAL))
    same = clinical.filter(pl.col("n") == pl.col("n_etl"))
    return {"patients": patients, "medflow": ours, "meds_etl": theirs,
            "time_ratio": ours["seconds"] / theirs["seconds"], "rss_ratio": ours["peak_rss_gb"] / theirs["peak_rss_gb"],
            "clinical_codes": clinical.height, "clinical_codes_equal": same.height,
            "clinical_events": int(clinical["n"].sum()), "clinical_events_etl": int(clinical["n_etl"].sum()),
            "events": int(a["n"].sum()), "events_etl": int(b["n"].sum()),
            "codes_only_medflow": both.filter(pl.col("n_etl") == 0)["code"].head(8).to_list(),
            "codes_only_etl": both.filter(pl.col("n") == 0)["code"].head(8).to_list()}


def _load_postgres(url: str, omop: Path) -> None:
    """The Parquet tables into schema `cdm` with COPY (psycopg), the way a site loads its CDM."""
    import io

    import polars as pl
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("DROP SCHEMA IF EXISTS cdm CASCADE")
        conn.execute("CREATE SCHEMA cdm")
        for f in sorted(omop.glob("*.parquet")):
            frame = pl.read_parquet(f)
            types = {pl.Int64: "bigint", pl.Int32: "integer", pl.Float64: "double precision", pl.Date: "date",
                     pl.Datetime("us"): "timestamp"}
            cols = ", ".join(f"{c} {types.get(t, 'text')}" for c, t in frame.schema.items())
            conn.execute(f"CREATE TABLE cdm.{f.stem} ({cols})")
            buf = io.BytesIO()
            frame.write_csv(buf)
            with conn.cursor().copy(f"COPY cdm.{f.stem} FROM STDIN (FORMAT csv, HEADER)") as copy:
                copy.write(buf.getvalue())


def first_model(patients: int) -> list[dict]:
    """(b) `medflow run` to the first trained model from Parquet, DuckDB and PostgreSQL."""
    import polars as pl
    import yaml

    sys.path.insert(0, str(ROOT))
    from tests.conftest import start_postgres

    omop = WORK / f"omop_{patients}"
    duck = WORK / f"omop_{patients}.duckdb"
    if not duck.exists():
        import duckdb

        con = duckdb.connect(str(duck))
        for f in sorted(omop.glob("*.parquet")):
            con.execute(f"CREATE TABLE {f.stem} AS SELECT * FROM read_parquet('{f}')")
        con.close()
    rows = []
    with start_postgres() as pg:
        t0 = time.perf_counter()
        _load_postgres(pg, omop)
        load_s = time.perf_counter() - t0
        for name, source in (("Parquet folder", {"path": str(omop)}), ("DuckDB file", {"url": f"duckdb:///{duck}"}),
                             ("PostgreSQL (loopback)", {"url": pg.replace("postgresql://", "postgresql+psycopg://"),
                                                        "cdm_schema": "cdm"})):
            study = {"name": f"omop-{name.split()[0].lower()}", "output_dir": str(WORK / "runs"),
                     "data": {"omop": source, "cohort": "readmission_30d"},
                     "task": {"kind": "binary", "label": "readmission_30d"}, "models": ["logistic_regression"],
                     "train": {"progress": False}, "evaluate": {"n_bootstrap": 100},
                     "explain": {"max_records": 50, "n_repeats": 1, "examples": 1}}
            path = WORK / f"{study['name']}.yaml"
            path.write_text(yaml.safe_dump(study))
            r = _timed([sys.executable, "-m", "medflow", "run", str(path)])
            run = sorted((WORK / "runs" / study["name"]).glob("*/metrics.json"))[-1]
            auroc = json.loads(run.read_text())["models"]["logistic_regression"]["metrics"]["auroc"]
            rows.append({"source": name, **r, "auroc": auroc,
                         "load_s": load_s if name.startswith("PostgreSQL") else None,
                         "samples": pl.read_parquet(run.parent / "predictions.parquet").height})
    base = rows[0]["seconds"]
    for r in rows:
        r["ratio"] = r["seconds"] / base
    return rows


def markdown(conv: dict | None, runs: list[dict]) -> list[str]:
    lines = []
    if conv:
        m, e = conv["medflow"], conv["meds_etl"]
        lines += [f"### OMOP -> MEDS, {conv['patients']:,} SYNTHETIC patients (the simulator's OMOP Parquet "
                  "export)", "",
                  "| converter | seconds | peak RSS GB |", "|---|---|---|",
                  f"| meds_etl 0.3.11 (`meds_etl_omop --num_proc 1`) | {e['seconds']:.1f} | {e['peak_rss_gb']:.2f} |",
                  f"| medflow (`medflow convert --codes source`) | {m['seconds']:.1f} | {m['peak_rss_gb']:.2f} |",
                  f"| **ratio** | **{conv['time_ratio']:.2f}x** | **{conv['rss_ratio']:.2f}x** |", "",
                  f"Events: {conv['clinical_codes_equal']} of {conv['clinical_codes']} clinical codes have the same "
                  f"count in both ({conv['clinical_events']:,} clinical events by medflow, "
                  f"{conv['clinical_events_etl']:,} by meds_etl); all events {conv['events']:,} vs "
                  f"{conv['events_etl']:,} (demographics and visits are coded differently: medflow writes "
                  f"GENDER//F, RACE//White, ENCOUNTER//INPATIENT//START and //END where meds_etl writes Gender/F, "
                  f"Race/5, one Visit/IP)."]
    lines += ["", "### Time to the first trained model, by where the OMOP tables live (same study, child processes)",
              "", "| source | seconds | ratio to Parquet | peak RSS GB | validation + test predictions "
              "| test AUROC (95% CI) |", "|---" * 6 + "|"]
    for r in runs:
        a = r["auroc"]
        load = f" (+{r['load_s']:.0f} s COPY into the server)" if r.get("load_s") else ""
        lines.append(f"| {r['source']}{load} | {r['seconds']:.1f} | {r['ratio']:.2f}x | {r['peak_rss_gb']:.2f} | "
                     f"{r['samples']:,} | {a['value']:.3f} ({a['low']:.3f}-{a['high']:.3f}) |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--skip-convert", action="store_true")
    args = ap.parse_args()
    conv = None if args.skip_convert else convert(args.patients)
    runs = first_model(args.patients)
    print(json.dumps({"convert": conv, "first_model": runs}, indent=1), flush=True)
    print("\n".join(markdown(conv, runs)))


if __name__ == "__main__":
    main()
