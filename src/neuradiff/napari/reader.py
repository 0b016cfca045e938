"""The napari reader: a recording, or any folder neuradiff writes, as napari layer data.

Every layer gets the scale ``(s per frame, nm per px, nm per px)`` when the data give a calibration (else frames
and px), and its units in ``metadata["units"]``:

- a recording (TIFF stack, dm3/dm4, EMD, SER, MRC, mp4): an Image;
- a synthetic dataset (``dataset.json``): the video as an Image, the annotations as Labels (1 void; solid 0 and
  unknown 255 are shown as 2 and 0, so that painting label 1 / 2 edits void / solid);
- a tracking or measurement folder (``eta.tif``, ``masks.tif``, ``voids.csv``): eta as an Image, the masks as
  Labels and the void tracks as a Tracks layer whose properties are the void sizes (``eq_diameter_nm``,
  ``area_nm2``, ...);
- a forecast folder (``forecast.npz``): the forecast eta as an Image starting at its start frame;
- a demo folder (``video/``, ``track/``, ``forecast/``): all of the above.

The functions return plain napari layer-data tuples ``(data, kwargs, layer_type)``; napari itself is not
imported here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuradiff.api import MeasuredVoids, SimulatedVideo, TrackedVideo, VoidForecast, load
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.video import Calibration, read_video

LayerData = tuple[Any, dict[str, Any], str]

#: File suffixes the reader takes as recordings.
RECORDING_SUFFIXES = (".tif", ".tiff", ".dm3", ".dm4", ".emd", ".ser", ".mrc", ".mp4", ".avi")
#: Files that mark a folder neuradiff wrote.
MARKERS = ("dataset.json", "eta.tif", "voids.csv", "forecast.npz")
#: Sub-folders of a demo folder, in the order their layers are stacked.
DEMO_PARTS = ("video", "track", "forecast")


def _scale(cal: Calibration) -> tuple[tuple[float, float, float], dict[str, Any]]:
    dt = cal.frame_interval_s
    nm = cal.nm_per_px
    scale = (float(dt) if dt else 1.0, float(nm) if nm else 1.0, float(nm) if nm else 1.0)
    units = ("s" if dt else "frame", "nm" if nm else "px", "nm" if nm else "px")
    return scale, {"units": units, "calibration_source": cal.source}


def _kwargs(name: str, cal: Calibration, **extra: Any) -> dict[str, Any]:
    scale, meta = _scale(cal)
    return {"name": name, "scale": scale, "metadata": meta, **extra}


def _labels_from_three_state(ann: np.ndarray) -> np.ndarray:
    """Three-state annotations as napari labels: void 1, solid 2, unknown 0 (napari's 'no label')."""
    out = np.zeros(ann.shape, np.uint8)
    out[ann == 1] = 1
    out[ann == 0] = 2
    return out


def _track_layer(voids: pd.DataFrame, cal: Calibration, name: str) -> LayerData | None:
    if voids.empty:
        return None
    v = voids.sort_values(["track_id", "frame"])
    data = np.column_stack(
        [
            v["track_id"].to_numpy(float),
            v["frame"].to_numpy(float),
            v["y_px"].to_numpy(float),
            v["x_px"].to_numpy(float),
        ]
    )
    size_columns = [
        c
        for c in ("time_s", "eq_diameter_nm", "area_nm2", "eq_diameter_px", "area_px", "circularity")
        if c in v.columns
    ]
    properties = {c: v[c].to_numpy(float) for c in size_columns}
    return data, _kwargs(name, cal, properties=properties, tail_length=30), "tracks"


def _calibration_of(folder: Path) -> Calibration:
    """The calibration a tracking or measurement folder's ``units.json`` records."""
    try:
        cal = json.loads((folder / "units.json").read_text()).get("calibration", {})
    except (OSError, ValueError):
        return Calibration()
    return Calibration(cal.get("nm_per_px"), cal.get("frame_interval_s"), None, cal.get("source", "none"))


def _dataset_layers(sim: SimulatedVideo, prefix: str) -> list[LayerData]:
    cal = sim.calibration
    return [
        (sim.video.frames, _kwargs(f"{prefix}video", cal, colormap="gray"), "image"),
        (_labels_from_three_state(sim.annotations), _kwargs(f"{prefix}annotations", cal, opacity=0.5), "labels"),
    ]


def _tracking_layers(result: TrackedVideo | MeasuredVoids, folder: Path, prefix: str) -> list[LayerData]:
    cal = result.measurements.calibration if result.measurements is not None else _calibration_of(folder)
    layers: list[LayerData] = []
    if isinstance(result, TrackedVideo):
        layers.append((result.eta, _kwargs(f"{prefix}eta", cal, colormap="magma", visible=False), "image"))
        layers.append((result.masks.astype(np.uint8), _kwargs(f"{prefix}masks", cal, opacity=0.5), "labels"))
    if result.measurements is not None:
        track = _track_layer(result.measurements.voids, cal, f"{prefix}void tracks")
        if track is not None:
            layers.append(track)
    return layers


def _forecast_layers(fc: VoidForecast, prefix: str) -> list[LayerData]:
    start = int(np.asarray(fc.forecast.frames)[0])
    kwargs = _kwargs(f"{prefix}forecast eta (from frame {start})", fc.calibration, colormap="viridis", opacity=0.6)
    kwargs["translate"] = (start * kwargs["scale"][0], 0.0, 0.0)
    return [(np.asarray(fc.eta, np.float32), kwargs, "image")]


def layers_of(path: str | Path) -> list[LayerData]:
    """The layers of a recording or of a folder neuradiff wrote (see the module docstring).

    Examples
    --------
    >>> import pathlib, tempfile, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "session.tif"
    >>> tifffile.imwrite(path, np.zeros((3, 32, 32), np.uint16), imagej=True, resolution=(0.5, 0.5),
    ...                  metadata={"axes": "TYX", "unit": "nm", "finterval": 0.5})
    >>> [(kwargs["name"], kwargs["scale"], kwargs["metadata"]["units"], kind) for _, kwargs, kind in layers_of(path)]
    [('session', (0.5, 2.0, 2.0), ('s', 'nm', 'nm'), 'image')]
    """
    path = Path(path)
    if path.is_file():
        video = read_video(path)
        return [(video.frames, _kwargs(path.stem, video.calibration, colormap="gray"), "image")]
    if not path.is_dir():
        raise NeuradiffError(f"{path}: no such file or folder")
    parts = [path / name for name in DEMO_PARTS if (path / name).is_dir()]
    if parts and not any((path / m).exists() for m in MARKERS):
        layers = []
        for part in parts:
            layers.extend(_folder_layers(part, f"{part.name}: "))
        return layers
    return _folder_layers(path, "")


def _folder_layers(folder: Path, prefix: str) -> list[LayerData]:
    result = load(folder)
    if isinstance(result, SimulatedVideo):
        return _dataset_layers(result, prefix)
    if isinstance(result, (TrackedVideo, MeasuredVoids)):
        return _tracking_layers(result, folder, prefix)
    if isinstance(result, VoidForecast):
        return _forecast_layers(result, prefix)
    raise NeuradiffError(f"{folder} holds a model, not images: open a recording, a track or a forecast folder")


def _readable(path: Path) -> bool:
    if path.is_file():
        return path.suffix.lower() in RECORDING_SUFFIXES
    if path.is_dir():
        return any((path / m).exists() for m in MARKERS) or any((path / p).is_dir() for p in DEMO_PARTS)
    return False


def napari_get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """napari's reader hook: a function that reads ``path``, or ``None`` when it is not ours."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(_readable(Path(p)) for p in paths):
        return None

    def read(p: str | list[str]) -> list[LayerData]:
        layers: list[LayerData] = []
        for one in [p] if isinstance(p, str) else list(p):
            layers.extend(layers_of(one))
        return layers

    return read


__all__ = ["layers_of", "napari_get_reader"]
