"""Multi-process data-parallel training: PyTorch DistributedDataParallel under `torchrun`.

`medflow run study.yaml --nproc N` relaunches itself under `torch.distributed.run` (torchrun); each process
runs the same study with the same seed, so data, splits and initial weights agree. The Trainer splits each
global batch across the processes and DDP averages the gradients, so for losses that are means over
samples the update equals one process's on the whole batch (tested: 2 processes give the weights of 1
within float tolerance). Only rank 0 writes files (`artifacts.py` and checkpoints ask `is_main()`); the
others read the same run directory when resuming. Backend: NCCL with GPUs, gloo on CPU (docs/scale.md).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_from_env", "is_distributed", "rank", "world_size", "is_main", "barrier", "broadcast_object",
           "all_sum", "shutdown"]


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files and prints results (rank 0, or the only process)."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment (WORLD_SIZE, RANK, MASTER_ADDR, ...).

    Returns True when a group of more than one process was joined. Idempotent.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return is_distributed()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object) -> object:
    """Rank 0's value of `obj`, on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value: float) -> float:
    """The sum of `value` over all processes (the value itself in one process)."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
