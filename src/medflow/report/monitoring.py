"""The report's monitoring section: input drift of the run's model in service, summed over every service process
that saved counts into `<run>/monitoring/` (docs/service.md)."""

from __future__ import annotations

from pathlib import Path

from medflow.artifacts import read_json
from medflow.evaluate.drift import merge_states, summarize
from medflow.report.elements import escape, html_table

__all__ = ["monitoring_section"]


def _share(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def monitoring_section(run_dir: Path) -> str:
    files = sorted((Path(run_dir) / "monitoring").glob("*.json"))
    if not files:
        return ""
    states = [read_json(f) for f in files]
    merged = merge_states(states)
    summary = summarize(merged)
    versions = sorted({f"{s.get('model')} v{s.get('version')}" for s in states})
    since = min(s.get("started", "") for s in states)
    until = max(s.get("updated", "") for s in states)
    rows = []
    for r in sorted(summary["features"], key=lambda r: -(r["psi"] or 0)):
        rows.append([escape(r["feature"]), escape(r["type"]), "" if r["psi"] is None else f"{r['psi']:.3f}",
                     escape(r.get("stability", "")), _share(r.get("outside_training_range_share")),
                     _share(r.get("unseen_category_share")), _share(r["missing_share"]),
                     _share(r["missing_in_training"])])
    flagged = "".join(f"<li>{escape(f)}</li>" for f in summary["flagged"])
    note = f"<p><em>{escape(summary['note'])}</em></p>" if summary["note"] else ""
    return ("<h2>Monitoring in service</h2>"
            f"<p>{summary['records_seen']:,} record(s) predicted by {escape(', '.join(versions))} between "
            f"{escape(since)} and {escape(until)} ({len(files)} service process(es)), against the study data's "
            "distribution: population stability index per feature (&lt; 0.1 stable, 0.1-0.2 moderate, &ge; 0.2 "
            "shift), share outside the training range, unseen categories and missingness.</p>" + note
            + (f"<p><strong>Flagged:</strong></p><ul>{flagged}</ul>" if flagged else "<p>Nothing flagged.</p>")
            + html_table(["feature", "type", "PSI", "reading", "outside training range", "unseen categories",
                          "missing", "missing in training"], rows))
