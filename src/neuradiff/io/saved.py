"""Fitted models on disk: one folder per model, nothing that can execute code when it is read.

A model folder holds ``model.json`` (format, version, which method, the nets' architecture, the simulator,
what the model was trained on), one weights file per recognition net (``model.pt`` for the main one, read with
``torch.load(weights_only=True)``) and, for methods with physics, ``params.json`` (value, starting guess,
unit, learned or not, bounds and meaning of every parameter). ``history.csv`` and ``config.json`` record the
fit beside them.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff._version import __version__
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import prepare_output_dir, write_json, write_text
from neuradiff.nets import RecognitionNet, load_net, save_net
from neuradiff.physics import VoidParameters

MODEL_FORMAT = "neuradiff-model"
MODEL_FORMAT_VERSION = 1
#: Weights file of each named net of a model folder.
NET_FILES = {"net": "model.pt", "surrogate": "surrogate.pt"}
#: Keys of ``params.json`` that are sections, not parameters (``identifiability``: what the video determines).
TABLE_SECTIONS = ("identifiability",)


@dataclass
class SavedModel:
    """The contents of a model folder.

    Attributes
    ----------
    info : dict
        ``model.json`` (``method``, ``physics``, ``learned``, ``video``, ...).
    nets : dict of str to RecognitionNet
        The folder's nets by role (``"net"``, ``"surrogate"``).
    params : VoidParameters or None
    param_table : dict
        ``params.json`` as read (empty without physics).
    """

    info: dict[str, Any]
    nets: dict[str, RecognitionNet] = field(default_factory=dict)
    params: VoidParameters | None = None
    param_table: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return str(self.info.get("method", "neuradiff"))


def parameter_table(
    values: VoidParameters,
    *,
    initial: VoidParameters | None = None,
    learned: list[str] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """``params.json``: every parameter's value, starting guess, unit, whether it was learned, its learning
    bounds and its meaning."""
    specs = VoidParameters.specs()
    start = (initial or values).as_floats()
    learned = list(learned or [])
    bounds = bounds or {}
    return {
        name: {
            "value": v,
            "initial": start[name],
            "unit": specs[name].unit,
            "learned": name in learned,
            "bounds": list(bounds[name]) if name in bounds else None,
            "description": specs[name].description,
        }
        for name, v in values.as_floats().items()
    }


def write_model_folder(
    folder: str | Path,
    *,
    info: dict[str, Any],
    nets: dict[str, RecognitionNet] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    history: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (each file atomically); returns the folder.

    Parameters
    ----------
    info : dict
        Goes into ``model.json`` after the format header; must name the ``method``.
    nets : dict, optional
        Nets by role (keys of :data:`NET_FILES`); the main net's architecture and input normalisation are also
        written into ``model.json`` (``net``, ``input_normalisation``).
    params : dict, optional
        ``params.json`` (see :func:`parameter_table`).
    history, config : optional
        ``history.csv`` (one row per iteration) and ``config.json`` (the fit settings, with library versions).
    """
    out = prepare_output_dir(folder)
    nets = nets or {}
    unknown = set(nets) - set(NET_FILES)
    if unknown:
        raise ValueError(f"unknown net role(s) {sorted(unknown)}; known: {sorted(NET_FILES)}")
    for role, net in nets.items():
        save_net(net, out / NET_FILES[role])
    head: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "neuradiff_version": __version__,
    }
    if "net" in nets:
        head["net"] = nets["net"].config.to_dict()
        head["input_normalisation"] = {"mean": float(nets["net"].input_mean), "std": float(nets["net"].input_std)}
    write_json(out / "model.json", {**head, **info, "nets": sorted(nets)})
    if params is not None:
        write_json(out / "params.json", params)
    if history is not None:
        keys: list[str] = []
        for row in history:
            keys.extend(k for k in row if k not in keys)
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
        write_text(out / "history.csv", buf.getvalue())
    if config is not None:
        write_json(
            out / "config.json",
            {
                **config,
                "versions": {
                    "neuradiff": __version__,
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "python": platform.python_version(),
                },
            },
        )
    return out


def _check_net_description(meta_path: Path, info: dict[str, Any], net: RecognitionNet) -> None:
    """``model.json``'s ``net`` and ``input_normalisation`` must describe the weights file they sit beside."""
    described = info.get("net")
    if not isinstance(described, dict):
        raise NeuradiffError(
            f"{meta_path} has no 'net' section describing {NET_FILES['net']}: the folder is incomplete"
        )
    actual = net.config.to_dict()
    differ = sorted(k for k in set(described) | set(actual) if described.get(k) != actual.get(k))
    if differ:
        k = differ[0]
        raise NeuradiffError(
            f"{meta_path} contradicts {NET_FILES['net']}: net {k} is {described.get(k)!r} in model.json but "
            f"{actual.get(k)!r} in the weights; the folder was mixed up or edited"
        )
    norm = info.get("input_normalisation")
    if isinstance(norm, dict) and (
        norm.get("mean") != float(net.input_mean) or norm.get("std") != float(net.input_std)
    ):
        raise NeuradiffError(f"{meta_path} contradicts {NET_FILES['net']}: input normalisation differs")


def read_model_folder(folder: str | Path) -> SavedModel:
    """Read a model folder; one clear :class:`NeuradiffError` if it cannot be used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeuradiffError(f"model folder {folder} does not exist")
    meta_path = folder / "model.json"
    try:
        info = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise NeuradiffError(f"{meta_path} is missing: not a model folder written by neuradiff fit") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NeuradiffError(f"{meta_path} is corrupt (not JSON)") from None
    if not isinstance(info, dict):
        raise NeuradiffError(f"{meta_path} is corrupt (not a JSON object)")
    if info.get("format") != MODEL_FORMAT or info.get("format_version") != MODEL_FORMAT_VERSION:
        raise NeuradiffError(
            f"{folder} holds a model of another format or version "
            f"({info.get('format')} {info.get('format_version')}); refit it with this neuradiff"
        )
    roles = info.get("nets", ["net"] if (folder / NET_FILES["net"]).exists() else [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise NeuradiffError(f"{meta_path} is corrupt ('nets' must be a list of names)")
    nets = {role: load_net(folder / NET_FILES[role]) for role in roles if role in NET_FILES}
    if "net" in nets:
        _check_net_description(meta_path, info, nets["net"])
    params, table = None, {}
    if (folder / "params.json").exists() or info.get("physics") is not None:
        try:
            table = json.loads((folder / "params.json").read_text())
            params = VoidParameters.from_mapping({k: v["value"] for k, v in table.items() if k not in TABLE_SECTIONS})
        except FileNotFoundError:
            raise NeuradiffError(f"{folder / 'params.json'} is missing") from None
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            raise NeuradiffError(f"{folder / 'params.json'} is corrupt") from None
    return SavedModel(info, nets, params, table)
