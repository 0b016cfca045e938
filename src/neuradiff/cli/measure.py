"""``neuradiff measure``: void sizes, densities and tracks from masks, in nm and s when calibrated."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors
from neuradiff.cli.progress import progress_bars
from neuradiff.workflows import run_measure


@app.command("measure")
@friendly_errors
def measure(
    masks: Path = typer.Argument(
        ...,
        help="Masks: a three-state TIFF stack, a binary mask image or folder of them, a COCO "
        ".json or YOLO .txt label(s). Unknown (255) counts as not void.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created if needed)."),
    video: Optional[Path] = typer.Option(
        None,
        "--video",
        help="The video the masks belong to: calibration, frame names (to match "
        "mask files) and the frames for the overlay.",
    ),
    nm_per_px: Optional[float] = typer.Option(
        None, "--nm-per-px", help="Pixel size in nm (wins over the video's metadata)."
    ),
    frame_interval: Optional[float] = typer.Option(
        None, "--frame-interval", help="Time between frames in s (wins over the metadata)."
    ),
    frame_times: Optional[Path] = typer.Option(
        None,
        "--frame-times",
        help="Per-frame time table (CSV: frame,time_s[,dose][,temperature]); default: the one beside --video.",
    ),
    dose_rate: Optional[float] = typer.Option(
        None, "--dose-rate", help="Dose rate in dpa/s: adds dose (dpa) to the tables and plots."
    ),
    foil_thickness: Optional[float] = typer.Option(
        None, "--foil-thickness", help="Foil thickness in nm: adds swelling (spherical voids)."
    ),
    min_area: int = typer.Option(4, "--min-area", help="Ignore regions under this many px."),
    search_range: Optional[float] = typer.Option(
        None, "--search-range", help="Track linking range in px (default: from the void sizes)."
    ),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write overlay.mp4."),
) -> None:
    """Measure voids (size, shape, density, swelling) and track them across frames.

    Writes voids.csv, frames.csv, tracks.csv, units.json, PNG plots and overlay.mp4 into --out, only after
    everything has been computed.
    """
    with progress_bars() as progress:
        summary = run_measure(
            masks,
            out,
            video=video,
            nm_per_px=nm_per_px,
            frame_interval_s=frame_interval,
            frame_times=frame_times,
            dose_rate=dose_rate,
            foil_thickness=foil_thickness,
            min_area=min_area,
            search_range=search_range,
            overlay=overlay,
            progress=progress,
        )
    meas = summary.measurements
    calibration = meas.calibration
    length = "nm" if calibration.nm_per_px is not None else "px"
    times = "s" if calibration.times_s(summary.n_frames) is not None else "frames"
    typer.echo(
        f"measured {len(meas.voids)} voids in {len(meas.frames)} annotated frames, "
        f"{len(meas.tracks)} tracks; lengths in {length}, times in {times}"
    )
    if length == "px":
        typer.echo("note: no pixel size known, so nothing is in nm (give --nm-per-px)", err=True)
    typer.echo(f"wrote {len(summary.written)} files to {out}")
