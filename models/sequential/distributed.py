"""``torchrun`` / DistributedDataParallel plumbing for the sequential family (imports torch lazily).

``torchrun --nproc_per_node N ...`` starts N processes and describes the group in the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`join_process_group`
joins it (gloo on CPU, NCCL on GPUs); a plain process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) is a group of
one and nothing distributed happens. Every rank trains on its shard of each epoch (``DistributedSampler``),
gradients are averaged by DDP, and only rank 0 writes files (:func:`is_primary_process`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the training group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def primary(self) -> bool:
        return self.rank == 0


def join_process_group(device: str) -> ProcessGroup:
    """The group this process trains in, joining the one ``torchrun`` describes if not joined yet."""
    import torch.distributed as dist

    if not dist.is_available():
        return ProcessGroup()
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return ProcessGroup()
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return ProcessGroup(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank)


def is_primary_process() -> bool:
    """True unless this process is a non-zero rank of a distributed run (only rank 0 writes outputs)."""
    import sys

    if "torch" in sys.modules:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    return os.environ.get("RANK", "0") in ("", "0")


def mean_over_group(value: float, group: ProcessGroup) -> float:
    """The mean of ``value`` over every rank (``value`` itself in a group of one)."""
    if not group.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device(group))
    dist.all_reduce(tensor)
    return float(tensor.item()) / group.world_size


def from_primary(value: float, group: ProcessGroup) -> float:
    """Rank 0's ``value`` on every rank (so every rank takes the same early-stopping decision)."""
    if not group.distributed:
        return value
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device(group))
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def _collective_device(group: ProcessGroup) -> str:
    """Where a collective's tensor must live: the rank's GPU under NCCL, the CPU under gloo."""
    import torch.distributed as dist

    return f"cuda:{group.local_rank}" if dist.get_backend() == "nccl" else "cpu"
