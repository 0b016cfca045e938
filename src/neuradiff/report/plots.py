"""PNG plots of void measurements (matplotlib's object API on the Agg canvas: no global state)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from neuradiff.measure.voids import Measurements
from neuradiff.methods.posterior import ForecastBand

# --------------------------------------------------------------------------- PNG plots


def figure(rows: int = 1, cols: int = 1, size=(6.4, 4.0), layout: Literal["constrained"] | None = "constrained"):
    """A figure on its own Agg canvas and its axes as a 2-D array."""
    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (120 dpi)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    return buf.getvalue()


def _integer_ticks():
    return MaxNLocator(integer=True)


def _units(meas: Measurements):
    L = "nm" if meas.calibration.nm_per_px is not None and "x_nm" in meas.voids else "px"
    has_time = "time_s" in meas.frames.columns
    return L, has_time


def _time_series(meas: Measurements) -> bytes:
    L, has_time = _units(meas)
    fr = meas.frames
    t = fr["time_s"] if has_time else fr["frame"]
    fig, ax = figure(2, 1, (6.4, 5.6))
    ax[0, 0].plot(t, fr[f"mean_eq_diameter_{L}"], "o-", ms=3)
    ax[0, 0].set_ylabel(f"mean equivalent diameter ({L})")
    ax[1, 0].plot(t, fr["count"], "o-", ms=3, color="C1")
    ax[1, 0].set_ylabel("void count")
    ax[1, 0].yaxis.set_major_locator(_integer_ticks())
    ax[1, 0].set_ylim(0, max(1, int(fr["count"].max())) + 1)
    ax[1, 0].set_xlabel("time (s)" if has_time else "frame")
    rate = meas.params.get("dose_rate_dpa_per_s")
    if rate and has_time:
        top = ax[0, 0].secondary_xaxis("top", functions=(lambda x: x * rate, lambda d: d / rate))
        top.set_xlabel("dose (dpa)")
    return png_bytes(fig)


def _histograms(meas: Measurements) -> bytes:
    L, has_time = _units(meas)
    frames = meas.frames["frame"].to_numpy(int)
    picks = sorted({int(frames[0]), int(frames[len(frames) // 2]), int(frames[-1])}) if len(frames) else []
    fig, ax = figure(1, max(1, len(picks)), (3.2 * max(1, len(picks)), 3.4))
    col = f"eq_diameter_{L}"
    d_all = meas.voids[col].to_numpy(float)
    bins = np.linspace(0, d_all.max() * 1.05, 21) if d_all.size else 10
    for a, k in zip(ax[0], picks):
        d = meas.voids.loc[meas.voids["frame"] == k, col].to_numpy(float)
        a.hist(d, bins=bins, color="C0", edgecolor="white")
        when = ""
        if has_time:
            when = f", t = {meas.frames.loc[meas.frames['frame'] == k, 'time_s'].iloc[0]:.3g} s"
        a.set_title(f"frame {k}{when} (n = {len(d)})", fontsize=9)
        a.set_xlabel(f"equivalent diameter ({L})")
        a.set_ylabel("voids")
        a.yaxis.set_major_locator(_integer_ticks())
    return png_bytes(fig)


def _trajectories(meas: Measurements, background) -> bytes:
    L, _ = _units(meas)
    s = meas.calibration.nm_per_px if L == "nm" and meas.calibration.nm_per_px else 1.0
    fig, ax = figure(1, 1, (6.0, 6.0))
    a = ax[0, 0]
    if background is not None and len(background):
        img = np.asarray(background[0], float)
        h, w = img.shape
        a.imshow(img, cmap="gray", extent=(-0.5 * s, (w - 0.5) * s, (h - 0.5) * s, -0.5 * s))
    v = meas.voids.sort_values(["track_id", "frame"], kind="stable")
    xy = np.column_stack([v["x_px"].to_numpy(float), v["y_px"].to_numpy(float)]) * s
    first = np.flatnonzero(np.r_[True, np.diff(v["track_id"].to_numpy()) != 0])
    tracks = np.split(xy, first[1:])
    if tracks and len(xy):  # one collection for all tracks: thousands of tracks stay a fraction of a second
        colours = [f"C{k % 10}" for k in range(len(tracks))]
        a.add_collection(LineCollection(tracks, colors=colours, linewidths=1), autolim=True)
        a.plot(xy[first, 0], xy[first, 1], "o", ms=2, color="red", ls="none")
    a.set_xlabel(f"x ({L})")
    a.set_ylabel(f"y ({L})")
    a.set_title("void trajectories over the first frame", fontsize=10)
    a.set_aspect("equal")
    if background is None:
        a.autoscale_view()
        a.invert_yaxis()
    return png_bytes(fig)


def render_plots(meas: Measurements, background=None) -> dict[str, bytes]:
    """PNG images by file name: ``time_series.png``, ``size_histograms.png``, ``trajectories.png``.

    ``background``: ``[T, H, W]`` frames (or masks) shown under the trajectories.
    """
    if meas.frames.empty:
        return {}
    return {
        "time_series.png": _time_series(meas),
        "size_histograms.png": _histograms(meas),
        "trajectories.png": _trajectories(meas, background),
    }


__all__ = ["figure", "png_bytes", "render_plots"]


def band_plot(band: ForecastBand, *, time_s: np.ndarray | None = None, truth_area: np.ndarray | None = None) -> bytes:
    """PNG of a forecast's void area and mean radius with their 90 % band (vs time in s when given, else frames),
    with the true area when known."""
    fig, ax = figure(1, 2, size=(9.0, 3.6))
    x = band.frames if time_s is None else time_s
    xlabel = "frame" if time_s is None else "time (s)"
    u = band.unit_length
    for a, (mid, lo, hi, label) in zip(
        ax[0],
        (
            (band.area, band.area_lo, band.area_hi, f"void area ({u}²)"),
            (band.radius, band.radius_lo, band.radius_hi, f"mean void radius ({u})"),
        ),
    ):
        a.fill_between(x, lo, hi, color="tab:blue", alpha=0.25, linewidth=0, label="90 % band")
        a.plot(x, mid, color="tab:blue", label="forecast")
        a.set_xlabel(xlabel)
        a.set_ylabel(label)
    if truth_area is not None:
        ax[0, 0].plot(x, truth_area, color="black", linestyle="--", label="truth")
    ax[0, 0].legend(loc="best", fontsize="small")
    return png_bytes(fig)
