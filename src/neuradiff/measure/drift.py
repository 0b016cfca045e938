"""Rigid drift of a recording: sub-pixel shifts between frames by phase correlation (scikit-image), and frames
moved back onto the first one.

Each frame is registered to the one before it (the sample changes slowly, so consecutive frames look alike) and
the shifts are summed; the summed estimate is then refined by registering each frame to the mean of the frames
already aligned, which keeps the error of the sum from growing along the video.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from neuradiff.core.errors import NeuradiffError

#: Phase correlation is refined to 1/UPSAMPLE px.
UPSAMPLE = 50
#: Frames in the running reference of the refinement pass.
REFERENCE_FRAMES = 8


def _prepare(frame: np.ndarray) -> np.ndarray:
    """A frame ready for phase correlation: float, zero mean, a Hann window against edge effects."""
    f = np.asarray(frame, dtype=np.float64)
    f = f - f.mean()
    window = np.outer(np.hanning(f.shape[0]), np.hanning(f.shape[1]))
    return f * window


def _shift(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """``(dy, dx)`` that moves ``moving`` onto ``reference`` (px)."""
    options: dict = {"upsample_factor": UPSAMPLE, "normalization": None}  # plain cross-power spectrum
    shift, _, _ = phase_cross_correlation(_prepare(reference), _prepare(moving), **options)
    return np.asarray(shift, dtype=np.float64)


def shift_frames(frames: np.ndarray, shifts: np.ndarray, *, order: int = 1) -> np.ndarray:
    """Move frame ``k`` by ``shifts[k]`` ``(dy, dx)`` px (linear interpolation, edges repeated).

    Parameters
    ----------
    frames : ndarray
        ``[T, H, W]``.
    shifts : ndarray
        ``[T, 2]`` px.
    order : int
        Spline order (0 for label images such as masks).
    """
    frames = np.asarray(frames)
    out = np.empty(frames.shape, dtype=np.float32 if frames.dtype.kind != "f" else frames.dtype)
    for k in range(frames.shape[0]):
        out[k] = ndimage.shift(
            frames[k].astype(np.float64), shifts[k], order=order, mode="nearest", prefilter=order > 1
        )
    if frames.dtype.kind in "ui":
        info = np.iinfo(frames.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(frames.dtype)
    return out


def estimate_drift(frames: np.ndarray) -> np.ndarray:
    """Rigid drift of every frame relative to the first, by sub-pixel phase correlation.

    Parameters
    ----------
    frames : ndarray
        ``[T, H, W]`` grey frames.

    Returns
    -------
    ndarray
        ``[T, 2]`` drift ``(dy, dx)`` in px of frame ``k`` relative to frame 0 (row 0 is zero): the content of
        frame 0 at ``(y, x)`` is at ``(y + dy, x + dx)`` in frame ``k``. ``shift_frames(frames, -drift)`` aligns
        the video on its first frame.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> scene = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64)), 2)
    >>> video = np.stack([scene, ndimage.shift(scene, (1.5, -2.25), mode="nearest")])
    >>> np.round(estimate_drift(video)[1], 1)
    array([ 1.5, -2.2])
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0 or min(frames.shape[1:]) < 8:
        raise NeuradiffError(f"drift needs [T, H, W] frames of at least 8x8 px, got shape {frames.shape}")
    if not np.all(np.isfinite(frames)):
        raise NeuradiffError("drift cannot be estimated: the frames hold NaN or infinite values")
    t = frames.shape[0]
    drift = np.zeros((t, 2))
    for k in range(1, t):  # pass 1: consecutive frames, summed
        drift[k] = drift[k - 1] - _shift(frames[k - 1], frames[k])
    # pass 2: each frame, moved back by its estimate, against the mean of the aligned frames before it; the
    # residual is small, so the window (which does not move with the content) biases it little
    # (and only inside the part of the field of view every frame shows, so the repeated edges do not count)
    aligned = shift_frames(frames.astype(np.float32), -drift, order=3)
    h, w = frames.shape[1:]
    m = int(np.ceil(np.abs(drift).max())) + 2
    my, mx = min(m, (h - 16) // 2), min(m, (w - 16) // 2)
    inner = (slice(max(my, 0), h - max(my, 0)), slice(max(mx, 0), w - max(mx, 0)))
    for _ in range(2):
        for k in range(1, t):
            lo = max(0, k - REFERENCE_FRAMES)
            drift[k] -= _shift(aligned[lo:k].mean(axis=0)[inner], aligned[k][inner])
            aligned[k] = shift_frames(frames[k : k + 1].astype(np.float32), -drift[k : k + 1], order=3)[0]
    return drift


__all__ = ["estimate_drift", "shift_frames"]
