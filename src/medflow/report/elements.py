"""HTML building blocks of the model card: escaping, tables, embedded images, values with CIs."""

from __future__ import annotations

import html
from typing import Any

from medflow.evaluate.metrics import metric_info

__all__ = ["escape", "html_table", "img", "ci", "display"]


def escape(x: Any) -> str:
    """Text made safe for HTML."""
    return html.escape(str(x))


def html_table(header: list[str], rows: list[list[Any]], row_class: list[str] | None = None) -> str:
    """An HTML table; cells are HTML already (escape text with `escape`)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr class='{(row_class or [''] * len(rows))[i]}'>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                   for i, r in enumerate(rows))
    return f"<table><tr>{head}</tr>{body}</table>"


def img(b64: str, alt: str) -> str:
    """An embedded PNG (base64), so the report opens offline."""
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{b64}'>"


def ci(m: dict[str, float]) -> str:
    """'value (low-high)', or n/a where the metric is undefined."""
    if m["value"] != m["value"]:
        return "n/a <span class='muted'>(undefined here)</span>"
    return f"{m['value']:.3f} <span class='muted'>({m['low']:.3f}&ndash;{m['high']:.3f})</span>"


def display(name: str) -> str:
    """A metric's display name."""
    return metric_info(name)[0]
