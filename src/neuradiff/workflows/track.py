"""``neuradiff track``: recognise eta in every frame of a video with a fitted model (or the shipped generalist
recogniser), threshold it into void masks, measure the voids and write everything (atomically, into a staged
folder)."""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from neuradiff.core.allocator import release_free_memory
from neuradiff.core.checks import check_frame_interval, check_memory, check_pixel_size
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, staged_output, write_text
from neuradiff.core.labels import UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.coco import write_coco_masks
from neuradiff.io.rois import write_imagej_rois
from neuradiff.io.stacks import StackWriter, write_stack
from neuradiff.io.stream import DEFAULT_CHUNK, VideoSource, open_video
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.denoise import Denoise
from neuradiff.measure.drift import estimate_drift, shift_frames
from neuradiff.measure.voids import MaskMeasurer, MeasuredChunk, Measurements, measure_masks
from neuradiff.methods import FittedMethod, fitted_masks, load_model, place_model
from neuradiff.nets.blank import blank_regions, clipped_share
from neuradiff.nets.generalist import Generalist, load_generalist
from neuradiff.nets.tiles import resample_factor
from neuradiff.report.measurements import write_measurements

#: Share of a frame's specimen pixels at its darkest or brightest grey level from which ``track`` says the
#: export clipped them (:func:`recording_clipped_share`); ImageJ's default display saturates 0.35 % in all.
CLIPPED_NOTE_SHARE = 0.01

#: Bytes per pixel and frame tracking holds besides the video: eta (float32), its float copy and the masks.
TRACK_BYTES_PER_PX = 10


@dataclass
class TrackSummary:
    """Frames tracked, the seconds recognition took and the folder written."""

    n_frames: int
    seconds: float
    out: Path
    #: The factor by which the generalist resampled the frames (``void_size_unit`` "auto": the one it chose).
    resample_factor: float = 1.0

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


def with_min_contrast(fitted: FittedMethod, min_contrast: float | None) -> FittedMethod:
    """A copy of ``fitted`` whose masks' contrast threshold is ``min_contrast`` (None: ``fitted`` itself, with the
    fit's own threshold; see :func:`~neuradiff.methods.fitted_masks`)."""
    if min_contrast is None:
        return fitted
    return dataclasses.replace(fitted, info={**fitted.info, "min_contrast": float(min_contrast)})  # pyright: ignore[reportArgumentType]


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
    """Write ``masks`` ``[T, H, W]`` (three-state: 1 void, 0 solid, 255 unknown, or bool; an array or a
    :class:`~neuradiff.io.stream.VideoSource`, read frame by frame, each file written as it is made) for other tools
    into ``folder``: ``masks_coco.json`` (COCO instances with compressed RLE, one image per frame named by the file part
    of ``frame_names``, with its time in s and areas in nm²) and ``masks_rois.zip`` (an ImageJ ROI set)."""
    n = masks.shape[0]
    names = [Path(str(name)).name for name in frame_names] if frame_names is not None else []
    names = names if len(names) == n else [f"frame_{k:05d}" for k in range(n)]
    times = None if calibration is None else calibration.times_s(n)
    nm = None if calibration is None else calibration.nm_per_px
    void = _VoidOnly(masks)
    write_coco_masks(folder / "masks_coco.json", void, names, times_s=times, nm_per_px=nm)
    write_imagej_rois(folder / "masks_rois.zip", void)


def run_track(
    video: str | Path,
    model: str | Path | None,
    out: str | Path,
    *,
    batch: int = 1,
    void_size: float | None = None,
    void_size_unit: str = "px",
    min_contrast: float | None = None,
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
    runner: PartRunner | None = None,
    span: int | None = None,
) -> TrackSummary:
    """Write ``eta.tif`` (float), ``masks.tif`` (the recogniser's void masks: :func:`recognise_masks`),
    ``provenance.json`` and, with ``measure``, the void measurements. Both stacks are calibrated ImageJ hyperstacks
    (``TYX``, nm, s) that Fiji and RosettaSciIO read with their scales.

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
        than a tile are refused. Unit ``"auto"`` (size None): the generalist chooses the factor itself from three
        of the recording's frames (:meth:`~neuradiff.nets.generalist.Generalist.estimate_scale`; for frames drawn 2–4×
        larger than it was trained on); ``resample_factor`` in the summary and the provenance.
    min_contrast : float, optional
        The contrast filter's threshold (:func:`~neuradiff.nets.contrast.drop_faint`: with the generalist a frame
        where enough voids reach it keeps every void from a contrast-to-noise statistic of 3, any other frame only
        those that reach it; with a fitted model only the regions that reach it); None: the recogniser's own
        threshold (the shipped generalist's ``min_contrast`` in its ``generalist.json``; a fitted model's from the
        faintest of its annotated voids that stand out, at most the generalist's), 0: every void the net finds. It
        is measured on the frames the net sees: with ``denoise``, the denoised ones (their finer grain is smoothed
        away, so t is larger).
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
    runner : PartRunner, optional
        Split the recording into parts of ``span`` frames and recognise and measure them with ``runner`` (e.g.
        :class:`~neuradiff.workflows.cluster.DaskRunner` on the workers of a Dask cluster, which must see ``video``
        and ``out``); the parts' stacks are joined and their voids linked in one pass here, so the outputs equal
        those of one process. Not with ``register``.
    span : int, optional
        Frames per part (default: the recording shared evenly among the runner's workers).

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> top = pathlib.Path(tempfile.mkdtemp())
    >>> frames = np.full((6, 48, 48), 200, np.uint8); frames[:, 20:30, 20:30] = 40
    >>> tifffile.imwrite(top / "rec.tif", frames)
    >>> run_track(top / "rec.tif", None, top / "one", overlay=False).n_frames
    6
    >>> _ = run_track(top / "rec.tif", None, top / "parts", overlay=False, runner=InProcess(), span=4)
    >>> (top / "one" / "voids.csv").read_text() == (top / "parts" / "voids.csv").read_text()
    True
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if void_size_unit not in ("px", "nm", "auto"):
        raise NeuradiffError(f"void size unit must be px, nm or auto, got {void_size_unit!r}")
    if model is not None and (void_size is not None or void_size_unit == "auto"):
        raise NeuradiffError("--void-size applies to the generalist recogniser (no --model)")
    if min_contrast is not None and not (np.isfinite(min_contrast) and min_contrast >= 0):
        raise NeuradiffError(f"--min-contrast must be a number >= 0, got {min_contrast:g}")
    nm_per_px = check_pixel_size("--nm-per-px", nm_per_px)
    frame_interval_s = check_frame_interval("--frame-interval", frame_interval_s)
    if chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {chunk}")
    denoise = Denoise() if denoise is None else denoise
    check_output_dir(out)
    fitted = with_min_contrast(load_model(model), min_contrast) if model is not None else None
    # the generalist is read (and a bad threshold refused) before anything is written
    recogniser: FittedMethod | Generalist = fitted if fitted is not None else load_generalist(min_contrast=min_contrast)
    if fitted is not None and not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    if fitted is not None:
        place_model(fitted, device)
    if register and runner is not None:
        raise NeuradiffError("--register reads the recording whole, in one process: drop --workers/--scheduler")
    if register:  # drift is estimated against the whole recording: read it whole
        return _run_track_whole(
            video, model, recogniser, out, batch=batch, void_size=void_size, void_size_unit=void_size_unit,
            nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times, measure=measure,
            overlay=overlay, require_nm=require_nm, denoise=denoise, device=device, progress=progress,
        )  # fmt: skip
    opened = {"nm_per_px": nm_per_px, "frame_interval_s": frame_interval_s, "frame_times": frame_times}
    with open_video(video, **opened) as src:
        cal = src.calibration
        if require_nm and cal.nm_per_px is None:
            raise NeuradiffError(f"{video}: no pixel size in the file's metadata; give --nm-per-px")
        n = src.n_frames
        void_px = _void_px(recogniser, void_size, void_size_unit, cal, src.read, n, denoise)
        record = _track_record(video, model, recogniser, cal, n, batch, nm_per_px, frame_interval_s, frame_times,
                               void_size, void_size_unit, measure, overlay, register, denoise, void_px)  # fmt: skip
        step = max(chunk, batch) // batch * batch  # whole inference batches per chunk: the same batches as at once
        with staged_output(out) as stage:
            measurer = MaskMeasurer(n, calibration=cal) if measure else None
            with (
                StackWriter(stage / "eta.tif", n, src.frame_shape, np.float32, cal) as eta_out,
                StackWriter(stage / "masks.tif", n, src.frame_shape, np.uint8, cal) as masks_out,
            ):
                if runner is None:
                    seconds = _track_frames(recogniser, src, 0, n, step, void_px, batch, denoise, device,
                                            eta_out, masks_out, measurer, progress)  # fmt: skip
                else:
                    span = _span(n, batch, runner.workers, span)
                    far = {**opened, "frame_times": None if frame_times is None else str(Path(frame_times).resolve())}
                    parts = [  # absolute paths: a worker may run elsewhere
                        TrackPart(str(Path(video).resolve()), None if model is None else str(Path(model).resolve()),
                                  str((stage / ".parts").resolve()), a, min(a + span, n), far, void_px, batch, step,
                                  denoise, measure, str(device), min_contrast)
                        for a in range(0, n, span)
                    ]  # fmt: skip
                    (stage / ".parts").mkdir()
                    seconds = _stitch_parts(runner, parts, n, step, eta_out, masks_out, measurer, progress)
            if runner is not None:
                shutil.rmtree(stage / ".parts")
            with open_video(stage / "masks.tif") as stored:  # read back, frame by frame, for the other formats
                write_mask_formats(stage, stored, src.names, cal)
                if measurer is not None:
                    meas = measurer.finish()
                    release_free_memory()  # linking's scratch memory goes back before the overlay's encoder starts
                    write_measurements(meas, stage, video_frames=src, masks=stored, overlay=overlay, progress=progress)
            write_provenance(stage, record)
    return TrackSummary(n, seconds, Path(out), _factor(recogniser, void_px))


def recording_clipped_share(video: str | Path) -> float:
    """:func:`~neuradiff.nets.blank.clipped_share` of a recording's first frame: how much of it an export saturated
    at its darkest or brightest grey level (0 for frames as recorded; an export that clips clips every frame).

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> rng = np.random.default_rng(0)
    >>> frames = rng.normal(120.0, 20.0, (2, 64, 64))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "clipped.tif"
    >>> tifffile.imwrite(path, np.clip(frames, 90, 150).astype(np.uint8))
    >>> recording_clipped_share(path) > 0.05
    True
    """
    with open_video(video) as src:
        return clipped_share(src.read(0, 1)[0])


def recording_scale(video: str | Path) -> float:
    """The resampling factor the shipped recogniser would choose for a recording with ``--void-size auto``
    (:func:`auto_void_px`; 1: as it is, below 1: the frames look drawn larger than the recogniser's corpus, as at a
    higher magnification).

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> from neuradiff.synth.corpus import CorpusSettings, corpus_sample
    >>> frame = corpus_sample(1_000_003, CorpusSettings(size=96)).frames[0]
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "big.tif"
    >>> tifffile.imwrite(path, np.kron(frame, np.ones((3, 3), frame.dtype))[None])
    >>> recording_scale(path) < 1
    True
    """
    g = load_generalist()
    with open_video(video) as src:
        return _factor(g, auto_void_px(g, src.read, src.n_frames))


def _track_frames(
    recogniser: FittedMethod | Generalist,
    src: VideoSource,
    start: int,
    stop: int,
    step: int,
    void_px: float | None,
    batch: int,
    denoise: Denoise,
    device: str | torch.device | None,
    eta_out: StackWriter,
    masks_out: StackWriter,
    measurer: MaskMeasurer | None,
    progress: ProgressSink = no_progress,
) -> float:
    """Recognise frames ``start``–``stop - 1`` of ``src`` ``step`` frames at a time, append eta and masks to the
    writers and measure the masks; returns the recognition seconds."""
    n = src.n_frames
    if denoise.active:
        chunks = denoise.chunks(src.read, n, step, start, stop)
    else:
        chunks = src.chunks(step, start, stop)
    seconds = 0.0
    for first, frames in chunks:
        eta, masks, sec = recognise_masks(
            recogniser, frames, first, n, void_px=void_px, batch=batch, device=device, progress=progress
        )
        seconds += sec
        eta_out.write(eta)
        masks_out.write(masks)
        if measurer is not None:
            measurer.add(masks, first, progress)
    return seconds


@dataclass(frozen=True)
class TrackPart:
    """Frames ``start``–``stop - 1`` of a recording to recognise and measure as one task (in another process, or on
    another machine of a cluster that sees the same files): see :func:`track_part`."""

    video: str
    model: str | None  #: a model folder, or None for the generalist recogniser
    folder: str  #: where the part's stacks are written
    start: int
    stop: int
    opened: dict[str, Any]  #: calibration overrides for :func:`~neuradiff.io.stream.open_video`
    void_px: float | None
    batch: int
    step: int  #: frames recognised at a time (whole inference batches)
    denoise: Denoise
    measure: bool
    device: str
    min_contrast: float | None = None  #: the masks' contrast threshold (None: the recogniser's own)


@dataclass
class TrackedPart:
    """What :func:`track_part` did: its stacks (``eta`` float32, ``masks`` uint8, ``[stop - start, H, W]``), its void
    rows (to be linked with the other parts' in one pass) and its recognition seconds."""

    start: int
    stop: int
    eta: str
    masks: str
    measured: MeasuredChunk | None
    seconds: float


def track_part(part: TrackPart) -> TrackedPart:
    """Recognise and measure one :class:`TrackPart` into ``part.folder``: what the whole recording in one process
    gives for these frames (every frame is recognised on its own, in the same inference batches)."""
    fitted = with_min_contrast(load_model(part.model), part.min_contrast) if part.model is not None else None
    if fitted is not None:
        place_model(fitted, part.device)
    recogniser = fitted if fitted is not None else load_generalist(min_contrast=part.min_contrast)
    folder = Path(part.folder)
    eta_path, masks_path = folder / f"eta_{part.start:09d}.tif", folder / f"masks_{part.start:09d}.tif"
    with open_video(part.video, **part.opened) as src:
        measurer = MaskMeasurer(src.n_frames, calibration=src.calibration) if part.measure else None
        count = part.stop - part.start
        with (
            StackWriter(eta_path, count, src.frame_shape, np.float32, None) as eta_out,
            StackWriter(masks_path, count, src.frame_shape, np.uint8, None) as masks_out,
        ):
            seconds = _track_frames(recogniser, src, part.start, part.stop, part.step, part.void_px, part.batch,
                                    part.denoise, part.device, eta_out, masks_out, measurer)  # fmt: skip
    measured = measurer.partial() if measurer is not None else None
    return TrackedPart(part.start, part.stop, str(eta_path), str(masks_path), measured, seconds)


class PartRunner(Protocol):
    """Runs :func:`track_part` on many parts (a pool of processes, a Dask cluster) and yields their results in any
    order; ``workers`` is how many run at once."""

    workers: int

    def map(self, fn: Callable[[TrackPart], TrackedPart], parts: list[TrackPart]) -> Iterable[TrackedPart]: ...


class InProcess:
    """A :class:`PartRunner` that runs the parts one after another in this process."""

    workers = 1

    def map(self, fn: Callable[[TrackPart], TrackedPart], parts: list[TrackPart]) -> Iterable[TrackedPart]:
        return map(fn, parts)


def _span(n: int, batch: int, workers: int, span: int | None) -> int:
    """Frames per part: ``span`` (default: the recording shared evenly by the workers), whole inference batches."""
    span = -(-n // max(workers, 1)) if span is None else span
    if span < 1:
        raise ValueError(f"--span must be >= 1, got {span}")
    return -(-span // batch) * batch


def _stitch_parts(
    runner: PartRunner,
    parts: list[TrackPart],
    n: int,
    step: int,
    eta_out: StackWriter,
    masks_out: StackWriter,
    measurer: MaskMeasurer | None,
    progress: ProgressSink,
) -> float:
    """Run ``parts`` on ``runner``, then append their stacks in frame order to the writers and merge their void
    rows into ``measurer`` (linked later in one pass, so tracks run on across part borders)."""
    done: dict[int, TrackedPart] = {}
    frames = 0
    progress("tracking", 0, n)
    for result in runner.map(track_part, parts):
        done[result.start] = result
        frames += result.stop - result.start
        progress("tracking", frames, n)
    if sorted(done) != [p.start for p in parts]:
        raise NeuradiffError(f"{len(parts) - len(done)} of {len(parts)} parts of the recording were not tracked")
    for start in sorted(done):
        result = done[start]
        for path, out in ((result.eta, eta_out), (result.masks, masks_out)):
            with open_video(path) as stored:
                for _, block in stored.chunks(step):
                    out.write(block)
            Path(path).unlink()
        if measurer is not None and result.measured is not None:
            measurer.merge(result.measured)
    return sum(r.seconds for r in done.values())


#: Frames of a recording (evenly spaced, first and last included) from which ``void_size_unit`` "auto" chooses the
#: resampling factor.
SCALE_SAMPLE_FRAMES = 3


def auto_void_px(
    recogniser: Generalist, read: Callable[[int, int], np.ndarray], n: int, denoise: Denoise | None = None
) -> float | None:
    """The expected void diameter (px; None: frames as they are) for which ``recogniser`` resamples the frames of a
    recording by the factor it chooses (:meth:`~neuradiff.nets.generalist.Generalist.estimate_scale`) on
    :data:`SCALE_SAMPLE_FRAMES` of its ``n`` frames, read by ``read(start, stop)`` and denoised as they are tracked.

    Examples
    --------
    >>> from neuradiff.synth.corpus import CorpusSettings, corpus_sample
    >>> frames = corpus_sample(1_000_003, CorpusSettings(size=96, frames=2)).frames
    >>> big = np.kron(frames.astype(np.float32), np.ones((1, 3, 3), np.float32))  # drawn 3× larger
    >>> g = load_generalist()
    >>> auto_void_px(g, lambda a, b: frames[a:b], 2) is None, auto_void_px(g, lambda a, b: big[a:b], 2) > 48
    (True, True)
    """
    denoise = Denoise() if denoise is None else denoise
    last = SCALE_SAMPLE_FRAMES - 1
    picks = sorted({round(k * (n - 1) / last) for k in range(SCALE_SAMPLE_FRAMES)})
    if denoise.active:
        sample = np.concatenate([next(denoise.chunks(read, n, 1, k, k + 1))[1] for k in picks])
    else:
        sample = np.concatenate([read(k, k + 1) for k in picks])
    return recogniser.void_px_for(recogniser.estimate_scale(sample))


def _void_px(
    recogniser: FittedMethod | Generalist,
    void_size: float | None,
    unit: str,
    cal: Calibration,
    read: Callable[[int, int], np.ndarray],
    n: int,
    denoise: Denoise,
) -> float | None:
    """The expected void diameter in px (the generalist resamples frames to it); with ``unit`` "auto"
    :func:`auto_void_px` of the recording (``n`` frames read by ``read(start, stop)``)."""
    if unit == "auto":
        if not isinstance(recogniser, Generalist):
            raise NeuradiffError("--void-size auto applies to the generalist recogniser only: drop --model")
        return auto_void_px(recogniser, read, n, denoise)
    if not isinstance(recogniser, Generalist) or void_size is None or unit != "nm":
        return void_size
    if cal.nm_per_px is None:
        raise NeuradiffError("--void-size in nm needs the pixel size (from the file or --nm-per-px)")
    return void_size / cal.nm_per_px


def _factor(recogniser: FittedMethod | Generalist, void_px: float | None) -> float:
    """The factor by which ``recogniser`` resamples frames for voids of ``void_px`` (1 for a fitted model)."""
    if not isinstance(recogniser, Generalist):
        return 1.0
    return resample_factor(void_px, target=recogniser.train_diameter_px, tile=recogniser.tiling.tile)


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
    """Eta (float32), void masks (uint8: 1 void, 0 solid, 255 unknown where a frame is blank, see
    :mod:`neuradiff.nets.blank`) and recognition seconds of ``frames`` ``[n, H, W]``, frames
    ``first_index`` onwards of a recording of ``total`` frames (default: ``frames`` are the whole recording), with
    a fitted model (masks: :func:`~neuradiff.methods.fitted_masks`) or the generalist recogniser (its own masks,
    frames resampled so that voids of ``void_px`` reach it at a size it was trained on; it runs on the CPU). Every
    frame is recognised on its own (the generalist normalises each frame to its own percentiles; a fitted net gets
    the frame's index as its time), so chunks give exactly what the whole recording at once gives."""
    total = len(frames) + first_index if total is None else total
    if isinstance(recogniser, Generalist):
        t0 = time.perf_counter()
        eta, masks, blank = recogniser.recognise(
            frames, void_px=void_px, progress=lambda k, _: progress("tracking", first_index + k, total)
        )
        return eta.astype(np.float32), _three_state(masks, blank), time.perf_counter() - t0
    if void_px is not None:
        raise NeuradiffError("a void size applies to the generalist recogniser only")
    eta, seconds = recognise_video(
        recogniser, frames, batch=batch, device=device, progress=progress, first_index=first_index, total=total
    )
    raw = np.asarray(frames)
    return eta, _three_state(fitted_masks(recogniser, eta, raw), np.stack([blank_regions(f) for f in raw])), seconds


def _three_state(void: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """Masks (uint8): 1 void, 0 solid, 255 unknown where the frame is blank (a padding band, a burned-in overlay),
    so that number densities and area fractions are per area of specimen."""
    out = np.asarray(void).astype(np.uint8)
    out[np.asarray(blank, bool)] = UNKNOWN
    return out


class _VoidOnly:
    """Three-state masks read one frame at a time as bool void masks (for writers where nonzero is void)."""

    def __init__(self, masks):
        self.masks = masks
        self.shape = tuple(masks.shape)

    def __getitem__(self, k: int) -> np.ndarray:
        return np.asarray(self.masks[k]) == VOID


def _track_record(
    video, model, recogniser, cal: Calibration, n: int, batch, nm_per_px, frame_interval_s, frame_times, void_size,
    void_size_unit, measure, overlay, register, denoise: Denoise, void_px: float | None = None,
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
            "resample_factor": _factor(recogniser, void_px),
            "measure": measure,
            "overlay": overlay,
            "register": register,
            "denoise": denoise.describe(),
        },
        calibration=cal.describe(n),
    )


def _run_track_whole(
    video, model, recogniser: FittedMethod | Generalist, out, *, batch, void_size, void_size_unit, nm_per_px,
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
    void_px = _void_px(recogniser, void_size, void_size_unit, vid.calibration, lambda a, b: source[a:b], n, Denoise())
    eta, masks, seconds = recognise_masks(
        recogniser, source, 0, n, void_px=void_px, batch=batch, device=device, progress=progress
    )
    cal = vid.calibration
    record = _track_record(video, model, recogniser, cal, n, batch, nm_per_px, frame_interval_s, frame_times,
                           void_size, void_size_unit, measure, overlay, True, denoise, void_px)  # fmt: skip
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
    return TrackSummary(n, seconds, Path(out), _factor(recogniser, void_px))


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
    """What ``provenance.json`` says about a model: its method, the contrast threshold of its masks and, with
    physics, its parameters; for the shipped generalist recogniser its version and the mean eta from which it keeps
    a large faint region in a frame judged texture."""
    if isinstance(fitted, Generalist):
        return {
            "method": "generalist",
            "version": fitted.version,
            "min_contrast": fitted.min_contrast,
            "confident_eta": fitted.confident_eta,
        }
    params = fitted.parameters()
    return {
        "method": fitted.method,
        "min_contrast": float(fitted.info.get("min_contrast") or 0.0),
        "parameters": None if params is None else params.as_floats(),
    }
