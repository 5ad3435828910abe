"""ONNX export of a deep tabular model: ONNX Runtime's outputs equal PyTorch's within 1e-5, and the exported folder
alone (featurizer + network + task transform) reproduces Run.predict; non-exportable models are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medflow.errors import ConfigError
from medflow.export import OnnxRun, compare_with_run, export_onnx
from medflow.runs import load_run
from tests.conftest import make_frame


def test_onnx_equals_pytorch(runs_root, tmp_path):
    folder = export_onnx(runs_root["risk"], "mlp", tmp_path / "onnx")
    assert sorted(p.name for p in folder.glob("*.json")) == ["export.json", "fold_0_featurizer.json",
                                                            "fold_0_task.json"]
    run, onnx = load_run(runs_root["risk"]), OnnxRun(folder)
    records = make_frame(n=120, seed=5)[["x1", "x2", "cat", "sex"]]
    x = run.inputs(records)
    with torch.no_grad():
        torch_out = run.estimator("mlp").module.eval()(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(onnx.outputs(records), torch_out, atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx.predict(records), run.scores(records, "mlp"), atol=1e-5, rtol=0)
    diff, n = compare_with_run(folder)
    assert n == 200 and diff < 1e-5
    assert onnx.meta["threshold"] == run.metrics.data["models"]["mlp"]["threshold"]


def test_export_refuses_what_it_cannot_do(runs_root, tmp_path):
    with pytest.raises(ConfigError, match="exportable models: \\['mlp'\\]"):
        export_onnx(runs_root["risk"], "logistic_regression", tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_onnx(runs_root["risk"], "mlp", tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".onnx-*"))  # no half-written export left behind
