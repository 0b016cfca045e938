"""``neuradiff forecast``: recognise one frame and simulate forward with a fitted model's physics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from neuradiff.core.checks import check_memory, check_work
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, check_output_dir, staged_output, write_npz, write_text
from neuradiff.io.video import read_video
from neuradiff.methods import Forecast, load_model
from neuradiff.synth.render import RenderSettings, render_video
from neuradiff.training.config import NET_CELL_UPDATES


@dataclass
class ForecastSummary:
    """The forecast and the void area (px) of each of its frames."""

    forecast: Forecast
    area_px: np.ndarray
    out: Path


#: Bytes per pixel and forecast frame held at once: four float32 fields, the rendered video and its intermediates.
FORECAST_BYTES_PER_PX = 48


def check_forecast_resources(fitted, steps: int, height: int, width: int) -> None:
    """Refuse a forecast whose memory or number of simulated cell updates is over the limits, with the estimate."""
    pixels = float(height) * float(width)
    check_memory(
        "this forecast", (steps + 1) * pixels * FORECAST_BYTES_PER_PX, f"{steps + 1} frames of {width}×{height} px"
    )
    simulator = getattr(fitted, "simulator", None)
    per_frame = simulator.steps(1) if simulator is not None else NET_CELL_UPDATES
    check_work(
        "this forecast", float(steps) * per_frame * pixels, f"{steps} frames × {per_frame} steps of {width}×{height} px"
    )


def run_forecast(
    model: str | Path, video: str | Path, out: str | Path, *, frame: int = 0, steps: int
) -> ForecastSummary:
    """Write ``forecast.npz`` (fields of every forecast frame), ``forecast.tif`` (rendered as a TEM video) and
    ``forecast_area.csv`` (void area per frame) into ``out``.

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
    """
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    check_output_dir(out)
    fitted = load_model(model)
    if not fitted.can_forecast:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not forecast")
    vid = read_video(video)
    n, height, width = vid.frames.shape
    if not 0 <= frame < n:
        raise ValueError(f"--frame {frame} is out of range: the video has {n} frames")
    check_forecast_resources(fitted, steps, height, width)
    fc = fitted.forecast(vid.frames, frame, steps)
    c_v = None if fc.fields is None else fc.fields[:, 0]
    c_i = None if fc.fields is None else fc.fields[:, 1]
    rendered, _ = render_video(
        np.clip(fc.eta, 0, 1), c_v=c_v, c_i=c_i, settings=RenderSettings(drift=0.0, flicker=0.0), seed=0
    )
    interval = vid.calibration.frame_interval_s
    area = (fc.eta >= 0.5).sum(axis=(1, 2))
    arrays = (
        {"eta": fc.eta, "frame": fc.frames}
        if fc.fields is None
        else {"c_v": fc.fields[:, 0], "c_i": fc.fields[:, 1], "eta": fc.eta, "frame": fc.frames}
    )
    with staged_output(out) as stage:
        write_npz(stage / "forecast.npz", **arrays)
        with atomic_path(stage / "forecast.tif") as tmp:
            tifffile.imwrite(tmp, rendered, imagej=True)
        lines = ["frame,time_s,void_area_px"] + [
            f"{k},{'' if interval is None else f'{k * interval:g}'},{a}" for k, a in zip(fc.frames, area)
        ]
        write_text(stage / "forecast_area.csv", "\n".join(lines) + "\n")
    return ForecastSummary(fc, area, Path(out))
