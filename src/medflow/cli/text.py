"""`medflow deid`: de-identify notes (PHI replaced by consistent surrogates); `medflow code`: rank ICD-10-CM codes
for notes or diagnosis phrases (docs/text.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medflow.cli.show import err, out


def _deid_dicom(src: Path, output: Path, secret: int, mapping: Path | None, keep: bool, overwrite: bool) -> None:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from medflow.artifacts import write_json
    from medflow.data.dicom_deid import deidentify_dicom
    from medflow.errors import ConfigError

    if output.suffix.lower() in (".csv", ".parquet", ".pq", ".jsonl"):
        raise ConfigError(f"-o {output}: DICOM files are written to a folder; give one, e.g. -o clean/.")
    with Progress(SpinnerColumn(), TextColumn("de-identifying DICOM: {task.completed} files"), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("deid", total=None)
        summary = deidentify_dicom(src, output, secret, mapping, keep, overwrite, lambda: bar.advance(task))
    write_json(output.with_name(output.name + ".summary.json"), summary)
    out.print(f"{summary['files']} DICOM file(s) of {summary['patients']} patient(s) de-identified -> {output} "
              f"({summary['uids_replaced']} UIDs replaced, {summary['dates_shifted']} dates shifted, "
              f"{summary['removed'] + summary['emptied']} attributes removed or emptied)", soft_wrap=True,
              highlight=False)
    burned = summary["burned_in_annotation_to_check"]
    if burned:
        err.print(f"[yellow]warning:[/yellow] {len(burned)} file(s) may carry burned-in text in their pixels (not "
                  f"removed): {', '.join(burned[:5])}", soft_wrap=True, highlight=False)


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
             mapping: Annotated[Path | None, typer.Option(help="DICOM: write original id -> pseudonym and date "
                                                               "shift here (only when asked)")] = None,
             keep_patient_characteristics: Annotated[bool, typer.Option(help="DICOM: keep sex, age, size and "
                                                                             "weight")] = False,
             overwrite: Annotated[bool, typer.Option(help="DICOM: replace an existing output folder")] = False,
             ) -> None:
        """Find PHI in notes and replace it with consistent surrogates (writes OUTPUT and OUTPUT.summary.json);
        or de-identify DICOM files (a folder or a .dcm) into the folder OUTPUT after PS3.15 Annex E."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from medflow.artifacts import write_json, write_parquet, write_text
        from medflow.data.dicom_deid import is_dicom
        from medflow.errors import ConfigError
        from medflow.nlp.deid import deidentify_notes

        if notes.exists() and is_dicom(notes):
            _deid_dicom(notes, output, secret, mapping, keep_patient_characteristics, overwrite)
            return

        suffix = output.suffix.lower()
        if suffix not in (".csv", ".parquet", ".pq", ".jsonl"):
            raise ConfigError(f"{output}: write .csv, .parquet or .jsonl.")
        with Progress(TextColumn("de-identifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task("deid", total=None)
            frame, summary, examples = deidentify_notes(notes, text_column, patient_column, id_column, secret,
                                              lambda: bar.advance(task))
        if suffix in (".parquet", ".pq"):
            write_parquet(output, frame)
        elif suffix == ".jsonl":
            write_text(output, frame.to_json(orient="records", lines=True, force_ascii=False))
        else:
            write_text(output, frame.to_csv(index=False))
        from medflow.report.text_tools import deid_page

        write_json(output.with_name(output.name + ".summary.json"), summary)
        write_text(output.with_name(output.name + ".report.html"), deid_page(summary, examples))
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

    @app.command()
    def code(notes: Annotated[Path, typer.Argument(help="notes or diagnosis phrases: CSV / TSV / Parquet / JSONL")],
             output: Annotated[Path, typer.Option("-o", "--output", help="codes per row (.csv or .parquet)")] =
             Path("codes.csv"),
             k: Annotated[int, typer.Option(help="codes listed per row")] = 5,
             text_column: Annotated[str | None, typer.Option(help="the text column")] = None,
             phrases: Annotated[bool, typer.Option(help="each row is one diagnosis phrase (default: a note, coded "
                                                        "sentence by sentence, negated sentences skipped)")] = False,
             train: Annotated[Path | None, typer.Option(help="coded examples (CSV with text and code columns) to "
                                                             "learn a site's wording from")] = None,
             ) -> None:
        """Rank ICD-10-CM codes (the official table, offline) for each row; writes OUTPUT."""
        import json

        from medflow.artifacts import write_parquet, write_text
        from medflow.data.sources.tabular import read_frame
        from medflow.data.text import TextSource, read_notes
        from medflow.errors import DataError
        from medflow.nlp.icd import default_coder

        ds = read_notes(TextSource(path=str(notes), text_column=text_column))
        coder = default_coder()
        if train is not None:
            ex = read_frame(train)
            missing = [c for c in ("text", "code") if c not in ex.columns]
            if missing:
                raise DataError(f"{train}: needs columns text and code; missing {missing}.")
            coder.fit(ex["text"].astype(str).tolist(), ex["code"].astype(str).str.strip().tolist())
        ranked = coder.rank(ds.frame[ds.text.text_column].tolist(), k, notes=not phrases)
        frame = ds.frame[["note_id"]].assign(code=[r[0]["code"] for r in ranked],
                                             description=[r[0]["description"] for r in ranked],
                                             score=[r[0]["score"] for r in ranked],
                                             top_codes=[json.dumps(r) for r in ranked])
        if output.suffix.lower() in (".parquet", ".pq"):
            write_parquet(output, frame)
        else:
            write_text(output, frame.to_csv(index=False))
        out.print(f"{len(frame)} rows coded (top {k} ICD-10-CM codes each) -> {output}")

    @app.command()
    def extract(notes: Annotated[Path, typer.Argument(help="notes: CSV / Parquet / JSONL / BRAT folder")],
                output: Annotated[Path, typer.Option("-o", "--output", help="one row per span (.csv or .parquet)")]
                = Path("spans.csv"),
                train: Annotated[Path | None, typer.Option(help="annotated notes to learn from (JSONL with spans, or "
                                                                "a BRAT folder); default: medflow's SYNTHETIC "
                                                                "clinical notes (problems, drugs, doses, routes, "
                                                                "frequencies)")] = None,
                text_column: Annotated[str | None, typer.Option(help="the notes' text column")] = None,
                lexicon: Annotated[list[str] | None, typer.Option(help="drug lexicon, repeatable: chembl, brands, "
                                                                       "abbreviations, a CSV / TSV / Parquet list "
                                                                       "with a 'name' column, an RxNorm RRF folder; "
                                                                       "'none' for none")] = None) -> None:
        """Extract spans (problems with their ConText assertion, medications with dose / route / frequency /
        duration linked to each drug and the drug normalized to its lexicon id, or your corpus's labels) with a
        BIO tagger; writes OUTPUT (one row per span), OUTPUT.medications.csv (one row per drug) and, when NOTES
        carry gold spans, OUTPUT.summary.json with strict and lenient P / R / F1 (95% CIs over notes)."""
        import pandas as pd

        from medflow.artifacts import write_json, write_parquet, write_text
        from medflow.data.simulate.notes import simulate_notes
        from medflow.data.text import TextSource, read_notes
        from medflow.errors import DataError
        from medflow.nlp.tagger import SpanTagger, span_scores

        if train is None:
            frame, spans = simulate_notes(200, seed=0, annotate="clinical")
            texts, gold = frame["text"].tolist(), [spans[n] for n in frame["note_id"]]
            err.print("training on medflow's SYNTHETIC clinical notes (pass --train to use your own annotations)")
        else:
            tds = read_notes(TextSource(path=str(train)))
            if not tds.text.spans or not any(tds.text.spans.values()):
                raise DataError(f"{train}: no spans to learn from; give JSONL with \"spans\" or a BRAT folder.")
            texts = tds.frame[tds.text.text_column].tolist()
            gold = [tds.text.spans.get(str(n), []) for n in tds.frame["note_id"]]
        from medflow.nlp.drugs import BUILTIN_LEXICONS
        from medflow.nlp.medications import medication_table

        specs = list(BUILTIN_LEXICONS) if lexicon is None else [x for x in lexicon if x != "none"]
        tagger = SpanTagger(lexicon=specs).fit(texts, gold)
        ds = read_notes(TextSource(path=str(notes), text_column=text_column))
        pred = tagger.extract(ds.frame[ds.text.text_column].tolist())
        cols = ["note_id", "label", "start", "end", "text", "assertion", "normalized_id", "normalized_name",
                "drug_start"]
        rows = [{"note_id": n, "label": s["label"], "start": s["start"], "end": s["end"], "text": s["text"],
                 "assertion": s["attributes"].get("assertion", ""),
                 "normalized_id": s["attributes"].get("normalized_id", ""),
                 "normalized_name": s["attributes"].get("normalized_name", ""),
                 "drug_start": s["attributes"].get("drug", "")}
                for n, ps in zip(ds.frame["note_id"], pred, strict=True) for s in ps]
        frame = pd.DataFrame(rows, columns=cols)
        meds = medication_table(ds.frame["note_id"].tolist(), list(pred))
        meds_path = output.with_name(output.stem + ".medications" + (output.suffix or ".csv"))
        if output.suffix.lower() in (".parquet", ".pq"):
            write_parquet(output, frame)
            write_parquet(meds_path, meds)
        else:
            write_text(output, frame.to_csv(index=False))
            write_text(meds_path, meds.to_csv(index=False))
        from collections import Counter

        from medflow.report.text_tools import extract_page

        sc = None
        if ds.text.spans and any(ds.text.spans.values()):
            sc = span_scores([ds.text.spans.get(str(n), []) for n in ds.frame["note_id"]], pred)
            write_json(output.with_name(output.name + ".summary.json"), sc)
            m = sc["strict"]["micro"]
            rel = sc["relation_accuracy"]
            out.print(f"strict micro F1 {m['f1']:.3f} (95% CI {m['f1_low']:.3f}-{m['f1_high']:.3f}); lenient "
                      f"{sc['lenient']['micro']['f1']:.3f}"
                      + (f"; attributes linked to their drug {rel['value']:.3f} of {rel['n']}" if rel["n"] else "")
                      + f"; per label in {output.name}.summary.json", soft_wrap=True, highlight=False)
        texts_in = ds.frame[ds.text.text_column].tolist()
        write_text(output.with_name(output.name + ".report.html"), extract_page(
            str(notes), dict(Counter(r["label"] for r in rows)), sc,
            [(str(ds.frame["note_id"].iloc[i]), texts_in[i], pred[i]) for i in range(min(3, len(texts_in)))], meds))
        out.print(f"{len(frame)} spans from {len(ds.frame)} notes -> {output}; {len(meds)} medications "
                  f"({int((meds['normalized_id'] != '').sum())} normalized) -> {meds_path}", soft_wrap=True,
                  highlight=False)
