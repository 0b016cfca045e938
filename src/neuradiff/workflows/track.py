"""``neuradiff track``: recognise eta in every frame of a video with a fitted model, threshold it into void
masks, measure the voids and write everything (atomically, into a staged folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import staged_output, write_text
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.stacks import write_stack
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.drift import estimate_drift, shift_frames
from neuradiff.measure.voids import measure_masks
from neuradiff.methods import FittedMethod, load_model
from neuradiff.report.measurements import write_measurements


@dataclass
class TrackSummary:
    """Frames tracked, the seconds recognition took and the folder written."""

    n_frames: int
    seconds: float
    out: Path

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / max(self.seconds, 1e-9)


def run_track(
    video: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    batch: int = 1,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    measure: bool = True,
    register: bool = False,
    progress: ProgressSink = no_progress,
) -> TrackSummary:
    """Write ``eta.tif`` (float), ``masks.tif`` (eta ≥ 0.5), ``provenance.json`` and, with ``measure``, the void
    measurements. Both stacks are calibrated ImageJ hyperstacks (``TYX``, nm, s) that Fiji and RosettaSciIO read
    with their scales.

    Parameters
    ----------
    video : path
        Any readable recording.
    model : path
        A model folder written by ``neuradiff fit`` (any method that tracks).
    out : path
        Output folder (files appear only when everything has been computed).
    batch : int
        Frames per inference batch (1 is fastest on a few CPU cores).
    nm_per_px, frame_interval_s : float, optional
        Override the recording's calibration.
    register : bool
        Correct rigid stage drift first: sub-pixel shifts by phase correlation
        (:func:`~neuradiff.measure.drift.estimate_drift`), written to ``shifts.csv`` (px and, when calibrated, nm);
        every output is then in the coordinates of the first frame.
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    fitted = load_model(model)
    if not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    frames = vid.frames.astype(np.float32)
    n = frames.shape[0]
    drift = None
    if register:
        progress("registering", 0, 1)
        drift = estimate_drift(frames)
        frames = shift_frames(frames, -drift, order=3)
        progress("registering", 1, 1)
    chunks = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        chunks.append(fitted.recognise(frames[i : i + batch], first_index=i, eta_only=True, batch=batch))
        progress("tracking", min(i + batch, n), n)
    eta = np.concatenate(chunks).astype(np.float32)
    seconds = time.perf_counter() - t0
    masks = (eta >= 0.5).astype(np.uint8)
    cal = vid.calibration
    record = provenance(
        "track",
        inputs={"video": video, "model": model},
        model=model_record(fitted),
        settings={
            "batch": batch,
            "nm_per_px": nm_per_px,
            "frame_interval_s": frame_interval_s,
            "measure": measure,
            "register": register,
        },
        calibration=cal.describe(n),
    )
    with staged_output(out) as stage:
        write_stack(stage / "eta.tif", eta, cal)
        write_stack(stage / "masks.tif", masks, cal)
        if drift is not None:
            write_text(stage / "shifts.csv", shifts_table(drift, cal))
        if measure:
            meas = measure_masks(masks, calibration=cal, progress=progress)
            shown = vid.frames if drift is None else shift_frames(vid.frames, -drift, order=3)
            write_measurements(meas, stage, video_frames=shown, masks=masks, progress=progress)
        write_provenance(stage, record)
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


def model_record(fitted: FittedMethod) -> dict[str, Any]:
    """What ``provenance.json`` says about a fitted model: its method and, with physics, its parameters."""
    params = fitted.parameters()
    return {"method": fitted.method, "parameters": None if params is None else params.as_floats()}
