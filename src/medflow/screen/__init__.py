"""Virtual screening: a molecule run scores and ranks a library (`medflow screen RUN_DIR library.smi -o ranked.csv`).

The library is read like training data (`data.molecules`: .smi, CSV, Parquet or SDF), its invalid SMILES left
out and counted; every molecule is scored by the run's model (binary: the probability of the positive class;
regression: the predicted value, highest first unless `lower_is_better`), with the ensemble's spread as its
uncertainty when the model is an ensemble, and ranked. When the library says which molecules are active
(`active_column`, 0/1), the ranking is scored as virtual screening is: the enrichment factor at 1% and 5% (the
actives' rate in the top x% over their rate in the library) and BEDROC (Truchon & Bayly 2007, alpha 20: early
recognition, 80% of the weight in the top 8%), computed by RDKit's `ML.Scoring`, each with a 95% bootstrap CI
over the library's molecules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medflow.data.molecules import MOL_ID, MoleculeSource, read_molecules
from medflow.errors import ConfigError, DataError, shown

__all__ = ["screen", "enrichment_metrics"]


def enrichment_metrics(active: np.ndarray, score: np.ndarray, fractions: tuple[float, ...] = (0.01, 0.05),
                       alpha: float = 20.0, n_boot: int = 500, seed: int = 0) -> dict[str, dict[str, float]]:
    """EF at each fraction and BEDROC of a ranking (higher score = ranked first), each with a 95% bootstrap CI."""
    from rdkit.ML.Scoring import Scoring

    active, score = np.asarray(active, dtype=bool), np.asarray(score, dtype=float)
    if not 0 < active.sum() < len(active):
        raise DataError("enrichment needs both actives and inactives in the library's active column.")

    def compute(a: np.ndarray, s: np.ndarray) -> list[float]:
        order = np.argsort(-s, kind="stable")
        ranked = [[bool(x)] for x in a[order]]
        efs = Scoring.CalcEnrichment(ranked, 0, list(fractions))
        return [*map(float, efs), float(Scoring.CalcBEDROC(ranked, 0, alpha))]

    point = compute(active, score)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(active), len(active))
        if 0 < active[idx].sum() < len(idx):
            boots.append(compute(active[idx], score[idx]))
    lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    names = [f"ef_{round(f * 100):g}pct" for f in fractions] + [f"bedroc_{alpha:g}"]
    return {n: {"value": point[i], "low": float(lo[i]), "high": float(hi[i])} for i, n in enumerate(names)}


def read_protein(given: str) -> str:
    """A target sequence from one-letter codes or a FASTA / plain-text file (its first record); checked."""
    from medflow.data.molecules import clean_protein, protein_problem

    path = Path(given)
    text = given
    if len(given) < 4096 and path.is_file():
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines and lines[0].startswith(">"):
            lines = lines[1:]
            lines = lines[:next((i for i, ln in enumerate(lines) if ln.startswith(">")), len(lines))]
        text = "".join(lines)
    why = protein_problem(text)
    if why:
        raise DataError(f"--protein {shown(given[:60])}: {why}.")
    return clean_protein(text)


def scoring(run: Any, protein: str | None = None, what: str = "screening") -> tuple[Any, Any]:
    """The Run (loaded when given as a directory) and a function from SMILES to its input records, after checking
    that the run scores molecules one number each (binary or regression) and that a drug-target run has its
    target (`protein`: an amino-acid sequence or a FASTA file)."""
    from medflow.runs import load_run

    run = load_run(run) if isinstance(run, str | Path) else run
    feat = run.featurizer()
    if getattr(feat, "name", "") != "mol-v1":
        raise ConfigError(f"{run.path}: {what} needs a run trained on molecules; this run reads "
                          f"{feat.to_dict().get('version', 'tables')}.")
    if run.task.kind not in ("binary", "regression"):
        raise ConfigError(f"{run.path}: {what} needs one score per molecule: a binary (probability of the "
                          f"positive class) or regression run; this run is {run.task.kind}.")
    target = None
    if getattr(feat, "protein_column", None):  # a drug-target run scores molecules against one target
        if protein is None:
            raise ConfigError(f"{run.path}: this run scores drug-target pairs; name the target "
                              "(--protein: an amino-acid sequence or a FASTA file).")
        target = read_protein(protein)
    elif protein is not None:
        raise ConfigError(f"{run.path}: this run scores molecules alone; --protein is for drug-target runs.")

    def records(smiles: list[str]) -> pd.DataFrame:
        out = pd.DataFrame({feat.smiles_column: list(smiles)})
        if target is not None:
            out[feat.protein_column] = target
        return out

    return run, records


def molecule_scorer(run: Any, model: str | None = None, protein: str | None = None) -> Any:
    """A function from valid SMILES to one score each (probability of the positive class, or predicted value)."""
    run, records = scoring(run, protein, "steering")
    column = "probability" if run.task.kind == "binary" else "prediction"

    def score(smiles: list[str]) -> np.ndarray:
        return run.predict(records(smiles), model=model)[column].to_numpy(dtype=float)

    return score


def screen(run: Any, library: str | Path, model: str | None = None, smiles_column: str | None = None,
           active_column: str | None = None, lower_is_better: bool = False,
           protein: str | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score and rank a library with a finished molecule run (a Run or its directory); a drug-target run ranks
    it against one target (`protein`: an amino-acid sequence or a FASTA file).

    Returns the ranked table (rank, id, SMILES, score, uncertainty when an ensemble, the active column when
    given) and a summary: molecules read, invalid ones left out, and the enrichment metrics when actives are known.
    """
    run, score_records = scoring(run, protein, "screening")
    kind = run.task.kind
    ds = read_molecules(MoleculeSource(path=str(library), smiles_column=smiles_column, on_invalid="drop"))
    frame = ds.frame
    if active_column is not None:
        if active_column not in frame.columns:
            raise DataError(f"{library}: active column '{active_column}' is missing; columns are "
                            f"{list(frame.columns)}.")
        bad = frame[active_column][~frame[active_column].isin([0, 1, True, False])]
        if len(bad):
            raise DataError(f"{library}: active column '{active_column}' holds {bad.iloc[0]!r} at row "
                            f"{int(bad.index[0]) + 1}; use 1 for actives and 0 for inactives.")
    preds = run.predict(score_records(frame[ds.molecules.smiles_column].tolist()), model=model, source=str(library))
    score = preds["probability" if kind == "binary" else "prediction"].to_numpy(dtype=float)
    out = pd.DataFrame({"mol_id": frame[MOL_ID].to_numpy(), "smiles": frame[ds.molecules.smiles_column].to_numpy(),
                        "score": score})
    if "uncertainty" in preds.columns:
        out["uncertainty"] = preds["uncertainty"].to_numpy()
    if active_column is not None:
        out[active_column] = frame[active_column].astype(int).to_numpy()
    out = out.iloc[np.argsort(score if lower_is_better else -score, kind="stable")].reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["model"] = preds["model"].iloc[0]
    summary: dict[str, Any] = {"library": str(library), "molecules": len(out),
                               "invalid_smiles_dropped": len(ds.molecules.invalid),
                               "invalid_examples": ds.molecules.invalid[:5], "model": out["model"].iloc[0],
                               "ranked_by": ("lowest" if lower_is_better else "highest") + (
                                   " probability" if kind == "binary" else " predicted value")}
    if active_column is not None:
        s = -out["score"].to_numpy() if lower_is_better else out["score"].to_numpy()
        summary["actives"] = int(out[active_column].sum())
        summary["enrichment"] = enrichment_metrics(out[active_column].to_numpy(), s)
    if run.synthetic:
        out["synthetic"] = True
    return out, summary
