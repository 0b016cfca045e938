"""The typer application and the error policy shared by every command."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

import torch
import typer

from neuradiff._version import __version__

app = typer.Typer(
    name="neuradiff",
    help=(
        "Track voids in in-situ TEM videos and learn the phase-field physics that moves them.\n\n"
        "Lengths are in nm and times in s where the data give a calibration; simulation fields are "
        "in dimensionless units (grid spacing dx, simulation time)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

F = TypeVar("F", bound=Callable)

#: Exceptions that mean "bad input": reported in one line, exit code 2.
INPUT_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, OSError)


def fail(message: str, code: int = 2) -> None:
    """Print one error line to stderr and exit with ``code``."""
    typer.echo(f"neuradiff: error: {message}", err=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn bad-input exceptions of a command into one clear line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("neuradiff: interrupted", err=True)
            raise typer.Exit(130) from None
        except INPUT_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            fail(msg)

    return wrapper  # type: ignore[return-value]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"neuradiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Track voids in in-situ TEM videos and learn the phase-field physics that moves them."""


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (None: leave torch's default)."""
    if threads is not None:
        if threads < 1:
            fail("--threads must be >= 1")
        torch.set_num_threads(threads)


def echo_err(message: str) -> None:
    print(message, file=sys.stderr)
