"""Rich progress bars for long work: count, rate, elapsed and remaining time per task, the latest loss terms on a
line of their own below the bars; written to stderr when it is a terminal (nothing otherwise, so logs stay
clean), stdout untouched."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from neuradiff.core.progress import ProgressSink


def _info_text(info: Mapping[str, Any] | None) -> str:
    """Loss terms (and, in the joint phase, the learned parameters) of a fit's history row."""
    if not info:
        return ""
    losses = " ".join(f"{k[5:]}={v:.3g}" for k, v in info.items() if k.startswith("loss_"))
    params = " ".join(f"{k[6:]}={v:.3g}" for k, v in info.items() if k.startswith("param_"))
    rates = " ".join(f"{v:.3g} {k[:-6].replace('_', ' ')}/s" for k, v in info.items() if k.endswith("_per_s"))
    return "  ".join(t for t in (losses, params, rates) if t)


class RateColumn(ProgressColumn):
    """Steps per second (or seconds per step when slower than one per second)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("", style="progress.data.speed")
        text = f"{speed:.1f}/s" if speed >= 1 else f"{1 / speed:.1f} s/it"
        return Text(text, style="progress.data.speed")


class _Bars(Progress):
    """The bars, then the latest loss terms on their own line (so a long text never squeezes a bar)."""

    info: str = ""

    def get_renderables(self) -> Iterator[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        if self.info:
            yield Text(self.info, style="dim", overflow="fold")


def make_bars(console: Console) -> _Bars:
    """The progress display on ``console`` (disabled when it is not a terminal)."""
    return _Bars(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


@contextlib.contextmanager
def progress_bars(console: Console | None = None) -> Iterator[ProgressSink]:
    """Yield a :class:`~neuradiff.core.progress.ProgressSink` that shows one bar per task (count, rate, elapsed
    and remaining time) and the latest ``info`` (loss terms, parameters) on a line below the bars."""
    bars = make_bars(console or Console(stderr=True))
    tasks: dict[str, Any] = {}

    def update(task: str, done: int, total: int, info: Mapping[str, Any] | None = None, /) -> None:
        if task not in tasks:
            tasks[task] = bars.add_task(task, total=total)
        if info:
            bars.info = _info_text(info)
        bars.update(tasks[task], completed=done, total=total)

    with bars:
        yield update


def stage_printer(bars_console: Console | None = None):
    """A ``stage(message)`` callback that prints dim one-line stage messages to stderr."""
    console = bars_console or Console(stderr=True)
    return lambda msg: console.print(f"[dim]{msg}[/dim]")
