"""Multi-task labels with missing values masked (task.missing: mask): loss, metrics, checks, a real molecule study."""

import numpy as np
import pandas as pd
import pytest
import torch

import medflow as mf
from medflow.errors import DataError
from medflow.evaluate.metrics import auroc, auroc_labels
from medflow.tasks.multilabel import Multilabel


def test_loss_ignores_missing_labels():
    task = Multilabel(labels=["a", "b"], missing="mask")
    out = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    y = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    seen = torch.tensor([[2.0], [0.5], [3.0]]).ravel(), torch.tensor([1.0, 0.0, 1.0])
    ref = torch.nn.functional.binary_cross_entropy_with_logits(*seen)
    assert task.loss(out, y).item() == pytest.approx(ref.item())
    full = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert task.loss(out, full).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(out, full).item())


def test_metrics_use_each_labels_observed_records():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(200, 2)).astype(float)
    s = np.clip(y * 0.6 + rng.random((200, 2)) * 0.5, 0, 1)
    y_masked = y.copy()
    y_masked[:50, 1] = np.nan
    expected = np.mean([auroc(y[:, 0], s[:, 0]), auroc(y[50:, 1], s[50:, 1])])
    assert auroc_labels(y_masked, s) == pytest.approx(expected)


def test_checks():
    frame = pd.DataFrame({"a": [1, 0, None, 1, 0], "b": [0, None, 1, 1, 0]})
    with pytest.raises(DataError, match=r"label 'a' is empty at row 3 .*task.missing: mask"):
        Multilabel(labels=["a", "b"]).check(frame, "x.csv")
    Multilabel(labels=["a", "b"], missing="mask").check(frame, "x.csv")
    frame.loc[1, "a"] = None
    with pytest.raises(DataError, match=r"1 record\(s\) have none of the labels .* row 2"):
        Multilabel(labels=["a", "b"], missing="mask").check(frame, "x.csv")


def test_molecule_multitask_study_with_masked_labels(tmp_path):
    """Two real solubility thresholds as tasks, each hidden for a different 30% of molecules (as assays are)."""
    ds = mf.datasets.load("solubility")
    rng = np.random.default_rng(0)
    sol = ds.frame["SOL"]
    u = rng.random(len(sol))  # each molecule was tested in at least one assay
    ds.frame["soluble"] = np.where(u < 0.3, np.nan, (sol > -2).astype(float))
    ds.frame["insoluble"] = np.where(u > 0.7, np.nan, (sol < -4).astype(float))
    run = mf.Study(dataset=ds, task=Multilabel(labels=["soluble", "insoluble"], missing="mask"),
                   model=[{"name": "mpnn", "params": {"hidden": 128, "ffn_hidden": 128}}], output_dir=tmp_path,
                   split=mf.splits.Scaffold(), train={"max_epochs": 12, "patience": 5, "progress": False},
                   evaluate={"n_bootstrap": 100}, explain={"max_records": 10, "examples": 2}).fit()
    auc = run.metrics.data["models"]["mpnn"]["metrics"]["auroc_labels"]
    assert auc["value"] > 0.85 and auc["low"] <= auc["value"] <= auc["high"]
    preds = run.predictions()
    assert preds["label_0"].isna().any()  # the missing labels stay missing in the predictions table
    assert "ROC per label" in (run.path / "report.html").read_text()
