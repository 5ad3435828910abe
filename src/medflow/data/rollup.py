"""Code roll-ups: rare codes replaced by their ancestors so they share strength.

    data:
      rollup: [{vocabulary: ICD10CM, levels: 1}, {vocabulary: SNOMED, levels: 2}]

Two hierarchies, chosen by the vocabulary:

* ICD (ICD10CM, ICD10, ICD9CM, ICD10PCS): the code's prefix. ICD-10-CM gains one level of detail per
  character after the three-character category, so `levels: n` drops n characters, never below the
  category: E11.65 -> E11.6 (1) -> E11 (2 and more).
* any other vocabulary: the source's own hierarchy (`EventData.hierarchy`: OMOP's concept_ancestor, or the
  `parent_codes` of a MEDS codes.parquet): a code becomes its ancestor `levels` steps up (the nearest
  one below when the tree is shallower there; the smallest code when a concept has several).

Codes are `VOCAB/code` (OMOP) or `VOCAB//code` (MEDS); only the vocabulary named is touched, and how
many codes became how many is written to `EventData.metadata["rollup"]`.
"""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.sources.meds import EventData

__all__ = ["Rollup", "rollup_codes", "rollup_map", "hierarchy_from_parents"]

ICD = ("ICD10CM", "ICD10", "ICD9CM", "ICD9", "ICD10PCS", "ICD9PROC")


class Rollup(BaseModel):
    """One vocabulary's roll-up: `levels` steps up its hierarchy."""

    model_config = ConfigDict(extra="forbid")
    vocabulary: str
    levels: int = Field(1, ge=1, le=10)


def _split(code: str) -> tuple[str, str, str]:
    sep = "//" if "//" in code else "/"
    vocab, _, rest = code.partition(sep)
    return vocab, sep, rest


def _icd_up(code: str, levels: int) -> str:
    plain = code.replace(".", "")
    keep = max(3, len(plain) - levels) if len(plain) > 3 else len(plain)
    short = plain[:keep]
    return short if len(short) <= 3 or "." not in code else f"{short[:3]}.{short[3:]}"


def rollup_map(codes: list[str], spec: Rollup, hierarchy: pl.DataFrame | None = None) -> dict[str, str]:
    """code -> its roll-up, for the codes of `spec.vocabulary` that change."""
    vocab = spec.vocabulary.upper()
    mine = [c for c in codes if _split(c)[0].upper() == vocab]
    out: dict[str, str] = {}
    if vocab in ICD:
        for c in mine:
            v, sep, rest = _split(c)
            up = f"{v}{sep}{_icd_up(rest, spec.levels)}"
            if up != c:
                out[c] = up
        return out
    if hierarchy is None or not mine:
        return out
    h = hierarchy.filter(pl.col("code").is_in(mine) & (pl.col("levels") <= spec.levels) & (pl.col("levels") > 0))
    best = (h.sort(["code", "levels", "ancestor"], descending=[False, True, False])
            .unique("code", keep="first", maintain_order=True))
    return {c: a for c, a in best.select("code", "ancestor").iter_rows() if a != c}


def hierarchy_from_parents(codes: pl.DataFrame, depth: int = 10) -> pl.DataFrame | None:
    """code, ancestor, levels from a MEDS codes.parquet's `parent_codes`, followed up to `depth` steps."""
    if "parent_codes" not in codes.columns or codes["parent_codes"].null_count() == codes.height:
        return None
    step = codes.select("code", pl.col("parent_codes").alias("ancestor")).explode("ancestor").drop_nulls()
    level, frames = step.with_columns(pl.lit(1).alias("levels")), []
    for n in range(1, depth + 1):
        frames.append(level)
        level = (level.join(step.rename({"code": "ancestor", "ancestor": "_up"}), on="ancestor")
                 .select("code", pl.col("_up").alias("ancestor"), pl.lit(n + 1).alias("levels")))
        if not level.height:
            break
    return pl.concat(frames).unique()


def rollup_codes(data: EventData, specs: list[Rollup]) -> EventData:
    """`data` with each named vocabulary's codes replaced by their roll-ups (in place of the frame; returned)."""
    if not specs:
        return data
    if data.hierarchy is None and data.codes is not None:
        data.hierarchy = hierarchy_from_parents(data.codes)
    codes = data.events["code"].unique().to_list()
    report = {}
    mapping: dict[str, str] = {}
    for spec in specs:
        m = rollup_map(codes, spec, data.hierarchy)
        mapping.update(m)
        before = sum(1 for c in codes if _split(c)[0].upper() == spec.vocabulary.upper())
        after = len({m.get(c, c) for c in codes if _split(c)[0].upper() == spec.vocabulary.upper()})
        report[spec.vocabulary] = {"levels": spec.levels, "codes_before": before, "codes_after": after,
                                   "hierarchy": "ICD code prefix" if spec.vocabulary.upper() in ICD else
                                   ("source hierarchy" if data.hierarchy is not None
                                    else "none in the source: codes kept")}
    if mapping:
        data.events = data.events.with_columns(pl.col("code").replace(mapping))
    data.metadata = {**data.metadata, "rollup": report}
    return data
