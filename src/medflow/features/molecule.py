"""Molecule featurization with RDKit: directed-bond graphs for message passing, Morgan fingerprints and RDKit 2-D
descriptors for fingerprint/descriptor models.

Atom features are chemprop v2's default set (`MultiHotAtomFeaturizer.v2`): one-hot atomic number (H-Kr and I,
else "other"), degree 0-5, formal charge, chiral tag, total H count 0-4, hybridization (S ... SP3D2), each
with an "other" slot, plus aromaticity and mass / 100: 72 values. Bond features are chemprop's: a null-bond
flag, the type (single, double, triple, aromatic), conjugation, ring membership and the stereo one-hot: 14.
`tests/features/test_molecule.py` checks them on hand-worked molecules.

Molecule-level features: the 2,048-bit Morgan fingerprint (radius 2, RDKit's generator) and RDKit's 2-D
descriptors (`Descriptors.CalcMolDescriptors`, about 217). The featurizer learns on the training molecules which
descriptors are heavy-tailed (largest |value| over 100x the median's + 1, e.g. `Ipc`: those get a signed log
first), then each one's mean and sd; new values are standardized and clipped at +-10 sd, so a molecule bigger
than any in training can still extrapolate while an absurd value cannot dominate. Message-passing models may
read them at the readout (chemprop's `--features-generators rdkit_2d_normalized`), fingerprint and descriptor
models read `to_matrix()`.

Every distinct SMILES is featurized once per dataset (`MoleculeData.cache`) and reused by every fold and model.

Drug-target pairs (`protein_column`): each row's target sequence becomes residue tokens (1-25 over
`PROTEIN_LETTERS`, 0 = padding; sequences longer than `protein_len` are cut, DeepDTA's 1,000 by default), stored
once per distinct sequence; a batch carries its distinct sequences as `protein` (distinct x longest) and each
pair's row among them as `protein_of`, so a target tower runs once per target in a batch, not once per pair.
Tabular models read the target's amino-acid (20) and dipeptide (400) composition beside the drug's bits and descriptors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from medflow.data.molecules import AMINO_ACIDS, PROTEIN_LETTERS, clean_protein, parse_smiles, protein_problem
from medflow.errors import DataError, shown

__all__ = ["MoleculeFeaturizer", "MolGraphs", "atom_features", "bond_features", "protein_tokens",
           "protein_composition", "ATOM_DIM", "BOND_DIM", "N_RESIDUE_TOKENS"]

_ELEMENTS = list(range(1, 37)) + [53]
_DEGREES = list(range(6))
_CHARGES = [-1, -2, 1, 2, 0]
_CHIRAL = list(range(4))
_NUM_HS = list(range(5))
_HYBRID = ["S", "SP", "SP2", "SP2D", "SP3", "SP3D", "SP3D2"]
_BOND_TYPES = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"]
_STEREO = list(range(6))
ATOM_DIM = sum(len(v) + 1 for v in (_ELEMENTS, _DEGREES, _CHARGES, _CHIRAL, _NUM_HS, _HYBRID)) + 2
BOND_DIM = 1 + len(_BOND_TYPES) + 2 + len(_STEREO) + 1
FP_BITS, FP_RADIUS = 2048, 2
N_RESIDUE_TOKENS = len(PROTEIN_LETTERS) + 1  # residues 1..25, 0 = padding
CLIP = 10.0  # scaled descriptors beyond +-10 training sd are clipped (a new molecule may extrapolate that far)


def _onehot(value: Any, choices: list[Any]) -> list[float]:
    out = [0.0] * (len(choices) + 1)
    out[choices.index(value) if value in choices else len(choices)] = 1.0
    return out


def atom_features(atom: Any) -> list[float]:
    """chemprop v2's default atom features (72 values) of one RDKit atom."""
    return (_onehot(atom.GetAtomicNum(), _ELEMENTS) + _onehot(atom.GetTotalDegree(), _DEGREES)
            + _onehot(atom.GetFormalCharge(), _CHARGES) + _onehot(int(atom.GetChiralTag()), _CHIRAL)
            + _onehot(int(atom.GetTotalNumHs()), _NUM_HS) + _onehot(str(atom.GetHybridization()), _HYBRID)
            + [1.0 if atom.GetIsAromatic() else 0.0, 0.01 * atom.GetMass()])


def bond_features(bond: Any) -> list[float]:
    """chemprop's bond features (14 values) of one RDKit bond."""
    return ([0.0] + [1.0 if str(bond.GetBondType()) == t else 0.0 for t in _BOND_TYPES]
            + [1.0 if bond.GetIsConjugated() else 0.0, 1.0 if bond.IsInRing() else 0.0]
            + _onehot(int(bond.GetStereo()), _STEREO))


def _featurize(mol: Any) -> dict[str, np.ndarray]:
    """One molecule: atom features, directed bonds (2 per bond: u->v then v->u) and molecule-level features."""
    from rdkit.Chem import Descriptors, rdFingerprintGenerator

    atoms = np.array([atom_features(a) for a in mol.GetAtoms()], dtype=np.float32).reshape(-1, ATOM_DIM)
    src, dst, feats = [], [], []
    for b in mol.GetBonds():
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        f = bond_features(b)
        src += [u, v]
        dst += [v, u]
        feats += [f, f]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=FP_RADIUS, fpSize=FP_BITS)
    desc = Descriptors.CalcMolDescriptors(mol)
    return {"atoms": atoms, "bonds": np.array(feats, dtype=np.float32).reshape(-1, BOND_DIM),
            "src": np.array(src, dtype=np.int64), "dst": np.array(dst, dtype=np.int64),
            "fp": gen.GetFingerprintAsNumPy(mol).astype(np.uint8),
            "desc": np.array([desc[n] for n in descriptor_names()], dtype=np.float64)}


def descriptor_names() -> list[str]:
    from rdkit.Chem import Descriptors

    return [n for n, _ in Descriptors._descList]


class MolGraphs:
    """Model-ready molecules: flat atom and directed-bond arrays with per-molecule offsets, fingerprints and
    scaled descriptors. `batch(idx)` gives the tensors a message-passing network takes; `to_matrix()` the
    fingerprint bits and descriptors a tabular model takes. `shape` is (molecules, descriptors)."""

    def __init__(self, graphs: list[dict[str, np.ndarray]], descriptors: np.ndarray, matrix: list[str],
                 proteins: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        n_atoms = np.array([len(g["atoms"]) for g in graphs], dtype=np.int64)
        n_bonds = np.array([len(g["src"]) for g in graphs], dtype=np.int64)
        self.atom_start = np.concatenate([[0], np.cumsum(n_atoms)])
        self.bond_start = np.concatenate([[0], np.cumsum(n_bonds)])

        def cat(k: str, dim: tuple, dt: Any) -> np.ndarray:
            return np.concatenate([g[k] for g in graphs]) if graphs else np.zeros((0, *dim), dt)

        self.atoms = cat("atoms", (ATOM_DIM,), np.float32)
        self.bonds = cat("bonds", (BOND_DIM,), np.float32)
        self.src, self.dst = cat("src", (), np.int64), cat("dst", (), np.int64)  # atom indices within a molecule
        self.fp = np.stack([g["fp"] for g in graphs]) if graphs else np.zeros((0, FP_BITS), np.uint8)
        self.descriptors = descriptors.astype(np.float32)
        self.matrix_kinds = matrix
        self._matrix: np.ndarray | None = None
        # drug-target pairs: (tokens of each distinct sequence, their lengths, each molecule's sequence)
        self.proteins = proteins

    def __len__(self) -> int:
        return len(self.atom_start) - 1

    def subset(self, idx: Any) -> MolGraphs:
        """Molecules `idx` as their own MolGraphs (used for slicing: `x[:100]`)."""
        idx = np.asarray(idx, dtype=np.int64)
        graphs = [{"atoms": self.atoms[self.atom_start[i]:self.atom_start[i + 1]],
                   "bonds": self.bonds[self.bond_start[i]:self.bond_start[i + 1]],
                   "src": self.src[self.bond_start[i]:self.bond_start[i + 1]],
                   "dst": self.dst[self.bond_start[i]:self.bond_start[i + 1]], "fp": self.fp[i]} for i in idx]
        prot = None if self.proteins is None else (self.proteins[0], self.proteins[1], self.proteins[2][idx])
        return MolGraphs(graphs, self.descriptors[idx], self.matrix_kinds, prot)

    def __getitem__(self, idx: Any) -> MolGraphs:
        return self.subset(np.arange(len(self))[idx])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.descriptors.shape[1])

    def batch(self, idx: Any) -> dict[str, Any]:
        """Tensors for molecules `idx`: atoms, directed bonds (source / target atom, reverse bond), each atom's
        molecule, and the molecule-level descriptors."""
        import torch

        idx = np.asarray(idx, dtype=np.int64)
        na = self.atom_start[idx + 1] - self.atom_start[idx]
        nb = self.bond_start[idx + 1] - self.bond_start[idx]
        atom_rows = _ranges(self.atom_start[idx], na)
        bond_rows = _ranges(self.bond_start[idx], nb)
        atom_offset = np.repeat(np.cumsum(na) - na, nb)  # where each molecule's atoms start in the batch
        bond_offset = np.repeat(np.cumsum(nb) - nb, nb)
        local = np.arange(len(bond_rows)) - bond_offset
        rev = bond_offset + (local ^ 1)  # bonds are stored in pairs u->v, v->u
        out = {"atoms": torch.from_numpy(self.atoms[atom_rows]),
                "bonds": torch.from_numpy(self.bonds[bond_rows]),
                "src": torch.from_numpy(self.src[bond_rows] + atom_offset),
                "dst": torch.from_numpy(self.dst[bond_rows] + atom_offset),
                "rev": torch.from_numpy(rev),
                "mol": torch.from_numpy(np.repeat(np.arange(len(idx)), na)),
                "n_atoms": torch.from_numpy(na),
                "descriptors": torch.from_numpy(self.descriptors[idx]),
                "fp": torch.from_numpy(self.fp[idx].astype(np.float32))}
        if self.proteins is not None:
            tokens, lengths, which = self.proteins
            distinct, of = np.unique(which[idx], return_inverse=True)  # a target tower runs once per sequence
            out["protein"] = torch.from_numpy(tokens[distinct, :max(1, int(lengths[distinct].max()))]
                                              .astype(np.int64))
            out["protein_of"] = torch.from_numpy(of.astype(np.int64))
        return out

    def atom_symbols(self, i: int) -> list[str]:
        """Element symbols of molecule i's atoms, in RDKit's order (decoded from the atomic-number one-hot)."""
        from rdkit.Chem import GetPeriodicTable

        table = GetPeriodicTable()
        block = self.atoms[self.atom_start[i]:self.atom_start[i + 1], :len(_ELEMENTS) + 1].argmax(axis=1)
        return [table.GetElementSymbol(_ELEMENTS[j]) if j < len(_ELEMENTS) else "*" for j in block]

    def to_matrix(self) -> np.ndarray:
        """Morgan fingerprint bits and/or scaled descriptors, as the featurizer's `matrix` option says."""
        if self._matrix is None:
            parts = {"morgan": self.fp.astype(np.float32), "descriptors": self.descriptors}
            if self.proteins is not None:
                parts["protein"] = protein_composition(self.proteins[0], self.proteins[1])[self.proteins[2]]
            kinds = self.matrix_kinds + (["protein"] if self.proteins is not None else [])
            self._matrix = np.ascontiguousarray(np.concatenate([parts[k] for k in kinds], axis=1))
        return self._matrix

    def matrix_names(self) -> list[str]:
        names = {"morgan": [f"morgan_{i}" for i in range(FP_BITS)], "descriptors": descriptor_names(),
                 "protein": [f"aa_{a}" for a in AMINO_ACIDS] + [f"dp_{a}{b}" for a in AMINO_ACIDS
                                                                 for b in AMINO_ACIDS]}
        kinds = self.matrix_kinds + (["protein"] if self.proteins is not None else [])
        return [n for k in kinds for n in names[k]]


def protein_tokens(sequences: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residue tokens of the distinct sequences (P x longest, 0-padded, cut at `max_len`), their lengths, and each
    input's row among them."""
    distinct = list(dict.fromkeys(sequences))
    where = {s: i for i, s in enumerate(distinct)}
    lengths = np.array([min(len(s), max_len) for s in distinct], dtype=np.int64)
    tokens = np.zeros((len(distinct), max(1, int(lengths.max()) if len(lengths) else 1)), dtype=np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    lut[np.frombuffer(PROTEIN_LETTERS.encode(), dtype=np.uint8)] = np.arange(1, len(PROTEIN_LETTERS) + 1)
    for i, s in enumerate(distinct):
        tokens[i, :lengths[i]] = lut[np.frombuffer(s[:max_len].encode(), dtype=np.uint8)]
    return tokens, lengths, np.array([where[s] for s in sequences], dtype=np.int64)


def protein_composition(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Amino-acid (20) and dipeptide (400) composition of each tokenized sequence: fractions of its standard
    residues and of its adjacent standard pairs."""
    k = len(AMINO_ACIDS)
    out = np.zeros((len(tokens), k + k * k), dtype=np.float32)
    for i, (t, n) in enumerate(zip(tokens, lengths, strict=True)):
        r = t[:n].astype(np.int64) - 1
        std = r[r < k]
        if len(std):
            out[i, :k] = np.bincount(std, minlength=k) / len(std)
        pair = (r[:-1] < k) & (r[1:] < k)
        if pair.any():
            out[i, k:] = np.bincount(r[:-1][pair] * k + r[1:][pair], minlength=k * k) / pair.sum()
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenated aranges starts[i] .. starts[i] + counts[i], vectorized."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return np.repeat(starts, counts) + (np.arange(total) - offsets)


class MoleculeFeaturizer:
    """Descriptor scaling learned on the training molecules; turns SMILES into `MolGraphs`.

    Args:
        smiles_column: the column holding the SMILES.
        matrix: what tabular models read: "morgan" (fingerprint bits), "descriptors", or both.
    """

    name = "mol-v1"

    def __init__(self, smiles_column: str = "smiles", matrix: list[str] | None = None,
                 protein_column: str | None = None, protein_len: int = 1000) -> None:
        self.smiles_column = smiles_column
        self.matrix = list(matrix or ["morgan", "descriptors"])
        self.protein_column, self.protein_len = protein_column, protein_len
        self.log: np.ndarray | None = None
        self.center: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def output_sources(self) -> list[str]:
        return [self.smiles_column] + ([self.protein_column] if self.protein_column else [])

    @property
    def record_columns(self) -> list[str]:
        """Columns that name a molecule (and its target), kept beside its prediction (`medflow predict`)."""
        return ["mol_id", self.smiles_column] + ([self.protein_column] if self.protein_column else [])

    def _graphs(self, smiles: list[Any], source: str, cache: dict[str, Any] | None) -> list[dict[str, np.ndarray]]:
        cache = {} if cache is None else cache
        out, bad = [], []
        for i, s in enumerate(smiles):
            key = str(s)
            if key not in cache:
                mol, reason = parse_smiles(s)
                if mol is None:
                    bad.append((i + 1, s, reason))
                    continue
                cache[key] = _featurize(mol)
            out.append(cache[key])
        if bad:
            listed = "; ".join(f"row {r}: {shown(s)} ({why})" for r, s, why in bad[:5])
            raise DataError(f"{source}: {len(bad)} invalid SMILES in '{self.smiles_column}': {listed}"
                            f"{' ...' if len(bad) > 5 else ''}. Fix or remove those rows.")
        return out

    def fit(self, frame: pd.DataFrame, source: str = "input", cache: dict[str, Any] | None = None
            ) -> MoleculeFeaturizer:
        self.check_columns(frame, source)
        d = np.stack([g["desc"] for g in self._graphs(frame[self.smiles_column].tolist(), source, cache)])
        d = np.where(np.isfinite(d), d, np.nan)
        with np.errstate(all="ignore"):
            big, typical = np.nanmax(np.abs(d), axis=0), np.nanpercentile(np.abs(d), 50, axis=0)
            self.log = np.nan_to_num(big / (typical + 1.0)) > 100  # heavy tails (e.g. Ipc): signed log first
            t = self._shape(d)
            self.center = np.nan_to_num(np.nanmean(t, axis=0))
            tsd = np.nan_to_num(np.nanstd(t, axis=0))
        self.scale = np.where(tsd > 1e-12, tsd, 1.0)
        return self

    def _shape(self, d: np.ndarray) -> np.ndarray:
        return np.where(self.log, np.sign(d) * np.log1p(np.abs(d)), d)

    def check_columns(self, frame: pd.DataFrame, source: str = "input") -> list[str]:
        """Columns the featurizer does not read (the caller may warn); a DataError when the SMILES are missing."""
        if self.smiles_column not in frame.columns:
            raise DataError(f"{source}: the SMILES column '{self.smiles_column}' is missing; columns are "
                            f"{list(frame.columns)}.")
        if self.protein_column and self.protein_column not in frame.columns:
            raise DataError(f"{source}: the protein column '{self.protein_column}' is missing (this model scores "
                            f"drug-target pairs); columns are {list(frame.columns)}.")
        return [c for c in frame.columns if c not in self.output_sources]

    def _proteins(self, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        if not self.protein_column:
            return None
        seqs = []
        for i, p in enumerate(frame[self.protein_column].tolist()):
            why = protein_problem(p)
            if why:
                raise DataError(f"{source}: row {i + 1}, column '{self.protein_column}': {why}.")
            seqs.append(clean_protein(p))
        return protein_tokens(seqs, self.protein_len)

    def transform(self, frame: pd.DataFrame, source: str = "input", cache: dict[str, Any] | None = None) -> MolGraphs:
        assert self.center is not None, "fit the featurizer first"
        self.check_columns(frame, source)
        graphs = self._graphs(frame[self.smiles_column].tolist(), source, cache)
        d = np.stack([g["desc"] for g in graphs]) if graphs else np.zeros((0, len(self.center)))
        with np.errstate(all="ignore"):
            t = self._shape(np.where(np.isfinite(d), d, np.nan))
        scaled = np.clip(np.nan_to_num((t - self.center) / self.scale), -CLIP, CLIP)  # missing -> the mean
        return MolGraphs(graphs, scaled, self.matrix, self._proteins(frame, source))

    def to_dict(self) -> dict[str, Any]:
        assert self.center is not None, "fit the featurizer first"
        return {"version": self.name, "smiles_column": self.smiles_column, "matrix": self.matrix,
                "protein_column": self.protein_column, "protein_len": self.protein_len,
                "descriptors": descriptor_names(), "log": self.log.tolist(), "center": self.center.tolist(),
                "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoleculeFeaturizer:
        f = cls(d["smiles_column"], d["matrix"], d.get("protein_column"), d.get("protein_len", 1000))
        if d["descriptors"] != descriptor_names():
            raise DataError("this run's descriptors were computed by another RDKit version ("
                            f"{len(d['descriptors'])} descriptors, this RDKit has {len(descriptor_names())}); "
                            "install the RDKit the run was trained with (see manifest.json).")
        f.log = np.asarray(d["log"], dtype=bool)
        f.center, f.scale = (np.asarray(d[k], dtype=np.float64) for k in ("center", "scale"))
        return f
