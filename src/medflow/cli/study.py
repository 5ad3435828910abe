"""`medflow run`, `evaluate`, `report` and `predict`: a study from YAML to a run directory, and what is done with a
finished run."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medflow.cli.show import err, metrics_table, out, say_report, say_selection, show_run
from medflow.errors import ConfigError


def run(study: Annotated[Path, typer.Argument(help="study YAML file")],
        resume: Annotated[Path | None, typer.Option(help="an interrupted run folder (*.incomplete) to finish")] = None,
        output_dir: Annotated[Path | None, typer.Option(help="override the YAML's output_dir")] = None,
        nproc: Annotated[int, typer.Option(help="training processes on this machine (DDP under torchrun; "
                                                "gloo on CPU, NCCL on GPUs)")] = 1,
        nnodes: Annotated[int, typer.Option(help="machines taking part (each runs this command)")] = 1,
        node_rank: Annotated[int, typer.Option(help="this machine's index among --nnodes")] = 0,
        master_addr: Annotated[str, typer.Option(help="address of node 0 (several machines)")] = "127.0.0.1",
        master_port: Annotated[int, typer.Option(help="port on node 0 (several machines)")] = 29500,
        mlflow: Annotated[bool, typer.Option(help="also log the finished run to MLflow (see --mlflow-uri)")] = False,
        mlflow_uri: Annotated[str, typer.Option(help="MLflow target: a folder (SQLite tracking db and artifacts "
                                                     "inside) or a tracking URI")] = "mlruns") -> None:
    """Run a study described in YAML: train, evaluate, explain, report."""
    import os

    from medflow.study import Study
    from medflow.train import distributed

    if nproc < 1 or nnodes < 1:
        raise ConfigError(f"--nproc and --nnodes must be at least 1, got {nproc} and {nnodes}.")
    if (nproc > 1 or nnodes > 1) and "WORLD_SIZE" not in os.environ:
        _relaunch_under_torchrun(study, resume, output_dir, nproc, nnodes, node_rank, master_addr, master_port)
        return
    distributed.init_from_env()
    s = Study.from_yaml(study)
    if output_dir is not None:
        s.config.output_dir = str(output_dir)
    console = err if distributed.is_main() else Console(stderr=True, quiet=True)
    result = s.fit(resume=resume, console=console)
    if result is None:  # a non-zero rank: rank 0 reports
        return
    show_run(result)
    say_report(result.path / "report.html")
    if mlflow:
        from medflow.export.tracking import log_run, tracking_uri

        run_id = log_run(result, mlflow_uri)
        out.print(f"MLflow: run {run_id}; browse with `mlflow ui --backend-store-uri {tracking_uri(mlflow_uri)[0]}`",
                  soft_wrap=True, highlight=False)


def _relaunch_under_torchrun(study: Path, resume: Path | None, output_dir: Path | None, nproc: int, nnodes: int,
                             node_rank: int, master_addr: str, master_port: int) -> None:
    """Start `nproc` copies of this command under torch.distributed.run and wait for them."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    cmd += (["--standalone"] if nnodes == 1 else
            [f"--node-rank={node_rank}", f"--master-addr={master_addr}", f"--master-port={master_port}"])
    cmd += ["-m", "medflow", "run", str(study)]
    cmd += ["--resume", str(resume)] if resume else []
    cmd += ["--output-dir", str(output_dir)] if output_dir else []
    err.print(f"launching {nproc} training process(es) x {nnodes} node(s) under torchrun", highlight=False)
    code = subprocess.run(cmd).returncode
    if code:
        raise typer.Exit(code)


def evaluate(run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
             n_bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples")] = None,
             sensitivity: Annotated[float | None, typer.Option(help="threshold for this sensitivity")] = None,
             save: Annotated[bool, typer.Option(help="rewrite metrics.json and the report")] = False,
             data: Annotated[Path | None, typer.Option(help="external validation: a CSV/Parquet table, or a MEDS "
                                                       "folder / FHIR export for event runs")] = None,
             name: Annotated[str | None, typer.Option(help="external validation: a name for the new data "
                                                      "(default: the file's name)")] = None,
             recalibrate: Annotated[str | None, typer.Option(help="external validation: logistic | isotonic "
                                                             "(binary) or linear (regression), fitted on part of "
                                                             "the new patients, reported on the rest")] = None,
             recalibrate_fraction: Annotated[float, typer.Option(help="share of new patients that fit the "
                                                                 "recalibration")] = 0.5,
             labels: Annotated[Path | None, typer.Option(help="event runs: MEDS label file of the samples")] = None,
             encoding: Annotated[str | None, typer.Option(help="text encoding of a CSV --data (default UTF-8)")]
             = None) -> None:
    """Recompute metrics from a run's saved predictions, or validate the run on external data (--data)."""
    from medflow.config import parse_config
    from medflow.evaluate.evaluator import evaluate_predictions
    from medflow.runs import load_run, write_json

    r = load_run(run_dir)
    cfg = parse_config(r.config, str(r.path / "study.yaml"))
    ev = cfg.evaluate.model_copy(deep=True)
    if n_bootstrap is not None:
        ev.n_bootstrap = n_bootstrap
    if data is not None:
        if sensitivity is not None:
            raise ConfigError("--sensitivity re-chooses the threshold on internal validation data; external "
                              "validation keeps the run's threshold. Run them separately.")
        _external(r, data, name, recalibrate, recalibrate_fraction, labels, ev, cfg.seed, encoding)
        return
    if sensitivity is not None:
        ev.threshold = type(ev.threshold)(method="sensitivity", value=sensitivity)
    metrics = evaluate_predictions(r.predictions(), r.task, ev, cfg.seed)
    for key in ("fit_seconds", "tuning"):  # facts of training, not of evaluation
        if key in r.metrics.data:
            metrics[key] = r.metrics.data[key]
    out.print(metrics_table(metrics, cfg.name + (" [SYNTHETIC DATA]" if r.synthetic else "")))
    say_selection(metrics)
    if save:
        write_json(r.path / "metrics.json", metrics)
        say_report(r.report())


def _external(r, data: Path, name: str | None, recalibrate: str | None, fraction: float, labels: Path | None,
              ev, seed: int, encoding: str | None = None) -> None:
    from medflow.cli.predict_io import event_input, is_event_input, text_input
    from medflow.data.sources.tabular import read_frame
    from medflow.evaluate.external import external_name, external_validation
    from medflow.runs import write_json, write_parquet

    if recalibrate not in (None, "logistic", "isotonic", "linear"):
        raise ConfigError(f"--recalibrate {recalibrate!r}: choose logistic, isotonic (binary) or linear "
                          "(regression).")
    if not 0 < fraction < 1:
        raise ConfigError(f"--recalibrate-fraction {fraction}: give a share of patients between 0 and 1.")
    if not data.exists():
        raise ConfigError(f"--data {data}: no such file or folder.")
    if getattr(r.featurizer(), "name", "") == "text-v1":  # notes: CSV / Parquet / JSONL / BRAT, spans included
        records = text_input(r, data)
    else:
        records = event_input(r, data, labels) if is_event_input(data) else read_frame(data, encoding)
    label = external_name(name or data.stem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, preds = external_validation(r, records, label, str(data), recalibrate, fraction, ev, seed)
    for w in {str(w.message): w for w in caught}.values():
        err.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False, soft_wrap=True)
    folder = r.path / "external" / label
    write_parquet(folder / "predictions.parquet", preds)
    write_json(folder / "metrics.json", result)
    title = f"EXTERNAL validation of {r.config['name']} on {label}" + (" [SYNTHETIC DATA]" if r.synthetic else "")
    table = metrics_table(result, title)
    table.caption = (f"{result['external']['n_patients']} patients in {data}; the run's thresholds, unchanged; "
                     f"95% CI from {ev.n_bootstrap} patient bootstrap resamples")
    out.print(table)
    for m, e in result["models"].items():
        c = e.get("calibration_fit")
        if c:
            out.print(f"{m}: calibration-in-the-large {c['citl']['value']:+.3f} ({c['citl']['low']:+.3f} to "
                      f"{c['citl']['high']:+.3f}), slope {c['slope']['value']:.3f} ({c['slope']['low']:.3f}-"
                      f"{c['slope']['high']:.3f})", highlight=False)
    for flag in result["drift"]["flagged"]:
        err.print(f"[yellow]drift:[/yellow] {flag}", highlight=False)
    if "recalibration" in result:
        rc = result["recalibration"]
        for m, e in rc["models"].items():
            b, a = e["before"]["calibration_fit"], e["after"]["calibration_fit"]
            out.print(f"{m} recalibrated ({rc['method']}, fitted on {rc['n_fit_patients']} patients, reported on "
                      f"{rc['n_report_patients']}): slope {b['slope']['value']:.3f} -> {a['slope']['value']:.3f}, "
                      f"calibration-in-the-large {b['citl']['value']:+.3f} -> {a['citl']['value']:+.3f}",
                      highlight=False)
    out.print(f"external validation written to {folder}", soft_wrap=True, highlight=False)
    say_report(r.report())


def report(run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
           output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML path")] = None) -> None:
    """(Re)write a run's HTML model card."""
    from medflow.runs import load_run

    say_report(load_run(run_dir).report(output))


def predict(run_dir: Annotated[Path, typer.Argument(help="a finished run directory")],
            input: Annotated[Path, typer.Argument(help="CSV or Parquet of raw records")],
            output: Annotated[Path | None, typer.Option("-o", "--output", help="CSV/Parquet out (default "
                                                        "predictions.csv); segmentation: a folder for the "
                                                        "masks (default masks/)")] = None,
            model: Annotated[str | None, typer.Option(help="model name (default: the selected one)")] = None,
            explain: Annotated[bool, typer.Option(help="add the top attributions per record")] = False,
            horizons: Annotated[str | None, typer.Option(help="survival: times, e.g. 365,730,1825")] = None,
            labels: Annotated[Path | None, typer.Option(help="event runs: MEDS label file of the samples to "
                                                        "predict (default: the run's cohort); image runs: a CSV "
                                                        "listing the image files")] = None) -> None:
    """Predict raw records (CSV/Parquet), the samples of event data (a MEDS folder, a FHIR export), images
    (a folder, a .npz, or --labels CSV listing the files), or several modalities per patient (a YAML whose data:
    names them, as the study's did)."""
    import json

    from medflow.cli.predict_io import (
        event_input,
        image_input,
        is_event_input,
        molecule_input,
        write_masks,
        write_overlays,
    )
    from medflow.data.sources.tabular import read_frame
    from medflow.runs import load_run, write_parquet, write_text

    r = load_run(run_dir)
    version = r.featurizer().to_dict().get("version")
    if version == "image-v1":
        frame = image_input(r, input, labels)
    elif version == "multimodal-v1":  # a YAML naming the sources, as the study's data: did
        from medflow.cli.predict_io import multimodal_input

        frame = multimodal_input(r, input)
    elif version == "mol-v1":  # SMILES tables, .smi or SDF
        frame = molecule_input(r, input)
    else:
        frame = event_input(r, input, labels) if is_event_input(input) else read_frame(input)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preds = r.predict(frame, model=model, explain=explain, source=str(input), horizons=_horizons(horizons))
    if "survival_curve" in preds:
        preds = preds.drop(columns=["survival_curve"])
    keep = getattr(r.featurizer(), "record_columns", [])  # molecules, notes: each row keeps what names it
    ids = [c for c in keep if c in getattr(frame, "columns", []) and c not in preds.columns]
    if ids:
        import pandas as pd

        preds = pd.concat([frame[ids].reset_index(drop=True), preds], axis=1)
    if "mask" in preds:  # segmentation: masks as NIfTI in the input's space, the table beside them
        preds, output = write_masks(frame, preds, output or Path("masks"), getattr(r.task, "labels", None))
        out.print(f"{len(preds)} masks written to {output.parent}/")
    output = output or Path("predictions.csv")
    if explain and "explanation" in preds and getattr(frame, "modality", "") == "images":
        folder = write_overlays(frame, r, preds, output)
        out.print(f"Grad-CAM overlays of {len(preds)} images written to {folder}/")
    for w in caught:
        err.print(f"[yellow]warning:[/yellow] {w.message}")
    for col in preds.columns:  # explanations and conformal sets: JSON text in the file
        if len(preds) and isinstance(preds[col].iloc[0], list):
            preds[col] = [json.dumps(v, default=str) for v in preds[col]]
    if output.suffix.lower() in (".parquet", ".pq"):
        write_parquet(output, preds)
    else:
        write_text(output, preds.to_csv(index=False))
    out.print(f"{len(preds)} predictions from model '{preds['model'].iloc[0]}' written to {output}")


def _horizons(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"--horizons {text!r}: give numbers separated by commas, e.g. 365,730,1825.") from exc
    if not values or min(values) <= 0:
        raise ConfigError(f"--horizons {text!r}: horizons must be positive times.")
    return values


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(evaluate)
    app.command()(report)
    app.command()(predict)
