"""Writing void measurements: ``voids.csv``, ``frames.csv``, ``tracks.csv``, ``units.json``, PNG plots and the
overlay video; everything computed first, each file then written whole or not at all."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from neuradiff.core.files import prepare_output_dir, write_bytes, write_json, write_text
from neuradiff.core.labels import UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.measure.voids import Measurements
from neuradiff.report.overlay import write_overlay
from neuradiff.report.plots import render_plots


def _csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


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

    Everything is computed first; each file then appears whole or not at all.

    Parameters
    ----------
    meas : Measurements
    out_dir : str or Path
        Created if needed.
    video_frames : ndarray, optional
        ``[T, H, W]`` frames for the overlay video and the trajectory plot.
    masks : ndarray, optional
        ``[T, H, W]`` three-state masks, for void outlines in the overlay.
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
    texts = {"voids.csv": _csv(meas.voids), "frames.csv": _csv(meas.frames), "tracks.csv": _csv(meas.tracks)}
    cal = meas.calibration
    info = {
        "units": meas.units,
        "notes": meas.notes,
        "params": meas.params,
        "calibration": {"nm_per_px": cal.nm_per_px, "frame_interval_s": cal.frame_interval_s, "source": cal.source},
    }
    background = video_frames
    if background is None and masks is not None:  # solid 0, unknown 0.5, void 1
        background = np.where(np.asarray(masks) == UNKNOWN, 0.5, np.asarray(masks) == VOID)
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
    for name, text in texts.items():
        write_text(out / name, text)
        written.append(out / name)
    write_json(out / "units.json", info)
    written.append(out / "units.json")
    for name, data in pngs.items():
        write_bytes(out / name, data)
        written.append(out / name)
    return written


__all__ = ["write_measurements"]
