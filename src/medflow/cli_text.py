"""`medflow deid`: de-identify notes (PHI replaced by consistent surrogates, docs/text.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli_show import err, out


def register(app: typer.Typer) -> None:
    @app.command()
    def deid(notes: Annotated[Path, typer.Argument(help="notes: CSV / TSV / Parquet / JSONL, or a BRAT folder")],
             output: Annotated[Path, typer.Option("-o", "--output", help="de-identified notes (.csv, .parquet "
                                                                          "or .jsonl)")] = Path("deid.csv"),
             text_column: Annotated[str | None, typer.Option(help="the notes' text column")] = None,
             patient_column: Annotated[str | None, typer.Option(help="the patient of each note: one date shift "
                                                                     "and one set of surrogates per patient")] = None,
             id_column: Annotated[str | None, typer.Option(help="the note id column")] = None,
             secret: Annotated[int, typer.Option(help="seeds surrogates and date shifts (keep it private)")] = 0,
             ) -> None:
        """Find PHI in notes and replace it with consistent surrogates; writes OUTPUT and OUTPUT.summary.json."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from medflow.artifacts import write_json, write_parquet, write_text
        from medflow.deid import deidentify_notes
        from medflow.errors import ConfigError

        suffix = output.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq", ".jsonl"):
            raise ConfigError(f"{output}: write .csv, .parquet or .jsonl.")
        with Progress(TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("deid", total=None)
            frame, summary = deidentify_notes(notes, text_column, patient_column, id_column, secret,
                                              lambda: bar.advance(task))
        if suffix in (".parquet", ".pq"):
            write_parquet(output, frame)
        elif suffix == ".jsonl":
            write_text(output, frame.to_json(orient="records", lines=True, force_ascii=False))
        else:
            write_text(output, frame.to_csv(index=False))
        write_json(output.with_name(output.name + ".summary.json"), summary)
        table = Table(title=f"PHI replaced in {summary['notes']} notes ({summary['notes_per_second']:.0f} notes/s)")
        table.add_column("kind")
        table.add_column("found", justify="right")
        ev = summary.get("evaluation", {}).get("recall", {})
        if ev:
            table.add_column("recall (gold spans)", justify="right")
        for kind in sorted(set(summary["phi_found"]) | set(ev)):
            table.add_row(kind, str(summary["phi_found"].get(kind, 0)),
                          *([f"{ev[kind]['recall']:.3f} of {ev[kind]['n']}" if kind in ev else ""] if ev else []))
        out.print(table)
        if "evaluation" in summary:
            out.print(f"leaked PHI tokens: {summary['evaluation']['leaked_tokens']}; precision "
                      f"{summary['evaluation']['precision']:.3f}")
        out.print(f"{summary['notes']} notes de-identified -> {output}")
