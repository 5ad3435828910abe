"""`medflow federate` and `medflow synthesize`: training across sites, and synthetic patients."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli.show import err, out, say_report, show_run
from medflow.errors import ConfigError


def site_table(metrics: dict) -> Table:
    """Each model's test metric on every site's held-out patients (95% CI)."""
    fed, primary = metrics["federated"], metrics["primary_metric"]
    sites = list(fed["sites"])
    table = Table(title=f"test {primary} per site (95% CI)")
    for col in ["model", "all sites", *sites]:
        table.add_column(col)

    def cell(m: dict | None) -> str:
        return "" if not m else f"{m['value']:.3f} ({m['low']:.3f}-{m['high']:.3f})"

    for model, entry in metrics["models"].items():
        groups = (entry.get("subgroups", {}).get("site") or {}).get("groups", {})
        table.add_row(model, cell(entry["metrics"].get(primary)),
                      *[cell(groups.get(s, {}).get("metrics", {}).get(primary)) for s in sites])
    return table


def register(app: typer.Typer) -> None:
    @app.command()
    def federate(study: Annotated[Path, typer.Argument(help="study YAML file (data options, task, model, train)")],
                 sites: Annotated[list[Path] | None, typer.Option(help="one CSV/Parquet table per site (repeat, or "
                                                                      "list after it); default: the YAML's data "
                                                                      "split into federated.sites")] = None,
                 rounds: Annotated[int | None, typer.Option(help="federated rounds")] = None,
                 local_epochs: Annotated[int | None, typer.Option(help="local epochs per round")] = None,
                 strategy: Annotated[str | None, typer.Option(help="fedavg | fedprox")] = None,
                 mu: Annotated[float | None, typer.Option(help="FedProx proximal weight")] = None,
                 deployment: Annotated[str | None, typer.Option(help="simulation (every site in this process) | "
                                                                     "loopback (a Flower SuperLink and one SuperNode "
                                                                     "process per site file on 127.0.0.1)")] = None,
                 output_dir: Annotated[Path | None, typer.Option(help="override the YAML's output_dir")] = None,
                 ) -> None:
        """Train one model across sites that never share rows (Flower), beside pooled and site-alone models."""
        from medflow.config import load_config
        from medflow.federate import FederateConfig
        from medflow.federate import federate as run_federated

        cfg = load_config(study)
        fed = cfg.federated or FederateConfig()
        update = {k: v for k, v in (("rounds", rounds), ("local_epochs", local_epochs), ("strategy", strategy),
                                    ("proximal_mu", mu), ("deployment", deployment)) if v is not None}
        if strategy is not None and strategy not in ("fedavg", "fedprox"):
            raise ConfigError(f"--strategy must be fedavg or fedprox, got '{strategy}'.")
        if deployment is not None and deployment not in ("simulation", "loopback"):
            raise ConfigError(f"--deployment must be simulation or loopback, got '{deployment}'.")
        try:
            fed = FederateConfig(**{**fed.model_dump(), **update})
        except ValueError as exc:
            raise ConfigError(f"federated options: {exc}") from exc
        cfg = cfg.model_copy(update={"federated": fed, **({"output_dir": str(output_dir)} if output_dir else {})})
        for path in sites or []:
            if not path.exists():
                raise ConfigError(f"--sites {path}: no such file.")
        result = run_federated(cfg, sites=[str(p) for p in sites] if sites else None, console=err)
        show_run(result)
        out.print(site_table(result.metrics.data))
        say_report(result.path / "report.html")

    @app.command()
    def synthesize(source: Annotated[str, typer.Argument(help="a run directory, study YAML, CSV/Parquet file or "
                                                                "built-in dataset name")],
                   output: Annotated[Path, typer.Option("-o", "--output", help=".parquet (marked SYNTHETIC in its "
                                                                               "metadata) or .csv; a folder for "
                                                                               "--model sequence (MEDS)")],
                   model: Annotated[str, typer.Option(help="copula | tvae | ctgan (tables) | sequence (event data: "
                                                           "a MEDS folder or ehr_sim)")] = "tvae",
                   cohort: Annotated[str, typer.Option(help="--model sequence: the cohort whose samples measure "
                                                            "fidelity and TSTR")] = "readmission_30d",
                   n: Annotated[int | None, typer.Option("-n", help="records to generate (default: as many as the "
                                                                    "training rows)")] = None,
                   label: Annotated[str | None, typer.Option(help="the outcome column (for TSTR; default: the "
                                                                  "study's or dataset's label)")] = None,
                   columns: Annotated[str | None, typer.Option(help="comma-separated columns to generate "
                                                                    "(default: all but the patient id)")] = None,
                   holdout: Annotated[float, typer.Option(help="share of patients kept out to measure privacy "
                                                               "and TSTR (runs: their own test patients)")] = 0.2,
                   epochs: Annotated[int | None, typer.Option(help="tvae / ctgan training epochs")] = None,
                   patient_id: Annotated[str | None, typer.Option(help="a file's patient id column (default: "
                                                                       "patient_id when present)")] = None,
                   seed: Annotated[int, typer.Option(help="random seed")] = 0) -> None:
        """Generate synthetic patients (SYNTHETIC) and measure their fidelity and privacy against real ones."""
        from medflow.synth import synthesize as run_synthesize
        from medflow.train.trainer import TrainConfig

        params, train = {}, None
        if epochs is not None:
            if model == "ctgan":
                params["epochs"] = epochs
            elif model == "sequence":  # a language model over whole patients: small batches, early stopping
                train = TrainConfig(max_epochs=epochs, batch_size=32, lr=3e-3, patience=4)
            else:
                train = TrainConfig(max_epochs=epochs, batch_size=256, lr=1e-3, patience=max(10, epochs // 10))
        cols = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
        rep = run_synthesize(source, model=model, n=n, output=output, label=label, columns=cols, holdout=holdout,
                             seed=seed, params=params, train=train, patient_id=patient_id, cohort=cohort)
        table = Table(title=f"SYNTHETIC data: {model}, {rep['n_synthetic']} records from {rep['n_train']} real "
                            f"training rows ({rep['n_holdout']} held out)" if "sequences" not in rep else
                      f"SYNTHETIC event sequences: {rep['patients']['kept']} patients from {rep['train_patients']} "
                      f"real training patients ({rep['holdout_patients']} held out); measured on "
                      f"{rep['cohort']} samples")
        table.add_column("measure")
        table.add_column("value")
        rows = [("quality (sdmetrics definition)", rep["quality"]), ("column shapes", rep["column_shapes"]),
                ("column pair trends", rep["column_pairs"]), ("DCR share (lower: more private)", rep["dcr"]["share"]),
                ("membership-inference AUROC (0.5: none)", rep["membership_auroc"])]
        if "tstr_auroc" in rep:
            rows += [("TSTR AUROC (train synthetic, test real)", rep["tstr_auroc"]),
                     ("TRTR AUROC (train real, test real)", rep["trtr_auroc"])]
        if "sequences" in rep:  # event sequences: their shape, real against synthetic
            sq = rep["sequences"]
            rows += [(f"{k.replace('_', ' ')}: real / synthetic", f"{sq['real'][k]:.3f} / {sq['synthetic'][k]:.3f}")
                     for k in ("events_per_patient", "admissions_per_patient", "readmitted_within_30d")]
            rows += [("code frequency correlation", sq["code_frequency_correlation"]),
                     ("sampled patients dropped as structurally invalid",
                      f"{rep['patients']['invalid_dropped']} of {rep['patients']['sampled']}")]
        for name, value in rows:
            table.add_row(name, value if isinstance(value, str) else f"{value:.3f}")
        out.print(table)
        if "sequences" in rep:
            out.print(f"Wrote {output}/ (MEDS, SYNTHETIC), {output.name}.fidelity.json and {output.name}.report.html",
                      soft_wrap=True, highlight=False)
            return
        stem = output.with_suffix("")
        out.print(f"Wrote {output} (SYNTHETIC), {stem.name}.fidelity.json and {stem.name}.report.html",
                  soft_wrap=True, highlight=False)
