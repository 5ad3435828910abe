"""DDP: two processes (gloo on CPU) train the same weights as one; the CLI runs a study under torchrun."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medflow.train.trainer import TrainConfig, Trainer
from tests.conftest import make_frame


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(203, 6, generator=g)  # 203: batches do not split evenly over two processes
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).float()
    return x, y


def _fit(seed: int = 0, epochs: int = 8, checkpoint: str | None = None) -> dict[str, torch.Tensor]:
    from medflow.train import Checkpoint

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x, y = _data()
    cfg = TrainConfig(max_epochs=epochs, batch_size=32, lr=0.01, schedule="constant", progress=False)
    callbacks = [Checkpoint(checkpoint)] if checkpoint else []
    Trainer(cfg, seed=seed, callbacks=callbacks).fit(
        module, lambda out, t: torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], t), x, y,
        x[:50], y[:50])
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _worker(rank: int, world: int, init_file: str, out_dir: str, epochs: int = 8,
            checkpoint: str | None = None) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.save(_fit(epochs=epochs, checkpoint=checkpoint), os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # leave together: a process exiting while the other still talks to it aborts
    finally:
        dist.destroy_process_group()


def test_two_processes_train_the_weights_of_one(tmp_path):
    single = _fit()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in single:
        assert torch.equal(r0[k], r1[k])  # the replicas never drift apart
        assert torch.allclose(r0[k], single[k], atol=1e-5), k  # and match one process on the whole batch


def test_two_processes_resume_from_rank_zeros_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    mp.spawn(_worker, args=(2, str(tmp_path / "i1"), str(tmp_path), 4, str(ckpt)), nprocs=2, join=True)
    assert [p.name for p in ckpt.iterdir()] == ["last.pt"]  # one writer, no stray temp files
    assert torch.load(ckpt / "last.pt", weights_only=True)["epoch"] == 3
    mp.spawn(_worker, args=(2, str(tmp_path / "i2"), str(tmp_path), 8, str(ckpt)), nprocs=2, join=True)
    resumed = torch.load(tmp_path / "rank1.pt")  # a non-zero rank read rank 0's checkpoint and went on
    straight = _fit(epochs=8)
    for k in straight:
        assert torch.allclose(resumed[k], straight[k], atol=1e-5), k


def test_study_under_torchrun_writes_one_run_matching_one_process(tmp_path):
    make_frame(300).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "s.yaml").write_text(
        "name: ddp\ndata: {path: d.csv, patient_id: pid}\ntask: {kind: binary, label: y}\n"
        "models: [{name: mlp, params: {dropout: 0.0, hidden: 16}}, logistic_regression]\n"
        "train: {max_epochs: 10, patience: 10, progress: false}\nevaluate: {n_bootstrap: 50}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    outs = {}
    for nproc in (1, 2):
        res = subprocess.run([sys.executable, "-m", "medflow", "run", "s.yaml", "--nproc", str(nproc),
                              "--output-dir", f"out{nproc}"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, env=env)
        assert res.returncode == 0, res.stderr[-3000:]
        runs = list((tmp_path / f"out{nproc}" / "ddp").iterdir())
        assert len(runs) == 1 and not runs[0].name.endswith(".incomplete")  # rank 0 alone wrote one run
        outs[nproc] = json.loads((runs[0] / "metrics.json").read_text())
        assert res.stdout.count("Report:") == 1
    a, b = (outs[n]["models"]["mlp"]["metrics"]["auroc"]["value"] for n in (1, 2))
    assert abs(a - b) < 1e-3
    hist = [json.loads(next((tmp_path / f"out{n}" / "ddp").iterdir()).joinpath(
        "fold_0", "mlp", "model.json").read_text())["history"] for n in (1, 2)]
    assert np.allclose([h["train_loss"] for h in hist[0]], [h["train_loss"] for h in hist[1]], atol=1e-4)


@pytest.mark.parametrize("args, message", [(["--nproc", "0"], "--nproc and --nnodes must be at least 1")])
def test_bad_process_counts(tmp_path, args, message):
    (tmp_path / "s.yaml").write_text("name: x\ndata: {dataset: breast_cancer}\n"
                                     "task: {kind: binary, label: malignant}\n")
    res = subprocess.run([sys.executable, "-m", "medflow", "run", "s.yaml", *args], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and message in res.stderr
