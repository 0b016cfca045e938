"""Run ``neuradiff`` commands in forked children of the test process: each is its own process with real stdout and
stderr files (not terminals) and its own exit code, without paying the import of torch again."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from neuradiff.cli import app

#: A child still running after this long is killed and counted as a hang.
HANG_S = 20.0


@dataclass
class Outcome:
    """What one command did: exit code, its stderr lines, stdout, seconds, and what it changed in its folder."""

    code: int
    lines: list[str]
    stdout: str
    seconds: float
    changed: list[str] = field(default_factory=list)


def run_command(
    args: list[str], folder: Path, env: dict[str, str] | None = None, *, timeout_s: float = HANG_S
) -> Outcome:
    """Run ``neuradiff ARGS`` in a forked child with ``folder`` as working folder; uncaught exceptions end the child
    as they end the interpreter (traceback on stderr, exit code 1). A child still running after ``timeout_s`` is
    killed (exit code -9)."""
    out_fd, out_path = tempfile.mkstemp()
    err_fd, err_path = tempfile.mkstemp()
    before = tree(folder)
    sys.stdout.flush()
    sys.stderr.flush()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.dup2(out_fd, 1)
            os.dup2(err_fd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.environ.update(env or {})
            os.chdir(folder)
            sys.argv = ["neuradiff", *args]
            try:
                app(prog_name="neuradiff")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(out_fd)
    os.close(err_fd)
    code = -9
    while time.perf_counter() - t0 < timeout_s:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.005)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    seconds = time.perf_counter() - t0
    stdout, stderr = Path(out_path).read_text(errors="replace"), Path(err_path).read_text(errors="replace")
    os.unlink(out_path)
    os.unlink(err_path)
    after = tree(folder)
    changed = sorted((after - before) | (before - after))
    return Outcome(code, [line for line in stderr.splitlines() if line.strip()], stdout, seconds, changed)


def tree(folder: Path) -> set[str]:
    return {f"{p.relative_to(folder)}:{p.stat().st_size if p.is_file() else 'dir'}" for p in folder.rglob("*")}


def start_command(args: list[str], folder: Path) -> tuple[int, Path]:
    """Start ``neuradiff ARGS`` in a forked child (stdout and stderr to a file); returns its pid and log file."""
    log = folder.parent / f"{folder.name}.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = sys.stderr = open(1, "w", closefd=False)  # noqa: SIM115
            os.chdir(folder)
            sys.argv = ["neuradiff", *args]
            app(prog_name="neuradiff")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(fd)
    return pid, log
