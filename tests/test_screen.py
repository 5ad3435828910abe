"""Virtual screening: enrichment metrics against hand-worked rankings, and a real screen of EGFR ligands hidden among
NCI compounds (both libraries ship inside RDKit's wheel)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rdkit
from rdkit import Chem
from typer.testing import CliRunner

import medflow as mf
from medflow.cli import app
from medflow.errors import ConfigError, DataError
from medflow.screen import enrichment_metrics, screen

RDKIT = Path(rdkit.__file__).parent


def test_enrichment_by_hand():
    active = np.zeros(200, dtype=bool)
    active[[0, 1, 50, 120]] = True
    score = -np.arange(200.0)  # ranked in index order
    m = enrichment_metrics(active, score, n_boot=50)
    assert m["ef_1pct"]["value"] == pytest.approx((2 / 2) / (4 / 200))  # both top-2 molecules are actives: 50x
    assert m["ef_5pct"]["value"] == pytest.approx((2 / 10) / (4 / 200))
    perfect = enrichment_metrics(active, active.astype(float), n_boot=50)["bedroc_20"]["value"]
    worst = enrichment_metrics(active, -active.astype(float), n_boot=50)["bedroc_20"]["value"]
    assert perfect > 0.99 and worst < 0.01
    assert m["ef_1pct"]["low"] <= m["ef_1pct"]["value"] <= m["ef_1pct"]["high"]
    with pytest.raises(DataError, match="both actives and inactives"):
        enrichment_metrics(np.ones(5, bool), np.arange(5.0))


@pytest.fixture(scope="module")
def egfr(tmp_path_factory):
    """A classifier of known EGFR ligands (egfr.sdf) against NCI compounds, trained on half of each."""
    tmp = tmp_path_factory.mktemp("egfr")
    actives = [Chem.MolToSmiles(m) for m in Chem.SDMolSupplier(str(RDKIT / "Contrib/PBF/testData/egfr.sdf"))]
    nci = [ln.split()[0] for ln in (RDKIT / "Data/NCI/first_5K.smi").read_text().splitlines()[:3000]]
    train = pd.DataFrame({"smiles": actives[::2] + nci[:1500], "active": [1] * len(actives[::2]) + [0] * 1500})
    train.to_csv(tmp / "train.csv", index=False)
    lib = pd.DataFrame({"smiles": actives[1::2] + nci[1500:] + ["C1CC"],
                        "active": [1] * len(actives[1::2]) + [0] * 1500 + [0]})
    lib.to_csv(tmp / "library.csv", index=False)
    ds = mf.data.read_molecules(mf.data.MoleculeSource(path=str(tmp / "train.csv"), on_invalid="drop"))
    run = mf.Study(dataset=ds, task=mf.tasks.Binary(label="active"), data={"mol_features": ["morgan"]},
                   model=[{"name": "random_forest", "params": {"n_estimators": 100}}], output_dir=tmp / "runs",
                   evaluate={"n_bootstrap": 100}, explain={"max_records": 20, "n_repeats": 1}).fit()
    return run, tmp


def test_real_screen_enriches_held_out_actives(egfr):
    run, tmp = egfr
    ranked, summary = screen(run, tmp / "library.csv", active_column="active")
    # the planted 'C1CC' and two NCI entries RDKit cannot parse are left out, and named
    assert summary["invalid_smiles_dropped"] == 3 and summary["molecules"] == len(ranked) == 1683 - 3
    assert "C1CC" in {b["smiles"] for b in summary["invalid_examples"]}
    assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    assert ranked["score"].is_monotonic_decreasing
    e = summary["enrichment"]
    ceiling = len(ranked) / summary["actives"]  # EF cannot exceed 1 / (share of actives)
    assert e["ef_1pct"]["value"] > 0.8 * ceiling and e["bedroc_20"]["value"] > 0.8
    assert e["bedroc_20"]["low"] <= e["bedroc_20"]["value"] <= e["bedroc_20"]["high"]


def test_cli_screen_and_bad_input(egfr, tmp_path):
    run, tmp = egfr
    library = pd.read_csv(tmp / "library.csv")  # every 4th: the whole library is screened in the test above
    library.iloc[::4].to_csv(tmp_path / "library.csv", index=False)
    result = CliRunner().invoke(app, ["screen", str(run.path), str(tmp_path / "library.csv"), "-o",
                                      str(tmp_path / "ranked.csv"), "--active-column", "active"])
    assert result.exit_code == 0, result.output
    ranked = pd.read_csv(tmp_path / "ranked.csv")
    summary = json.loads((tmp_path / "ranked.summary.json").read_text())
    assert len(ranked) == summary["molecules"] == len(library.iloc[::4]) - summary["invalid_smiles_dropped"]
    assert summary["actives"] > 0 and "ef_5pct" in summary["enrichment"]
    pd.DataFrame({"smiles": ["CCO", "CCN"], "active": ["yes", 0]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="active column 'active' holds 'yes' at row 1"):
        screen(run, tmp_path / "bad.csv", active_column="active")
    table_run = mf.Study(dataset="breast_cancer", task=mf.tasks.Binary(label="malignant"),
                         model="logistic_regression", output_dir=tmp_path, evaluate={"n_bootstrap": 50}).fit()
    with pytest.raises(ConfigError, match="screening needs a run trained on molecules"):
        screen(table_run, tmp / "library.csv")
