"""``neuradiff measure``: void sizes, densities and tracks from masks, in nm and s when calibrated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neuradiff.core.checks import positive
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.io.annotations import read_annotations
from neuradiff.io.video import Calibration, read_calibration, read_video
from neuradiff.measure.voids import Measurements, measure_masks
from neuradiff.report.measurements import write_measurements


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
    dose_rate: float | None = None,
    foil_thickness: float | None = None,
    min_area: int = 4,
    search_range: float | None = None,
    overlay: bool = True,
    progress: ProgressSink = no_progress,
) -> MeasureSummary:
    """Measure every void of ``masks`` (any annotation format) and write the tables, plots, overlay and
    ``provenance.json``. Without ``video``, the calibration comes from the mask stack's metadata (a calibrated
    ``masks.tif`` from ``neuradiff track``); ``nm_per_px`` and ``frame_interval_s`` win over it."""
    for option, value in (
        ("--nm-per-px", nm_per_px),
        ("--frame-interval", frame_interval_s),
        ("--dose-rate", dose_rate),
        ("--foil-thickness", foil_thickness),
        ("--search-range", search_range),
    ):
        positive(option, value)
    if min_area < 1:
        raise ValueError(f"--min-area must be >= 1, got {min_area}")
    vid = None
    if video is not None:
        vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
        calibration = vid.calibration
    else:  # the mask stack's own calibration (a calibrated masks.tif), with the options winning
        stored = read_calibration(masks)
        given = nm_per_px is not None or frame_interval_s is not None
        sources = [stored.source] if stored.source != "none" else []
        calibration = Calibration(
            nm_per_px=stored.nm_per_px if nm_per_px is None else nm_per_px,
            frame_interval_s=stored.frame_interval_s if frame_interval_s is None else frame_interval_s,
            frame_times_s=stored.frame_times_s if frame_interval_s is None else None,
            source=" + ".join(sources + ["override"] * given) or "none",
        )
    three_state = read_annotations(masks, video=vid)
    meas = measure_masks(
        three_state,
        calibration=calibration,
        dose_rate_dpa_per_s=dose_rate,
        foil_thickness_nm=foil_thickness,
        min_area_px=min_area,
        search_range_px=search_range,
        progress=progress,
    )
    written = write_measurements(
        meas,
        out,
        video_frames=None if vid is None else vid.frames,
        masks=three_state,
        overlay=overlay,
        progress=progress,
    )
    record = provenance(
        "measure",
        inputs={"masks": masks, "video": video},
        settings={
            "nm_per_px": nm_per_px,
            "frame_interval_s": frame_interval_s,
            "dose_rate": dose_rate,
            "foil_thickness": foil_thickness,
            "min_area": min_area,
            "search_range": search_range,
            "overlay": overlay,
        },
        calibration=calibration.describe(len(three_state)),
    )
    written.append(write_provenance(out, record))
    return MeasureSummary(meas, written, len(three_state))
