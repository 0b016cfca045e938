"""Writing void measurements: ``voids.csv``, ``frames.csv``, ``tracks.csv``, ``units.json``, PNG plots and the
overlay video; plots computed first, each file then written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neuradiff.core.files import atomic_path, prepare_output_dir, write_bytes, write_json
from neuradiff.core.labels import UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.measure.voids import Measurements
from neuradiff.report.overlay import write_overlay
from neuradiff.report.plots import render_plots


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    """``df`` as CSV at ``path``, atomically, streamed from the table (no text copy of it in memory)."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", encoding="utf-8")


def write_measurements(
    meas: Measurements,
    out_dir,
    *,
    video_frames=None,
    masks=None,
    plots: bool = True,
    overlay: bool = True,
    progress: ProgressSink = no_progress,
) -> list[Path]:
    """Write ``voids.csv``, ``frames.csv``, ``tracks.csv``, ``units.json``, plots and the overlay.

    The plots are computed first; each file then appears whole or not at all. The tables go to disk straight
    from the data frames, last (memory: the tables once, not their text as well, beside the overlay encoder).

    Parameters
    ----------
    meas : Measurements
    out_dir : str or Path
        Created if needed.
    video_frames : ndarray or VideoSource, optional
        ``[T, H, W]`` frames for the overlay video and the trajectory plot (read one frame at a time).
    masks : ndarray or MaskStack, optional
        ``[T, H, W]`` three-state masks, for void outlines in the overlay (read one frame at a time).
    plots : bool
        Write PNG plots (time series, size histograms, trajectories).
    overlay : bool
        Write ``overlay.mp4`` (``overlay.gif`` with a warning when ffmpeg is missing); needs
        ``video_frames`` or ``masks``.

    Returns
    -------
    list of Path
        The files written.
    """
    tables = {"voids.csv": meas.voids, "frames.csv": meas.frames, "tracks.csv": meas.tracks}
    cal = meas.calibration
    info = {
        "units": meas.units,
        "notes": meas.notes,
        "params": meas.params,
        "calibration": {"nm_per_px": cal.nm_per_px, "frame_interval_s": cal.frame_interval_s, "source": cal.source},
    }
    background = None  # the first frame, under the trajectories
    if video_frames is not None and len(video_frames):
        background = np.asarray(video_frames[0])[None]
    elif masks is not None and len(masks):  # solid 0, unknown 0.5, void 1
        first = np.asarray(masks[0])
        background = np.where(first == UNKNOWN, 0.5, first == VOID)[None]
    pngs = render_plots(meas, background) if plots else {}
    created = not Path(out_dir).exists()
    out = prepare_output_dir(out_dir)
    written = []
    if overlay and background is not None:
        try:
            written.append(write_overlay(out / "overlay.mp4", meas, video_frames, masks, progress))
        except BaseException:
            if created and not any(out.iterdir()):
                out.rmdir()
            raise
    for name, table in tables.items():
        _write_csv(out / name, table)
        written.append(out / name)
    write_json(out / "units.json", info)
    written.append(out / "units.json")
    for name, data in pngs.items():
        write_bytes(out / name, data)
        written.append(out / name)
    return written


__all__ = ["write_measurements"]
