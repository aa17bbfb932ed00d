"""DistributedDataParallel through ``torchrun``: process group, samplers, rank-0 helpers.

Launch with ``torchrun --nproc_per_node N script.py`` (or ``python -m
torch.distributed.run``); torchrun starts the processes and sets RANK, LOCAL_RANK and
WORLD_SIZE. Nothing here starts or watches processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "all_reduce_sum",
    "broadcast_object",
    "all_gather_object",
    "barrier",
    "distributed_loader",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, local rank, the world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun described in the environment (gloo on CPU, nccl on GPU).

    Without torchrun's variables (or with WORLD_SIZE=1) this is a single process and no
    group is created.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (backend in (None, "nccl"))
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(
                    f"init_distributed: WORLD_SIZE={world_size} but {var} is not set; "
                    "launch with torchrun"
                )
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined.

    Every rank waits for the others first: a rank that tears down its gloo group while a
    peer is still sending (rank 0 saving, say) can abort in gloo's threads. Drop
    DDP-wrapped models (and the trainers holding them) before calling this: their reducers
    keep the group alive until interpreter exit, where its teardown can abort too.
    """
    if dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside an initialised process group of two or more processes."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True on rank 0: the one process that logs and writes files."""
    return get_rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; returned for convenience."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (picklable objects only)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def distributed_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    **loader_options: Any,
) -> DataLoader:
    """A DataLoader over this rank's shard (DistributedSampler) or, single-process, the whole set.

    The trainer calls ``sampler.set_epoch(epoch)`` so every epoch reshuffles the same way
    on every rank.
    """
    if is_distributed():
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
            collate_fn=collate_fn, num_workers=num_workers, **loader_options,
        )
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last,
        collate_fn=collate_fn, num_workers=num_workers, **loader_options,
    )
