"""`medflow pretrain`: self-supervised pretraining on unlabeled patient timelines (`medflow.pretrain`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medflow.cli.show import err, out


def pretrain(config: Annotated[Path, typer.Argument(
                 help="pretraining YAML (data.meds, or kind: text with data.text; model, train)")],
             resume: Annotated[Path | None, typer.Option(
                 help="an interrupted pretraining folder (*.incomplete) to finish")] = None,
             output_dir: Annotated[Path | None, typer.Option(help="where runs are written (overrides the YAML)")]
             = None) -> None:
    """Pretrain a timeline Transformer on a MEDS folder (next-code or time-to-event), or a BERT on notes (masked
    language modelling); studies start from the run."""
    from medflow.pretrain import load_pretrain_config
    from medflow.pretrain import pretrain as run_pretrain

    cfg = load_pretrain_config(config)
    if output_dir is not None:
        cfg.output_dir = str(output_dir)
    path = run_pretrain(cfg, resume=resume, console=err)
    use = (f"models: [{{name: hf_classifier, params: {{checkpoint: {path}}}}}]" if cfg.kind == "text" else
           f"models: [{{name: timeline_transformer, init_from: {path}, mode: finetune}}]")
    out.print(f"pretrained run: {path}\nReport: {path / 'report.html'}\nUse it: {use}", soft_wrap=True,
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(pretrain)
