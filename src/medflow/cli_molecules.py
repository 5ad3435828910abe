"""`medflow screen`: a molecule run ranks a library (virtual screening), with enrichment when actives are known."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli_show import out


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
