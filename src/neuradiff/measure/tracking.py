"""Link voids across frames (trackpy) and summarise each track (lifetime, growth rate, drift).

trackpy 0.7 works with the pandas 3 it was checked against; it emits a pandas deprecation warning
(``inplace`` in ``sort_values``) that is silenced here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import trackpy

from neuradiff.core.errors import NeuradiffError


def default_search_range_px(eq_diameter_px: np.ndarray) -> float:
    """Linking radius when none is given: ``max(5, 0.5 × median equivalent diameter)`` px."""
    d = np.asarray(eq_diameter_px, float)
    return float(max(5.0, 0.5 * np.median(d))) if d.size else 5.0


def link_voids(voids: pd.DataFrame, *, search_range_px: float, memory: int = 2) -> np.ndarray:
    """Track id of every void, linking centroids and sizes frame to frame with ``trackpy.link``.

    Parameters
    ----------
    voids : DataFrame
        One row per void with ``frame``, ``x_px``, ``y_px`` and ``eq_diameter_px``; the equivalent
        diameter is a third linking coordinate, so a void may not jump in size either.
    search_range_px : float
        Largest distance in (x, y, diameter) space, in px, between linked voids.
    memory : int
        Frames a void may vanish for and still keep its id.

    Returns
    -------
    ndarray
        ``[N]`` int track ids, numbered 0, 1, ... in order of first appearance.
    """
    if voids.empty:
        return np.zeros(0, dtype=int)
    trackpy.quiet()
    feats = pd.DataFrame(
        {
            "frame": voids["frame"].to_numpy(int),
            "x": voids["x_px"].to_numpy(float),
            "y": voids["y_px"].to_numpy(float),
            "d": voids["eq_diameter_px"].to_numpy(float),
        }
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            linked = trackpy.link(
                feats,
                search_range=float(search_range_px),
                memory=int(memory),
                pos_columns=["x", "y", "d"],
                t_column="frame",
            )
    except trackpy.SubnetOversizeException:
        raise NeuradiffError(
            f"too many voids within the linking range of {search_range_px:g} px; give a smaller search range"
        ) from None
    raw = linked["particle"].reindex(feats.index).to_numpy(int)
    order = np.lexsort((np.arange(len(raw)), feats["frame"].to_numpy()))
    renumber: dict[int, int] = {}
    for i in order:
        renumber.setdefault(int(raw[i]), len(renumber))
    return np.array([renumber[int(p)] for p in raw], dtype=int)


def _slope(t: np.ndarray, y: np.ndarray) -> float:
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(np.polyfit(t, y, 1)[0])


def track_table(voids: pd.DataFrame, *, length: str, time: str) -> pd.DataFrame:
    """One row per track: first/last frame, lifetime, mean size, growth rate and drift velocity.

    Parameters
    ----------
    voids : DataFrame
        Voids with ``track_id``, ``frame``, ``x_<length>``, ``y_<length>``,
        ``eq_diameter_<length>`` and, when ``time == "s"``, ``time_s``.
    length : {"nm", "px"}
        Length unit of the rates.
    time : {"s", "frame"}
        Time unit of the rates.

    Returns
    -------
    DataFrame
        Lifetime is the time from the first to the last detection (0 for one-frame tracks).
        Rates are least-squares slopes against time (NaN for one-frame tracks); drift ``vy`` is
        positive downwards (image rows).
    """
    rate = f"{length}_per_{time}"
    cols = ["track_id", "first_frame", "last_frame", "n_detections", "lifetime_frames"]
    cols += ["lifetime_s"] if time == "s" else []
    cols += [
        f"mean_eq_diameter_{length}",
        f"growth_rate_{rate}",
        f"drift_velocity_{rate}",
        f"drift_vx_{rate}",
        f"drift_vy_{rate}",
    ]
    rows = []
    for _, g in voids.groupby("track_id", sort=True):
        g = g.sort_values("frame")
        t = g["time_s"].to_numpy(float) if time == "s" else g["frame"].to_numpy(float)
        vx = _slope(t, g[f"x_{length}"].to_numpy(float))
        vy = _slope(t, g[f"y_{length}"].to_numpy(float))
        row: dict[str, float] = {
            "track_id": int(g["track_id"].iloc[0]),
            "first_frame": int(g["frame"].iloc[0]),
            "last_frame": int(g["frame"].iloc[-1]),
            "n_detections": len(g),
            "lifetime_frames": int(g["frame"].iloc[-1] - g["frame"].iloc[0]),
        }
        if time == "s":
            row["lifetime_s"] = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        row[f"mean_eq_diameter_{length}"] = float(g[f"eq_diameter_{length}"].mean())
        row[f"growth_rate_{rate}"] = _slope(t, g[f"eq_diameter_{length}"].to_numpy(float))
        row[f"drift_velocity_{rate}"] = float(np.hypot(vx, vy))
        row[f"drift_vx_{rate}"] = vx
        row[f"drift_vy_{rate}"] = vy
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


__all__ = ["default_search_range_px", "link_voids", "track_table"]
