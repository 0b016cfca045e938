"""Data-parallel training of one fit over several processes (one per GPU, or CPU processes), launched by
``torchrun``.

Every process draws the whole batch of an iteration from the same seeded generator (so all of them know every
pair, frame and window of it), computes the loss of its own share of the batch items (:func:`share`), and
weights each of its loss terms by its share of the term's denominator (:func:`fraction`: annotated pixels of
a pooled mean, or batch items), so that the terms summed over the processes are the one-process terms. The
gradients of every trained parameter — the recognition net's and the physical parameters' — are summed over
the processes by one all-reduce (:func:`sum_gradients`), so every process takes the same optimiser step from the
same global batch: the learned parameters agree with a one-process fit up to the order of float summation.

The processes talk through :mod:`torch.distributed`: ``gloo`` on the CPU, ``nccl`` between CUDA GPUs (each
process on GPU ``LOCAL_RANK``). Only the first process (rank 0) writes checkpoints, outputs and progress.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from neuradiff.core.errors import NeuradiffError

#: The variables ``torchrun`` sets in every process it starts.
ENVIRONMENT = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


@dataclass(frozen=True)
class Processes:
    """Which of the training processes this one is.

    Attributes
    ----------
    rank : int
        0 … ``world_size - 1``; rank 0 writes the outputs.
    world_size : int
        Number of processes training the fit together.
    local_rank : int
        Index of the process on its machine (its GPU).

    Examples
    --------
    >>> Processes(1, 2, 1).main, ONE.main
    (False, True)
    """

    rank: int
    world_size: int
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """This process writes checkpoints, outputs and progress."""
        return self.rank == 0


#: One process: the fit is not shared.
ONE = Processes(0, 1, 0)


def launched(environ: dict[str, str] | None = None) -> Processes | None:
    """The processes a launcher such as ``torchrun`` started (from ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``), or
    ``None`` when there is only this one (the variables are unset, or ``WORLD_SIZE`` is 1).

    Examples
    --------
    >>> launched({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    Processes(rank=1, world_size=2, local_rank=1)
    >>> launched({}) is None
    True
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    values = {}
    for name in ENVIRONMENT:
        try:
            values[name] = int(env.get(name, "0"))
        except ValueError:
            raise NeuradiffError(f"the environment variable {name} must be a whole number, got {env[name]!r}") from None
    world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world < 1 or not 0 <= rank < world or local < 0:
        raise NeuradiffError(f"WORLD_SIZE={world}, RANK={rank}, LOCAL_RANK={local} do not describe a process group")
    return None if world == 1 else Processes(rank, world, local)


def active() -> Processes | None:
    """The processes training together now (an initialised process group of more than one), else ``None``."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def process_device(device: torch.device, processes: Processes) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` when training on CUDA, the CPU on the CPU."""
    if device.type == "cuda":
        if processes.local_rank >= torch.cuda.device_count():
            raise NeuradiffError(
                f"process {processes.rank} needs GPU {processes.local_rank}, but torch sees "
                f"{torch.cuda.device_count()}: start at most one process per GPU"
            )
        return torch.device("cuda", processes.local_rank)
    if device.type != "cpu":
        raise NeuradiffError(f"training on several processes runs on the CPU or CUDA GPUs, not on {device.type}")
    return device


def backend(device: torch.device) -> str:
    """``nccl`` between CUDA GPUs, ``gloo`` on the CPU.

    Examples
    --------
    >>> backend(torch.device("cpu"))
    'gloo'
    """
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[tuple[Processes, torch.device]]:
    """Join the launcher's process group for a ``with`` block (nothing to join in a single process) and yield
    (this process, its device); the group is left at the end of the block."""
    processes = launched()
    if processes is None:
        yield ONE, device
        return
    device = process_device(device, processes)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group(backend(device))
    try:
        yield processes, device
    finally:
        if owner:
            dist.destroy_process_group()


def check_batch(batch: int, processes: Processes) -> None:
    """Refuse a batch that cannot give every process at least one item."""
    if batch < processes.world_size:
        raise NeuradiffError(
            f"batch {batch} is smaller than the {processes.world_size} training processes: every process needs "
            f"a batch item; set batch to at least {processes.world_size} or start fewer processes"
        )


def share(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """The batch items each process computes: the costliest item first, each to the least loaded process (the
    lowest rank among equals); every process's items in increasing order.

    Parameters
    ----------
    costs : sequence of float
        Estimated cost of each batch item (e.g. its simulated frames).
    world_size : int

    Returns
    -------
    list of list of int
        ``[items of rank 0, items of rank 1, ...]``: disjoint, together every item once.

    Examples
    --------
    >>> share([4, 4, 13], 2)
    [[2], [0, 1]]
    >>> share([1, 1, 1], 2)
    [[0, 2], [1]]
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    load = [0.0] * world_size
    items: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        items[rank].append(i)
        load[rank] += float(costs[i])
    return [sorted(x) for x in items]


def fraction(counts: Tensor | np.ndarray, items: Sequence[int]) -> float:
    """This process's share of a pooled mean's denominator: ``counts[items].sum() / counts.sum()`` (0 when the
    total is 0), with ``counts`` the pixels (or items) each batch item adds to the denominator.

    Examples
    --------
    >>> fraction(np.array([3, 1, 0]), [1, 2])
    0.25
    """
    c = np.asarray(counts.cpu() if isinstance(counts, Tensor) else counts, dtype=np.float64)
    total = float(c.sum())
    return 0.0 if total == 0 else float(c[list(items)].sum()) / total


def _sum(flat: Tensor) -> Tensor:
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return flat


def sum_gradients(parameters: Sequence[Tensor]) -> None:
    """Replace the gradient of every parameter by its sum over the processes (one all-reduce per dtype); a
    parameter without a gradient in every process keeps none."""
    params = list(parameters)
    if not params:
        return
    device = params[0].device
    present = _sum(torch.tensor([p.grad is not None for p in params], dtype=torch.float64, device=device))
    by_dtype: dict[torch.dtype, list[Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.dtype, []).append(p)
    for group in by_dtype.values():
        flat = _sum(torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in group]))
        offset = 0
        for p in group:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n
    for p, seen in zip(params, present.tolist()):
        if not seen:
            p.grad = None


def any_process(flag: bool, device: torch.device | str = "cpu") -> bool:
    """Whether ``flag`` is true in any of the processes (one all-reduce): a decision every process takes alike."""
    return bool(_sum(torch.tensor([float(flag)], dtype=torch.float64, device=device)).item() > 0)


def sum_terms(terms: dict[str, Tensor]) -> dict[str, Tensor]:
    """The loss terms summed over the processes (detached, float64): the whole batch's terms."""
    names = list(terms)
    device = terms[names[0]].device
    flat = _sum(torch.stack([terms[k].detach().to(device=device, dtype=torch.float64).reshape(()) for k in names]))
    return dict(zip(names, flat.unbind()))


__all__ = [
    "ONE",
    "Processes",
    "active",
    "backend",
    "check_batch",
    "fraction",
    "launched",
    "process_device",
    "process_group",
    "share",
    "sum_gradients",
    "sum_terms",
]
