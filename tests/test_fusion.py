"""Block comparison and fusion on simulated data with known structure."""

import numpy as np
import pandas as pd
import pytest

from medflow.data.sources.tabular import dataset_from_frame
from medflow.errors import ConfigError
from medflow.study.fusion import BlocksConfig, compare_blocks
from medflow.tasks import Survival
from medflow.train.trainer import TrainConfig


def _dataset(n=300, seed=0):
    """Risk depends on both blocks, so fusion should beat either block alone."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 2))
    g = rng.normal(size=(n, 3))
    lp = 1.0 * a[:, 0] + 1.0 * g[:, 0]
    t = rng.exponential(100 * np.exp(-lp))
    c = rng.uniform(0, 300, n)
    frame = pd.DataFrame({"pid": range(n), "a1": a[:, 0], "a2": a[:, 1], "g1": g[:, 0], "g2": g[:, 1],
                          "g3": g[:, 2], "time": np.minimum(t, c), "event": (t <= c).astype(int)})
    ds = dataset_from_frame(frame, "memory", "sim", patient_id="pid", synthetic=True)
    ds.meta["blocks"] = {"clinical": ["a1", "a2"], "genomic": ["g1", "g2", "g3"]}
    return ds


def test_fusion_beats_single_blocks_when_both_carry_signal():
    ds = _dataset()
    task = Survival(time="time", event="event")
    cfg = BlocksConfig(model="cox_ph", k=3, repeats=1, n_bootstrap=100)
    res = compare_blocks(ds, task, cfg, TrainConfig(max_epochs=20, progress=False), seed=0)
    assert set(res["configs"]) == {"clinical only", "genomic only", "early fusion", "late fusion"}
    assert res["configs"]["early fusion"]["columns"] == 5
    assert res["difference"]["value"] > 0.05 and res["difference"]["low"] > 0
    assert "fusion helps" in res["verdict"]


def test_blocks_must_name_feature_columns():
    ds = _dataset(60)
    with pytest.raises(ConfigError, match=r"compare_blocks.blocks\['x'\] names \['nope'\]"):
        compare_blocks(ds, Survival(time="time", event="event"),
                       BlocksConfig(blocks={"x": ["nope"], "y": ["a1"]}), TrainConfig(), 0)


def test_study_writes_the_block_comparison_into_the_report(tmp_path):
    import medflow as mf

    ds = _dataset(160)
    run = mf.Study(dataset=ds, task=Survival(time="time", event="event"), model=["cox_ph"],
                   evaluate={"n_bootstrap": 50}, output_dir=tmp_path)
    run.config.compare_blocks = BlocksConfig(model="cox_ph", k=3, repeats=1, n_bootstrap=60)
    result = run.fit()
    assert (result.path / "blocks.json").exists()
    html = (result.path / "report.html").read_text()
    assert "Feature blocks and fusion" in html and "late fusion" in html and "SYNTHETIC" in html
