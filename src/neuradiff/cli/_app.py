"""The typer application and the error policy shared by every command."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import typer
from typer.core import TyperGroup

from neuradiff._version import __version__


class _OneLineErrors(TyperGroup):
    """The root command: a mistake on the command line (a bad number, a missing option) is one line on stderr and
    exit code 2, like every other bad input; SIGTERM is turned into an interrupt so that staging folders and
    temporary files are cleaned up as on Ctrl-C."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        on_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # the command line itself is wrong (parsing, a missing option)
            rv = getattr(exc, "exit_code", 2)
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help(), err=True)
            else:
                line = " ".join(exc.format_message().split())
                where = ctx.command_path if ctx is not None else "neuradiff"
                typer.echo(f"neuradiff: error: {line} (see {where} --help)", err=True)
        except typer.Abort:
            typer.echo("neuradiff: interrupted", err=True)
            rv = 130
        finally:
            if on_main_thread:
                signal.signal(signal.SIGTERM, previous)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


app = typer.Typer(
    cls=_OneLineErrors,
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
#: Words of the allocators' RuntimeError when a request does not fit in memory.
_ALLOCATOR_WORDS = ("can't allocate memory", "not enough memory", "out of memory", "defaultcpuallocator")


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
            fail(_first_line(exc))
        except MemoryError:
            fail("the request does not fit in memory (MemoryError)")
        except OverflowError as exc:
            fail(f"a number is too large ({_first_line(exc)})")
        except RuntimeError as exc:
            if not any(w in str(exc).lower() for w in _ALLOCATOR_WORDS):
                raise
            fail(f"the request does not fit in memory ({_first_line(exc)[:200]})")

    return wrapper  # type: ignore[return-value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


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
