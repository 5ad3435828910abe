"""Molecule readers (CSV, SDF, .smi), the invalid-SMILES policy, the built-ins and the scaffold split."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rdkit import Chem

from medflow.data.molecules import MoleculeSource, read_molecules
from medflow.data.splits import Scaffold
from medflow.errors import ConfigError, DataError
from medflow.tasks import Regression


def _csv(tmp_path: Path, smiles: list, y: list | None = None) -> str:
    path = tmp_path / "mols.csv"
    pd.DataFrame({"smiles": smiles, "y": y if y is not None else np.arange(len(smiles), dtype=float)}).to_csv(
        path, index=False)
    return str(path)


def test_invalid_smiles_fail_by_default_with_rows_and_reasons(tmp_path):
    path = _csv(tmp_path, ["CCO", "", "C1CC", "C(C)(C)(C)(C)C", "c1ccccc1"])
    with pytest.raises(DataError, match=r"mols.csv: 3 invalid SMILES in column 'smiles': row 2: None \(empty "
                                        r"SMILES\); row 3: 'C1CC' \(RDKit cannot parse.*row 4: .*valence.*"
                                        r"on_invalid: drop"):
        read_molecules(path)


def test_drop_policy_counts_what_it_left_out(tmp_path):
    path = _csv(tmp_path, ["CCO", "", "C1CC", "C(C)(C)(C)(C)C", "c1ccccc1"])
    ds = read_molecules(MoleculeSource(path=path, on_invalid="drop"))
    assert len(ds) == 2 and ds.modality == "molecules"
    assert [b["row"] for b in ds.molecules.invalid] == [2, 3, 4]
    assert ds.summary()["invalid_smiles_dropped"] == 3
    assert list(ds.frame["mol_id"]) == ["mol-1", "mol-5"] and list(ds.frame["scaffold"]) == ["", "c1ccccc1"]


def test_text_in_the_target_is_named(tmp_path):
    ds = read_molecules(_csv(tmp_path, ["CCO", "CCN", "CCC"], ["1.5", "high", "2.0"]))
    with pytest.raises(DataError, match=r"regression label 'y' holds 'high' at row 2"):
        Regression(label="y").check(ds.frame, ds.source)


def test_missing_columns_and_files(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"structure": ["CCO"], "y": [1.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="no SMILES column .*Set data.molecules.smiles_column"):
        read_molecules(str(path))
    assert len(read_molecules(MoleculeSource(path=str(path), smiles_column="structure"))) == 1
    with pytest.raises(DataError, match="no such file"):
        read_molecules(str(tmp_path / "absent.csv"))
    bad = tmp_path / "latin.csv"
    bad.write_bytes("smiles,name\nCCO,caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_molecules(str(bad))


def _sdf(tmp_path: Path, with_target: bool = True) -> Path:
    path = tmp_path / "mols.sdf"
    w = Chem.SDWriter(str(path))
    for i, s in enumerate(["CCO", "c1ccccc1N", "CC(=O)O"]):
        m = Chem.MolFromSmiles(s)
        m.SetProp("_Name", f"m{i}")
        if with_target or i != 1:
            m.SetDoubleProp("pIC50", 5.0 + i)
        w.write(m)
    w.close()
    return path


def test_sdf_records_and_their_properties(tmp_path):
    ds = read_molecules(str(_sdf(tmp_path)))
    assert list(ds.frame["canonical_smiles"]) == ["CCO", "Nc1ccccc1", "CC(=O)O"]
    assert list(ds.frame["pIC50"]) == [5.0, 6.0, 7.0]


def test_sdf_record_without_the_target_is_named(tmp_path):
    ds = read_molecules(str(_sdf(tmp_path, with_target=False)))
    with pytest.raises(DataError, match=r"label 'pIC50' is empty in 1 record\(s\), first at row 2"):
        Regression(label="pIC50").check(ds.frame, ds.source)


def test_unreadable_sdf_record_is_named(tmp_path):
    path = _sdf(tmp_path)
    blocks = path.read_text().split("$$$$\n")
    blocks[1] = "broken\n  no counts line here\n\nM  END\n"
    path.write_text("$$$$\n".join(blocks))
    with pytest.raises(DataError, match=r"mols.sdf: 1 invalid SDF record\(s\): record 2"):
        read_molecules(str(path))
    assert len(read_molecules(MoleculeSource(path=str(path), on_invalid="drop"))) == 2


def test_smi_file_from_rdkit_wheel():
    import rdkit

    path = Path(rdkit.__file__).parent / "Data" / "NCI" / "first_5K.smi"
    ds = read_molecules(MoleculeSource(path=str(path), on_invalid="drop"))
    assert len(ds) + len(ds.molecules.invalid) == 4999 and len(ds) > 4900


def test_split_column(tmp_path):
    path = tmp_path / "s.csv"
    pd.DataFrame({"smiles": ["CCO", "CCN", "CCC", "CCCl"], "y": [1.0, 2, 3, 4],
                  "part": ["train", "val", "test", "TRAIN"]}).to_csv(path, index=False)
    ds = read_molecules(MoleculeSource(path=str(path), split_column="part"))
    assert list(ds.frame["source_split"]) == ["train", "tuning", "held_out", "train"]
    pd.DataFrame({"smiles": ["CCO"], "y": [1.0], "part": ["later"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="split column 'part' holds 'later' at row 1"):
        read_molecules(MoleculeSource(path=str(path), split_column="part"))


def test_builtins_match_the_anchor_files():
    import medflow as mf

    fs, sol = mf.datasets.load("freesolv"), mf.datasets.load("solubility")
    assert len(fs) == 642 and "calc" not in fs.frame.columns  # the simulated answer is not a feature
    assert len(sol) == 1264 and len(sol.molecules.invalid) == 18
    assert sol.molecules.invalid[0]["reason"].startswith("RDKit cannot parse")
    assert sol.frame["SOL"].between(-12, 3).all() and fs.frame["expt"].between(-26, 4).all()


def test_scaffold_split_keeps_scaffolds_apart():
    import medflow as mf

    ds = mf.datasets.load("solubility")
    for balanced in (True, False):
        fold = Scaffold(balanced=balanced).make(ds.frame["mol_id"], None, 0, ds.frame)[0]
        parts = [set(ds.frame["scaffold"].iloc[idx]) for idx in (fold.train, fold.valid, fold.test)]
        assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
        assert len(fold.train) + len(fold.valid) + len(fold.test) == len(ds)
        assert 0.75 * len(ds) <= len(fold.train) <= 0.8 * len(ds) + 1
    a = Scaffold().make(ds.frame["mol_id"], None, 0, ds.frame)[0]
    b = Scaffold().make(ds.frame["mol_id"], None, 1, ds.frame)[0]
    assert not np.array_equal(a.test, b.test)  # balanced: the seed moves the big scaffolds
    with pytest.raises(ConfigError, match="column 'scaffold'"):
        Scaffold().make(ds.frame["mol_id"], None, 0, ds.frame.drop(columns=["scaffold"]))
