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
        Simulation time units between two frames.
    """

    frames: np.ndarray
    annotations: np.ndarray
    nm_per_px: float | None
    frame_interval_s: float | None
    sim_time_per_frame: float

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
