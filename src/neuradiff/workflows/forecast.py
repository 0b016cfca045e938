"""``neuradiff forecast``: recognise one frame and simulate forward with a fitted model's physics."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, staged_output, write_npz, write_text
from neuradiff.io.video import Calibration, read_video
from neuradiff.methods import FittedMethod, Forecast, load_model
from neuradiff.synth.render import RenderSettings, render_video
from neuradiff.workflows.placement import place_model


@dataclass
class ForecastSummary:
    """The forecast and the void area (px) of each of its frames."""

    forecast: Forecast
    area_px: np.ndarray
    out: Path


def forecast_frames(
    fitted: FittedMethod,
    frames: np.ndarray,
    *,
    frame: int = 0,
    steps: int,
    device: str | torch.device | None = "cpu",
) -> Forecast:
    """Recognise ``frames[frame]`` and simulate ``steps`` frame intervals forward with ``fitted``'s physics.

    Parameters
    ----------
    fitted : FittedMethod
        A model that forecasts (``can_forecast``); its nets are moved to ``device``.
    frames : ndarray
        ``[T, H, W]`` raw intensities.
    frame : int
        Start frame K (0-based).
    steps : int
        Frame intervals to forecast.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    """
    if not fitted.can_forecast:
        raise NeuradiffError(f"a {fitted.method} model does not forecast")
    frames = np.asarray(frames, dtype=np.float32)
    if not 0 <= frame < frames.shape[0]:
        raise ValueError(f"--frame {frame} is out of range: the video has {frames.shape[0]} frames")
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    place_model(fitted, device)
    return fitted.forecast(frames, frame, steps)


def forecast_table(fc: Forecast, calibration: Calibration) -> pd.DataFrame:
    """Void area of every forecast frame: ``frame``, ``time_s`` (empty when the frame interval is unknown),
    ``void_area_px`` and, with a pixel size, ``void_area_nm2`` (pixels where eta ≥ 0.5)."""
    area = (np.asarray(fc.eta) >= 0.5).sum(axis=(1, 2)).astype(np.int64)
    interval = calibration.frame_interval_s
    table = pd.DataFrame(
        {
            "frame": np.asarray(fc.frames, dtype=np.int64),
            "time_s": np.asarray(fc.frames, float) * interval if interval is not None else np.nan,
            "void_area_px": area,
        }
    )
    if calibration.nm_per_px is not None:
        table["void_area_nm2"] = area * float(calibration.nm_per_px) ** 2
    return table


def write_forecast(out: str | Path, fc: Forecast, calibration: Calibration) -> Path:
    """Write ``forecast.npz`` (fields of every forecast frame), ``forecast.tif`` (rendered as a TEM video) and
    ``forecast_area.csv`` (:func:`forecast_table`) into ``out``, all or nothing."""
    c_v = None if fc.fields is None else fc.fields[:, 0]
    c_i = None if fc.fields is None else fc.fields[:, 1]
    rendered, _ = render_video(
        np.clip(fc.eta, 0, 1), c_v=c_v, c_i=c_i, settings=RenderSettings(drift=0.0, flicker=0.0), seed=0
    )
    arrays = (
        {"eta": fc.eta, "frame": fc.frames}
        if fc.fields is None
        else {"c_v": fc.fields[:, 0], "c_i": fc.fields[:, 1], "eta": fc.eta, "frame": fc.frames}
    )
    buf = io.StringIO()
    forecast_table(fc, calibration).to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    with staged_output(out) as stage:
        write_npz(stage / "forecast.npz", **arrays)
        with atomic_path(stage / "forecast.tif") as tmp:
            tifffile.imwrite(tmp, rendered, imagej=True)
        write_text(stage / "forecast_area.csv", buf.getvalue())
    return Path(out)


def run_forecast(
    model: str | Path,
    video: str | Path,
    out: str | Path,
    *,
    frame: int = 0,
    steps: int,
    device: str | torch.device | None = "cpu",
) -> ForecastSummary:
    """Write ``forecast.npz`` (fields of every forecast frame), ``forecast.tif`` (rendered as a TEM video) and
    ``forecast_area.csv`` (void area per frame, in px and, when calibrated, nm²) into ``out``.

    Parameters
    ----------
    model : path
        A model folder of a method that forecasts.
    video : path
        The recording holding the start frame.
    frame : int
        Start frame K (0-based).
    steps : int
        Frame intervals to forecast.
    device : str or torch.device
        Where the net and the simulation run (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).
    """
    fitted = load_model(model)
    if not fitted.can_forecast:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not forecast")
    vid = read_video(video)
    fc = forecast_frames(fitted, vid.frames, frame=frame, steps=steps, device=device)
    write_forecast(out, fc, vid.calibration)
    return ForecastSummary(fc, (fc.eta >= 0.5).sum(axis=(1, 2)), Path(out))
