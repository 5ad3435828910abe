"""`medflow datasets`, `models`, `embed` and `simulate`: what is built in, and data and representations made from
it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli.show import err, out
from medflow.errors import ConfigError


def _listing(rows: list[dict[str, str]], columns: list[str], as_json: bool) -> None:
    """A table whose first column (a name the user types) is never cut; or JSON for scripts."""
    import json

    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table()
    t.add_column(columns[0], no_wrap=True, min_width=max(len(r[columns[0]]) for r in rows))
    for col in columns[1:]:
        t.add_column(col, overflow="fold")
    for r in rows:
        t.add_row(*(str(r.get(c, "")) for c in columns))
    out.print(t)


def datasets(as_json: Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")] = False) -> None:
    """List the built-in datasets."""
    from medflow.data.builtin import describe

    _listing(describe(), ["name", "task", "size", "source"], as_json)


def models(as_json: Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")] = False) -> None:
    """List the registered models."""
    from medflow.models import describe

    _listing(describe(), ["name", "family", "inputs", "tasks", "complexity", "description"], as_json)


def embed(run_dir: Annotated[Path, typer.Argument(help="a finished run on event data, or a pretrained run")],
          dim: Annotated[int, typer.Option(help="embedding width")] = 16,
          epochs: Annotated[int, typer.Option(help="most training epochs (early stopping on validation)")] = 20,
          top: Annotated[int, typer.Option(help="anomalous samples listed in the report")] = 20,
          meds: Annotated[Path | None, typer.Option(help="pretrained runs: the MEDS folder whose patients to "
                                                         "embed")] = None,
          labels: Annotated[Path | None, typer.Option(help="pretrained runs: a MEDS label file; one embedding per "
                                                           "(subject, prediction time) instead of per patient")] = None,
          out_path: Annotated[Path | None, typer.Option("--out", help="pretrained runs: the Parquet file to "
                                                                      "write")] = None) -> None:
    """Patient embeddings: from a pretrained timeline encoder (--meds, --out), or an autoencoder over a study
    run's event histories with anomaly scores."""
    from medflow.models.pretrained import is_pretrained_run

    if is_pretrained_run(run_dir):
        from medflow.pretrain.embed import embed_timelines

        if meds is None or out_path is None:
            raise ConfigError(f"{run_dir} is a pretrained run: give the patients to embed (--meds FOLDER) and the "
                              "file to write (--out embeddings.parquet).")
        path = embed_timelines(run_dir, meds, out_path, labels)
        out.print(f"embeddings: {path}", soft_wrap=True, highlight=False)
        return
    from medflow.embed import embed_run
    from medflow.models.autoencoder import AutoencoderConfig

    path = embed_run(run_dir, AutoencoderConfig(dim=dim, max_epochs=epochs), top=top, console=err)
    out.print(f"embeddings and anomaly scores: {path / 'embeddings.parquet'}\nReport: {path / 'anomalies.html'}",
              soft_wrap=True, highlight=False)


simulate_app = typer.Typer(no_args_is_help=True, help="Write simulated data with known ground truth (SYNTHETIC).")


@simulate_app.command("ehr")
def simulate_ehr_cmd(out_dir: Annotated[Path, typer.Option("--out", help="MEDS folder to write (must not exist)")],
                     patients: Annotated[int, typer.Option(help="number of patients")] = 20_000,
                     seed: Annotated[int, typer.Option(help="random seed")] = 0,
                     bias_group: Annotated[str | None, typer.Option(
                         help="RACE value whose creatinine is measured with 4x the noise (fairness tests)")] = None,
                     overwrite: Annotated[bool, typer.Option(help="replace an existing folder")] = False,
                     first_id: Annotated[int, typer.Option(help="the first subject id (keep a pretraining cohort's "
                                                                 "ids apart from a study's)")] = 0) -> None:
    """Simulate inpatient EHR (admissions, ICD-10-CM, LOINC labs, RxNorm, outcomes) as a MEDS dataset."""
    import json

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from medflow.data.simulate.ehr import simulate_ehr

    if patients < 1:
        raise ConfigError(f"--patients must be at least 1, got {patients}.")
    with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("sim", total=patients)
        path = simulate_ehr(out_dir, patients, seed, bias_group, overwrite=overwrite, first_id=first_id,
                            progress=lambda k: bar.advance(task, k))
    meta = json.loads((path / "metadata" / "dataset.json").read_text())["medflow"]
    auc = ", ".join(f"{k} {v:.3f}" for k, v in meta["oracle_auroc"].items())
    out.print(f"SYNTHETIC MEDS cohort: {patients:,} patients, {meta['events']:,} events -> {path}\n"
              f"oracle AUROC (the simulator's own risk model): {auc}", soft_wrap=True, highlight=False)


@simulate_app.command("omop")
def simulate_omop_cmd(out_dir: Annotated[Path, typer.Option("--out", help="OMOP folder or .db/.duckdb file to write")],
                      patients: Annotated[int, typer.Option(help="number of patients")] = 2_000,
                      seed: Annotated[int, typer.Option(help="random seed")] = 0,
                      fmt: Annotated[str, typer.Option("--format", help="parquet | csv | sqlite | duckdb")] = "parquet",
                      overwrite: Annotated[bool, typer.Option(help="replace what exists")] = False) -> None:
    """Simulate the same inpatient EHR as `simulate ehr`, written as an OMOP CDM 5.4 database (SYNTHETIC)."""
    from medflow.data.simulate.omop import simulate_omop

    if fmt not in ("parquet", "csv", "sqlite", "duckdb"):
        raise ConfigError(f"--format '{fmt}': choose parquet, csv, sqlite or duckdb.")
    if patients < 1:
        raise ConfigError(f"--patients must be at least 1, got {patients}.")
    with err.status(f"simulating {patients:,} patients as OMOP ({fmt})"):
        path = simulate_omop(out_dir, patients, seed, fmt, overwrite=overwrite)  # type: ignore[arg-type]
    out.print(f"SYNTHETIC OMOP CDM 5.4 ({fmt}): {patients:,} patients -> {path}", soft_wrap=True, highlight=False)


@simulate_app.command("multimodal")
def simulate_multimodal_cmd(out_dir: Annotated[Path, typer.Option("--out", help="folder to write (must not exist)")],
                            patients: Annotated[int, typer.Option(help="number of patients")] = 600,
                            seed: Annotated[int, typer.Option(help="random seed")] = 0,
                            overwrite: Annotated[bool, typer.Option(help="replace the folder")] = False) -> None:
    """Simulate patients whose events (MEDS), notes, chest-image phantoms (PNG), labs and gene panels each carry part
    of one outcome, with the study.yaml that joins them (SYNTHETIC; docs/multimodal.md)."""
    import json

    from medflow.data.simulate.multimodal_files import write_multimodal

    if patients < 20:
        raise ConfigError(f"--patients must be at least 20, got {patients}.")
    with err.status(f"simulating {patients:,} multimodal patients"):
        path = write_multimodal(out_dir, patients, seed, overwrite=overwrite)
    oracle = json.loads((path / "meds" / "metadata" / "dataset.json").read_text())["medflow"]["oracle_auroc"]
    out.print(f"SYNTHETIC multimodal patients: {patients:,} -> {path} (cd there and run: medflow run study.yaml)\n"
              f"oracle AUROC with the modalities each patient has: {oracle['present_modalities']:.3f}; best single "
              f"modality: {max(v for k, v in oracle.items() if k.endswith('_only')):.3f}", soft_wrap=True,
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(datasets)
    app.command()(models)
    app.command()(embed)
    app.add_typer(simulate_app, name="simulate")
