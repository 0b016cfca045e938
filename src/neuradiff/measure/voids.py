"""Measure voids in three-state masks: per void, per frame and per track, in nm and s when calibrated.

Nothing is invented: without a pixel size the lengths stay in px (no ``*_nm`` columns) and without
a frame interval the times stay in frames (no ``time_s``); ``Measurements.units`` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pandas as pd
from skimage.measure import label, regionprops

from neuradiff.core.checks import positive
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.io.video import Calibration
from neuradiff.measure.tracking import default_search_range_px, link_voids, track_table

SWELLING_NOTE = (
    "swelling assumes spherical voids of the equivalent diameter d through a foil of "
    "the given thickness: swelling = sum(pi/6 d^3) / (annotated area x thickness - "
    "sum(pi/6 d^3))"
)


@dataclass
class Measurements:
    """Void measurements of one video.

    Attributes
    ----------
    voids : DataFrame
        One row per void per frame: ``frame``, ``time_s``, ``dose_dpa``, ``track_id``, ``x_nm``,
        ``y_nm``, ``area_nm2``, ``eq_diameter_nm``, ``major_axis_nm``, ``minor_axis_nm``,
        ``orientation_deg``, ``circularity``, ``touches_border``, the same sizes in px
        (``x_px``, ``y_px``, ``area_px``, ``eq_diameter_px``, ...) and ``label`` (region label of
        that frame). Columns whose unit is unknown are left out.
    frames : DataFrame
        One row per annotated frame: ``count``, number density, mean/median equivalent diameter,
        area fraction and (with a foil thickness) ``swelling``. Densities and fractions are per
        annotated (not unknown) area.
    tracks : DataFrame
        One row per track: first/last frame, lifetime, mean diameter, growth and drift rates.
    units : dict
        Column name -> unit (``"px"``, ``"frame"`` when uncalibrated).
    notes : list of str
        Assumptions behind the numbers.
    calibration : Calibration
    params : dict
        Settings used (``min_area_px``, ``search_range_px``, ``memory``, dose rate, thickness).
    """

    voids: pd.DataFrame
    frames: pd.DataFrame
    tracks: pd.DataFrame
    units: dict
    notes: list[str] = field(default_factory=list)
    calibration: Calibration = field(default_factory=Calibration)
    params: dict = field(default_factory=dict)


def label_voids(void: np.ndarray, min_area_px: int = 4) -> np.ndarray:
    """Label connected void regions (8-connected) of one frame ``[H, W]``; regions smaller than
    ``min_area_px`` pixels are dropped. Returns int32 labels 1..N (0 = background)."""
    lab = np.asarray(label(np.asarray(void, bool), connectivity=2)).astype(np.int32)
    if min_area_px > 1 and lab.max():
        sizes = np.bincount(lab.ravel())
        small = sizes < min_area_px
        small[0] = False
        if small.any():
            keep = np.cumsum(~small) - 1  # new label for each old one
            keep[small] = 0
            keep[0] = 0
            lab = keep.astype(np.int32)[lab]
    return lab


def _as_masks(masks) -> tuple[np.ndarray, np.ndarray]:
    """Void and known (not unknown) boolean stacks ``[T, H, W]`` from three-state or bool masks."""
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or 0 in m.shape:
        raise NeuradiffError(f"masks must be [T, H, W], got shape {m.shape}")
    if m.dtype == bool:
        return m, np.ones(m.shape, bool)
    if m.dtype == np.uint8:
        present = np.flatnonzero(np.bincount(m.ravel(), minlength=256))
    else:
        present = np.unique(m)
    extra = sorted(set(present.tolist()) - {0, VOID, UNKNOWN})
    if extra:
        raise NeuradiffError(f"masks hold values {extra[:5]} besides 0 (solid), 1 (void) and 255 (unknown)")
    return m == VOID, m != UNKNOWN


def _orientation_deg(theta_rows: float) -> float:
    """skimage orientation (from the row axis) to degrees of the major axis from the image x axis,
    counter-clockwise as displayed, in (-90, 90]."""
    ang = np.degrees(np.arctan2(-np.cos(theta_rows), np.sin(theta_rows)))
    ang = (ang + 90.0) % 180.0 - 90.0
    return 90.0 if np.isclose(ang, -90.0) else float(ang)


def _frame_voids(lab: np.ndarray, nm: float | None) -> list[dict]:
    h, w = lab.shape
    s = nm or 1.0
    rows = []
    for r in regionprops(lab, spacing=(s, s)):
        area_px = float(np.count_nonzero(r.image))
        perim = float(r.perimeter) / s
        circ = min(1.0, 4 * np.pi * area_px / perim**2) if perim > 0 else 1.0
        r0, c0, r1, c1 = r.bbox
        row = {
            "label": int(r.label),
            "x_px": r.centroid[1] / s,
            "y_px": r.centroid[0] / s,
            "area_px": area_px,
            "eq_diameter_px": r.equivalent_diameter_area / s,
            "major_axis_px": r.axis_major_length / s,
            "minor_axis_px": r.axis_minor_length / s,
            "orientation_deg": _orientation_deg(r.orientation),
            "circularity": circ,
            "touches_border": bool(r0 == 0 or c0 == 0 or r1 == h or c1 == w),
        }
        if nm is not None:
            row.update(
                {
                    "x_nm": r.centroid[1],
                    "y_nm": r.centroid[0],
                    "area_nm2": float(r.area),
                    "eq_diameter_nm": r.equivalent_diameter_area,
                    "major_axis_nm": r.axis_major_length,
                    "minor_axis_nm": r.axis_minor_length,
                }
            )
        rows.append(row)
    return rows


def _units(L: str, T: str, has_time: bool, has_dose: bool, has_swelling: bool) -> dict:
    area = "nm^2" if L == "nm" else "px^2"
    rate = f"{L}/{'s' if T == 's' else 'frame'}"
    u = {
        "frame": "frame index (0-based)",
        "track_id": "id",
        "label": "region label in frame",
        "x_px": "px",
        "y_px": "px",
        "area_px": "px^2",
        "eq_diameter_px": "px",
        "major_axis_px": "px",
        "minor_axis_px": "px",
        "orientation_deg": "deg (major axis from image x axis, counter-clockwise as displayed)",
        "circularity": "1 (4 pi area / perimeter^2, at most 1)",
        "touches_border": "bool",
        "count": "voids",
        f"annotated_area_{L}2": area,
        f"number_density_per_{L}2": f"1/{area}",
        f"mean_eq_diameter_{L}": L,
        f"median_eq_diameter_{L}": L,
        "area_fraction": "1 (void area / annotated area)",
        "first_frame": "frame index",
        "last_frame": "frame index",
        "n_detections": "frames",
        "lifetime_frames": "frames",
        f"growth_rate_{rate.replace('/', '_per_')}": rate,
        f"drift_velocity_{rate.replace('/', '_per_')}": rate,
        f"drift_vx_{rate.replace('/', '_per_')}": rate,
        f"drift_vy_{rate.replace('/', '_per_')}": f"{rate} (positive downwards)",
    }
    if L == "nm":
        u.update(
            {
                "x_nm": "nm",
                "y_nm": "nm",
                "area_nm2": "nm^2",
                "eq_diameter_nm": "nm",
                "major_axis_nm": "nm",
                "minor_axis_nm": "nm",
            }
        )
    if has_time:
        u.update({"time_s": "s", "lifetime_s": "s"})
    if has_dose:
        u["dose_dpa"] = "dpa"
    if has_swelling:
        u["swelling"] = "1 (void volume / solid volume, spherical voids)"
    return u


@dataclass
class _Settings:
    nm: float | None
    rate: float | None
    thick: float | None
    min_area_px: int
    memory: int


def _check_settings(
    calibration: Calibration,
    dose_rate_dpa_per_s: float | None,
    foil_thickness_nm: float | None,
    min_area_px: int,
    memory: int,
    has_time: bool,
) -> _Settings:
    nm = positive("nm_per_px", calibration.nm_per_px)
    rate = positive("dose rate", dose_rate_dpa_per_s)
    thick = positive("foil thickness", foil_thickness_nm)
    if rate is not None and not has_time:
        raise NeuradiffError("a dose rate needs frame times: give the frame interval")
    if thick is not None and nm is None:
        raise NeuradiffError("swelling from a foil thickness needs the pixel size in nm")
    if int(min_area_px) < 1 or int(memory) < 0:
        raise NeuradiffError("min_area_px must be >= 1 and memory >= 0")
    return _Settings(nm, rate, thick, int(min_area_px), int(memory))


class MaskMeasurer:
    """Measure three-state masks chunk by chunk (any number of frames at a time, in order or not) and link the
    voids into tracks at the end: the per-void and per-frame rows are small, the masks are never held whole.

    ``MaskMeasurer(...).add(masks, first_frame)`` for every chunk, then :meth:`finish`, gives exactly what
    :func:`measure_masks` gives for the whole stack (which is this class fed one chunk).

    Parameters
    ----------
    n_frames : int
        Frames in the recording (for the frame times).
    calibration, dose_rate_dpa_per_s, foil_thickness_nm, min_area_px, search_range_px, memory
        As in :func:`measure_masks`.

    Examples
    --------
    >>> import numpy as np
    >>> from neuradiff.io.video import Calibration
    >>> masks = np.zeros((4, 40, 40), np.uint8)
    >>> masks[:, 5:15, 5:15] = 1
    >>> measurer = MaskMeasurer(4, calibration=Calibration(nm_per_px=0.5))
    >>> measurer.add(masks[:3], 0); measurer.add(masks[3:], 3)
    >>> measurer.finish().voids["track_id"].tolist()
    [0, 0, 0, 0]
    """

    def __init__(
        self,
        n_frames: int,
        *,
        calibration: Calibration,
        dose_rate_dpa_per_s: float | None = None,
        foil_thickness_nm: float | None = None,
        min_area_px: int = 4,
        search_range_px: float | None = None,
        memory: int = 2,
    ):
        self.n_frames = int(n_frames)
        self.calibration = calibration
        self.times = calibration.times_s(self.n_frames)
        self.settings = _check_settings(
            calibration, dose_rate_dpa_per_s, foil_thickness_nm, min_area_px, memory, self.times is not None
        )
        self.search_range_px = search_range_px
        self.void_tables: list[pd.DataFrame] = []  # one compact table per chunk, not one dict per void
        self.frame_tables: list[pd.DataFrame] = []
        self.any_known = False

    def add(self, masks, first_frame: int = 0, progress: ProgressSink = no_progress) -> None:
        """Measure the voids of ``masks`` ``[n, H, W]`` (three-state or bool), frames ``first_frame`` onwards."""
        void, known = _as_masks(masks)
        if first_frame < 0 or first_frame + void.shape[0] > self.n_frames:
            raise NeuradiffError(
                f"frames {first_frame}–{first_frame + void.shape[0] - 1} are outside the {self.n_frames} frames"
            )
        st = self.settings
        L = "nm" if st.nm else "px"
        scale = st.nm if st.nm else 1.0
        rows: list[dict] = []
        frame_rows: list[dict] = []
        for i in range(void.shape[0]):
            k = first_frame + i
            progress("measuring", k + 1, self.n_frames)
            known_px = int(known[i].sum())
            if known_px == 0:
                continue
            self.any_known = True
            fv = _frame_voids(label_voids(void[i], st.min_area_px), st.nm)
            for r in fv:
                r["frame"] = k
            rows.extend(fv)
            d = np.array([r["eq_diameter_px"] for r in fv], float) * scale
            area_known = known_px * scale**2
            fr = {
                "frame": k,
                "count": len(fv),
                f"annotated_area_{L}2": area_known,
                f"number_density_per_{L}2": len(fv) / area_known,
                f"mean_eq_diameter_{L}": float(d.mean()) if len(d) else np.nan,
                f"median_eq_diameter_{L}": float(np.median(d)) if len(d) else np.nan,
                "area_fraction": sum(r["area_px"] for r in fv) / known_px,
            }
            if st.thick is not None:
                v_void = float(np.sum(np.pi / 6 * d**3))
                solid = area_known * st.thick - v_void
                fr["swelling"] = v_void / solid if solid > 0 else np.nan
            frame_rows.append(fr)
        if rows:
            self.void_tables.append(pd.DataFrame(rows))
        if frame_rows:
            self.frame_tables.append(pd.DataFrame(frame_rows))

    def partial(self) -> MeasuredChunk:
        """The rows measured so far (to be merged into another measurer, e.g. from a worker process)."""
        voids = pd.concat(self.void_tables, ignore_index=True) if self.void_tables else None
        frames = pd.concat(self.frame_tables, ignore_index=True) if self.frame_tables else None
        return MeasuredChunk(voids, frames, self.any_known)

    def merge(self, part: MeasuredChunk) -> None:
        """Add the rows another measurer of the same recording and settings measured (its :meth:`partial`):
        chunks measured in other processes, in any order, then linked here in one pass by :meth:`finish`."""
        if part.voids is not None and len(part.voids):
            self.void_tables.append(part.voids)
        if part.frames is not None and len(part.frames):
            self.frame_tables.append(part.frames)
        self.any_known = self.any_known or part.any_known

    def finish(self) -> Measurements:
        """Link the voids measured so far into tracks (trackpy) and return the :class:`Measurements`."""
        if not self.any_known:
            raise NeuradiffError("the masks are unknown (255) everywhere: nothing to measure")
        part = self.partial()
        voids = pd.DataFrame() if part.voids is None else part.voids
        frames = pd.DataFrame() if part.frames is None else part.frames
        if len(voids):
            voids = voids.sort_values(["frame", "label"], kind="stable", ignore_index=True)
        if len(frames):
            frames = frames.sort_values("frame", kind="stable", ignore_index=True)
        return _finish(voids, frames, self.settings, self.times, self.calibration, self.search_range_px, self.n_frames)


@dataclass
class MeasuredChunk:
    """Per-void and per-frame rows of part of a recording (:meth:`MaskMeasurer.partial`); None: no rows."""

    voids: pd.DataFrame | None
    frames: pd.DataFrame | None
    any_known: bool


def _finish(
    voids: pd.DataFrame,
    frames: pd.DataFrame,
    st: _Settings,
    times: np.ndarray | None,
    calibration: Calibration,
    search_range_px: float | None,
    n: int,
) -> Measurements:
    nm, rate, thick = st.nm, st.rate, st.thick
    min_area_px, memory = st.min_area_px, st.memory
    L, T = ("nm" if nm else "px"), ("s" if times is not None else "frame")
    if voids.empty:
        voids = pd.DataFrame(
            columns=[
                "frame",
                "label",
                "x_px",
                "y_px",
                "area_px",
                "eq_diameter_px",
                "major_axis_px",
                "minor_axis_px",
                "orientation_deg",
                "circularity",
                "touches_border",
            ]
            + (["x_nm", "y_nm", "area_nm2", "eq_diameter_nm", "major_axis_nm", "minor_axis_nm"] if nm else [])
        )
    srange = (
        float(search_range_px)
        if search_range_px is not None
        else default_search_range_px(voids["eq_diameter_px"].to_numpy(float))
    )
    if not srange > 0:
        raise NeuradiffError(f"search range must be positive, got {srange}")
    voids["track_id"] = link_voids(voids, search_range_px=srange, memory=int(memory))
    if frames.empty:
        frames = pd.DataFrame(columns=["frame", "count"])
    for df in (voids, frames):
        if times is not None:
            df["time_s"] = times[df["frame"].to_numpy(int)] if len(df) else pd.Series(dtype=float)
        if rate is not None:
            df["dose_dpa"] = df["time_s"] * rate
    lead = ["frame"] + (["time_s"] if times is not None else []) + (["dose_dpa"] if rate is not None else [])
    conditions = {k: np.asarray(v) for k, v in (calibration.conditions or {}).items() if k not in lead}
    for name, values in conditions.items():  # a frame-time table's dose and temperature, per frame
        if len(values) >= n:
            frames[name] = values[frames["frame"].to_numpy(int)] if len(frames) else pd.Series(dtype=float)
    void_cols = (
        lead
        + ["track_id"]
        + (["x_nm", "y_nm", "area_nm2", "eq_diameter_nm", "major_axis_nm", "minor_axis_nm"] if nm else [])
        + [
            "orientation_deg",
            "circularity",
            "touches_border",
            "x_px",
            "y_px",
            "area_px",
            "eq_diameter_px",
            "major_axis_px",
            "minor_axis_px",
            "label",
        ]
    )
    voids = cast(pd.DataFrame, voids[void_cols]).reset_index(drop=True)
    voids["frame"] = voids["frame"].astype(int)
    voids["track_id"] = voids["track_id"].astype(int)
    frames = cast(pd.DataFrame, frames[lead + [c for c in frames.columns if c not in lead]])
    tracks = track_table(voids, length=L, time=T)

    notes = [
        f"lengths in {L}" + ("" if nm else " (no pixel size known: nothing is in nm)"),
        f"times in {T}" + ("s" if T == "frame" else "") + ("" if times is not None else " (no frame interval known)"),
        "voids are 8-connected regions of mask value 1; unknown (255) pixels are not void; "
        f"regions under {int(min_area_px)} px are ignored",
        "number density, area fraction and swelling are per annotated (not unknown) area; "
        "voids touching the border are counted (see touches_border)",
        f"tracks linked with trackpy on (x, y, eq diameter) in px, search range {srange:g} px, "
        f"memory {int(memory)} frames",
        f"calibration source: {calibration.source}",
    ]
    if thick is not None:
        notes.append(SWELLING_NOTE + f"; foil thickness {thick:g} nm")
    params = {
        "min_area_px": int(min_area_px),
        "search_range_px": srange,
        "memory": int(memory),
        "dose_rate_dpa_per_s": rate,
        "foil_thickness_nm": thick,
    }
    return Measurements(
        voids=voids,
        frames=frames,
        tracks=tracks,
        units=_units(L, T, times is not None, rate is not None, thick is not None),
        notes=notes,
        calibration=calibration,
        params=params,
    )


def measure_masks(
    masks,
    *,
    calibration: Calibration,
    dose_rate_dpa_per_s: float | None = None,
    foil_thickness_nm: float | None = None,
    min_area_px: int = 4,
    search_range_px: float | None = None,
    memory: int = 2,
    progress: ProgressSink = no_progress,
) -> Measurements:
    """Measure and track the voids of three-state masks.

    Parameters
    ----------
    masks : ndarray
        ``[T, H, W]`` uint8 three-state (0 solid, 1 void, 255 unknown) or bool (True = void).
        Unknown pixels are not void; frames that are unknown everywhere are left out.
    calibration : Calibration
        Pixel size (nm) and frame times (s); unknown values keep outputs in px / frames.
    dose_rate_dpa_per_s : float, optional
        Adds ``dose_dpa = time_s × rate`` (needs frame times).
    foil_thickness_nm : float, optional
        Adds per-frame ``swelling`` assuming spherical voids of the equivalent diameter
        (needs nm/px): ``Σ(π/6 d³) / (annotated area × thickness − Σ(π/6 d³))``.
    min_area_px : int
        Smaller regions are ignored (noise).
    search_range_px : float, optional
        Linking range in px in (x, y, diameter) space; default ``max(5, 0.5 × median diameter)``.
    memory : int
        Frames a void may be missed and keep its track id.

    Returns
    -------
    Measurements

    Examples
    --------
    >>> import numpy as np
    >>> from neuradiff.io.video import Calibration
    >>> masks = np.zeros((2, 40, 40), np.uint8)
    >>> masks[:, 5:15, 5:15] = 1  # one 10 × 10 px void in both frames
    >>> meas = measure_masks(masks, calibration=Calibration(nm_per_px=0.5, frame_interval_s=2.0))
    >>> meas.voids[["frame", "time_s", "track_id", "area_nm2"]].values.tolist()
    [[0.0, 0.0, 0.0, 25.0], [1.0, 2.0, 0.0, 25.0]]
    """
    m = np.asarray(masks)
    measurer = MaskMeasurer(
        m.shape[0] if m.ndim == 3 else 1,
        calibration=calibration,
        dose_rate_dpa_per_s=dose_rate_dpa_per_s,
        foil_thickness_nm=foil_thickness_nm,
        min_area_px=min_area_px,
        search_range_px=search_range_px,
        memory=memory,
    )
    measurer.add(m, 0, progress)
    return measurer.finish()


__all__ = ["SWELLING_NOTE", "MaskMeasurer", "MeasuredChunk", "Measurements", "label_voids", "measure_masks"]
