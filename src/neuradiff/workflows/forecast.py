"""``neuradiff forecast``: recognise one frame and simulate forward with a fitted model's physics."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neuradiff.core.checks import check_memory, check_work
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, staged_output, write_bytes, write_npz, write_text
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.stacks import write_stack
from neuradiff.io.stream import VideoSource, open_video
from neuradiff.io.video import Calibration
from neuradiff.methods import FittedMethod, Forecast, NeuraDiffModel, load_model, place_model
from neuradiff.methods.posterior import ForecastBand
from neuradiff.report.plots import band_plot
from neuradiff.synth.render import RenderSettings, render_video
from neuradiff.training.config import NET_CELL_UPDATES
from neuradiff.workflows.track import model_record


@dataclass
class ForecastSummary:
    """The forecast, the void area (px) of each of its frames and, for a model with a posterior, the 90 % band of
    its void area and mean radius (``band``)."""

    forecast: Forecast
    area_px: np.ndarray
    out: Path
    band: ForecastBand | None = None


def band_csv(band: ForecastBand, times_s: np.ndarray | None) -> str:
    """``forecast_band.csv``: frame, time (s; ``times_s`` of ``band.frames``), void area and mean radius with their
    90 % band (nm², nm or px², px)."""
    u = band.unit_length
    head = f"frame,time_s,area_{u}2,area_lo_{u}2,area_hi_{u}2,radius_{u},radius_lo_{u},radius_hi_{u}"
    rows = [head]
    for k, f in enumerate(band.frames):
        t = "" if times_s is None or not np.isfinite(times_s[k]) else f"{float(times_s[k]):g}"
        vals = (band.area, band.area_lo, band.area_hi, band.radius, band.radius_lo, band.radius_hi)
        rows.append(f"{f},{t}," + ",".join(f"{float(v[k]):.6g}" for v in vals))
    return "\n".join(rows) + "\n"


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


def forecast_frames(
    fitted: FittedMethod,
    frames: np.ndarray | VideoSource,
    *,
    frame: int = 0,
    steps: int,
    device: str | torch.device | None = "cpu",
    intervals: np.ndarray | None = None,
    history_intervals: np.ndarray | None = None,
) -> Forecast:
    """Recognise ``frames[frame]`` and simulate ``steps`` frame intervals forward with ``fitted``'s physics.

    Parameters
    ----------
    fitted : FittedMethod
        A model that forecasts (``can_forecast``); its nets are moved to ``device``.
    frames : ndarray or VideoSource
        ``[T, H, W]`` raw intensities; from a :class:`~neuradiff.io.stream.VideoSource` only the frames the start
        state needs are read (the methods slice ``frames[frame : frame + 1]``, and a NeuraDiff model whose physics
        starts from its calibration's first frame that frame too).
    frame : int
        Start frame K (0-based).
    steps : int
        Frame intervals to forecast.
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    intervals : ndarray, optional
        ``[steps]`` real duration of each step in frame intervals (:func:`forecast_intervals`; ``None``: even).
    history_intervals : ndarray, optional
        For a NeuraDiff model that simulates from its calibration's first frame to ``frame``
        (:meth:`~neuradiff.methods.neuradiff.NeuraDiffModel.history_frames`), the real duration of each of those
        frame intervals (``None``: even).
    """
    if not fitted.can_forecast:
        raise NeuradiffError(f"a {fitted.method} model does not forecast")
    frames = frames if isinstance(frames, VideoSource) else np.asarray(frames)  # a source: read frame by frame
    if not 0 <= frame < frames.shape[0]:
        raise ValueError(f"--frame {frame} is out of range: the video has {frames.shape[0]} frames")
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    place_model(fitted, device)
    if history_intervals is not None and isinstance(fitted, NeuraDiffModel):
        return fitted.forecast(frames, frame, steps, intervals=intervals, history_intervals=history_intervals)  # pyright: ignore[reportArgumentType]
    return fitted.forecast(frames, frame, steps, intervals=intervals)  # pyright: ignore[reportArgumentType]


def forecast_intervals(calibration: Calibration, frame: int, steps: int, n_video: int) -> np.ndarray | None:
    """The duration in frame intervals of each of the ``steps`` forecast steps from ``frame`` when the recording's
    frame times are uneven (``None`` when they are even or unknown): the recording's time differences divided by
    its median frame interval (the interval the model's simulation time per frame stands for); beyond the
    recording, one interval a step.

    Examples
    --------
    >>> cal = Calibration(frame_interval_s=77.0, frame_times_s=np.array([0.0, 49.0, 126.0, 203.0]))
    >>> forecast_intervals(cal, 0, 4, 4).round(3).tolist()
    [0.636, 1.0, 1.0, 1.0]
    >>> forecast_intervals(Calibration(frame_interval_s=5.0), 0, 4, 4) is None
    True
    """
    interval = calibration.frame_interval_s
    if calibration.frame_times_s is None or interval is None or interval <= 0:
        return None
    times = frame_times(np.arange(frame, frame + steps + 1), calibration, n_video)
    durations = np.diff(times) / float(interval)
    if not np.all(np.isfinite(durations)) or np.any(durations <= 0):
        return None
    return None if np.allclose(durations, 1.0, rtol=1e-6, atol=0.0) else durations


def frame_times(frames, calibration: Calibration, n_video: int | None = None) -> np.ndarray:
    """Time in s of each of ``frames`` (NaN when the timing is unknown): the recording's frame times for its
    ``n_video`` frames (uneven intervals kept), then one (median) frame interval apart beyond the recording.

    Examples
    --------
    >>> cal = Calibration(frame_interval_s=77.0, frame_times_s=np.array([0.0, 49.0, 126.0]))
    >>> frame_times([1, 2, 3, 4], cal, n_video=3).tolist()
    [49.0, 126.0, 203.0, 280.0]
    """
    interval = calibration.frame_interval_s
    times = calibration.times_s(n_video) if n_video else None

    def time_of(k: int) -> float:
        if times is not None and k < len(times):
            return float(times[k])
        if times is not None and interval is not None:
            return float(times[-1] + (k - len(times) + 1) * interval)
        return np.nan if interval is None else k * interval

    return np.array([time_of(int(k)) for k in np.asarray(frames).ravel()], dtype=float)


def forecast_table(fc: Forecast, calibration: Calibration, *, n_video: int | None = None) -> pd.DataFrame:
    """Void area of every forecast frame: ``frame``, ``time_s`` (empty when the timing is unknown),
    ``void_area_px`` and, with a pixel size, ``void_area_nm2`` (pixels where eta ≥ 0.5).

    Times come from the recording's frame times for its ``n_video`` frames; frames beyond the recording are one
    (median) frame interval apart."""
    area = (np.asarray(fc.eta) >= 0.5).sum(axis=(1, 2)).astype(np.int64)
    frames = np.asarray(fc.frames, dtype=np.int64)
    table = pd.DataFrame({"frame": frames, "time_s": frame_times(frames, calibration, n_video), "void_area_px": area})
    if calibration.nm_per_px is not None:
        table["void_area_nm2"] = area * float(calibration.nm_per_px) ** 2
    return table


def write_forecast(
    out: str | Path,
    fc: Forecast,
    calibration: Calibration,
    *,
    n_video: int | None = None,
    band: ForecastBand | None = None,
    record: dict[str, Any] | None = None,
) -> Path:
    """Write ``forecast.npz`` (fields of every forecast frame), ``forecast.tif`` (rendered as a TEM video; a
    calibrated ImageJ hyperstack), ``forecast_area.csv`` (:func:`forecast_table`), with ``band`` the 90 % band
    (``forecast_band.csv``, ``forecast_band.png``) and with ``record`` ``provenance.json`` into ``out``, all or
    nothing."""
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
    forecast_table(fc, calibration, n_video=n_video).to_csv(buf, index=False, lineterminator="\n", float_format="%.10g")
    interval = calibration.frame_interval_s
    stack_cal = Calibration(nm_per_px=calibration.nm_per_px, frame_interval_s=interval, source=calibration.source)
    with staged_output(out) as stage:
        write_npz(stage / "forecast.npz", **arrays)
        write_stack(stage / "forecast.tif", rendered, stack_cal)
        write_text(stage / "forecast_area.csv", buf.getvalue())
        if band is not None:
            band_times = frame_times(band.frames, calibration, n_video)
            known = bool(np.all(np.isfinite(band_times)))
            write_text(stage / "forecast_band.csv", band_csv(band, band_times if known else None))
            write_bytes(stage / "forecast_band.png", band_plot(band, time_s=band_times if known else None))
        if record is not None:
            write_provenance(stage, record)
    return Path(out)


def run_forecast(
    model: str | Path,
    video: str | Path,
    out: str | Path,
    *,
    frame: int = 0,
    steps: int,
    device: str | torch.device | None = "cpu",
    frame_times: str | Path | None = None,
) -> ForecastSummary:
    """Write ``forecast.npz`` (fields of every forecast frame), ``forecast.tif`` (rendered as a TEM video; a
    calibrated ImageJ hyperstack), ``forecast_area.csv`` (void area per frame, in px and, when the video is
    calibrated, in nm² with the time in s) and ``provenance.json`` into ``out``; for a model with a posterior also
    ``forecast_band.csv`` (void area and mean radius with their 90 % band, nm and s when the video is calibrated)
    and ``forecast_band.png``. When the recording's frame times are uneven, each forecast step is simulated for
    its real duration (:func:`forecast_intervals`).

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
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    check_output_dir(out)
    fitted = load_model(model)
    if not fitted.can_forecast:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not forecast")
    # Frames stay on disk: only those the start state needs are read.
    with open_video(video, frame_times=frame_times) as src:
        n, (height, width), cal = src.n_frames, src.frame_shape, src.calibration
        if not 0 <= frame < n:
            raise ValueError(f"--frame {frame} is out of range: the video has {n} frames")
        intervals = forecast_intervals(cal, frame, steps, n)
        simulated = steps if intervals is None else max(steps, math.ceil(intervals.sum()))  # frame intervals of work
        history = None
        if isinstance(fitted, NeuraDiffModel) and fitted.history_frames(frame):
            # the physics from the calibration's first frame to the start, each interval for its real duration
            h = fitted.history_frames(frame)
            history = forecast_intervals(cal, frame - h, h, n)
            simulated += h if history is None else max(h, math.ceil(history.sum()))
        check_forecast_resources(fitted, simulated, height, width)
        fc = forecast_frames(
            fitted, src, frame=frame, steps=steps, device=device, intervals=intervals, history_intervals=history
        )
        band = None
        if isinstance(fitted, NeuraDiffModel) and fitted.posterior is not None:
            start = None if fc.fields is None else torch.from_numpy(fc.fields[:1]).to(fitted.net.input_mean.device)
            band = fitted.forecast_band(
                src,  # pyright: ignore[reportArgumentType]
                frame,
                steps,
                nm_per_px=cal.nm_per_px,
                intervals=intervals,
                state=start,  # the forecast's own start state: not recognised or simulated again
            )
    record = provenance(
        "forecast",
        inputs={"video": video, "model": model, "frame_times": frame_times},
        model=model_record(fitted),
        settings={
            "frame": frame,
            "steps": steps,
            "step_intervals": None if intervals is None else [float(d) for d in intervals],
            "history_intervals": None if history is None else [float(d) for d in history],
        },
        calibration=cal.describe(n),
    )
    write_forecast(out, fc, cal, n_video=n, band=band, record=record)
    return ForecastSummary(fc, (fc.eta >= 0.5).sum(axis=(1, 2)), Path(out), band)
