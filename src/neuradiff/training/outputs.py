"""A fitted model on disk: ``model.pt`` + ``model.json`` + ``params.json`` (+ history and config)."""

from __future__ import annotations

import csv
import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff._version import __version__
from neuradiff.errors import NeuradiffError
from neuradiff.models import RecognitionNet, load_net, save_net
from neuradiff.physics import VoidParameters
from neuradiff.physics.parameters import LearnableParameters

MODEL_FORMAT = "neuradiff-model"
MODEL_FORMAT_VERSION = 1


@dataclass
class FittedModel:
    """A recognition net, the learned physical parameters and what the model was trained on."""

    net: RecognitionNet
    params: VoidParameters
    info: dict[str, Any]

    @property
    def sim_time_per_frame(self) -> float:
        return float(self.info["physics"]["sim_time_per_frame"])

    @property
    def dt(self) -> float:
        return float(self.info["physics"]["dt"])


def write_fit(out: Path, *, net: RecognitionNet, params: LearnableParameters, initial: VoidParameters,
              config: dict[str, Any], history: list[dict[str, float]], video_info: dict[str, Any],
              physics: dict[str, Any]) -> None:
    """Write model.pt, model.json, params.json, history.csv and config.json into ``out`` (atomically)."""
    from neuradiff.data.files import write_json, write_text

    save_net(net, out / "model.pt")
    learned = params()
    specs = VoidParameters.specs()
    write_json(out / "model.json", {
        "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "neuradiff_version": __version__,
        "net": net.config.to_dict(),
        "input_normalisation": {"mean": float(net.input_mean), "std": float(net.input_std)},
        "video": video_info, "physics": physics,
        "parameter_names": list(VoidParameters.names()), "learned": list(params.learned),
    })
    write_json(out / "params.json", {
        name: {"value": v, "initial": initial.as_floats()[name], "unit": specs[name].unit,
               "learned": name in params.learned, "bounds": list(params.bounds.get(name, ())) or None,
               "description": specs[name].description}
        for name, v in learned.as_floats().items()
    })
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(history)
    write_text(out / "history.csv", buf.getvalue())
    write_json(out / "config.json", {
        **config, "versions": {"neuradiff": __version__, "torch": torch.__version__, "numpy": np.__version__,
                               "python": platform.python_version()},
    })


def load_model(folder: str | Path) -> FittedModel:
    """Load a model folder written by ``neuradiff fit``; one clear :class:`NeuradiffError` if it cannot be used."""
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
    if info.get("format") != MODEL_FORMAT or info.get("format_version") != MODEL_FORMAT_VERSION:
        raise NeuradiffError(f"{folder} holds a model of another format or version "
                             f"({info.get('format')} {info.get('format_version')}); refit it with this neuradiff")
    net = load_net(folder / "model.pt")
    try:
        values = {k: v["value"] for k, v in json.loads((folder / "params.json").read_text()).items()}
        params = VoidParameters.from_mapping(values)
    except FileNotFoundError:
        raise NeuradiffError(f"{folder / 'params.json'} is missing") from None
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise NeuradiffError(f"{folder / 'params.json'} is corrupt") from None
    return FittedModel(net, params, info)
