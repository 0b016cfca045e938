"""``neuradiff measure``: void sizes, densities and tracks from masks, in nm and s when calibrated."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, fail, friendly_errors


def _check_positive(option: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        fail(f"{option} must be a positive number, got {value}")


@app.command("measure")
@friendly_errors
def measure(
    masks: Path = typer.Argument(
        ..., help="Masks: a three-state TIFF stack, a binary mask image or folder of them, a COCO "
                  ".json or YOLO .txt label(s). Unknown (255) counts as not void."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if needed)."),
    video: Optional[Path] = typer.Option(
        None, "--video", help="The video the masks belong to: calibration, frame names (to match "
                              "mask files) and the frames for the overlay."),
    nm_per_px: Optional[float] = typer.Option(
        None, "--nm-per-px", help="Pixel size in nm (wins over the video's metadata)."),
    frame_interval: Optional[float] = typer.Option(
        None, "--frame-interval", help="Time between frames in s (wins over the metadata)."),
    dose_rate: Optional[float] = typer.Option(
        None, "--dose-rate", help="Dose rate in dpa/s: adds dose (dpa) to the tables and plots."),
    foil_thickness: Optional[float] = typer.Option(
        None, "--foil-thickness", help="Foil thickness in nm: adds swelling (spherical voids)."),
    min_area: int = typer.Option(4, "--min-area", help="Ignore regions under this many px."),
    search_range: Optional[float] = typer.Option(
        None, "--search-range", help="Track linking range in px (default: from the void sizes)."),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write overlay.mp4."),
) -> None:
    """Measure voids (size, shape, density, swelling) and track them across frames.

    Writes voids.csv, frames.csv, tracks.csv, units.json, PNG plots and overlay.mp4 into --out, only after everything has been computed.
    """
    from neuradiff.analysis.measure import measure_masks, write_measurements
    from neuradiff.data.annotations import read_annotations
    from neuradiff.data.io import Calibration, read_video

    for option, value in (("--nm-per-px", nm_per_px), ("--frame-interval", frame_interval),
                          ("--dose-rate", dose_rate), ("--foil-thickness", foil_thickness),
                          ("--search-range", search_range)):
        _check_positive(option, value)
    if min_area < 1:
        fail(f"--min-area must be >= 1, got {min_area}")

    vid = None
    if video is not None:
        vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval)
        calibration = vid.calibration
    else:
        given = nm_per_px is not None or frame_interval is not None
        calibration = Calibration(nm_per_px=nm_per_px, frame_interval_s=frame_interval,
                                  frame_times_s=None, source="override" if given else "none")
    three_state = read_annotations(masks, video=vid)
    meas = measure_masks(three_state, calibration=calibration, dose_rate_dpa_per_s=dose_rate,
                         foil_thickness_nm=foil_thickness, min_area_px=min_area,
                         search_range_px=search_range)
    written = write_measurements(meas, out, video_frames=None if vid is None else vid.frames,
                                 masks=three_state, overlay=overlay)

    length = "nm" if calibration.nm_per_px is not None else "px"
    times = "s" if calibration.times_s(len(three_state)) is not None else "frames"
    typer.echo(f"measured {len(meas.voids)} voids in {len(meas.frames)} annotated frames, "
               f"{len(meas.tracks)} tracks; lengths in {length}, times in {times}")
    if length == "px":
        typer.echo("note: no pixel size known, so nothing is in nm (give --nm-per-px)", err=True)
    typer.echo(f"wrote {len(written)} files to {out}")
