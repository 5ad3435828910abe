"""What the command line prints: the consoles, the metrics table of a run, the selection and the report path."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

__all__ = ["out", "err", "metrics_table", "show_run", "say_selection", "say_report"]

out = Console()
err = Console(stderr=True)


def metrics_table(metrics: dict, title: str) -> Table:
    """Rows = metrics, columns = models; cells 'value (low-high)'; the selected model starred."""
    from medflow.evaluate.metrics import metric_info

    sel = metrics.get("selected_model")
    table = Table(title=title, title_justify="left")
    table.add_column("metric", overflow="fold")
    models = list(metrics["models"])
    for m in models:
        table.add_column(m + (" *" if m == sel else ""), justify="right", overflow="fold")
    names = list(metrics["models"][models[0]]["metrics"])
    for n in names:
        cells = []
        for m in models:
            v = metrics["models"][m]["metrics"][n]
            cells.append("n/a" if v["value"] != v["value"] else f"{v['value']:.3f}\n({v['low']:.3f}-{v['high']:.3f})")
        table.add_row(metric_info(n)[0], *cells)
    level = int(round(metrics.get("level", 0.95) * 100))
    rule = (metrics.get("selection") or {}).get("rule", "")
    table.caption = (f"test split; {level}% CI from {metrics['n_bootstrap']} patient bootstrap resamples; "
                     f"* = selected on validation {metrics['primary_metric']} ({rule})")
    return table


def show_run(run, label: str | None = None) -> None:
    title = (label or run.config["name"]) + (" [SYNTHETIC DATA]" if run.synthetic else "")
    out.print(metrics_table(run.metrics.data, title))
    say_selection(run.metrics.data)


def say_selection(metrics: dict) -> None:
    sel = metrics.get("selection") or {}
    if sel.get("reason"):
        out.print(f"selected: {sel['reason']}", soft_wrap=True, highlight=False)
    if sel.get("warning"):
        err.print(f"[yellow]warning:[/yellow] {sel['warning']}", soft_wrap=True, highlight=False)


def say_report(path: Path) -> None:
    out.print(f"Report: {Path(path).resolve()}", soft_wrap=True, highlight=False)
