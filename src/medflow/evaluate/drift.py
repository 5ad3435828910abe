"""Drift of a served model's inputs against its training data, from additive counts: the population stability
index per feature (training deciles or categories), the share outside the training range, unseen categories and
missingness. The service counts (`medflow.serve.monitor`); the report renders the saved counts."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["psi", "summarize", "merge_states"]

EPS = 1e-4


def psi(expected: np.ndarray, observed: np.ndarray) -> float:
    """Population stability index between two share vectors (each sums to 1); empty bins floored at 1e-4."""
    e = np.clip(np.asarray(expected, float), EPS, None)
    o = np.clip(np.asarray(observed, float), EPS, None)
    e, o = e / e.sum(), o / o.sum()
    return float(np.sum((o - e) * np.log(o / e)))


def merge_states(states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Sum the counts of several monitor states (worker processes, restarts) of one model version."""
    if not states:
        return None
    out = {"n": 0, "fields": states[0]["fields"], "references": states[0]["references"], "counts": {}}
    for st in states:
        out["n"] += st["n"]
        for col, c in st["counts"].items():
            m = out["counts"].setdefault(col, {"missing": 0, "outside": 0, "cats": {}, "bins": None})
            m["missing"] += c["missing"]
            m["outside"] += c["outside"]
            for k, v in c["cats"].items():
                m["cats"][k] = m["cats"].get(k, 0) + v
            if c["bins"] is not None:
                m["bins"] = list(np.add(m["bins"] or np.zeros(len(c["bins"]), int), c["bins"]).tolist())
    return out


def summarize(state: dict[str, Any], min_records: int = 30) -> dict[str, Any]:
    """Per-feature drift figures and flags (PSI >= 0.2; over 5% outside the training range) from counts."""
    n, rows, flagged = state["n"], [], []
    for col, f in state["fields"].items():
        c, ref_all = state["counts"][col], state["references"].get(col)
        row: dict[str, Any] = {"feature": col, "type": f["type"], "n": n,
                               "missing_share": c["missing"] / n if n else None,
                               "missing_in_training": f.get("missing_in_training"), "psi": None}
        present = n - c["missing"]
        if f["type"] == "numeric":
            row["outside_training_range_share"] = c["outside"] / present if present else None
            if c["bins"] is not None and present and ref_all:
                row["psi"] = psi(ref_all["shares"], np.asarray(c["bins"]) / present)
        elif f["type"] in ("categorical", "binary") and present:
            ref = (ref_all or {}).get("categories", {})
            known = set(f.get("categories") or [str(v) for v in f.get("values") or []])
            unseen = sum(k for v, k in c["cats"].items() if v not in known)
            row["unseen_category_share"] = unseen / present
            if ref:
                cats = [k for k in ref if k != "__other__"]
                obs = [c["cats"].get(k, 0) for k in cats]
                exp = [ref[k] for k in cats]
                if "__other__" in ref or unseen:
                    exp.append(ref.get("__other__", 0.0))
                    obs.append(present - sum(obs))
                row["psi"] = psi(np.asarray(exp), np.asarray(obs) / present)
        if row["psi"] is not None:
            row["stability"] = "stable" if row["psi"] < 0.1 else "moderate" if row["psi"] < 0.2 else "shift"
            if row["psi"] >= 0.2 and n >= min_records:
                flagged.append(f"{col}: PSI {row['psi']:.2f}")
        if (row.get("outside_training_range_share") or 0) > 0.05 and n >= min_records:
            flagged.append(f"{col}: {row['outside_training_range_share']:.0%} outside the training range")
        rows.append(row)
    note = None if n >= min_records else f"{n} record(s) seen; drift figures are unreliable below {min_records}"
    return {"records_seen": n, "features": rows, "flagged": flagged, "note": note,
            "reference": "the study data's distribution (quality.json); PSI >= 0.2 flags a shift"}

