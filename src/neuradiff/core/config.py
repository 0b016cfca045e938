"""Settings files: one reader for every JSON/TOML config, merging of nested sections, typed settings.

Every command that takes ``--config`` goes through :func:`read_config_file` and builds its typed settings
with :func:`settings_from`, so a bad file gets the same one-line error everywhere.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from neuradiff.core.errors import NeuradiffError

T = TypeVar("T")

try:  # Python >= 3.11
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None  # type: ignore[assignment]


def read_config_file(path: str | Path, *, section: str | None = None) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict; one clear error if it cannot be read.

    Parameters
    ----------
    path : str or Path
        ``.toml`` files are read as TOML, anything else as JSON.
    section : str, optional
        Return this table of the file if it has one (e.g. ``"fit"``), else the whole file.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "fit.json"
    >>> _ = p.write_text(json.dumps({"fit": {"joint_iters": 10}}))
    >>> read_config_file(p, section="fit")
    {'joint_iters': 10}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            if tomllib is None:
                raise ValueError("TOML config files need Python >= 3.11; use a JSON file")
            data = tomllib.loads(text.decode())
        else:
            data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"config file {path} cannot be parsed: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table/object at the top level")
    if section is not None and isinstance(data.get(section), dict):
        return data[section]
    return data


def merge_config(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``extra``, nested tables key by key (neither is changed).

    Examples
    --------
    >>> merge_config({"fit": {"a": 1, "b": 2}}, {"fit": {"b": 3}})
    {'fit': {'a': 1, 'b': 3}}
    """
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def settings_from(cls: type[T], values: Mapping[str, Any], what: str, path: str | Path | None = None) -> T:
    """``cls(**values)``, validated (``cls.validate()`` when it has one); an unknown or bad setting is one
    :class:`NeuradiffError` naming ``what`` and the file it came from."""
    try:
        cfg = cls(**values)
    except TypeError as exc:
        raise NeuradiffError(f"bad {what} settings{f' in {path}' if path else ''}: {exc}") from None
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        validate()
    return cfg


def read_parameter_file(path: str | Path) -> dict[str, Any]:
    """Parameter overrides ``{"E_v": 8.0, ...}`` from a JSON/TOML file (or its ``parameters`` table); values
    may be numbers or ``{"value": ...}`` as in ``params.json``."""
    data = read_config_file(path, section="parameters")
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in data.items()}
