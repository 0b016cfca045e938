"""The suite's jobs (make a dataset, fit a method) and how they run: in this process or side by side in worker
processes, with progress. A job is a plain function of picklable inputs that returns a :class:`JobResult`."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch

from neuradiff.core.devices import resolve_device
from neuradiff.core.labels import overlay_annotation
from neuradiff.methods import FITS, FitResult, SurrogateConfig, place_model
from neuradiff.nets import recognise
from neuradiff.synth.datasets import Dataset, DatasetConfig, make_dataset, time_per_frame
from neuradiff.training import FitConfig, TrainingData

#: ``report(label, done, total)``: progress of the job ``label``.
Report = Callable[[str, int, int], None]


@dataclass
class JobResult:
    """What a job returns: a dataset or a fit, and how long it took (s)."""

    seconds: float
    dataset: Dataset | None = None
    fit: FitResult | None = None


def training_data(ds: Dataset) -> TrainingData:
    """A synthetic dataset as training input (frames float32, three-state annotations)."""
    meta = ds.metadata
    return TrainingData(
        ds.video.astype(np.float32),
        np.asarray(ds.annotations, dtype=np.uint8),
        meta["calibration"]["nm_per_px"],
        meta["calibration"]["frame_interval_s"],
        time_per_frame(meta),
    )


def _fit_job(method: str) -> Callable[..., JobResult]:
    def job(data: TrainingData, config: FitConfig, device: str = "cpu", progress: Callable | None = None) -> JobResult:
        t0 = time.perf_counter()
        fit = FITS[method](data, config, progress=progress, device=resolve_device(device))
        place_model(fit.model, "cpu")  # scored and saved on the CPU whatever trained it
        return JobResult(time.perf_counter() - t0, fit=fit)

    job.__name__ = f"fit_{method}"
    return job


def surrogate_job(
    eta: np.ndarray,
    recogniser_fit: FitResult,
    config: SurrogateConfig,
    device: str = "cpu",
    progress: Callable | None = None,
) -> JobResult:
    """The autoregressive surrogate, trained on ``device`` on the eta maps of consecutive frames, started by the
    recogniser."""
    t0 = time.perf_counter()
    fit = FITS["surrogate"](eta, recogniser_fit.model.net, config, progress=progress, device=resolve_device(device))
    place_model(fit.model, "cpu")
    return JobResult(time.perf_counter() - t0, fit=fit)


def dataset_job(config: DatasetConfig, progress: Callable | None = None) -> JobResult:
    """A synthetic dataset (simulated, rendered, annotated)."""
    t0 = time.perf_counter()
    total = config.simulation.steps
    ds = make_dataset(config, progress=None if progress is None else (lambda done: progress("data", done, total, {})))
    return JobResult(time.perf_counter() - t0, dataset=ds)


def surrogate_targets(recogniser_fit: FitResult, data: TrainingData, train_frames: np.ndarray) -> np.ndarray:
    """eta of every frame for the surrogate: the recogniser's tracking, the annotation where one exists."""
    eta = recognise(recogniser_fit.model.net, data.frames, eta_only=True)
    for k in train_frames:
        eta[k] = overlay_annotation(eta[k], data.annotations[k])
    return eta


#: Job name → function.
JOBS: dict[str, Callable[..., JobResult]] = {
    "dataset": dataset_job,
    "neuradiff": _fit_job("neuradiff"),
    "supervised": _fit_job("supervised"),
    "physics_only": _fit_job("physics_only"),
    "residual": _fit_job("residual"),
    "surrogate": surrogate_job,
}


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def _throttled(label: str, sink: Callable[[tuple[str, int, int]], None], every_s: float = 0.5):
    last = [0.0]

    def progress(_phase: str, done: int, total: int, _row: dict[str, float] | None = None) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            sink((label, done, total))

    return progress


def _run(name: str, label: str, args: tuple, progress_queue) -> JobResult:
    return JOBS[name](*args, progress=_throttled(label, progress_queue.put))


class JobRunner:
    """Submit named jobs (:data:`JOBS`) and collect their results as they end.

    With ``workers == 1`` a job runs when it is submitted, in this process; otherwise in a pool of
    ``workers`` spawned processes with ``threads`` torch threads each.
    """

    def __init__(self, workers: int, threads: int, report: Report | None = None) -> None:
        self.workers, self.report = workers, report or (lambda *_: None)
        self.pending: dict[Future, str] = {}
        self.done: list[tuple[str, JobResult]] = []
        self.pool = self.manager = self.queue = None
        if workers > 1:
            ctx = mp.get_context("spawn")
            self.manager = ctx.Manager()
            self.queue = self.manager.Queue()
            self.pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,))

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None and self.manager is not None:
            self.pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self.manager.shutdown()

    def submit(self, key: str, name: str, *args) -> None:
        """Start job ``name`` on ``args``; its result comes back from :meth:`next` under ``key``."""
        self.report(key, 0, 1)
        if self.pool is None:
            result = JOBS[name](*args, progress=_throttled(key, lambda msg: self.report(*msg)))
            self.report(key, 1, 1)
            self.done.append((key, result))
        else:
            self.pending[self.pool.submit(_run, name, key, args, self.queue)] = key

    def _drain(self) -> None:
        if self.queue is None:
            return
        while True:
            try:
                self.report(*self.queue.get_nowait())
            except queue_mod.Empty:
                return

    def next(self) -> tuple[str, JobResult] | None:
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
