"""Rich progress bars for long work (written to stderr so that stdout stays clean)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from neuradiff.core.progress import ProgressSink


def _info_text(info: Mapping[str, Any] | None) -> str:
    """Loss terms (and, in the joint phase, the learned parameters) of a fit's history row."""
    if not info:
        return ""
    losses = " ".join(f"{k[5:]}={v:.3g}" for k, v in info.items() if k.startswith("loss_"))
    params = " ".join(f"{k[6:]}={v:.3g}" for k, v in info.items() if k.startswith("param_"))
    rates = " ".join(f"{v:.3g} {k[:-6].replace('_', ' ')}/s" for k, v in info.items() if k.endswith("_per_s"))
    return "  ".join(t for t in (losses, params, rates) if t)


@contextlib.contextmanager
def progress_bars() -> Iterator[ProgressSink]:
    """Yield a :class:`~neuradiff.core.progress.ProgressSink` that shows one bar per task."""
    bars = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
    )
    tasks: dict[str, Any] = {}

    def update(task: str, done: int, total: int, info: Mapping[str, Any] | None = None, /) -> None:
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total, info="")
        bars.update(tasks[task], completed=done, total=total, info=_info_text(info))

    with bars:
        yield update


def stage_printer(bars_console: Console | None = None):
    """A ``stage(message)`` callback that prints dim one-line stage messages to stderr."""
    console = bars_console or Console(stderr=True)
    return lambda msg: console.print(f"[dim]{msg}[/dim]")
