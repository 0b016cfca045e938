"""Noise of a recording reduced before recognition: a spatial Gaussian, non-local means (scikit-image, with the
noise level estimated in every frame) or a median over a few consecutive frames.

Every method works frame by frame or over a window of frames centred on each frame, so a recording processed
chunk by chunk (:meth:`Denoise.chunks`, reading ``Denoise.halo`` frames beyond each chunk border) gives exactly
what the whole recording at once gives (:meth:`Denoise.apply`). Denoised frames are float32 on the scale of the
input frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.restoration import denoise_nl_means, estimate_sigma

from neuradiff.core.errors import NeuradiffError

#: The denoise methods, ``"none"`` first.
DENOISE_METHODS = ("none", "gaussian", "nlmeans", "temporal")
#: Default Gaussian sigma (px) and temporal window (frames).
DEFAULT_SIGMA_PX = 1.0
DEFAULT_WINDOW = 3
#: Non-local means: patch side and search distance (px), and the filter strength h in units of the frame's
#: estimated noise sigma (scikit-image's recommendation for ``fast_mode``).
NLM_PATCH, NLM_DISTANCE, NLM_H = 5, 6, 0.8


@dataclass(frozen=True)
class Denoise:
    """How frames are denoised before recognition.

    Parameters
    ----------
    method : {"none", "gaussian", "nlmeans", "temporal"}
        ``gaussian``: a Gaussian of ``sigma`` px on each frame; ``nlmeans``: non-local means
        (:func:`skimage.restoration.denoise_nl_means`) with the noise sigma of each frame estimated by
        :func:`skimage.restoration.estimate_sigma`; ``temporal``: the median of each pixel over ``window``
        consecutive frames centred on the frame (the first and last frames repeated at the ends). A temporal
        window needs frames aligned on each other: with drift, register first.
    sigma : float, optional
        Gaussian sigma in px (``gaussian`` only; default 1.0).
    window : int, optional
        Frames in the temporal window, odd, ≥ 3 (``temporal`` only; default 3).

    Examples
    --------
    >>> frames = np.random.default_rng(0).normal(10.0, 1.0, (5, 16, 16))
    >>> out = Denoise("temporal", window=3).apply(frames)
    >>> out.dtype, out.shape, bool(out.std() < frames.std())
    (dtype('float32'), (5, 16, 16), True)
    >>> Denoise("gaussian").describe()
    {'method': 'gaussian', 'sigma_px': 1.0}
    """

    method: str = "none"
    sigma: float | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.method not in DENOISE_METHODS:
            raise NeuradiffError(f"--denoise must be one of {', '.join(DENOISE_METHODS)}, got {self.method!r}")
        if self.sigma is not None:
            if self.method != "gaussian":
                raise NeuradiffError(f"--denoise-sigma applies to --denoise gaussian, not {self.method}")
            if isinstance(self.sigma, bool) or not math.isfinite(self.sigma) or not 0 < self.sigma <= 20:
                raise NeuradiffError(f"--denoise-sigma must be in (0, 20] px, got {self.sigma}")
        if self.window is not None:
            if self.method != "temporal":
                raise NeuradiffError(f"--denoise-window applies to --denoise temporal, not {self.method}")
            if isinstance(self.window, bool) or self.window < 3 or self.window % 2 == 0 or self.window > 31:
                raise NeuradiffError(f"--denoise-window must be odd, from 3 to 31 frames, got {self.window}")

    @property
    def active(self) -> bool:
        """Whether frames are changed at all."""
        return self.method != "none"

    @property
    def sigma_px(self) -> float:
        """The Gaussian sigma used (px)."""
        return DEFAULT_SIGMA_PX if self.sigma is None else float(self.sigma)

    @property
    def frames(self) -> int:
        """Frames in the temporal window (1 for the per-frame methods)."""
        if self.method != "temporal":
            return 1
        return DEFAULT_WINDOW if self.window is None else int(self.window)

    @property
    def halo(self) -> int:
        """Frames needed on each side of a chunk to denoise it as part of the whole recording."""
        return self.frames // 2

    def describe(self) -> dict[str, Any]:
        """The settings as plain data (for ``provenance.json``)."""
        out: dict[str, Any] = {"method": self.method}
        if self.method == "gaussian":
            out["sigma_px"] = self.sigma_px
        elif self.method == "nlmeans":
            out.update(patch_px=NLM_PATCH, distance_px=NLM_DISTANCE, h_per_noise_sigma=NLM_H, noise="estimated")
        elif self.method == "temporal":
            out.update(statistic="median", window_frames=self.frames)
        return out

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """The denoised recording ``[T, H, W]`` (float32) of ``frames`` ``[T, H, W]`` (the whole recording; with
        ``none`` the frames as float32)."""
        frames = np.asarray(frames)
        if frames.ndim != 3:
            raise NeuradiffError(f"denoising needs [T, H, W] frames, got shape {frames.shape}")
        return self._block(frames, 0, frames.shape[0])

    def chunks(
        self,
        read: Callable[[int, int], np.ndarray],
        n_frames: int,
        size: int,
        first: int = 0,
        last: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(first frame index, denoised frames [n, H, W])`` for consecutive chunks of at most ``size`` frames of a
        recording of ``n_frames`` frames read by ``read(start, stop)``, from frame ``first`` up to (not including)
        ``last`` (default: the end); equal to slices of :meth:`apply` of the whole recording (a temporal window
        reads :attr:`halo` more frames on each side of a chunk)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        r = self.halo
        last = n_frames if last is None else min(last, n_frames)
        for start in range(first, last, size):
            stop = min(start + size, last)
            lo, hi = max(0, start - r), min(n_frames, stop + r)
            yield start, self._block(read(lo, hi), start - lo, stop - start)

    def _block(self, frames: np.ndarray, offset: int, count: int) -> np.ndarray:
        """Frames ``offset .. offset + count - 1`` of ``frames`` denoised (the others are context)."""
        if self.method == "temporal":
            filtered = ndimage.median_filter(
                np.asarray(frames, dtype=np.float32), size=(self.frames, 1, 1), mode="nearest"
            )
            return np.ascontiguousarray(filtered[offset : offset + count])
        out = np.empty((count, *frames.shape[1:]), np.float32)
        for k in range(count):
            out[k] = self._frame(np.asarray(frames[offset + k], dtype=np.float64))
        return out

    def _frame(self, frame: np.ndarray) -> np.ndarray:
        if self.method == "gaussian":
            return ndimage.gaussian_filter(frame, self.sigma_px, mode="nearest")
        if self.method == "nlmeans":
            noise = float(estimate_sigma(frame))
            if noise <= 0:  # a flat frame: nothing to remove
                return frame
            return denoise_nl_means(
                frame,
                patch_size=NLM_PATCH,
                patch_distance=NLM_DISTANCE,
                h=NLM_H * noise,
                sigma=noise,
                fast_mode=True,
                preserve_range=True,
            )
        return frame


__all__ = ["DENOISE_METHODS", "Denoise"]
