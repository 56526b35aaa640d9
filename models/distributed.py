"""DDP for ``facegate train run``: one process per device when launched by torchrun, else a single process.

Every rank must take the same decisions (stop, evaluate, learning rate), so
the few values that decide them are all-reduced here; rank 0 alone writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from .recipe import TrainConfig, TrainError

if TYPE_CHECKING:
    from .checkpoint import TrainState


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this run initialised the process group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(cfg: TrainConfig) -> Dist:
    """DDP when launched by torchrun (WORLD_SIZE > 1): gloo on CPU, nccl on CUDA."""
    use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise TrainError("device = 'cuda' but CUDA is not available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def sync_stop(flag: bool, state: TrainState, d: Dist) -> bool:
    """Stop on every rank when any rank wants to; the ranks also agree on the training time (the max).

    The time drives the budget and the time-based cosine, so ranks that
    disagreed on it would step with different learning rates.
    """
    if d.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0, state.seconds], dtype=torch.float64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    state.seconds = float(t[1])
    return bool(t[0] > 0)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()



def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """``model`` under DDP when there are several ranks (gradients all-reduced), else itself."""
    if d.world == 1:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def teardown(d: Dist) -> None:
    """End the process group if this run started it (torchrun's own group is left alone)."""
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()
