"""A video prepared for training, and which of its frames train, validate and pair up."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import SOLID, UNKNOWN, VOID


@dataclass
class TrainingData:
    """A video prepared for training.

    Attributes
    ----------
    frames : ndarray, float32, shape (T, H, W)
    annotations : ndarray, uint8, shape (T, H, W)
        0 solid, 1 void, 255 unknown.
    nm_per_px, frame_interval_s : float or None
        Calibration (nm, s), when known.
    sim_time_per_frame : float
        Simulation time units between two frames (with uneven frame times: per median frame interval).
    frame_times_s : ndarray or None
        ``[T]`` frame times in s when the intervals are uneven: pairs of frames are then simulated for their real
        duration (:meth:`intervals`).
    """

    frames: np.ndarray
    annotations: np.ndarray
    nm_per_px: float | None
    frame_interval_s: float | None
    sim_time_per_frame: float
    frame_times_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 3:
            raise NeuradiffError(f"the video must be [frames, H, W], got shape {self.frames.shape}")
        if self.annotations.shape != self.frames.shape:
            raise NeuradiffError(
                f"annotations {self.annotations.shape} and video {self.frames.shape} differ in size or length"
            )
        bad = np.setdiff1d(np.unique(self.annotations), [SOLID, VOID, UNKNOWN])
        if bad.size:
            raise NeuradiffError(
                f"annotations hold values {bad[:5].tolist()}; only 0 (solid), 1 (void) and 255 (unknown) are allowed"
            )
        if not self.annotated_frames().size:
            raise NeuradiffError("the annotations are all unknown (255): at least one annotated frame is needed")
        if self.frame_times_s is not None:
            times = np.asarray(self.frame_times_s, dtype=float)
            if times.shape != (self.frames.shape[0],) or np.any(np.diff(times) <= 0):
                raise NeuradiffError(f"frame times must be {self.frames.shape[0]} increasing values")
            self.frame_times_s = times

    def intervals(self, starts, ends) -> np.ndarray:
        """Frame intervals to simulate from ``starts`` to ``ends`` (frame indices): ``ends - starts``, or with
        uneven frame times their real duration in median frame intervals.

        Examples
        --------
        >>> data = TrainingData(np.zeros((4, 8, 8), np.float32), np.zeros((4, 8, 8), np.uint8), None, None, 1.0,
        ...                     frame_times_s=np.array([0.0, 49.0, 126.0, 203.0]))
        >>> data.intervals([0, 1, 0], [1, 2, 3]).round(3).tolist()
        [0.636, 1.0, 2.636]
        """
        s, e = np.asarray(starts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        if self.frame_times_s is None:
            return (e - s).astype(float)
        t = self.frame_times_s
        return (t[e] - t[s]) / float(np.median(np.diff(t)))

    def annotated_frames(self) -> np.ndarray:
        """Indices of the frames with at least one annotated pixel."""
        return np.flatnonzero((self.annotations != UNKNOWN).any(axis=(1, 2)))


def split_frames(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """(training annotated frames, validation frames): one annotated frame is held out when there are ≥ 3."""
    ann = data.annotated_frames()
    if ann.size >= 3:
        val = np.array([ann[-2]])
        return np.setdiff1d(ann, val), val
    return ann, np.array([], dtype=np.int64)


def annotated_pairs(frames: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Consecutive annotated frames (a, b) at most ``max_gap`` apart."""
    return [(int(a), int(b)) for a, b in itertools.pairwise(frames) if b - a <= max_gap]
