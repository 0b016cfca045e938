"""Atomic writing of outputs: a file appears whole or not at all (temporary file + ``os.replace``)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _set_default_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Compressed NPZ written atomically; identical arrays give identical bytes (fixed zip timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    write_bytes(path, buf.getvalue())


@contextlib.contextmanager
def staged_output(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success its files move into ``out_dir``.

    ``out_dir`` (and missing parents) is created only on success: on an error or an interrupt the temporary
    folder and the parents made for it are removed and ``out_dir`` keeps what it had, nothing half-written. The
    temporary folder's name holds the process id, so one left by a killed process is removed by the next
    staging in the same folder.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "result"
    >>> with staged_output(out) as stage:
    ...     _ = (stage / "a.txt").write_text("a")
    >>> sorted(p.name for p in out.iterdir())
    ['a.txt']
    """
    out = check_output_dir(out_dir)
    with output_dir(out.parent) as parent:
        remove_stale_stages(parent)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".partial", dir=parent))
        try:
            yield stage
            if not out.exists():
                _set_default_mode(stage, directory=True)
                os.replace(stage, out)
            else:
                for item in sorted(stage.iterdir()):
                    target = out / item.name
                    if target.is_dir() and item.is_dir():
                        shutil.rmtree(target)
                    os.replace(item, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)


_STAGE = re.compile(r"^\..+\.(\d+)\.[^.]+\.partial$")


def remove_stale_stages(folder: str | os.PathLike) -> list[Path]:
    """Remove the staging folders in ``folder`` whose process no longer runs (killed with ``kill -9`` or a
    power cut); returns the folders removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _STAGE.match(entry.name)
        if m is None or not entry.is_dir() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _set_default_mode(path: Path, *, directory: bool = False) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def check_output_dir(path: str | os.PathLike) -> Path:
    """Check, without creating anything, that ``path`` can become an output folder: it is a folder or does not
    exist, and its nearest existing parent is a writable folder. Raises ``ValueError`` naming the problem."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output path {path} exists and is not a folder")
    parent = path if path.exists() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"cannot create output folder {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"output folder {path} is not writable"
            if parent == path
            else f"cannot create {path}: {parent} is not writable"
        )
    return path


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Create the output folder (and parents) for the time of a ``with`` block; if the block fails or is
    interrupted, the folders it created are removed again when they are empty."""
    path = check_output_dir(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    prepare_output_dir(path)
    try:
        yield path
    except BaseException:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create the output folder (and parents) and check that it is writable; raise ``ValueError`` if not."""
    path = check_output_dir(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {path} is not writable")
    return path
