"""Molecule featurization against hand-worked molecules, and the batch layout message passing relies on."""

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem

from medflow.errors import DataError
from medflow.features.molecule import ATOM_DIM, BOND_DIM, MoleculeFeaturizer, atom_features, bond_features

# offsets of each one-hot block in the atom vector (chemprop v2: 37+1, 6+1, 5+1, 4+1, 5+1, 7+1, aromatic, mass)
ELEM, DEG, CHG, CHI, HS, HYB = 0, 38, 45, 51, 56, 62


def test_dimensions_are_chemprops():
    assert ATOM_DIM == 72 and BOND_DIM == 14


def test_ethanol_oxygen_by_hand():
    mol = Chem.MolFromSmiles("CCO")
    f = np.array(atom_features(mol.GetAtomWithIdx(2)))
    assert f[ELEM + 7] == 1 and f[ELEM:DEG].sum() == 1  # atomic number 8 is the 8th choice
    assert f[DEG + 2] == 1  # total degree 2: C and its H
    assert f[CHG + 4] == 1  # formal charge 0 is the 5th choice (-1, -2, 1, 2, 0)
    assert f[HS + 1] == 1  # one hydrogen
    assert f[HYB + 4] == 1  # SP3 (S, SP, SP2, SP2D, SP3, ...)
    assert f[70] == 0 and f[71] == pytest.approx(0.15999, abs=1e-4)  # not aromatic; mass / 100


def test_unusual_atoms_fall_in_the_other_slot():
    f = np.array(atom_features(Chem.MolFromSmiles("[Pt]").GetAtomWithIdx(0)))
    assert f[DEG - 1] == 1  # Pt (78) is not among H-Kr and I
    charged = np.array(atom_features(Chem.MolFromSmiles("[NH4+]").GetAtomWithIdx(0)))
    assert charged[CHG + 2] == 1 and charged[HS + 4] == 1 and charged[DEG + 4] == 1


def test_benzene_bond_by_hand():
    b = np.array(bond_features(Chem.MolFromSmiles("c1ccccc1").GetBondWithIdx(0)))
    assert b.tolist()[:7] == [0, 0, 0, 0, 1, 1, 1]  # not null; aromatic; conjugated; in ring
    assert b[7] == 1 and b[7:].sum() == 1  # stereo none
    single = np.array(bond_features(Chem.MolFromSmiles("CC").GetBondWithIdx(0)))
    assert single.tolist()[:7] == [0, 1, 0, 0, 0, 0, 0]


@pytest.fixture(scope="module")
def fitted():
    frame = pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CC(=O)N", "C", "CCCCCCCC"]})
    feat = MoleculeFeaturizer().fit(frame)
    return feat, feat.transform(frame)


def test_batch_layout(fitted):
    _, x = fitted
    b = x.batch(np.array([0, 2]))  # ethanol (3 atoms, 2 bonds) and acetamide (4 atoms, 3 bonds)
    assert b["atoms"].shape == (7, ATOM_DIM) and b["bonds"].shape == (10, BOND_DIM)
    assert b["mol"].tolist() == [0, 0, 0, 1, 1, 1, 1] and b["n_atoms"].tolist() == [3, 4]
    src, dst, rev = b["src"], b["dst"], b["rev"]
    assert torch.equal(src[rev], dst) and torch.equal(dst[rev], src)  # the reverse bond runs back
    assert src[:4].max() < 3 and src[4:].min() >= 3  # acetamide's bonds point at its own atoms
    assert b["descriptors"].shape[0] == 2


def test_single_atom_and_slicing(fitted):
    _, x = fitted
    b = x[3:4].batch(np.array([0]))  # methane: one heavy atom, no bonds
    assert b["atoms"].shape == (1, ATOM_DIM) and b["bonds"].shape == (0, BOND_DIM)
    assert len(x[:2]) == 2 and np.array_equal(x[1:3].to_matrix(), x.to_matrix()[1:3])


def test_matrix_is_morgan_bits_and_scaled_descriptors(fitted):
    feat, x = fitted
    m, names = x.to_matrix(), x.matrix_names()
    assert m.shape[1] == len(names) == 2048 + len(feat.center)
    assert set(np.unique(m[:, :2048])) <= {0.0, 1.0} and m[:, :2048].sum() > 0
    d = m[:, 2048:]
    assert np.isfinite(d).all() and np.abs(d).max() <= 6.0
    assert abs(d[:, names.index("MolWt") - 2048].mean()) < 1e-5  # centred on the training molecules


def test_new_molecules_may_extrapolate_up_to_ten_sd(fitted):
    feat, _ = fitted
    big = feat.transform(pd.DataFrame({"smiles": ["C" * 60, "C" * 10]}))
    train_max = feat.transform(pd.DataFrame({"smiles": ["CCCCCCCC"]}))
    j = big.matrix_names().index("MolWt") - 2048
    assert train_max.descriptors[0, j] < big.descriptors[1, j] < big.descriptors[0, j] == 10.0


def test_heavy_tailed_descriptors_are_logged():
    import medflow as mf
    from medflow.features.molecule import descriptor_names

    frame = mf.datasets.load("solubility").frame.iloc[:300]
    feat = MoleculeFeaturizer().fit(frame)
    names = descriptor_names()
    assert feat.log[names.index("Ipc")] and not feat.log[names.index("NumHDonors")]
    assert np.abs(feat.transform(frame).descriptors).max() <= 10.0


def test_round_trip(fitted):
    feat, x = fitted
    again = MoleculeFeaturizer.from_dict(feat.to_dict())
    frame = pd.DataFrame({"smiles": ["CCO", "c1ccccc1O", "CC(=O)N", "C", "CCCCCCCC"]})
    assert np.array_equal(again.transform(frame).to_matrix(), x.to_matrix())


def test_invalid_smiles_named_with_row(fitted):
    feat, _ = fitted
    with pytest.raises(DataError, match=r"row 2: 'C1CC' \(RDKit cannot parse.*row 3: 'C\(C\)\(C\)\(C\)\(C\)C' "
                                        r"\(RDKit cannot sanitize it: Explicit valence"):
        feat.transform(pd.DataFrame({"smiles": ["CCO", "C1CC", "C(C)(C)(C)(C)C"]}), "new.csv")
    with pytest.raises(DataError, match="SMILES column 'smiles' is missing"):
        feat.transform(pd.DataFrame({"smi": ["CCO"]}))


def test_message_passing_ignores_atom_order(fitted):
    from medflow.models.graph import DMPNN, GIN

    feat, _ = fitted
    x = feat.transform(pd.DataFrame({"smiles": ["OCC(=O)Nc1ccccc1", "c1ccc(cc1)NC(=O)CO"]}))
    torch.manual_seed(0)
    for net in (DMPNN(x.shape[1], 1), GIN(x.shape[1], 1).eval()):
        out = net(x.batch(np.array([0, 1]))).detach().numpy().ravel()
        assert out[0] == pytest.approx(out[1], rel=1e-4, abs=1e-5)
