"""Run the suite's training jobs in this process or side by side in worker processes, with progress."""

from __future__ import annotations

import queue as queue_mod
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable

#: ``report(label, done, total)``: progress of the job ``label``.
Report = Callable[[str, int, int], None]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _throttled(label: str, sink: Callable[[tuple[str, int, int]], None], every_s: float = 0.5):
    last = [0.0]

    def progress(_phase: str, done: int, total: int, _row: dict[str, float] | None = None) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            sink((label, done, total))

    return progress


def _run(name: str, label: str, args: tuple, progress_queue) -> dict[str, Any]:
    from neuradiff.experiments.methods import JOBS

    return JOBS[name](*args, progress=_throttled(label, progress_queue.put))


class JobRunner:
    """Submit named jobs (:data:`~neuradiff.experiments.methods.JOBS`) and collect their results as they end.

    With ``workers == 1`` a job runs when it is submitted, in this process; otherwise in a pool of
    ``workers`` spawned processes with ``threads`` torch threads each.
    """

    def __init__(self, workers: int, threads: int, report: Report | None = None) -> None:
        self.workers, self.report = workers, report or (lambda *_: None)
        self.pending: dict[Future, str] = {}
        self.done: list[tuple[str, dict[str, Any]]] = []
        self.pool = self.manager = self.queue = None
        if workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            self.manager = ctx.Manager()
            self.queue = self.manager.Queue()
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))

    def __enter__(self) -> "JobRunner":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self.manager.shutdown()

    def submit(self, key: str, name: str, *args) -> None:
        """Start job ``name`` on ``args``; its result comes back from :meth:`next` under ``key``."""
        self.report(key, 0, 1)
        if self.pool is None:
            from neuradiff.experiments.methods import JOBS

            result = JOBS[name](*args, progress=_throttled(key, lambda msg: self.report(*msg)))
            self.report(key, 1, 1)
            self.done.append((key, result))
        else:
            self.pending[self.pool.submit(_run, name, key, args, self.queue)] = key

    def _drain(self) -> None:
        while True:
            try:
                self.report(*self.queue.get_nowait())
            except queue_mod.Empty:
                return

    def next(self) -> tuple[str, dict[str, Any]] | None:
        """The next finished job ``(key, result)``, or None when nothing is left (re-raises a job's error)."""
        while not self.done and self.pending:
            finished, _ = wait(list(self.pending), timeout=0.5, return_when=FIRST_COMPLETED)
            self._drain()
            for fut in finished:
                key = self.pending.pop(fut)
                result = fut.result()
                self.report(key, 1, 1)
                self.done.append((key, result))
        return self.done.pop(0) if self.done else None
