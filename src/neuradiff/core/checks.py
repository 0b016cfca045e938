"""Validators shared by every room: one wording for the same mistake wherever it is made.

Besides single values (:func:`positive`, :func:`in_range`, :func:`finite_array`) this module holds the resource
guards: a request whose estimated memory (:func:`check_memory`) or amount of computation (:func:`check_work`) is
over a stated limit is refused before anything runs, with the estimate and how to allow it. The limits come from
the environment variables ``NEURADIFF_MAX_MEMORY_GB`` (default: 3/4 of the machine's memory) and
``NEURADIFF_MAX_WORK`` (default :data:`DEFAULT_MAX_WORK` cell updates).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from neuradiff.core.errors import NeuradiffError

#: Default limit of :func:`check_work`, in cell updates (pixels × time steps or iterations × pixels).
DEFAULT_MAX_WORK = 2e11
#: Cell updates per second one CPU core manages in the phase-field model (0.9e6 measured on a 128² grid, Euler).
CELL_UPDATES_PER_S = 1e6
MEMORY_ENV = "NEURADIFF_MAX_MEMORY_GB"
WORK_ENV = "NEURADIFF_MAX_WORK"

#: Physical ranges of calibrations: pixel size 0.1 pm – 1 mm, frame interval 1 ns – 30 days.
NM_PER_PX_RANGE = (1e-4, 1e6)
FRAME_INTERVAL_S_RANGE = (1e-9, 2.6e6)


def positive(name: str, value: Any) -> float | None:
    """``value`` as a positive finite float, ``None`` kept; otherwise :class:`NeuradiffError` naming ``name``.

    Examples
    --------
    >>> positive("nm_per_px", "0.5")
    0.5
    >>> positive("frame interval", None) is None
    True
    """
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise NeuradiffError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise NeuradiffError(f"{name} must be a positive number, got {number}")
    return number


def in_range(name: str, value: Any, lo: float, hi: float, unit: str = "") -> float | None:
    """``value`` as a finite float in ``[lo, hi]`` (``None`` kept); otherwise one :class:`NeuradiffError` that
    names ``name``, the range and the unit.

    Examples
    --------
    >>> in_range("--nm-per-px", 0.5, *NM_PER_PX_RANGE, "nm")
    0.5
    >>> in_range("--nm-per-px", 1e-20, *NM_PER_PX_RANGE, "nm")
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: --nm-per-px must be between 0.0001 and 1e+06 nm, got 1e-20
    """
    number = positive(name, value) if lo > 0 else _number(name, value)
    if number is None:
        return None
    if not lo <= number <= hi:
        raise NeuradiffError(f"{name} must be between {lo:g} and {hi:g}{' ' + unit if unit else ''}, got {number:.6g}")
    return number


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise NeuradiffError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise NeuradiffError(f"{name} must be a finite number, got {number}")
    return number


def check_pixel_size(name: str, value: Any) -> float | None:
    """A pixel size in nm within :data:`NM_PER_PX_RANGE` (``None`` kept)."""
    return in_range(name, value, *NM_PER_PX_RANGE, "nm")


def check_frame_interval(name: str, value: Any) -> float | None:
    """A time between frames in s within :data:`FRAME_INTERVAL_S_RANGE` (``None`` kept)."""
    return in_range(name, value, *FRAME_INTERVAL_S_RANGE, "s")


def finite_array(where: str, values: np.ndarray, what: str = "pixels") -> None:
    """Refuse an array holding NaN or ±inf, saying how many and where the first one is.

    Parameters
    ----------
    where : str
        Names the source in the message (e.g. the file).
    values : ndarray
        ``[T, H, W]`` frames (or any array); integer arrays always pass.

    Examples
    --------
    >>> finite_array("video.tif", np.zeros((2, 4, 4), np.float32))
    >>> finite_array("video.tif", np.array([[[0.0, np.nan]]]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: video.tif: holds 1 NaN/inf pixels (the first in frame 0); ...
    """
    a = np.asarray(values)
    if a.dtype.kind not in "fc":
        return
    bad_frames = []
    n_bad = 0
    frames = a.reshape((a.shape[0], -1)) if a.ndim >= 2 else a.reshape((1, -1))
    for k, frame in enumerate(frames):  # frame by frame: no full-size temporary for a long recording
        count = int(frame.size - np.count_nonzero(np.isfinite(frame)))
        if count:
            n_bad += count
            bad_frames.append(k)
    if n_bad:
        raise NeuradiffError(
            f"{where}: holds {n_bad} NaN/inf {what} (the first in frame {bad_frames[0]}); neuradiff needs finite values"
        )


# --------------------------------------------------------------------------- resource guards


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise NeuradiffError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value > 0 or math.isnan(value):
        raise NeuradiffError(f"environment variable {name} must be a positive number, got {raw!r}")
    return value


def memory_limit_bytes() -> float:
    """The memory limit of :func:`check_memory` in bytes: ``NEURADIFF_MAX_MEMORY_GB`` or 3/4 of the RAM."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        ram = 16 * 2**30
    return _env_float(MEMORY_ENV, 0.75 * ram / 2**30) * 2**30


def work_limit() -> float:
    """The limit of :func:`check_work` in cell updates: ``NEURADIFF_MAX_WORK`` or :data:`DEFAULT_MAX_WORK`."""
    return _env_float(WORK_ENV, DEFAULT_MAX_WORK)


def human_bytes(n: float) -> str:
    """``n`` bytes as a short text (``'1.5 GB'``).

    Examples
    --------
    >>> human_bytes(3 * 2**30)
    '3.22 GB'
    """
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def human_seconds(s: float) -> str:
    """A duration as a short text (``'3.5 h'``)."""
    for unit, size in (("years", 3.15e7), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.2g} s"


def check_memory(what: str, n_bytes: float, detail: str = "") -> None:
    """Refuse ``what`` when its estimated memory ``n_bytes`` is over :func:`memory_limit_bytes`.

    Examples
    --------
    >>> check_memory("simulate", 1e6)
    >>> check_memory("simulate", 1e20, "1000000000 frames of 96×96 px")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: simulate would need about 100 EB of memory (1000000000 frames ...
    """
    limit = memory_limit_bytes()
    if not n_bytes <= limit:
        size = human_bytes(n_bytes) if n_bytes < 1e18 else f"{n_bytes / 1e18:.3g} EB"
        raise NeuradiffError(
            f"{what} would need about {size} of memory{f' ({detail})' if detail else ''}, over the limit of "
            f"{human_bytes(limit)}; set {MEMORY_ENV} to allow more"
        )


def check_work(what: str, cell_updates: float, detail: str = "") -> None:
    """Refuse ``what`` when its estimated computation (cell updates) is over :func:`work_limit`.

    Examples
    --------
    >>> check_work("simulate-fields", 128 * 128 * 2000)
    >>> check_work("simulate-fields", 128 * 128 * 1e9, "128×128 px × 1000000000 steps")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: simulate-fields would take about 1.64e+13 cell updates (128×128 px ...
    """
    limit = work_limit()
    if not cell_updates <= limit:
        raise NeuradiffError(
            f"{what} would take about {cell_updates:.3g} cell updates{f' ({detail})' if detail else ''}, "
            f"roughly {human_seconds(cell_updates / CELL_UPDATES_PER_S)} on one CPU core, over the limit of "
            f"{limit:.3g}; set {WORK_ENV} to allow more"
        )


def torch_device(name: str) -> torch.device:
    """A torch device this build can use; otherwise one :class:`NeuradiffError`.

    Examples
    --------
    >>> torch_device("cpu")
    device(type='cpu')
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise NeuradiffError(f"unknown torch device {name!r}; use e.g. cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise NeuradiffError(f"device {name!r} is not available: this torch build or machine has no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NeuradiffError(f"device {name!r} is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise NeuradiffError(f"device {name!r} is not supported; use cpu, cuda or mps")
    return device
