"""``neuradiff measure``: void sizes, densities and tracks from masks, in nm and s when calibrated."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from neuradiff.core.allocator import release_free_memory
from neuradiff.core.checks import check_frame_interval, check_pixel_size, in_range
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.annotations import MaskStack, open_mask_stack, read_annotations
from neuradiff.io.frametimes import read_frame_table
from neuradiff.io.stream import DEFAULT_CHUNK, open_video
from neuradiff.io.video import TIFF_SUFFIXES, Calibration, read_calibration
from neuradiff.measure.voids import MaskMeasurer, Measurements
from neuradiff.report.measurements import write_measurements

#: Physical ranges of the optional inputs: dose rate 1e-12 – 1 dpa/s, foil thickness 0.1 nm – 1 mm.
DOSE_RATE_RANGE = (1e-12, 1.0)
FOIL_THICKNESS_RANGE = (0.1, 1e6)


def check_measure_options(
    nm_per_px: float | None,
    frame_interval_s: float | None,
    dose_rate: float | None,
    foil_thickness: float | None,
    search_range: float | None,
    min_area: int,
) -> None:
    """Refuse a calibration or measurement option outside its physical range (one line naming it and the range)."""
    check_pixel_size("--nm-per-px", nm_per_px)
    check_frame_interval("--frame-interval", frame_interval_s)
    in_range("--dose-rate", dose_rate, *DOSE_RATE_RANGE, "dpa/s")
    in_range("--foil-thickness", foil_thickness, *FOIL_THICKNESS_RANGE, "nm")
    in_range("--search-range", search_range, 1e-3, 1e6, "px")
    if min_area < 1:
        raise ValueError(f"--min-area must be >= 1, got {min_area}")


@dataclass
class MeasureSummary:
    """The measurements and the files written."""

    measurements: Measurements
    written: list[Path]
    n_frames: int


def run_measure(
    masks: str | Path,
    out: str | Path,
    *,
    video: str | Path | None = None,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    frame_times: str | Path | None = None,
    dose_rate: float | None = None,
    foil_thickness: float | None = None,
    min_area: int = 4,
    search_range: float | None = None,
    overlay: bool = True,
    progress: ProgressSink = no_progress,
) -> MeasureSummary:
    """Measure every void of ``masks`` (any annotation format) and write the tables, plots, overlay and
    ``provenance.json``. Without ``video``, the calibration comes from the mask stack's metadata (a calibrated
    ``masks.tif`` from ``neuradiff track``); ``nm_per_px`` and ``frame_interval_s`` win over it, and a per-frame
    time table ``frame_times`` (CSV) over the metadata's frame times.

    A TIFF mask stack (and the video) are read a chunk of frames at a time, so memory does not grow with the
    recording's length beyond the per-void rows; other annotation forms are read whole."""
    check_measure_options(nm_per_px, frame_interval_s, dose_rate, foil_thickness, search_range, min_area)
    check_output_dir(out)
    settings = {
        "nm_per_px": nm_per_px,
        "frame_interval_s": frame_interval_s,
        "dose_rate": dose_rate,
        "foil_thickness": foil_thickness,
        "min_area": min_area,
        "search_range": search_range,
        "overlay": overlay,
    }
    with contextlib.ExitStack() as stack:
        vid = None
        if video is not None:
            vid = stack.enter_context(
                open_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times)
            )
            calibration = vid.calibration
        else:  # the mask stack's own calibration (a calibrated masks.tif), with the options winning
            calibration = _mask_calibration(masks, nm_per_px, frame_interval_s, frame_times)
        # a mask stack measured against a video must cover every frame (frames without masks would count no voids)
        if _streamable(masks):  # a TIFF stack: read and measured a chunk at a time, never held whole
            three_state: np.ndarray | MaskStack = stack.enter_context(
                open_mask_stack(
                    masks,
                    shape=None if vid is None else vid.frame_shape,
                    n_frames=None if vid is None else len(vid),
                    full_stack=vid is not None,
                )
            )
        else:
            three_state = read_annotations(masks, video=vid, full_stack=vid is not None)
        n = len(three_state)
        n_times = 0 if calibration.frame_times_s is None else len(calibration.frame_times_s)
        if vid is None and frame_times is not None and n_times != n:
            raise NeuradiffError(f"{frame_times}: lists {n_times} frames but the masks have {n}")
        measurer = MaskMeasurer(
            n,
            calibration=calibration,
            dose_rate_dpa_per_s=dose_rate,
            foil_thickness_nm=foil_thickness,
            min_area_px=min_area,
            search_range_px=search_range,
        )
        for start in range(0, n, DEFAULT_CHUNK):
            measurer.add(three_state[start : start + DEFAULT_CHUNK], start, progress)
        meas = measurer.finish()
        release_free_memory()  # linking's scratch memory goes back before the overlay's encoder starts
        inputs = {"masks": masks, "video": video, "frame_times": frame_times}
        record = provenance("measure", inputs=inputs, settings=settings, calibration=calibration.describe(n))
        with staged_output(out) as stage:
            staged = write_measurements(
                meas, stage, video_frames=vid, masks=three_state, overlay=overlay, progress=progress
            )
            staged.append(write_provenance(stage, record))
    written = [Path(out) / p.relative_to(stage) for p in staged]
    return MeasureSummary(meas, written, n)


def _streamable(masks: str | Path) -> bool:
    """Whether ``masks`` is one TIFF file (a mask stack read frame by frame); other forms are read whole."""
    path = Path(masks)
    return path.is_file() and path.suffix.lower() in TIFF_SUFFIXES


def _mask_calibration(
    masks: str | Path, nm_per_px: float | None, frame_interval_s: float | None, frame_times: str | Path | None
) -> Calibration:
    """The calibration stored in a mask stack's metadata, overridden by the options and a frame-time table."""
    stored = read_calibration(masks)
    given = nm_per_px is not None or frame_interval_s is not None
    sources = [stored.source] if stored.source != "none" else []
    calibration = Calibration(
        nm_per_px=stored.nm_per_px if nm_per_px is None else nm_per_px,
        frame_interval_s=stored.frame_interval_s if frame_interval_s is None else frame_interval_s,
        frame_times_s=stored.frame_times_s if frame_interval_s is None else None,
        source=" + ".join(sources + ["override"] * given) or "none",
    )
    if frame_times is not None:
        if frame_interval_s is not None:
            raise NeuradiffError("give a frame interval or a frame-time table, not both")
        table = read_frame_table(frame_times)
        calibration = replace(
            calibration,
            frame_interval_s=float(np.median(np.diff(table.time_s))) if len(table.time_s) > 1 else None,
            frame_times_s=table.time_s,
            conditions=table.columns or None,
            source=" + ".join(sources + [f"time table {table.source}"]),
        )
    return calibration
