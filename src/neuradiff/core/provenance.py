"""Provenance of an output folder: ``provenance.json`` says which neuradiff version wrote it, from which inputs
(path, size and SHA-256 of every file), with which model and which settings."""

from __future__ import annotations

import hashlib
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from neuradiff._version import __version__
from neuradiff.core.files import write_json

#: Name of the sidecar in every output folder.
PROVENANCE_FILE = "provenance.json"
_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB chunks.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_input(path: str | Path) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of a file; for a folder the SHA-256 of its files' relative paths and
    hashes (sorted, hidden files left out) and their number."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.parts))
        total = 0
        for p in files:
            rel = p.relative_to(path).as_posix()
            digest.update(f"{rel}\0{file_sha256(p)}\n".encode())
            total += p.stat().st_size
        return {"path": str(path), "kind": "folder", "files": len(files), "bytes": total, "sha256": digest.hexdigest()}
    return {"path": str(path), "kind": "file", "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def provenance(
    command: str,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    model: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance record of one command's output.

    Parameters
    ----------
    command : str
        E.g. ``"track"``.
    inputs : mapping
        Role -> path (``{"video": ..., "model": ...}``); ``None`` entries are left out.
    model : mapping, optional
        What the model is (method, its folder's hash, learned parameters ...).
    settings : mapping, optional
        The settings the command ran with (options and config).
    calibration : mapping, optional
        Pixel size and frame timing used, with their source.

    Examples
    --------
    >>> record = provenance("measure", settings={"min_area": 4})
    >>> record["neuradiff_version"] == __version__, record["settings"]
    (True, {'min_area': 4})
    """
    return {
        "neuradiff_version": __version__,
        "command": command,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
        "inputs": {role: describe_input(p) for role, p in (inputs or {}).items() if p is not None},
        "model": dict(model) if model is not None else None,
        "settings": dict(settings or {}),
        "calibration": dict(calibration) if calibration is not None else None,
    }


def write_provenance(folder: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` to ``folder/provenance.json`` (atomically) and return the path."""
    path = Path(folder) / PROVENANCE_FILE
    write_json(path, dict(record))
    return path


__all__ = ["PROVENANCE_FILE", "describe_input", "file_sha256", "provenance", "write_provenance"]
