"""Grey levels of frames: each frame mapped by its own percentiles, so that gain, offset, bit depth and the slow
brightening or darkening of a recording do not reach a recognition net; blank regions (padding bands, burned-in
scale bars and labels, :mod:`neuradiff.nets.blank`) are filled with specimen-like noise first, so that they
neither set the percentiles nor reach the net as shapes."""

from __future__ import annotations

import numpy as np

from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.blank import fill_blank

#: Percentiles of a frame's grey levels mapped to -1 and +1 by :func:`normalise_frame`.
NORM_PERCENTILES = (1.0, 99.0)


def normalise_frame(frame: np.ndarray, *, index: int = 0, fill: bool = True) -> np.ndarray:
    """One frame's grey levels mapped so that its 1st and 99th percentiles become -1 and +1 (float32).

    Robust to gain, offset, bit depth and slow brightness drift between frames. Blank regions (flat, no shot noise:
    padding, burned-in overlays; :func:`neuradiff.nets.blank.blank_regions`) are first filled with noise like the
    specimen around them (:func:`neuradiff.nets.blank.fill_blank`); a frame without any is mapped as it is.

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        Raw intensities (any real dtype).
    index : int
        Frame number, for the error message.
    fill : bool
        Fill the blank regions first (False: the frame as it is).

    Returns
    -------
    ndarray float32 (H, W).

    Raises
    ------
    NeuradiffError
        If the frame holds NaN/Inf or a single value (nothing to recognise).

    Examples
    --------
    >>> f = normalise_frame(np.arange(100, dtype=np.uint16).reshape(10, 10) * 300)
    >>> float(np.percentile(f, 1)), float(np.percentile(f, 99))
    (-1.0, 1.0)
    """
    f = np.asarray(frame, dtype=np.float64)
    if f.ndim != 2:
        raise NeuradiffError(f"frame {index} must be [H, W], got shape {f.shape}")
    if not np.isfinite(f).all():
        raise NeuradiffError(f"frame {index} contains NaN or Inf")
    if fill:
        f = fill_blank(f)
    lo, hi = np.percentile(f, NORM_PERCENTILES)
    if hi <= lo:
        lo, hi = float(f.min()), float(f.max())
        if hi <= lo:
            raise NeuradiffError(f"frame {index} holds a single grey level ({lo:g}): there is nothing to recognise")
    return ((2.0 * (f - lo) / (hi - lo)) - 1.0).astype(np.float32)


def normalise_frames(frames: np.ndarray, *, first_index: int = 0) -> np.ndarray:
    """:func:`normalise_frame` of every frame of ``frames`` ``[T, H, W]`` (float32 ``[T, H, W]``); ``first_index``
    numbers the frames in error messages.

    Examples
    --------
    >>> x = np.stack([np.arange(64.0).reshape(8, 8), 3.0 * np.arange(64.0).reshape(8, 8) + 7.0])
    >>> y = normalise_frames(x)
    >>> bool(np.allclose(y[0], y[1], atol=1e-6))
    True
    """
    a = np.asarray(frames)
    if a.ndim != 3:
        raise NeuradiffError(f"frames must be [T, H, W], got shape {a.shape}")
    out = np.empty(a.shape, np.float32)
    for k in range(a.shape[0]):
        out[k] = normalise_frame(a[k], index=first_index + k)
    return out
