"""Settings files: one reader for every JSON/TOML config, merging of nested sections, typed settings.

Every command that takes ``--config`` goes through :func:`read_config_file` and builds its typed settings
with :func:`settings_from`, so a bad file gets the same one-line error everywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic
from pydantic import ConfigDict, TypeAdapter, ValidationError
from typing_extensions import dataclass_transform

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


#: pydantic settings of every config class: unknown keys are refused, types are not coerced (``"0.1"`` is not a
#: number, ``2.0`` is not an integer; an integer is a number), NaN and infinities are refused.
SETTINGS = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SettingsError(NeuradiffError):
    """A settings object refused its values (one line); ``validation`` keeps pydantic's details so that a reader
    of a file can say again where the bad key came from."""

    def __init__(self, message: str, validation: ValidationError | None = None) -> None:
        super().__init__(message)
        self.validation = validation


@dataclass_transform(field_specifiers=(dataclasses.field, pydantic.Field))
def settings_class(what: str, *, frozen: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator: a pydantic dataclass with :data:`SETTINGS` whose constructor raises a one-line
    :class:`SettingsError` (naming the key, the expected type and the value) instead of pydantic's report.

    Examples
    --------
    >>> @settings_class("demo")
    ... class Demo:
    ...     iters: int = 1
    >>> Demo(iters=2.5)
    Traceback (most recent call last):
    ...
    neuradiff.core.config.SettingsError: bad demo settings: iters must be a valid integer, got 2.5 (float)
    """

    def wrap(cls: type[T]) -> type[T]:
        made: Any = pydantic.dataclasses.dataclass(cls, config=SETTINGS, frozen=frozen)  # type: ignore[call-overload]
        init = made.__init__
        known = list(made.__dataclass_fields__)

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise SettingsError(describe_validation_error(exc, what, None, known), exc) from None

        made.__init__ = __init__
        return made

    return wrap


_TYPE_NAMES = {"str": "text", "NoneType": "null", "dict": "table", "list": "list", "bool": "boolean"}


def _where(what: str, path: str | Path | None) -> str:
    return f"bad {what} settings{f' in {path}' if path else ''}"


def describe_validation_error(
    exc: ValidationError,
    what: str,
    path: str | Path | None = None,
    known: list[str] | None = None,
    *,
    section: str | None = None,
) -> str:
    """One line for a pydantic validation error: the key (dotted for nested tables), what was expected and the
    value that was given.

    Examples
    --------
    >>> from pydantic.dataclasses import dataclass
    >>> @dataclass(config=SETTINGS)
    ... class Demo:
    ...     iters: int = 1
    >>> try:
    ...     Demo(iters="abc")
    ... except ValidationError as exc:
    ...     print(describe_validation_error(exc, "demo", "demo.json"))
    bad demo settings in demo.json: iters must be a valid integer, got 'abc' (text)
    """
    parts = []
    for err in exc.errors():
        key = ".".join(([section] if section else []) + [str(p) for p in err["loc"]])
        kind = err["type"]
        value = err.get("input")
        if kind in ("unexpected_keyword_argument", "extra_forbidden"):
            close = difflib.get_close_matches(str(err["loc"][-1]), known or [], n=1)
            parts.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        if kind == "missing":
            parts.append(f"{key} is required")
            continue
        msg = str(err["msg"])
        if kind in ("value_error", "assertion_error"):
            text = msg.split(", ", 1)[-1]
            parts.append(f"{key}: {text}" if key else text)
            continue
        expected = msg.removeprefix("Input should be ").removeprefix("input should be ")
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        typename = type(value).__name__
        parts.append(f"{key} must be {expected}, got {shown} ({_TYPE_NAMES.get(typename, typename)})")
    return f"{_where(what, path)}: " + "; ".join(parts)


def settings_from(
    cls: type[T], values: Mapping[str, Any], what: str, path: str | Path | None = None, *, section: str | None = None
) -> T:
    """``cls(**values)``, validated (types and ranges by pydantic, then ``cls.validate()`` when it has one); an
    unknown key, a wrong type or a bad value is one :class:`NeuradiffError` naming ``what``, the file it came
    from, the key (prefixed by ``section`` for a nested table), what was expected and the value.

    Examples
    --------
    >>> @settings_class("demo")
    ... class Demo:
    ...     iters: int = 1
    >>> settings_from(Demo, {"iters": 3}, "demo")
    Demo(iters=3)
    >>> try:
    ...     settings_from(Demo, {"iter": 3}, "demo", "demo.json")
    ... except NeuradiffError as exc:
    ...     print(exc)
    bad demo settings in demo.json: unknown key 'iter' (did you mean 'iters'?)
    """
    if not isinstance(values, Mapping):
        table = f"{section} must be a table" if section else "expected a table of settings"
        raise NeuradiffError(f"{_where(what, path)}: {table}, got {type(values).__name__}")
    known = list(getattr(cls, "__dataclass_fields__", {}))
    bad_keys = [k for k in values if not isinstance(k, str)]
    if bad_keys:
        raise NeuradiffError(f"{_where(what, path)}: keys must be text, got {bad_keys[0]!r}")
    try:
        cfg = cls(**values)
    except SettingsError as exc:
        if exc.validation is None:
            raise
        raise NeuradiffError(describe_validation_error(exc.validation, what, path, known, section=section)) from None
    except ValidationError as exc:
        raise NeuradiffError(describe_validation_error(exc, what, path, known, section=section)) from None
    except TypeError as exc:
        raise NeuradiffError(f"{_where(what, path)}: {exc}") from None
    validate = getattr(cfg, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValidationError as exc:
            raise NeuradiffError(describe_validation_error(exc, what, path, section=section)) from None
        except ValueError as exc:
            lines = str(exc).strip().splitlines()
            first = lines[0] if lines else type(exc).__name__
            if first.startswith("bad "):  # already says where
                raise NeuradiffError(first) from None
            raise NeuradiffError(f"{_where(what, path)}: {section + ': ' if section else ''}{first}") from None
    return cfg


def settings_schema(cls: type, title: str, description: str) -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a settings class, with a title and description for the docs."""
    schema = TypeAdapter(cls).json_schema()
    schema["title"] = title
    schema["description"] = description
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def read_parameter_file(path: str | Path) -> dict[str, Any]:
    """Parameter overrides ``{"E_v": 8.0, ...}`` from a JSON/TOML file (or its ``parameters`` table); values
    may be numbers or ``{"value": ...}`` as in ``params.json``."""
    data = read_config_file(path, section="parameters")
    return {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in data.items()}
