"""Data-quality summary: missingness, constant columns, out-of-range values, class balance."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medflow.data.dataset import Dataset, FeatureType

__all__ = ["quality_summary", "reference_distribution"]


def quality_summary(ds: Dataset, label_columns: list[str]) -> dict[str, Any]:
    """Per-column findings for the report; flags issues a reviewer should see before results."""
    columns = []
    findings: list[str] = []
    for col, kind in ds.feature_types.items():
        s = ds.frame[col]
        missing = float(s.isna().mean())
        n_unique = int(s.nunique(dropna=True))
        row: dict[str, Any] = {"column": col, "type": kind.value, "missing": missing, "unique": n_unique,
                               "role": "label" if col in label_columns else "feature"}
        if kind == FeatureType.NUMERIC and s.notna().any():
            v = s.astype(float)
            q1, q3 = np.nanpercentile(v, [25, 75])
            iqr = q3 - q1
            outliers = int(((v < q1 - 3 * iqr) | (v > q3 + 3 * iqr)).sum()) if iqr > 0 else 0
            row.update(min=float(v.min()), max=float(v.max()), mean=float(v.mean()), outliers=outliers,
                       reference=reference_distribution(s, kind))
            negative = int((v < 0).sum())
            if negative and float(v.min()) < 0 and float(np.nanmedian(v)) > 0 and negative / len(v) < 0.01:
                findings.append(f"'{col}': {negative} negative value(s) in an otherwise positive column")
        elif kind in (FeatureType.CATEGORICAL, FeatureType.BINARY) and s.notna().any():
            row["reference"] = reference_distribution(s, kind)
        if n_unique <= 1:
            findings.append(f"'{col}' is constant: it carries no information")
        if missing > 0.5:
            findings.append(f"'{col}' is {missing:.0%} missing")
        columns.append(row)
    far = [c["column"] for c in columns if c.get("outliers")]
    if far:
        total = sum(c["outliers"] for c in columns if c.get("outliers"))
        findings.append(f"{len(far)} numeric column(s) hold {total} value(s) beyond 3 IQR of their quartiles "
                        f"(skew or data errors; see the 'outliers' column): {', '.join(far[:8])}"
                        + (" ..." if len(far) > 8 else ""))
    balance = {}
    for label in label_columns:
        s = ds.frame[label]
        if s.nunique(dropna=True) <= 20 and not pd.api.types.is_float_dtype(s):
            counts = s.value_counts(dropna=False)
            balance[label] = {str(k): int(v) for k, v in counts.items()}
            share = counts.min() / counts.sum()
            if share < 0.1:
                findings.append(f"label '{label}': smallest class is {share:.1%} of records")
    dup = int(ds.frame.drop(columns=[ds.patient_id]).duplicated().sum())
    if dup:
        findings.append(f"{dup} record(s) duplicate another record apart from the patient id")
    return {"columns": columns, "class_balance": balance, "findings": findings,
            "rows": len(ds.frame), "patients": ds.n_patients}


def reference_distribution(s: pd.Series, kind: FeatureType, bins: int = 10, top: int = 50) -> dict[str, Any]:
    """The study data's distribution of one column, kept for drift monitoring (population stability index):
    numeric: decile edges (interior cut points) and the share in each bin; categorical and binary: the share
    of each of the `top` commonest values (the rest pooled as `__other__`). Missing values are left out."""
    s = s.dropna()
    if kind == FeatureType.NUMERIC:
        v = s.astype(float).to_numpy()
        edges = np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return {"edges": edges.tolist(), "shares": (counts / max(len(v), 1)).tolist()}
    shares = s.astype(str).value_counts(normalize=True)
    out = {str(k): float(v) for k, v in shares.iloc[:top].items()}
    if len(shares) > top:
        out["__other__"] = float(shares.iloc[top:].sum())
    return {"categories": out}
