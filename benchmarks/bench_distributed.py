"""Data-parallel training throughput: medflow's Trainer in 1 process and under DDP in 2 (gloo, CPU).

The same MLP, data, global batch and epochs; each configuration runs in fresh processes (spawned, as
torchrun would), with one intra-op thread per process so that 2 processes use the 2 cores of this machine.
Reported: training samples per second (fastest epoch after a warm-up epoch, best of 2 alternating repeats)
and the scaling efficiency,
throughput(2) / (2 x throughput(1)). Run: `.venv/bin/python benchmarks/bench_distributed.py`.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from medflow.models.tabular import MLP
from medflow.train import Callback, TrainConfig, Trainer


class _EpochTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t = time.perf_counter()

    def on_epoch_end(self, trainer: Trainer) -> None:
        now = time.perf_counter()
        self.times.append(now - self._t)
        self._t = now


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 40)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-x[:, :5].sum(1)))).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def _train(n: int, epochs: int, batch: int) -> list[float]:
    torch.manual_seed(0)
    x, y = _data(n)
    model = MLP(40, 1, hidden=256, depth=3, dropout=0.0)
    timer = _EpochTimer()
    cfg = TrainConfig(max_epochs=epochs, batch_size=batch, patience=epochs, progress=False)
    Trainer(cfg, seed=0, callbacks=[timer]).fit(
        model, lambda o, t: torch.nn.functional.binary_cross_entropy_with_logits(o[:, 0], t), x, y)
    return timer.times


def _worker(rank: int, world: int, init: str, out: str, n: int, epochs: int, batch: int) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    times = _train(n, epochs, batch)
    if rank == 0:
        np.save(out, np.asarray(times))
    if world > 1:
        dist.barrier()  # leave together: a process that exits while the other still talks to it aborts
        dist.destroy_process_group()


def run(n: int = 40_000, epochs: int = 5, batches: tuple[int, ...] = (256, 1024, 4096),
        repeats: int = 2) -> list[dict]:
    rows = []
    for batch in batches:
        per: dict[int, float] = {}
        for _ in range(repeats):  # alternate 1 and 2 processes; keep each one's fastest epoch (noisy machine)
            for world in (1, 2):
                with tempfile.TemporaryDirectory() as tmp:
                    out = os.path.join(tmp, "times.npy")
                    mp.spawn(_worker, args=(world, os.path.join(tmp, "init"), out, n, epochs, batch),
                             nprocs=world, join=True)
                    times = np.load(out)[1:]  # the first epoch warms up
                per[world] = max(per.get(world, 0.0), n / min(times.tolist()))
        rows.append({"rows": n, "global_batch": batch, "samples_per_s_1": per[1], "samples_per_s_2": per[2],
                     "speedup": per[2] / per[1], "efficiency": per[2] / (2 * per[1])})
    return rows


if __name__ == "__main__":
    for r in run():
        print(f"rows {r['rows']}, global batch {r['global_batch']}: 1 process {r['samples_per_s_1']:,.0f} samples/s, "
              f"2 processes {r['samples_per_s_2']:,.0f} samples/s, speed-up {r['speedup']:.2f}x, "
              f"efficiency {r['efficiency']:.0%}")
