"""How good a set of generated molecules is, against the molecules the generator learned from.

- **validity**: share of sampled strings RDKit parses and sanitizes;
- **uniqueness**: share of distinct canonical SMILES among the valid ones;
- **novelty**: share of the distinct valid molecules that are not in the training set (canonical SMILES);
- **scaffold novelty**: the same for their Bemis-Murcko scaffolds (a new scaffold is a new chemotype);
- **internal diversity**: 1 - mean pairwise Tanimoto similarity of Morgan fingerprints (radius 2, 2,048 bits)
  among the distinct valid molecules (up to 1,000), as in MOSES;
- **properties**: QED, Crippen logP and molecular weight, generated against training: means, sds and the
  Wasserstein distance between the two distributions, beside the same distance between two random halves of the
  training set (what sampling noise alone gives).

Shares carry Wilson 95% intervals; internal diversity a bootstrap interval over molecules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["generation_metrics", "properties", "canonical"]

PROPERTIES = ("qed", "logp", "mw")


def canonical(smiles: list[str]) -> list[str | None]:
    """Canonical SMILES of each string, None where RDKit cannot parse and sanitize it."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    try:
        out = []
        for s in smiles:
            mol = Chem.MolFromSmiles(s) if s else None
            out.append(Chem.MolToSmiles(mol) if mol is not None and mol.GetNumAtoms() else None)
        return out
    finally:
        RDLogger.EnableLog("rdApp.*")


def properties(smiles: list[str]) -> dict[str, np.ndarray]:
    """QED, Crippen logP and molecular weight of valid SMILES."""
    from rdkit import Chem
    from rdkit.Chem import QED, Crippen, Descriptors

    mols = [Chem.MolFromSmiles(s) for s in smiles]
    return {"qed": np.array([QED.qed(m) for m in mols]), "logp": np.array([Crippen.MolLogP(m) for m in mols]),
            "mw": np.array([Descriptors.MolWt(m) for m in mols])}


def _wilson(k: int, n: int) -> dict[str, float]:
    if n == 0:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    z, p = 1.959964, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"value": p, "low": max(0.0, centre - half), "high": min(1.0, centre + half), "n": n}


def _diversity(smiles: list[str], seed: int, limit: int = 1000, n_boot: int = 200) -> dict[str, float]:
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    if len(smiles) < 2:
        return {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(smiles)}
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(smiles), min(limit, len(smiles)), replace=False)
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(smiles[i])) for i in pick]
    sim = np.array([DataStructs.BulkTanimotoSimilarity(f, fps) for f in fps])
    n = len(fps)

    def value(idx: np.ndarray) -> float:
        sub = sim[np.ix_(idx, idx)]
        same = idx[:, None] == idx[None, :]  # a molecule drawn twice is not a pair
        return float(1 - sub[~same].mean()) if (~same).any() else float("nan")

    boots = [value(rng.integers(0, n, n)) for _ in range(n_boot)]
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return {"value": value(np.arange(n)), "low": float(lo), "high": float(hi), "n": n}


def _scaffolds(smiles: list[str]) -> set[str]:
    from rdkit import Chem

    from medflow.data.molecules import scaffold_of

    return {scaffold_of(Chem.MolFromSmiles(s)) for s in smiles}


def generation_metrics(generated: list[str], training: list[str], seed: int = 0) -> dict[str, Any]:
    """Validity, uniqueness, novelty, scaffold novelty, internal diversity and property distributions of
    `generated` (raw sampled strings) against `training` (SMILES the generator learned from)."""
    from scipy.stats import wasserstein_distance

    canon = canonical(generated)
    valid = [c for c in canon if c is not None]
    distinct = list(dict.fromkeys(valid))
    train = {c for c in canonical(training) if c is not None}
    novel = [c for c in distinct if c not in train]
    train_list = sorted(train)
    train_scaffolds = _scaffolds(train_list)
    gen_scaffolds = _scaffolds(distinct) if distinct else set()
    out: dict[str, Any] = {
        "sampled": len(generated), "valid": len(valid), "distinct": len(distinct), "novel": len(novel),
        "validity": _wilson(len(valid), len(generated)), "uniqueness": _wilson(len(distinct), len(valid)),
        "novelty": _wilson(len(novel), len(distinct)),
        "scaffold_novelty": _wilson(len(gen_scaffolds - train_scaffolds), len(gen_scaffolds)),
        "internal_diversity": _diversity(distinct, seed),
        "training_internal_diversity": _diversity(train_list, seed)["value"]}
    if distinct:
        gp, tp = properties(distinct), properties(train_list)
        rng = np.random.default_rng(seed)
        half = rng.permutation(len(train_list))
        a, b = half[: len(half) // 2], half[len(half) // 2:]
        out["properties"] = {k: {"generated_mean": float(gp[k].mean()), "generated_sd": float(gp[k].std()),
                                 "training_mean": float(tp[k].mean()), "training_sd": float(tp[k].std()),
                                 "wasserstein": float(wasserstein_distance(gp[k], tp[k])),
                                 "wasserstein_training_halves": float(wasserstein_distance(tp[k][a], tp[k][b]))}
                             for k in PROPERTIES}
    return out
