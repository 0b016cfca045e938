"""How long work reports how far it got, without knowing who shows it.

A sink is called as ``progress(task, done, total)`` or ``progress(task, done, total, info)``; ``task`` names what
is being done (one bar per task), ``info`` carries numbers worth showing (e.g. the loss terms of a fit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ProgressSink(Protocol):
    """Receives progress reports (see the module docstring)."""

    def __call__(self, task: str, done: int, total: int, info: Mapping[str, Any] | None = None, /) -> None: ...


def no_progress(task: str, done: int, total: int, info: Mapping[str, Any] | None = None, /) -> None:
    """A sink that shows nothing."""
