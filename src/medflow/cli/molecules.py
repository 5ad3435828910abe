"""`medflow screen`: a molecule run ranks a library (virtual screening), with enrichment when actives are known;
`medflow generate`: a SMILES language model trained on molecules, sampled and optionally steered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli.show import out


def register(app: typer.Typer) -> None:
    @app.command()
    def screen(run_dir: Annotated[Path, typer.Argument(help="a finished run trained on molecules")],
               library: Annotated[Path, typer.Argument(help="molecules to rank: .smi, CSV, Parquet or SDF")],
               output: Annotated[Path, typer.Option("-o", "--output", help="ranked CSV")] = Path("ranked.csv"),
               model: Annotated[str | None, typer.Option(help="model name (default: the selected one)")] = None,
               smiles_column: Annotated[str | None, typer.Option(help="the library's SMILES column")] = None,
               active_column: Annotated[str | None, typer.Option(help="0/1 column of known actives: adds "
                                                                      "EF 1%, EF 5% and BEDROC")] = None,
               lower_is_better: Annotated[bool, typer.Option(help="regression runs: rank the lowest predicted "
                                                                  "value first (e.g. IC50)")] = False,
               protein: Annotated[str | None, typer.Option(help="drug-target runs: the target to screen against "
                                                            "(amino-acid sequence or FASTA file)")] = None,
               top: Annotated[int, typer.Option(help="rows shown here")] = 10) -> None:
        """Score and rank a library with a molecule run; writes OUTPUT and OUTPUT.summary.json."""
        from medflow.artifacts import write_json, write_text
        from medflow.screen import screen as run_screen

        ranked, summary = run_screen(run_dir, library, model, smiles_column, active_column, lower_is_better, protein)
        write_text(output, ranked.to_csv(index=False))
        write_json(output.with_suffix(".summary.json"), summary)
        table = Table(title=f"top {min(top, len(ranked))} of {len(ranked)} ({summary['ranked_by']}, model "
                            f"{summary['model']})")
        cols = [c for c in ("rank", "mol_id", "smiles", "score", "uncertainty", active_column) if c in ranked]
        for c in cols:
            table.add_column(c)
        for row in ranked.head(top).itertuples(index=False):
            d = row._asdict()
            table.add_row(*(f"{d[c]:.3f}" if isinstance(d[c], float) else str(d[c]) for c in cols))
        out.print(table)
        if summary["invalid_smiles_dropped"]:
            out.print(f"{summary['invalid_smiles_dropped']} invalid SMILES left out (listed in the summary JSON)")
        for name, m in summary.get("enrichment", {}).items():
            out.print(f"{name}: {m['value']:.2f} (95% CI {m['low']:.2f}-{m['high']:.2f})")
        out.print(f"{len(ranked)} molecules ranked -> {output}")

    @app.command()
    def generate(source: Annotated[str, typer.Argument(help="a generator run to sample from; or what to train on: a "
                                                            "gen.yaml, a built-in molecule set (solubility, "
                                                            "freesolv, dti_sim) or a .smi / CSV / SDF file")],
                 output: Annotated[Path | None, typer.Option("-o", "--output", help="sampling: the CSV of "
                                                             "molecules (default generated.csv); training: the run "
                                                             "directory")] = None,
                 n: Annotated[int, typer.Option("-n", help="molecules to sample")] = 1000,
                 steer: Annotated[str | None, typer.Option(help="a finished binary / regression molecule run "
                                                                "whose prediction to steer toward")] = None,
                 goal: Annotated[str, typer.Option(help="steering: max or min")] = "max",
                 rounds: Annotated[int, typer.Option(help="steering: hill-climbing rounds")] = 3,
                 protein: Annotated[str | None, typer.Option(help="steering with a drug-target run: the target")]
                 = None,
                 epochs: Annotated[int | None, typer.Option(help="training: most epochs")] = None,
                 temperature: Annotated[float, typer.Option(help="sampling temperature")] = 1.0,
                 seed: Annotated[int, typer.Option()] = 0) -> None:
        """Train a molecule generator (SOURCE = gen.yaml, molecule set or file) into a run directory with a report,
        or sample N molecules from a generator run (SOURCE = its directory), steered toward another run's score."""
        from medflow.artifacts import write_json, write_text
        from medflow.errors import ConfigError
        from medflow.molgen.report import metric_rows
        from medflow.molgen.run import (
            GenerateConfig,
            SteerConfig,
            read_generate_config,
            sample_molecules,
            train_generator,
        )

        if goal not in ("max", "min"):
            raise ConfigError(f"--goal must be max or min, got {goal!r}.")
        steer_cfg = SteerConfig(run=steer, goal=goal, rounds=rounds, protein=protein) if steer else None
        path = Path(source)
        sampling = (path / "generator.json").exists()  # a generator run: sample from it; else train one
        if sampling:
            frame, metrics = sample_molecules(path, n, seed, steer_cfg, temperature)
            dest = output or Path("generated.csv")
            write_text(dest, frame.to_csv(index=False))
            write_json(dest.with_suffix(".summary.json"), metrics)
            title = f"{n} GENERATED molecules from {source}"
        else:
            if path.suffix.lower() in (".yaml", ".yml"):
                cfg = read_generate_config(path)
            else:
                cfg = GenerateConfig(name=f"generator-{path.stem}", data={"molecules": {"path": source}}
                                     if path.exists() else {"dataset": source}, sample=n, seed=seed)
            if epochs is not None:
                cfg.train = {**cfg.train, "max_epochs": epochs}
            if steer_cfg is not None:
                cfg.steer = steer_cfg
            dest = train_generator(cfg, output, progress=True)
            import json

            metrics = json.loads((dest / "metrics.json").read_text())
            title = f"generator trained -> {dest} (report.html, samples.csv)"
        table = Table(title=title)
        for c in ("measure", "value (95% CI)", "n"):
            table.add_column(c)
        import re

        for row in metric_rows(metrics):
            table.add_row(*(re.sub("<[^>]+>", "", c).replace("&ndash;", "-") for c in row))
        out.print(table)
        for k, v in metrics.get("properties", {}).items():
            out.print(f"{k}: generated {v['generated_mean']:.2f} +- {v['generated_sd']:.2f}, training "
                      f"{v['training_mean']:.2f} +- {v['training_sd']:.2f} (Wasserstein {v['wasserstein']:.3f}; "
                      f"two halves of training {v['wasserstein_training_halves']:.3f})")
        for h in metrics.get("steering", {}).get("history", []):
            out.print(f"steering round {h['round']}: mean score {h['mean_score']:.3f}, best decile "
                      f"{h['best_decile_score']:.3f}, valid {h['valid']:.2f}")
        if sampling:
            out.print(f"{frame['valid'].sum()} valid of {n} -> {dest} (GENERATED molecules, not measured)")
