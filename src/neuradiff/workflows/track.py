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

from neuradiff.core.checks import check_frame_interval, check_memory, check_pixel_size
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, staged_output, write_text
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.coco import write_coco_masks
from neuradiff.io.rois import write_imagej_rois
from neuradiff.io.stacks import StackWriter, write_stack
from neuradiff.io.stream import DEFAULT_CHUNK, VideoSource, open_video
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.denoise import Denoise
from neuradiff.measure.drift import estimate_drift, shift_frames
from neuradiff.measure.voids import MaskMeasurer, Measurements, measure_masks
from neuradiff.methods import FittedMethod, load_model, place_model
from neuradiff.nets.generalist import Generalist, load_generalist, void_masks
from neuradiff.report.measurements import write_measurements

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
    first_index: int = 0,
    total: int | None = None,
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
    first_index, total : int
        Index of ``frames[0]`` in its recording (a chunk of it) and the recording's length (for the progress).
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if not fitted.can_track:
        raise NeuradiffError(f"a {fitted.method} model does not track")
    place_model(fitted, device)
    n = frames.shape[0]
    count = n + first_index if total is None else total
    chunks = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):  # a float32 copy of one batch at a time, not of the whole recording
        chunk = np.asarray(frames[i : i + batch], dtype=np.float32)
        chunks.append(fitted.recognise(chunk, first_index=first_index + i, eta_only=True, batch=batch))
        progress("tracking", first_index + min(i + batch, n), count)
    eta = np.concatenate(chunks).astype(np.float32)
    return eta, time.perf_counter() - t0


def masks_of(eta: np.ndarray) -> np.ndarray:
    """Void masks (uint8, 1 where eta ≥ 0.5) of recognised eta maps."""
    return (np.asarray(eta) >= 0.5).astype(np.uint8)


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
    frame_names: list[str] | None = None,
) -> Path:
    """Write ``eta.tif`` and ``masks.tif`` (calibrated ImageJ stacks), the masks for other tools (``masks_coco.json``:
    COCO instances with compressed RLE, one image per frame named by ``frame_names``; ``masks_rois.zip``: an
    ImageJ ROI set), ``shifts.csv`` when the frames were registered, with ``measurements`` the void tables, plots
    and overlay, and with ``record`` ``provenance.json`` into ``out`` (files appear only when everything has been
    written)."""
    with staged_output(out) as stage:
        write_stack(stage / "eta.tif", eta, calibration)
        write_stack(stage / "masks.tif", masks, calibration)
        write_mask_formats(stage, masks, frame_names, calibration)
        if drift is not None and calibration is not None:
            write_text(stage / "shifts.csv", shifts_table(drift, calibration))
        if measurements is not None:
            write_measurements(
                measurements, stage, video_frames=video_frames, masks=masks, overlay=overlay, progress=progress
            )
        if record is not None:
            write_provenance(stage, record)
    return Path(out)


def write_mask_formats(
    folder: Path, masks: np.ndarray | VideoSource, frame_names: list[str] | None, calibration: Calibration | None
) -> None:
    """Write ``masks`` ``[T, H, W]`` (nonzero = void; an array or a :class:`~neuradiff.io.stream.VideoSource`, read
    frame by frame, each file written as it is made) for other tools into
    ``folder``: ``masks_coco.json`` (COCO instances with compressed RLE, one image per frame named by the file part
    of ``frame_names``, with its time in s and areas in nm²) and ``masks_rois.zip`` (an ImageJ ROI set)."""
    n = masks.shape[0]
    names = [Path(str(name)).name for name in frame_names] if frame_names is not None else []
    names = names if len(names) == n else [f"frame_{k:05d}" for k in range(n)]
    times = None if calibration is None else calibration.times_s(n)
    nm = None if calibration is None else calibration.nm_per_px
    write_coco_masks(folder / "masks_coco.json", masks, names, times_s=times, nm_per_px=nm)
    write_imagej_rois(folder / "masks_rois.zip", masks)


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
    frame_times: str | Path | None = None,
    measure: bool = True,
    overlay: bool = True,
    require_nm: bool = False,
    register: bool = False,
    denoise: Denoise | None = None,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
    chunk: int = DEFAULT_CHUNK,
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
    frame_times : path, optional
        A per-frame time table (CSV; default: the one beside the video, see :mod:`neuradiff.io.frametimes`).
    measure, overlay : bool
        Write the void measurements (tables and plots), and with them ``overlay.mp4``.
    require_nm : bool
        Refuse a recording whose pixel size is neither in its metadata nor given.
    register : bool
        Correct rigid stage drift first: sub-pixel shifts by phase correlation
        (:func:`~neuradiff.measure.drift.estimate_drift`), written to ``shifts.csv`` (px and, when calibrated, nm);
        every output is then in the coordinates of the first frame.
    denoise : Denoise, optional
        Denoise the frames before recognition (:class:`~neuradiff.measure.denoise.Denoise`: a Gaussian, non-local
        means or a temporal median; after registration with ``register``). The overlay shows the frames as
        recorded (registered with ``register``).
    device : str or torch.device
        Where the net runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).
    chunk : int
        Frames read, recognised, measured and written at a time (rounded down to whole inference batches): without
        ``register`` the recording is streamed (:func:`~neuradiff.io.stream.open_video`), so memory depends on the
        chunk and the frame size, not on the recording's length; the results are those of the whole recording at
        once. With ``register`` the recording is read whole.
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if void_size_unit not in ("px", "nm"):
        raise NeuradiffError(f"void size unit must be px or nm, got {void_size_unit!r}")
    if model is not None and void_size is not None:
        raise NeuradiffError("--void-size applies to the generalist recogniser (no --model)")
    nm_per_px = check_pixel_size("--nm-per-px", nm_per_px)
    frame_interval_s = check_frame_interval("--frame-interval", frame_interval_s)
    if chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {chunk}")
    denoise = Denoise() if denoise is None else denoise
    check_output_dir(out)
    fitted = load_model(model) if model is not None else None
    if fitted is not None and not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    if fitted is not None:
        place_model(fitted, device)
    if register:  # drift is estimated against the whole recording: read it whole
        return _run_track_whole(
            video, model, fitted, out, batch=batch, void_size=void_size, void_size_unit=void_size_unit,
            nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times, measure=measure,
            overlay=overlay, require_nm=require_nm, denoise=denoise, device=device, progress=progress,
        )  # fmt: skip
    recogniser: FittedMethod | Generalist = fitted if fitted is not None else load_generalist()
    with open_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times) as src:
        cal = src.calibration
        if require_nm and cal.nm_per_px is None:
            raise NeuradiffError(f"{video}: no pixel size in the file's metadata; give --nm-per-px")
        void_px = _void_px(recogniser, void_size, void_size_unit, cal)
        n = src.n_frames
        record = _track_record(video, model, recogniser, cal, n, batch, nm_per_px, frame_interval_s, frame_times,
                               void_size, void_size_unit, measure, overlay, register, denoise)  # fmt: skip
        step = max(chunk, batch) // batch * batch  # whole inference batches per chunk: the same batches as at once
        seconds = 0.0
        with staged_output(out) as stage:
            measurer = MaskMeasurer(n, calibration=cal) if measure else None
            with (
                StackWriter(stage / "eta.tif", n, src.frame_shape, np.float32, cal) as eta_out,
                StackWriter(stage / "masks.tif", n, src.frame_shape, np.uint8, cal) as masks_out,
            ):
                chunks = src.chunks(step) if not denoise.active else denoise.chunks(src.read, n, step)
                for start, frames in chunks:
                    eta, masks, sec = recognise_masks(
                        recogniser, frames, start, n, void_px=void_px, batch=batch, device=device, progress=progress
                    )
                    seconds += sec
                    eta_out.write(eta)
                    masks_out.write(masks)
                    if measurer is not None:
                        measurer.add(masks, start, progress)
            with open_video(stage / "masks.tif") as stored:  # read back, frame by frame, for the other formats
                write_mask_formats(stage, stored, src.names, cal)
                if measurer is not None:
                    meas = measurer.finish()
                    write_measurements(meas, stage, video_frames=src, masks=stored, overlay=overlay, progress=progress)
            write_provenance(stage, record)
    return TrackSummary(n, seconds, Path(out))


def _void_px(
    recogniser: FittedMethod | Generalist, void_size: float | None, unit: str, cal: Calibration
) -> float | None:
    """The expected void diameter in px (the generalist resamples frames to it)."""
    if not isinstance(recogniser, Generalist) or void_size is None or unit != "nm":
        return void_size
    if cal.nm_per_px is None:
        raise NeuradiffError("--void-size in nm needs the pixel size (from the file or --nm-per-px)")
    return void_size / cal.nm_per_px


def recognise_masks(
    recogniser: FittedMethod | Generalist,
    frames: np.ndarray,
    first_index: int = 0,
    total: int | None = None,
    *,
    void_px: float | None = None,
    batch: int = 1,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Eta (float32), void masks (uint8) and recognition seconds of ``frames`` ``[n, H, W]``, frames
    ``first_index`` onwards of a recording of ``total`` frames (default: ``frames`` are the whole recording), with
    a fitted model (masks: eta ≥ 0.5) or the generalist recogniser (its own masks, frames resampled so that voids
    of ``void_px`` reach it at a size it was trained on; it runs on the CPU). Every frame is recognised on its own
    (the generalist normalises each frame to its own percentiles; a fitted net gets the frame's index as its
    time), so chunks give exactly what the whole recording at once gives."""
    total = len(frames) + first_index if total is None else total
    if isinstance(recogniser, Generalist):
        t0 = time.perf_counter()
        eta = recogniser.eta(
            frames, void_px=void_px, progress=lambda k, _: progress("tracking", first_index + k, total)
        ).astype(np.float32)
        masks = void_masks(eta, min_peak_eta=recogniser.min_peak_eta).astype(np.uint8)
        return eta, masks, time.perf_counter() - t0
    if void_px is not None:
        raise NeuradiffError("a void size applies to the generalist recogniser only")
    eta, seconds = recognise_video(
        recogniser, frames, batch=batch, device=device, progress=progress, first_index=first_index, total=total
    )
    return eta, masks_of(eta), seconds


def _track_record(
    video, model, recogniser, cal: Calibration, n: int, batch, nm_per_px, frame_interval_s, frame_times, void_size,
    void_size_unit, measure, overlay, register, denoise: Denoise,
) -> dict[str, Any]:  # fmt: skip
    return provenance(
        "track",
        inputs={"video": video, "model": model, "frame_times": frame_times},
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
            "denoise": denoise.describe(),
        },
        calibration=cal.describe(n),
    )


def _run_track_whole(
    video, model, fitted: FittedMethod | None, out, *, batch, void_size, void_size_unit, nm_per_px,
    frame_interval_s, frame_times, measure, overlay, require_nm, denoise: Denoise, device, progress,
) -> TrackSummary:  # fmt: skip
    """Tracking with drift registration: the recording is read whole (the drift of every frame is estimated
    against the first); the registered frames are denoised (``denoise``) before recognition."""
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times)
    if require_nm and vid.calibration.nm_per_px is None:
        raise NeuradiffError(f"{video}: no pixel size in the file's metadata; give --nm-per-px")
    n = vid.frames.shape[0]
    check_memory(
        "tracking", n * float(vid.frames[0].size) * TRACK_BYTES_PER_PX, f"{n} frames of {vid.frames[0].size} px"
    )
    progress("registering", 0, 1)
    as_float = vid.frames.astype(np.float32)
    drift = estimate_drift(as_float)
    source = shift_frames(as_float, -drift, order=3)
    progress("registering", 1, 1)
    if denoise.active:
        progress("denoising", 0, 1)
        source = denoise.apply(source)
        progress("denoising", 1, 1)
    recogniser: FittedMethod | Generalist = fitted if fitted is not None else load_generalist()
    void_px = _void_px(recogniser, void_size, void_size_unit, vid.calibration)
    eta, masks, seconds = recognise_masks(
        recogniser, source, 0, n, void_px=void_px, batch=batch, device=device, progress=progress
    )
    cal = vid.calibration
    record = _track_record(video, model, recogniser, cal, n, batch, nm_per_px, frame_interval_s, frame_times,
                           void_size, void_size_unit, measure, overlay, True, denoise)  # fmt: skip
    meas = measure_masks(masks, calibration=cal, progress=progress) if measure else None
    shown = shift_frames(vid.frames, -drift, order=3)
    write_track(
        out,
        eta,
        masks,
        meas,
        shown,
        calibration=cal,
        drift=drift,
        record=record,
        overlay=overlay,
        progress=progress,
        frame_names=vid.names,
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
