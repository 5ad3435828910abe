import numpy as np
import pandas as pd
import pytest
import torch

from medflow.errors import ConfigError, DataError
from medflow.tasks import Binary, Multiclass, Regression


def test_binary_rejects_three_classes():
    frame = pd.DataFrame({"y": [0, 1, 2, 1]})
    with pytest.raises(DataError, match=r"label 'y' has 3 distinct values .* but the task is binary"):
        Binary(label="y").check(frame, "d.csv")


def test_binary_rejects_one_class():
    with pytest.raises(DataError, match="is 1 in every record"):
        Binary(label="y").check(pd.DataFrame({"y": [1, 1, 1]}), "d.csv")


def test_missing_label_column():
    with pytest.raises(DataError, match=r"d\.csv: label column 'outcome' is missing"):
        Binary(label="outcome").check(pd.DataFrame({"y": [0, 1]}), "d.csv")


def test_empty_label_named_by_row():
    with pytest.raises(DataError, match="first at row 2"):
        Binary(label="y").check(pd.DataFrame({"y": [0, None, 1]}), "d.csv")


def test_binary_positive_class():
    frame = pd.DataFrame({"y": ["no", "yes", "yes", "no"]})
    task = Binary(label="y").fit(frame)
    assert task.encode(frame).tolist() == [0, 1, 1, 0]
    frame2 = pd.DataFrame({"y": ["alive", "dead"]})
    with pytest.raises(ConfigError, match="set task.positive"):
        Binary(label="y").check(frame2, "d.csv")
    assert Binary(label="y", positive="dead").fit(frame2).encode(frame2).tolist() == [0, 1]


def test_balanced_class_weight_changes_loss():
    frame = pd.DataFrame({"y": [0, 0, 0, 1]})
    out, target = torch.zeros(4, 1), torch.tensor([0, 0, 0, 1])
    plain = Binary(label="y").fit(frame).loss(out, target)
    weighted = Binary(label="y", class_weight="balanced").fit(frame).loss(out, target)
    assert weighted > plain


def test_multiclass_encoding_and_probabilities():
    frame = pd.DataFrame({"y": ["b", "a", "c", "a"]})
    task = Multiclass(label="y").fit(frame)
    assert task.classes == ["a", "b", "c"] and task.encode(frame).tolist() == [1, 0, 2, 0]
    p = task.predict_from_outputs(np.array([[1.0, 2.0, 3.0]]))
    assert np.isclose(p.sum(), 1) and p.argmax() == 2
    with pytest.raises(DataError, match="was not seen in training"):
        task.encode(pd.DataFrame({"y": ["d"]}))


def test_regression_scaling_round_trip():
    frame = pd.DataFrame({"y": [10.0, 20.0, 30.0]})
    task = Regression(label="y").fit(frame)
    scaled = (np.array([10.0, 20.0, 30.0]) - task.state["mean"]) / task.state["std"]
    assert np.allclose(task.predict_from_outputs(scaled), [10, 20, 30])
    with pytest.raises(DataError, match="must be numeric"):
        Regression(label="y").check(pd.DataFrame({"y": [1.0, "x"]}), "d.csv")
