"""Meta-training across processes with ``torch.distributed``: each process takes a share of every meta-batch.

Launched by ``torchrun`` (``mlatlas repro run NAME --nproc N`` does it for you), every process runs the same
program with the same seed, so each samples the *same* tasks from the one seeded stream; :func:`task_share` then
gives it a contiguous block of the batch's task indices, it back-propagates those tasks' losses (already divided
by the whole batch's size), and :func:`reduce_step` sums the gradients and the loss over processes. The update is
the single-process update up to the order of float additions, whatever N is, and every process holds the same
parameters afterwards, so a checkpoint written by rank 0 resumes a run with any N.

A method takes part by asking :func:`task_share` which tasks are its own (the core's ``meta_gradient`` and the
Omniglot episode loop do); a method that never asks would be counted N times, so the training loop refuses it
with a clear error instead. Collectives carry a timeout: a process that dies ends the others' wait with
:class:`RankFailure`, never a hang.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300.0


class RankFailure(RuntimeError):
    """Another process of a distributed run failed or stopped answering; the message says which collective."""


@dataclass
class _Group:
    rank: int
    world: int
    timeout_s: float
    shared: bool = False  # whether the current step asked for its task share


_group: _Group | None = None


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Join the process group ``torchrun`` described in the environment (gloo on the CPU, NCCL on CUDA)."""
    global _group
    if _group is not None or not launched():
        return
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, timeout=dt.timedelta(seconds=timeout_s))
    except Exception as exc:  # a peer that never came up, a port in use
        raise RankFailure(f"could not join the {backend} process group within {timeout_s:g} s: {exc}") from exc
    _group = _Group(dist.get_rank(), dist.get_world_size(), timeout_s)


def stop() -> None:
    global _group
    if _group is not None:
        _group = None
        if dist.is_initialized():
            dist.destroy_process_group()


def rank() -> int:
    return _group.rank if _group else 0


def world() -> int:
    return _group.world if _group else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that prints, writes checkpoints and writes records."""
    return rank() == 0


def task_share(n: int) -> range:
    """This process's tasks among ``n``: a contiguous block, the blocks of all processes covering 0..n-1 once.
    A process may get none (when ``n`` is smaller than the number of processes)."""
    if _group is None:
        return range(n)
    _group.shared = True
    return range(n * _group.rank // _group.world, n * (_group.rank + 1) // _group.world)


def _collective(what: str, fn) -> None:
    try:
        fn()
    except RuntimeError as exc:  # gloo/NCCL report a dead or silent peer as a RuntimeError
        raise RankFailure(f"rank {rank()} of {world()}: {what} failed (another process died or stopped answering "
                          f"within {_group.timeout_s:g} s): {str(exc).splitlines()[0] if str(exc) else exc}") from exc


def reduce_step(params: list[torch.Tensor], loss: float) -> float:
    """Sum every parameter's gradient and the step's loss over the processes; returns the whole batch's loss.

    A parameter keeps ``grad = None`` only when no process gave it a gradient, as in a single-process run."""
    if _group is None:
        return loss
    if not _group.shared:
        raise ValueError("this method does not split its meta-batch across processes (it never asked for its "
                           "task share), so --nproc above 1 would count every task several times; run it with "
                           "--nproc 1")
    _group.shared = False
    like = next(iter(params))
    flat = [p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(), dtype=like.dtype, device=p.device)
            for p in params]
    has = torch.tensor([p.grad is not None for p in params], dtype=like.dtype, device=like.device)
    buffer = torch.cat([*(f.to(like.dtype) for f in flat), has, torch.tensor([loss], dtype=like.dtype,
                                                                             device=like.device)])
    _collective("summing the meta-gradient", lambda: dist.all_reduce(buffer))
    offset = 0
    for i, p in enumerate(params):
        size = p.numel()
        if buffer[-1 - len(params) + i] > 0:
            p.grad = buffer[offset:offset + size].view_as(p).to(p.dtype).clone()
        offset += size
    return float(buffer[-1])


def check_same(value: int, what: str) -> None:
    """Every process must hold the same ``value`` (e.g. the iteration a resumed run starts from)."""
    if _group is None:
        return
    both = torch.tensor([value, -value], dtype=torch.int64)
    _collective(f"comparing {what}", lambda: dist.all_reduce(both, op=dist.ReduceOp.MAX))
    if int(both[0]) != -int(both[1]):
        raise RankFailure(f"the processes disagree on {what} ({-int(both[1])} to {int(both[0])}): every process must "
                          "read the same checkpoint, so give them one shared --work-dir")


def barrier(what: str) -> None:
    if _group is not None:
        _collective(what, dist.barrier)


def communication_bytes(params: list[torch.Tensor]) -> int:
    """Bytes each process contributes to one step's all-reduce: the gradient, one flag per parameter, the loss."""
    like = next(iter(params))
    return (sum(p.numel() for p in params) + len(params) + 1) * like.element_size()
