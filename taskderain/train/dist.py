"""Distributed training helpers (``torchrun --nproc_per_node=N -m taskderain train CONFIG``).

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`distributed` initialises the default process group from them (``env://``) only when
``WORLD_SIZE > 1`` — backend ``nccl`` for a CUDA training device, ``gloo`` otherwise — and
destroys it on exit, also on errors. Without torchrun (or with one process) nothing happens.

Semantics (see :class:`~taskderain.train.loop.Trainer`): ``data.batch`` is the GLOBAL batch;
each rank trains on its contiguous share ``batch / world_size`` of every batch of the epoch's
seeded permutation (so the ranks see disjoint shards and together exactly the batches of a
1-process run), gradients are averaged across ranks, and rank 0 alone logs, validates and writes
checkpoints / ``log.csv`` / ``curves.png``; all ranks read ``last.pt`` on resume.
"""

from __future__ import annotations

import contextlib
import os
from typing import Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (identity without a process group)."""
    if not is_distributed():
        return obj
    box: List[Optional[object]] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_parts(parts: Dict[str, float], names: Sequence[str], device: torch.device) -> Dict[str, float]:
    """Per name, the mean over the ranks that have it (a term can be absent on a rank's share:
    no labels); one all-reduce for all names, so every rank takes part whatever it has."""
    if not is_distributed():
        return dict(parts)
    t = torch.tensor([[parts.get(n, 0.0), float(n in parts)] for n in names] or [[0.0, 0.0]],
                     dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {n: float(t[i, 0] / t[i, 1]) for i, n in enumerate(names) if t[i, 1] > 0}


def all_reduce_mean(value: float, device: torch.device) -> float:
    """Mean of a float over the ranks."""
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def average_gradients(params: List[torch.nn.Parameter]) -> None:
    """Average ``.grad`` of ``params`` over the ranks (one flat all-reduce; missing grads count as 0)."""
    if not is_distributed() or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[torch.device]:
    """Process group for the run (when ``WORLD_SIZE > 1``); yields this rank's training device."""
    if env_world_size() <= 1 or is_distributed():
        yield device
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this torch build")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DistributedDataParallel does)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
