"""``neuradiff track``: recognise eta in every frame of a video with a fitted model (or the shipped generalist
recogniser), threshold it into void masks, measure the voids and write everything (atomically, into a staged
folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff.core.checks import check_memory
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, staged_output, write_text
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.stacks import write_stack
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.drift import estimate_drift, shift_frames
from neuradiff.measure.voids import Measurements, measure_masks
from neuradiff.methods import FittedMethod, load_model
from neuradiff.nets.generalist import Generalist, load_generalist, void_masks
from neuradiff.report.measurements import write_measurements
from neuradiff.workflows.placement import place_model

#: Bytes per pixel and frame tracking holds besides the video: eta (float32), its float copy and the masks.
TRACK_BYTES_PER_PX = 10


@dataclass
class TrackSummary:
    """Frames tracked, the seconds recognition took and the folder written."""

    n_frames: int
    seconds: float
    out: Path

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / max(self.seconds, 1e-9)


def recognise_video(
    fitted: FittedMethod,
    frames: np.ndarray,
    *,
    batch: int = 1,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[np.ndarray, float]:
    """Eta ``[T, H, W]`` (float32) of every frame and the seconds recognition took.

    Parameters
    ----------
    fitted : FittedMethod
        A model that tracks (``can_track``); its nets are moved to ``device``.
    frames : ndarray
        ``[T, H, W]`` raw intensities (any numeric type: one batch at a time is converted to float32).
    batch : int
        Frames per inference batch (1 is fastest on a few CPU cores).
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (see :func:`~neuradiff.core.devices.resolve_device`).
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if not fitted.can_track:
        raise NeuradiffError(f"a {fitted.method} model does not track")
    place_model(fitted, device)
    n = frames.shape[0]
    chunks = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):  # a float32 copy of one batch at a time, not of the whole recording
        chunk = np.asarray(frames[i : i + batch], dtype=np.float32)
        chunks.append(fitted.recognise(chunk, first_index=i, eta_only=True, batch=batch))
        progress("tracking", min(i + batch, n), n)
    eta = np.concatenate(chunks).astype(np.float32)
    return eta, time.perf_counter() - t0


def masks_of(eta: np.ndarray) -> np.ndarray:
    """Void masks (uint8, 1 where eta ≥ 0.5) of recognised eta maps."""
    return (np.asarray(eta) >= 0.5).astype(np.uint8)


def recognise_masks(
    recogniser: FittedMethod | Generalist,
    frames: np.ndarray,
    *,
    void_px: float | None = None,
    batch: int = 1,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Eta ``[T, H, W]`` (float32), the void masks (uint8) and the seconds recognition took, with a fitted model
    (masks: eta ≥ 0.5) or the generalist recogniser (its own masks, frames resampled so that voids of ``void_px``
    reach it at a size it was trained on; it runs on the CPU)."""
    if isinstance(recogniser, Generalist):
        t0 = time.perf_counter()
        eta = recogniser.eta(frames, void_px=void_px, progress=lambda k, total: progress("tracking", k, total))
        return eta, void_masks(eta).astype(np.uint8), time.perf_counter() - t0
    if void_px is not None:
        raise NeuradiffError("a void size applies to the generalist recogniser only")
    eta, seconds = recognise_video(recogniser, frames, batch=batch, device=device, progress=progress)
    return eta, masks_of(eta), seconds


def write_track(
    out: str | Path,
    eta: np.ndarray,
    masks: np.ndarray,
    measurements: Measurements | None,
    video_frames: np.ndarray | None,
    *,
    calibration: Calibration | None = None,
    drift: np.ndarray | None = None,
    record: dict[str, Any] | None = None,
    overlay: bool = True,
    progress: ProgressSink = no_progress,
) -> Path:
    """Write ``eta.tif`` and ``masks.tif`` (calibrated ImageJ stacks), ``shifts.csv`` when the frames were
    registered, with ``measurements`` the void tables, plots and overlay, and with ``record`` ``provenance.json``
    into ``out`` (files appear only when everything has been written)."""
    with staged_output(out) as stage:
        write_stack(stage / "eta.tif", eta, calibration)
        write_stack(stage / "masks.tif", masks, calibration)
        if drift is not None and calibration is not None:
            write_text(stage / "shifts.csv", shifts_table(drift, calibration))
        if measurements is not None:
            write_measurements(
                measurements, stage, video_frames=video_frames, masks=masks, overlay=overlay, progress=progress
            )
        if record is not None:
            write_provenance(stage, record)
    return Path(out)


def run_track(
    video: str | Path,
    model: str | Path | None,
    out: str | Path,
    *,
    batch: int = 1,
    void_size: float | None = None,
    void_size_unit: str = "px",
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    measure: bool = True,
    overlay: bool = True,
    require_nm: bool = False,
    register: bool = False,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> TrackSummary:
    """Write ``eta.tif`` (float), ``masks.tif`` (eta ≥ 0.5), ``provenance.json`` and, with ``measure``, the void
    measurements. Both stacks are calibrated ImageJ hyperstacks (``TYX``, nm, s) that Fiji and RosettaSciIO read
    with their scales.

    Parameters
    ----------
    video : path
        Any readable recording.
    model : path or None
        A model folder written by ``neuradiff fit`` (any method that tracks); None: the generalist recogniser
        shipped with the package (frames of any size, each normalised to its own grey-level percentiles).
    out : path
        Output folder (files appear only when everything has been computed).
    batch : int
        Frames per inference batch (1 is fastest on a few CPU cores).
    void_size, void_size_unit : float, str
        Expected void diameter, in ``"px"`` or ``"nm"`` (nm needs a calibration): with the generalist, frames
        are resampled so that such voids reach the net at a size it was trained on. Sizes below 2 px or larger
        than a tile are refused.
    nm_per_px, frame_interval_s : float, optional
        Override the recording's calibration.
    measure, overlay : bool
        Write the void measurements (tables and plots), and with them ``overlay.mp4``.
    require_nm : bool
        Refuse a recording whose pixel size is neither in its metadata nor given.
    register : bool
        Correct rigid stage drift first: sub-pixel shifts by phase correlation
        (:func:`~neuradiff.measure.drift.estimate_drift`), written to ``shifts.csv`` (px and, when calibrated, nm);
        every output is then in the coordinates of the first frame.
    device : str or torch.device
        Where the net runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if void_size_unit not in ("px", "nm"):
        raise NeuradiffError(f"void size unit must be px or nm, got {void_size_unit!r}")
    if model is not None and void_size is not None:
        raise NeuradiffError("--void-size applies to the generalist recogniser (no --model)")
    check_output_dir(out)
    fitted = load_model(model) if model is not None else None
    if fitted is not None and not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    if fitted is not None:
        place_model(fitted, device)
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    if require_nm and vid.calibration.nm_per_px is None:
        raise NeuradiffError(f"{video}: no pixel size in the file's metadata; give --nm-per-px")
    n = vid.frames.shape[0]
    check_memory(
        "tracking", n * float(vid.frames[0].size) * TRACK_BYTES_PER_PX, f"{n} frames of {vid.frames[0].size} px"
    )
    source = vid.frames
    drift = None
    if register:
        progress("registering", 0, 1)
        as_float = vid.frames.astype(np.float32)
        drift = estimate_drift(as_float)
        source = shift_frames(as_float, -drift, order=3)
        progress("registering", 1, 1)
    recogniser: FittedMethod | Generalist = fitted if fitted is not None else load_generalist()
    void_px = void_size
    if void_size is not None and void_size_unit == "nm":
        if vid.calibration.nm_per_px is None:
            raise NeuradiffError("--void-size in nm needs the pixel size (from the file or --nm-per-px)")
        void_px = void_size / vid.calibration.nm_per_px
    eta, masks, seconds = recognise_masks(
        recogniser, source, void_px=void_px, batch=batch, device=device, progress=progress
    )
    cal = vid.calibration
    record = provenance(
        "track",
        inputs={"video": video, "model": model},
        model=model_record(recogniser),
        settings={
            "batch": batch,
            "nm_per_px": nm_per_px,
            "frame_interval_s": frame_interval_s,
            "void_size": void_size,
            "void_size_unit": void_size_unit,
            "measure": measure,
            "overlay": overlay,
            "register": register,
        },
        calibration=cal.describe(n),
    )
    meas = measure_masks(masks, calibration=cal, progress=progress) if measure else None
    shown = vid.frames if drift is None else shift_frames(vid.frames, -drift, order=3)
    write_track(
        out, eta, masks, meas, shown, calibration=cal, drift=drift, record=record, overlay=overlay, progress=progress
    )
    return TrackSummary(n, seconds, Path(out))


def shifts_table(drift: np.ndarray, calibration: Calibration) -> str:
    """``shifts.csv``: per frame the drift ``(dy, dx)`` relative to the first frame in px and, when calibrated, nm
    (and the time in s when known); the outputs were moved by minus these shifts."""
    n = drift.shape[0]
    nm = calibration.nm_per_px
    times = calibration.times_s(n)
    header = ["frame"] + ["time_s"] * (times is not None) + ["dy_px", "dx_px"] + ["dy_nm", "dx_nm"] * (nm is not None)
    rows = [",".join(header)]
    for k in range(n):
        row = [str(k)] + ([f"{times[k]:g}"] if times is not None else [])
        row += [f"{drift[k, 0]:.4f}", f"{drift[k, 1]:.4f}"]
        if nm is not None:
            row += [f"{drift[k, 0] * nm:.6g}", f"{drift[k, 1] * nm:.6g}"]
        rows.append(",".join(row))
    return "\n".join(rows) + "\n"


def model_record(fitted: FittedMethod | Generalist) -> dict[str, Any]:
    """What ``provenance.json`` says about a model: its method and, with physics, its parameters; for the shipped
    generalist recogniser its version."""
    if isinstance(fitted, Generalist):
        return {"method": "generalist", "version": fitted.version}
    params = fitted.parameters()
    return {"method": fitted.method, "parameters": None if params is None else params.as_floats()}
