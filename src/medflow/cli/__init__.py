"""The `medflow` command line: the same library calls a notebook makes, with one-line errors.

One module per command group, each with `register(app)`: `demo` (the tour), `study` (run, evaluate, report,
predict), `pretrain` (self-supervised pretraining), `catalog` (datasets, models, embed, simulate), `convert` (any
event source to MEDS), `service` (serve, export, audit, keys, registry), `text` (deid, code, extract), `privacy`
(federate, synthesize), `molecules` (screen, generate); `show` prints tables.
"""

from __future__ import annotations

import sys

import typer

from medflow.cli import catalog, convert, demo, molecules, pretrain, privacy, service, study, text
from medflow.cli.show import err
from medflow.errors import MedflowError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="medflow: from healthcare data to a validated, explained model.")
for _group in (demo, study, pretrain, catalog, convert, service, text, privacy, molecules):
    _group.register(app)


def main() -> None:
    """Entry point: MedflowErrors become one line on stderr and exit status 1."""
    try:
        app(standalone_mode=False)
    except MedflowError as exc:
        err.print(f"[bold red]error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors (click's, or typer's vendored click) carry their own exit codes
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if type(exc).__name__ == "Exit" and isinstance(getattr(exc, "exit_code", None), int):
            sys.exit(exc.exit_code)
        raise


