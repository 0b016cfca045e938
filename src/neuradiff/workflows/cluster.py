"""Dask distributed for the workflows: a client on a new local cluster or on a running scheduler, and a
:class:`~neuradiff.workflows.track.PartRunner` that runs the parts of one long recording on the cluster's workers.

Dask distributed takes seconds to import: it is loaded by name when a workflow first needs a cluster.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.workflows.track import TrackedPart, TrackPart


def default_workers() -> int:
    """Worker processes for a local cluster: one per CPU core (each with one torch thread)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client on a new local cluster of ``workers`` processes (one thread each), or on the scheduler at
    ``scheduler`` (``"tcp://host:8786"``; its workers must see the same files). A cluster that cannot be started
    or reached is a :class:`~neuradiff.core.errors.NeuradiffError`."""
    dd = importlib.import_module("distributed")
    cluster = None
    try:
        if scheduler is None:
            cluster = dd.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
            )
            client = dd.Client(cluster)
        else:
            client = dd.Client(scheduler, timeout="10s")
    except (OSError, ValueError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        where = f"the Dask scheduler at {scheduler}" if scheduler else "a local Dask cluster"
        raise NeuradiffError(f"cannot start or reach {where} ({str(exc).strip() or type(exc).__name__})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


class DaskRunner:
    """Run the parts of a recording (:func:`~neuradiff.workflows.track.track_part`) as tasks on a Dask cluster,
    yielding results as they complete; a part that fails (or whose worker dies) fails the recording.

    Parameters
    ----------
    client : distributed.Client
        From :func:`dask_client`, or ``distributed.worker_client()`` inside a task.
    threads : int
        torch threads in each task.

    Examples
    --------
    >>> with dask_client(2, None) as client:  # doctest: +SKIP
    ...     run_track("long.tif", None, "out", runner=DaskRunner(client))
    """

    def __init__(self, client: Any, threads: int = 1):
        self.client = client
        self.threads = threads
        self.workers = max(1, len(client.scheduler_info().get("workers", {})))

    def map(self, fn: Callable[[TrackPart], TrackedPart], parts: list[TrackPart]) -> Iterable[TrackedPart]:
        as_completed = importlib.import_module("distributed").as_completed
        run = uuid.uuid4().hex[:12]  # task keys are global to the cluster: unique to this recording's run
        futures = [
            self.client.submit(_in_threads, fn, part, self.threads, pure=False, key=f"track-part-{run}-{part.start}")
            for part in parts
        ]
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except NeuradiffError:
                raise
            except Exception as exc:  # a lost worker, or a bad frame deep in a part
                text = str(exc).strip().splitlines()
                raise NeuradiffError(
                    f"a part of the recording failed: {text[0] if text else type(exc).__name__}"
                ) from None


def _in_threads(fn: Callable[[TrackPart], TrackedPart], part: TrackPart, threads: int) -> TrackedPart:
    torch.set_num_threads(threads)
    return fn(part)


__all__ = ["DaskRunner", "dask_client", "default_workers"]
