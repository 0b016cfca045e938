"""``neuradiff batch``: every recording of a folder tree, resumable, on a local or remote Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, echo_err, friendly_errors
from neuradiff.cli.fit import GENERALIST_NOTE, clipped_recordings_note, parse_size
from neuradiff.cli.progress import progress_bars
from neuradiff.workflows.batch import RecordingResult, run_batch
from neuradiff.workflows.cluster import default_workers
from neuradiff.workflows.track import CLIPPED_NOTE_SHARE, recording_clipped_share


@app.command("batch")
@friendly_errors
def batch(
    folder: Path = typer.Argument(..., help="Folder tree of recordings (TIFF stacks, image folders, movies, ...)."),
    out: Path = typer.Option(..., "--out", help="Batch folder: one sub-folder per recording, manifest, tables."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model folder written by neuradiff fit (default: the shipped generalist recogniser)."
    ),
    workers: Optional[int] = typer.Option(
        None, help="Recordings processed side by side on a local Dask cluster (default: one per CPU core)."
    ),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Address of a running Dask scheduler (tcp://host:8786) instead of a local one."
    ),
    threads: int = typer.Option(1, help="torch CPU threads per worker."),
    span: Optional[int] = typer.Option(
        None,
        "--span",
        min=1,
        help="Split recordings longer than this many frames into parts tracked by the workers side by side "
        "(linked across part borders: the same tables); for folders of fewer long recordings than workers.",
    ),
    nm_per_px: Optional[float] = typer.Option(None, "--nm-per-px", help="Pixel size (nm) for every recording."),
    frame_interval: Optional[float] = typer.Option(
        None, "--frame-interval", help="Frame interval (s) for every recording."
    ),
    require_nm: bool = typer.Option(
        False, "--require-nm", help="Fail (and report) recordings without a pixel size instead of measuring in px."
    ),
    overlay: bool = typer.Option(True, "--overlay/--no-overlay", help="Write each recording's overlay.mp4."),
    void_size: Optional[str] = typer.Option(
        None,
        "--void-size",
        help="Expected void diameter, e.g. 12px or 4nm (generalist only; nm from each recording's pixel size), or "
        "auto: each recording's resampling factor chosen by the recogniser from three of its frames.",
    ),
    conditions: Optional[Path] = typer.Option(
        None, "--conditions", help="CSV: recording, temperature, dose, ... (default: FOLDER/conditions.csv)."
    ),
) -> None:
    """Track and measure every recording below FOLDER; a second call resumes and skips what is done.

    Exit status: 0 when every recording went through, 1 when some failed (each is named, with its reason,
    here and in OUT/manifest.json), 2 for bad input to the batch itself.
    """

    def report(result: RecordingResult) -> None:
        if result.status != "done":
            echo_err(f"neuradiff: {result.name}: failed: {result.error}")

    size, unit = parse_size(void_size)
    with progress_bars() as progress:
        summary = run_batch(
            folder,
            out,
            model=model,
            workers=default_workers() if workers is None else workers,
            scheduler=scheduler,
            threads=threads,
            nm_per_px=nm_per_px,
            frame_interval_s=frame_interval,
            require_nm=require_nm,
            overlay=overlay,
            conditions=conditions,
            void_size=size,
            void_size_unit=unit,
            progress=progress,
            on_result=report,
            span=span,
        )
    if model is None:
        echo_err(GENERALIST_NOTE)
        done = [r for r in summary.results if r.status == "done"]
        shares = [(r.name, recording_clipped_share(r.input)) for r in done]
        clipped = [(name, share) for name, share in shares if share >= CLIPPED_NOTE_SHARE]
        if clipped:
            echo_err(clipped_recordings_note(clipped, len(done)))
    n, failed = len(summary.results), len(summary.failed)
    typer.echo(
        f"wrote {out}: {n - failed} of {n} recordings done ({summary.skipped} already done before), "
        f"{failed} failed; tables: {', '.join(summary.files)}"
    )
    if failed:
        raise typer.Exit(1)
