"""Recognition of frames of any size: tiles with overlap and blending, and resampling so that voids reach the net
at the size it was trained on.

A net whose normalisation layers use stored statistics (``norm="batch"`` in eval mode) and no time embedding
computes each output pixel from a bounded neighbourhood, so a frame cut into tiles that overlap by more than
that neighbourhood and blended back (weights that fall linearly to zero over the overlap) gives the same eta
as the whole frame at once, without seams, in memory bounded by the tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.unet import RecognitionNet

#: Smallest expected void, pixels: below this a void is not resolved in the frame.
MIN_VOID_PX = 2.0


@dataclass(frozen=True)
class Tiling:
    """How a frame is cut: square tiles of ``tile`` px overlapping by ``overlap`` px (both multiples of
    ``align``, the net's down-sampling factor, so every tile sees the same pixel grid as the whole frame)."""

    tile: int = 256
    overlap: int = 64

    def check(self, align: int) -> None:
        if self.tile < 2 * align or self.tile % align:
            raise NeuradiffError(f"tile must be a multiple of {align} px and >= {2 * align}, got {self.tile}")
        if self.overlap < 0 or self.overlap % align or 2 * self.overlap >= self.tile:
            raise NeuradiffError(
                f"tile overlap must be a multiple of {align} px in [0, tile/2), got {self.overlap} for tile {self.tile}"
            )


def _starts(n: int, tile: int, step: int, align: int) -> list[int]:
    if n <= tile:
        return [0]
    starts = list(range(0, n - tile, step))
    last = (n - tile) // align * align
    if last not in starts:
        starts.append(last)
    return starts


def _ramp(n: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap > 0:
        r = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not first:
            w[:overlap] = r
        if not last:
            w[n - overlap :] = r[::-1]
    return w


@torch.inference_mode()
def eta_tiled(net: RecognitionNet, frame: np.ndarray, tiling: Tiling = Tiling()) -> np.ndarray:
    """Void probability eta of one (already normalised) frame of any size, tile by tile, blended.

    Parameters
    ----------
    net : RecognitionNet
        Put in eval mode here; a net without a per-frame time code (time 0 is given).
    frame : ndarray float32, shape (H, W)
    tiling : Tiling

    Returns
    -------
    ndarray float32 (H, W), eta in [0, 1].

    Examples
    --------
    >>> from neuradiff.nets import NetConfig
    >>> net = RecognitionNet(NetConfig(width=4, depth=1, embedding="none", norm="batch"))
    >>> eta_tiled(net, np.zeros((40, 70), np.float32), Tiling(tile=32, overlap=8)).shape
    (40, 70)
    """
    net.eval()
    align = net.config.stride * 2**net.config.depth
    tiling.check(align)
    h, w = frame.shape
    t, ov = tiling.tile, tiling.overlap
    if h <= t and w <= t:
        x = torch.from_numpy(np.ascontiguousarray(frame, np.float32))[None]
        return torch.sigmoid(net.eta_logits(x, torch.zeros(1)))[0].numpy()
    # frames smaller than a tile along one side are padded (reflect) to a tile there
    ph, pw = max(0, t - h), max(0, t - w)
    mode = "reflect" if ph < h and pw < w else "edge"
    src = np.pad(frame, ((0, ph), (0, pw)), mode=mode) if (ph or pw) else frame
    hh, ww = src.shape
    acc = np.zeros((hh, ww), np.float32)
    wsum = np.zeros((hh, ww), np.float32)
    ys, xs = _starts(hh, t, t - ov, align), _starts(ww, t, t - ov, align)
    for i, y in enumerate(ys):
        wy = _ramp(t, ov, i == 0, i == len(ys) - 1)
        for j, x0 in enumerate(xs):
            wx = _ramp(t, ov, j == 0, j == len(xs) - 1)
            tile = torch.from_numpy(np.ascontiguousarray(src[y : y + t, x0 : x0 + t]))[None]
            z = net.eta_logits(tile, torch.zeros(1))[0].numpy()
            weight = wy[:, None] * wx[None, :]
            acc[y : y + t, x0 : x0 + t] += weight * z
            wsum[y : y + t, x0 : x0 + t] += weight
    logits = acc / np.maximum(wsum, 1e-12)
    return (1.0 / (1.0 + np.exp(-logits[:h, :w]))).astype(np.float32)


def resample_factor(void_px: float | None, *, target: tuple[float, float], tile: int) -> float:
    """Factor by which to resample a frame so that voids of ``void_px`` px reach the net at a size in ``target``.

    Parameters
    ----------
    void_px : float or None
        Expected void diameter in the frame, pixels (None: no resampling, factor 1).
    target : (lo, hi)
        Void diameters (px) the net was trained on comfortably.
    tile : int
        Tile side, px: an expected void larger than a tile is refused.

    Returns
    -------
    float: 1 when ``void_px`` is already inside ``target``; else the factor that brings it to the nearer bound.

    Examples
    --------
    >>> resample_factor(80.0, target=(6.0, 40.0), tile=256)
    0.5
    """
    if void_px is None:
        return 1.0
    if not math.isfinite(void_px) or void_px < MIN_VOID_PX:
        raise NeuradiffError(
            f"expected void size {void_px:g} px is below {MIN_VOID_PX:g} px: voids that small are not resolved"
        )
    if void_px > tile:
        raise NeuradiffError(f"expected void size {void_px:g} px is larger than a tile ({tile} px)")
    lo, hi = target
    if void_px < lo:
        return lo / void_px
    if void_px > hi:
        return hi / void_px
    return 1.0


def resample(frame: np.ndarray, factor: float) -> np.ndarray:
    """Bilinear (area-averaged when shrinking) resampling of ``[H, W]`` by ``factor`` (float32)."""
    if factor == 1.0:
        return frame
    h, w = frame.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    x = torch.from_numpy(np.ascontiguousarray(frame, np.float32))[None, None]
    if factor < 1:
        y = F.interpolate(x, size=size, mode="area")
    else:
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return y[0, 0].numpy()


def back_to(eta: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resampling of eta ``[h, w]`` to ``shape`` (identity when the shapes agree)."""
    if eta.shape == tuple(shape):
        return eta
    x = torch.from_numpy(np.ascontiguousarray(eta, np.float32))[None, None]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


__all__ = [
    "MIN_VOID_PX",
    "Tiling",
    "back_to",
    "eta_tiled",
    "resample",
    "resample_factor",
]
