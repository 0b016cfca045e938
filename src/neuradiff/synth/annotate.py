"""Sparse three-state annotations (solid / void / unknown) of a void order-parameter video.

Models what a person provides for training a segmentation network: a fraction of the frames, a part of
each of those frames, binary labels (or the paper's continuous eta), optionally with boundary errors.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from scipy import ndimage

from neuradiff.core.config import settings_class
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import SOLID, UNKNOWN, VOID
from neuradiff.synth.render import check_eta

REGIONS = ("full", "half", "boxes")
VALUES = ("binary", "continuous")
#: "boxes": target and upper limit of the fraction of a frame covered by the rectangles.
BOX_COVER = (0.4, 0.5)
#: "boxes": rectangle sides as a fraction of the frame side.
BOX_SIDE = (0.2, 0.45)
#: Smoothing length (pixels) of the annotator's random boundary offset.
JITTER_SCALE = 6.0
#: Tolerance on eta outside [0, 1] (clipped); larger excursions are an error.


@settings_class("annotation", frozen=True)
class AnnotationSettings:
    """What is annotated and how.

    Parameters
    ----------
    fraction : fraction of frames annotated, in (0, 1]; at least one frame, evenly spaced, always frame 0.
    region : ``"full"`` (whole frame), ``"half"`` (top or bottom half, at random per frame) or ``"boxes"``
        (random rectangles covering about 40–50 % of the frame).
    values : ``"binary"`` (eta >= 0.5) or ``"continuous"`` (eta itself, as in the paper).
    jitter_px : annotator error: each frame's void boundaries move along their normal by a smooth random
        offset of up to ±jitter_px pixels (typically ±0.75·jitter_px, correlated over ~6 px); 0 = exact.
    """

    fraction: float = 0.1
    region: str = "full"
    values: str = "binary"
    jitter_px: float = 0.0

    def __post_init__(self) -> None:
        f = self.fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not (0.0 < f <= 1.0):
            raise NeuradiffError(f"annotation fraction must be in (0, 1], got {f!r}")
        if self.region not in REGIONS:
            raise NeuradiffError(f"unknown annotation region {self.region!r}; choose one of {', '.join(REGIONS)}")
        if self.values not in VALUES:
            raise NeuradiffError(f"unknown annotation values {self.values!r}; choose one of {', '.join(VALUES)}")
        j = self.jitter_px
        if isinstance(j, bool) or not isinstance(j, numbers.Real) or not math.isfinite(j) or j < 0:
            raise NeuradiffError(f"annotation jitter_px must be a finite number >= 0, got {j!r}")

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict."""
        return dataclasses.asdict(self)


def annotate(
    eta: np.ndarray, *, settings: AnnotationSettings = AnnotationSettings(), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Annotate a video of the void order parameter.

    Parameters
    ----------
    eta : ``[T, H, W]`` void order parameter in [0, 1] (1 = void).
    settings : what is annotated and how.
    seed : seed of every random choice (regions, jitter).

    Returns
    -------
    annotations : ``[T, H, W]``; binary: uint8 with ``SOLID`` (0), ``VOID`` (1), ``UNKNOWN`` (255);
        continuous: float32 in [0, 1] with NaN for unknown. Frames not annotated are entirely unknown.
    annotated_frames : int64 ``[n]`` indices of the annotated frames, increasing.
    info : dict with ``n_frames``, ``n_annotated_frames``, ``annotated_frames`` (list),
        ``annotated_pixel_fraction`` (of all pixels of the video), ``annotated_pixel_fraction_in_frames``
        (of the pixels of the annotated frames), ``void_pixels``, ``solid_pixels`` (annotated pixels with
        eta-or-label >= 0.5, resp. < 0.5), ``regions`` (per annotated frame), ``seed``, ``settings``.
    """
    if not isinstance(settings, AnnotationSettings):
        raise NeuradiffError(f"settings must be an AnnotationSettings, got {type(settings).__name__}")
    eta = check_eta(eta)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NeuradiffError(f"seed must be a non-negative integer, got {seed!r}")
    t_len, h, w = eta.shape
    if settings.region == "half" and h < 2:
        raise NeuradiffError(f"region 'half' needs frames of at least 2 rows, got {h}")
    frames = annotated_frame_indices(t_len, settings.fraction)

    rng = np.random.default_rng(int(seed))
    r_region, r_jitter = (np.random.default_rng(x) for x in rng.integers(0, 2**63 - 1, size=2))

    binary = settings.values == "binary"
    out = np.full(eta.shape, UNKNOWN, np.uint8) if binary else np.full(eta.shape, np.nan, np.float32)
    regions = []
    known_pixels = 0
    void_pixels = 0
    for t in frames:
        region, name = _region_mask((h, w), settings.region, r_region)
        field = eta[t]
        if settings.jitter_px > 0:
            field = _jitter(field, settings.jitter_px, r_jitter, binary)
        if binary:
            labels = np.where(field >= 0.5, VOID, SOLID).astype(np.uint8)
        else:
            labels = field.astype(np.float32)
        out[t][region] = labels[region]
        regions.append(name)
        known_pixels += int(region.sum())
        void_pixels += int((field[region] >= 0.5).sum())

    total = eta.size
    info = {
        "n_frames": t_len,
        "n_annotated_frames": int(len(frames)),
        "annotated_frames": [int(t) for t in frames],
        "annotated_pixel_fraction": known_pixels / total,
        "annotated_pixel_fraction_in_frames": known_pixels / (len(frames) * h * w),
        "void_pixels": void_pixels,
        "solid_pixels": known_pixels - void_pixels,
        "regions": regions,
        "seed": int(seed),
        "settings": settings.to_dict(),
    }
    return out, frames, info


def annotated_frame_indices(n_frames: int, fraction: float) -> np.ndarray:
    """Evenly spaced frame indices (int64), ``round(fraction·n_frames)`` of them (at least 1), starting at 0."""
    if n_frames < 1:
        raise NeuradiffError(f"need at least one frame, got {n_frames}")
    if not (0.0 < fraction <= 1.0):
        raise NeuradiffError(f"annotation fraction must be in (0, 1], got {fraction!r}")
    n = min(n_frames, max(1, int(math.floor(fraction * n_frames + 0.5))))
    return (np.arange(n, dtype=np.int64) * n_frames) // n


def _region_mask(shape: tuple[int, int], region: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    h, w = shape
    mask = np.zeros(shape, bool)
    if region == "full":
        mask[:] = True
        return mask, "full"
    if region == "half":
        half = h // 2
        if rng.random() < 0.5:
            mask[:half] = True
            return mask, "top"
        mask[h - half :] = True
        return mask, "bottom"
    # boxes: add random rectangles until about BOX_COVER[0] of the frame is covered, never above BOX_COVER[1]
    target, limit = BOX_COVER
    n_boxes = 0
    for _ in range(200):
        bh = max(1, int(round(rng.uniform(*BOX_SIDE) * h)))
        bw = max(1, int(round(rng.uniform(*BOX_SIDE) * w)))
        y0 = int(rng.integers(0, h - bh + 1))
        x0 = int(rng.integers(0, w - bw + 1))
        trial = mask.copy()
        trial[y0 : y0 + bh, x0 : x0 + bw] = True
        if trial.mean() > limit and n_boxes > 0:
            continue
        mask = trial
        n_boxes += 1
        if mask.mean() >= target:
            break
    return mask, f"boxes:{n_boxes}"


def _jitter(field: np.ndarray, amplitude: float, rng: np.random.Generator, binary: bool) -> np.ndarray:
    """``field`` with its void boundary moved along the normal by a smooth random offset in ±``amplitude`` px."""
    h, w = field.shape
    g = ndimage.gaussian_filter(rng.standard_normal((h, w)), JITTER_SCALE, mode="wrap")
    offset = amplitude * np.tanh(1.5 * g / (g.std() + 1e-12))  # > 0: the void grows there
    mask = field >= 0.5
    if mask.all() or not mask.any():
        return field
    # signed distance to the rim (pixel edges), > 0 outside the void
    inside, outside = (
        np.asarray(ndimage.distance_transform_edt(mask)),
        np.asarray(ndimage.distance_transform_edt(~mask)),
    )
    sdf = np.where(mask, 0.5 - inside, outside - 0.5)
    if binary:
        return (sdf < offset).astype(np.float64)
    gy, gx = np.gradient(ndimage.gaussian_filter(sdf, 1.0))
    norm = np.hypot(gy, gx) + 1e-12
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([yy - offset * gy / norm, xx - offset * gx / norm])  # sample inwards to grow
    return np.clip(ndimage.map_coordinates(field, coords, order=1, mode="nearest"), 0.0, 1.0)
