"""How far each recognised void stands out of the frame's texture: a contrast-to-noise statistic per region, and
a filter that drops regions a careful observer could not tell from the grain.

A void region's statistic compares the difference between its mean grey level and that of a ring around it (the
other voids left out) with how large the same difference is on the frame's own background:

    t = |mean_in − mean_ring| / s(a)

where s(a) is the spread (1.4826 × median absolute deviation) of ``box_a − ring_a`` over every position of the
frame away from the voids, ``box_a`` the mean over a square of the region's area and ``ring_a`` the mean over the
square ring of the same width around it. That null spread is measured, not modelled: it holds whatever the noise
is (shot noise, 2–3 px speckle grain, mottle, loops and lines in the background), so a speck of grain gets a small
t and a void that stands out of the texture a large one. It is the Rose criterion of image science: an object at
k ≈ 5 is what an observer reliably sees. The statistic does not change under a gain and offset of the frame.

The filter (:func:`drop_faint`) judges each frame as a whole first. A frame whose found regions include several that
reach the minimum contrast (at least :func:`shown_count` of them: :data:`SHOWN_COUNT` for each
:data:`SHOWN_AREA_PX` of the frame at the net's scale, at least one, since a larger frame holds more grain that
reaches it by chance; and at least :data:`SHOWN_FRACTION` of its regions) shows voids: there every region down to
:data:`VISIBLE_CONTRAST` (the lower end of the Rose criterion's 3–5) is kept, since a void that stands out by 3
beside voids that stand out more is a void. A frame where hardly any region reaches the minimum is texture (a grainy
frame of loops, where the net reads the grain as fields of small voids): there only the regions that reach the
minimum are kept.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage
from skimage.measure import label

from neuradiff.core.errors import NeuradiffError

#: Ring width around a void, as a fraction of its equivalent radius (at least 2 px).
RING_FRACTION = 0.6
#: Square sides (px) at which the null spread is measured; a region uses the one nearest its √area.
NULL_SIDES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128)
#: Background positions sampled for each null spread (evenly strided).
NULL_SAMPLES = 10_000
#: Contrast from which a region counts as visible in a frame that shows voids (the lower end of the Rose criterion).
VISIBLE_CONTRAST = 3.0
#: A frame shows voids when at least this many of its regions reach the minimum contrast for each
#: :data:`SHOWN_AREA_PX` of its area at the recogniser's scale (see :func:`shown_count`): the grain of a frame twice
#: as large holds twice as many specks that reach the minimum by chance …
SHOWN_COUNT = 5
#: … per this many px² of frame …
SHOWN_AREA_PX = 512 * 512
#: … and at least this fraction of its regions do.
SHOWN_FRACTION = 0.1
#: In a frame that does not show voids, a region at least this large (px² at the recogniser's scale, about 11 px
#: across) that stands out from :data:`VISIBLE_CONTRAST` is still kept when the net is confident of all of it (its
#: mean eta reaches the recogniser's ``confident_eta``; :func:`drop_faint`): a large, faint void among
#: distractors, which the net marks whole, while the distractors' phantoms are small or doubtful.
CONFIDENT_AREA_PX = 100
#: Highest threshold a fitted model takes from its annotations (:func:`annotated_threshold`): the shipped
#: generalist's own.
FITTED_MAX_CONTRAST = 5.0
#: How far below its faintest annotated void that stands out a fitted model's threshold lies
#: (:func:`annotated_threshold`).
ANNOTATION_MARGIN = 1.0


def shown_count(shape: tuple[int, ...], scale: float = 1.0) -> int:
    """How many regions of a frame of ``shape`` ``(..., H, W)`` must reach the minimum contrast for the frame to
    show voids: :data:`SHOWN_COUNT` for each :data:`SHOWN_AREA_PX` of the frame at the recogniser's scale
    (``scale``: its pixels per frame pixel), rounded up, at least 1.

    Examples
    --------
    >>> shown_count((1024, 1024)), shown_count((512, 512)), shown_count((256, 256)), shown_count((128, 128))
    (20, 5, 2, 1)
    >>> shown_count((1024, 1024), scale=0.5)
    5
    """
    if not (math.isfinite(scale) and scale > 0):
        raise NeuradiffError(f"the scale must be a positive number, got {scale}")
    area = int(shape[-2]) * int(shape[-1]) * scale**2
    return max(1, math.ceil(SHOWN_COUNT * area / SHOWN_AREA_PX))


def ring_width(area: float) -> int:
    """Width in px of the ring around a region of ``area`` px (0.6 × its equivalent radius, at least 2)."""
    return max(2, round(RING_FRACTION * math.sqrt(area / math.pi)))


def _integral(x: np.ndarray) -> np.ndarray:
    """Summed-area table ``[H + 1, W + 1]`` (float64) of ``x`` ``[H, W]``: the sums down each column first, row by
    row (a cumulative sum along the first axis of a row-major array is four times slower), then along each row."""
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1))
    c = s[1:, 1:]
    c[0] = x[0]
    for i in range(1, c.shape[0]):
        np.add(c[i - 1], x[i], out=c[i])
    np.cumsum(c, axis=1, out=c)
    return s


def _box_sums(s: np.ndarray, y0: int, x0: int, ny: int, nx: int, stride: int, side: int) -> np.ndarray:
    """Sums ``[ny, nx]`` over the squares of ``side`` px whose top-left corners are ``(y0 + i·stride, x0 + j·stride)``,
    from the summed-area table ``s``."""

    def corner(y: int, x: int) -> np.ndarray:
        return s[y : y + (ny - 1) * stride + 1 : stride, x : x + (nx - 1) * stride + 1 : stride]

    return corner(y0 + side, x0 + side) - corner(y0, x0 + side) - corner(y0 + side, x0) + corner(y0, x0)


class _Background:
    """A frame's summed-area tables (grey levels and voids), for :meth:`spread`."""

    def __init__(self, frame: np.ndarray, void: np.ndarray):
        self.shape = frame.shape
        self.grey = _integral(np.asarray(frame, dtype=np.float64))
        self.void = _integral(void.astype(np.float64))

    def spread(self, side: int) -> float:
        """Spread of ``box − ring`` for a square of ``side`` px at background positions clear of the voids."""
        w = ring_width(side * side)
        outer = side + 2 * w
        h, wd = self.shape
        if h <= outer + 2 or wd <= outer + 2:
            return float("nan")
        stride = max(1, int(math.sqrt((h - outer - 2) * (wd - outer - 2) / (4 * NULL_SAMPLES))))
        # top-left corners of the outer square: 1, 1 + stride, … below h − outer − 1 (and wd − outer − 1)
        ny, nx = len(range(1, h - outer - 1, stride)), len(range(1, wd - outer - 1, stride))
        clear = (_box_sums(self.void, 0, 0, ny, nx, stride, outer + 2) == 0).ravel()  # no void within 1 px
        inner = (_box_sums(self.grey, 1 + w, 1 + w, ny, nx, stride, side) / side**2).ravel()
        ring = (_box_sums(self.grey, 1, 1, ny, nx, stride, outer).ravel() - inner * side**2) / (outer**2 - side**2)
        d = inner - ring
        if clear.sum() >= 64:
            d = d[clear]
        return 1.4826 * float(np.median(np.abs(d - np.median(d))))


#: Ring widths up to this are grown over the whole frame; wider rings (large voids, few) in a window around each.
_GLOBAL_WIDTH = 3


def _grow(labels: np.ndarray) -> np.ndarray:
    """Each pixel of ``labels`` ``[H, W]`` set to the highest label of itself and its four neighbours inside the
    frame (a grey dilation by the 4-connected cross; the same as ``ndimage.grey_dilation``, several times faster)."""
    out = labels.copy()
    np.maximum(out[1:], labels[:-1], out=out[1:])
    np.maximum(out[:-1], labels[1:], out=out[:-1])
    np.maximum(out[:, 1:], labels[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], labels[:, 1:], out=out[:, :-1])
    return out


def _rings(x: np.ndarray, labels: np.ndarray, void: np.ndarray, widths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count ``[n + 1]`` of the grey levels ``x`` in each region's ring.

    Every region is grown one pixel (4-connected) at a time; a region's ring is what it has grown into, outside
    every void, after its own width ``widths[label]``; where two grow into one pixel, the higher label takes it.
    Grown ``s`` times, a pixel holds the highest label within a city-block distance ``s``, so a ring needs only
    the labels within twice its width of its region: widths up to :data:`_GLOBAL_WIDTH` are grown over the
    whole frame, wider ones in a window around their region (the same pixels, faster).
    """
    n = widths.size - 1
    ring_sum, ring_n = np.zeros(n + 1), np.zeros(n + 1)
    lab32 = labels.astype(np.int32)
    grown: np.ndarray = lab32
    solid = ~void
    for step in range(1, min(int(widths.max()), _GLOBAL_WIDTH) + 1):
        grown = _grow(grown)
        done = (widths[grown] == step) & solid
        ring_sum += np.bincount(grown[done], weights=x[done], minlength=n + 1)
        ring_n += np.bincount(grown[done], minlength=n + 1)
    wide = np.flatnonzero(widths > _GLOBAL_WIDTH)
    if wide.size:
        h, w_ = labels.shape
        boxes = ndimage.find_objects(lab32)
        for k in wide:
            w = int(widths[k])
            ys, xs = boxes[k - 1]
            y0, y1 = max(0, ys.start - 2 * w), min(h, ys.stop + 2 * w)
            x0, x1 = max(0, xs.start - 2 * w), min(w_, xs.stop + 2 * w)
            g: np.ndarray = lab32[y0:y1, x0:x1]
            for _ in range(w):
                g = _grow(g)
            done = (g == k) & solid[y0:y1, x0:x1]
            ring_sum[k] = x[y0:y1, x0:x1][done].sum()
            ring_n[k] = done.sum()
    return ring_sum, ring_n


def null_spread(frame: np.ndarray, void: np.ndarray, side: int) -> float:
    """Spread (1.4826 × median absolute deviation) of ``box − ring`` (square of ``side`` px, ring of
    :func:`ring_width`) over the positions of ``frame`` ``[H, W]`` whose square and ring stay clear of the
    ``void`` mask (all positions if too few are; NaN if the frame is smaller than the ring).

    Examples
    --------
    >>> noise = np.random.default_rng(0).normal(0.0, 1.0, (256, 256))
    >>> round(null_spread(noise, np.zeros((256, 256), bool), 3), 2)  # white noise: sqrt(1/9 + 1/40)
    0.37
    """
    return _Background(frame, np.asarray(void, dtype=bool)).spread(side)


def contrast_significance(frame: np.ndarray, void: np.ndarray, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The regions of ``void`` ``[H, W]`` (8-connected) and each region's contrast-to-noise statistic ``t``.

    Parameters
    ----------
    frame : ``[H, W]`` grey levels (any gain and offset).
    void : ``[H, W]`` bool void mask.
    threads : with 2 or more, the background's null spreads are measured in a second thread while the rings are
        summed (the same numbers).

    Returns
    -------
    labels : ``[H, W]`` int, 0 outside the voids, region k + 1 for ``t[k]``.
    t : ``[n]`` float, ≥ 0 (``inf`` for a region with no ring around it or on a noise-free background).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> frame = rng.normal(0.0, 1.0, (64, 64))
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disc = (yy - 20) ** 2 + (xx - 20) ** 2 < 36
    >>> frame[disc] += 3.0
    >>> speck = np.zeros((64, 64), bool); speck[45:47, 45:47] = True
    >>> labels, t = contrast_significance(frame, disc | speck)
    >>> bool(t[0] > 10), bool(t[1] < 5)
    (True, True)
    """
    x = np.asarray(frame, dtype=np.float64)
    void = np.asarray(void, dtype=bool)
    if x.ndim != 2 or x.shape != void.shape:
        raise NeuradiffError(f"frame {x.shape} and void mask {void.shape} must be [H, W] of one size")
    labels = np.asarray(label(void, connectivity=2))
    n = int(labels.max())
    if n == 0:
        return labels, np.zeros(0)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    mean_in = np.bincount(labels.ravel(), weights=x.ravel(), minlength=n + 1)[1:] / area
    sides = np.asarray(NULL_SIDES)
    side_of = sides[np.abs(sides[None, :] - np.sqrt(area)[:, None]).argmin(axis=1)]
    widths = np.array([0, *(ring_width(a) for a in area)], dtype=np.int64)

    def spreads() -> dict[int, float]:
        background = _Background(x, void)
        return {int(a): background.spread(int(a)) for a in np.unique(side_of)}

    if threads >= 2:  # the two halves of the work release the GIL for most of their time
        with ThreadPoolExecutor(1) as pool:
            measured = pool.submit(spreads)
            ring_sum, ring_n = _rings(x, labels, void, widths)
            spread = measured.result()
    else:
        spread = spreads()
        ring_sum, ring_n = _rings(x, labels, void, widths)
    ring_sum, ring_n = ring_sum[1:], ring_n[1:]
    difference = np.abs(mean_in - ring_sum / np.maximum(ring_n, 1))
    noise = np.array([spread[int(a)] for a in side_of])
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(noise > 0, difference / noise, np.where((difference > 0) | ~np.isfinite(noise), np.inf, 0.0))
    t[ring_n < 3] = np.inf  # no ring to compare with: kept
    return labels, t


def drop_faint(
    frames: np.ndarray,
    masks: np.ndarray,
    min_contrast: float,
    *,
    relaxed: bool = True,
    eta: np.ndarray | None = None,
    confident_eta: float = 0.0,
    scale: float = 1.0,
    threads: int = 1,
) -> np.ndarray:
    """``masks`` ``[T, H, W]`` bool without the void regions that do not stand out of their frame (0: unchanged).

    A frame of ``frames`` ``[T, H, W]`` where at least :func:`shown_count` regions, and at least
    :data:`SHOWN_FRACTION` of them, reach ``min_contrast`` (:func:`contrast_significance`) shows voids and keeps
    every region down to :data:`VISIBLE_CONTRAST` (or ``min_contrast`` if lower); any other frame keeps only the
    regions that reach ``min_contrast``, and, given the net's ``eta`` ``[T, H, W]`` and ``confident_eta`` > 0, the
    regions down to :data:`VISIBLE_CONTRAST` of at least :data:`CONFIDENT_AREA_PX` at the net's scale (``scale``:
    the net's pixels per frame pixel) whose mean eta reaches ``confident_eta``. Not ``relaxed``: every frame keeps
    only the regions that reach ``min_contrast`` (a threshold learned from annotated voids already says how faint
    a void can be). ``threads``: see :func:`contrast_significance`.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> frame = rng.normal(0.0, 1.0, (1, 64, 64))
    >>> mask = np.zeros((1, 64, 64), bool); mask[0, 14:26, 14:26] = True; mask[0, 45:47, 45:47] = True
    >>> frame[0, 14:26, 14:26] += 3.0
    >>> int(drop_faint(frame, mask, 5.0).sum())
    144
    """
    if not (math.isfinite(min_contrast) and min_contrast >= 0):
        raise NeuradiffError(f"the minimum void contrast must be a number >= 0, got {min_contrast}")
    if not (math.isfinite(confident_eta) and 0 <= confident_eta <= 1):
        raise NeuradiffError(f"confident_eta must be in [0, 1], got {confident_eta}")
    if not (math.isfinite(scale) and scale > 0):
        raise NeuradiffError(f"the scale must be a positive number, got {scale}")
    masks = np.asarray(masks, dtype=bool)
    frames = np.asarray(frames)
    if frames.shape != masks.shape or (eta is not None and np.shape(eta) != masks.shape):
        shapes = f"frames {frames.shape}, masks {masks.shape}" + ("" if eta is None else f" and eta {np.shape(eta)}")
        raise NeuradiffError(f"{shapes} must have one shape")
    if min_contrast == 0:
        return masks
    out = masks.copy()
    need = shown_count(masks.shape, scale)
    visible = min(VISIBLE_CONTRAST, min_contrast)
    rescue = relaxed and eta is not None and confident_eta > 0
    for k in range(masks.shape[0]):
        labels, t = contrast_significance(frames[k], masks[k], threads=threads)
        if t.size:
            reach = int(np.count_nonzero(t >= min_contrast))
            shows_voids = reach >= need and reach >= SHOWN_FRACTION * t.size
            keep = t >= (visible if shows_voids and relaxed else min_contrast)
            if rescue and not shows_voids:
                assert eta is not None
                flat = labels.ravel()
                size = np.bincount(flat, minlength=t.size + 1)[1:]
                eta_sum = np.bincount(flat, weights=np.asarray(eta[k], np.float64).ravel(), minlength=t.size + 1)[1:]
                keep |= (t >= visible) & (size * scale**2 >= CONFIDENT_AREA_PX) & (eta_sum >= confident_eta * size)
            out[k] = np.concatenate([[False], keep])[labels]
    return out


def annotated_threshold(frames: np.ndarray, annotations: np.ndarray, *, cap: float = FITTED_MAX_CONTRAST) -> float:
    """The contrast threshold of a model fitted to ``annotations``: the contrast-to-noise statistic of the faintest
    annotated void that stands out of its frame (t ≥ :data:`VISIBLE_CONTRAST`) less :data:`ANNOTATION_MARGIN`, at
    most ``cap`` (0 when nothing is annotated void), so that the filter (:func:`drop_faint`) keeps every region that
    stands out of its frame as much as a void the user marked and drops fainter specks. The margin is one standard
    deviation of the statistic under noise: the net's outline of a void is not the annotation's, and t measured on
    it moves by about that much.

    Annotated voids fainter than :data:`VISIBLE_CONTRAST` do not lower the threshold when others stand out: one void
    marked from the frames around it, or from a simulation's truth, would otherwise switch the filter off for the
    whole recording and let every speck of grain through. When none stands out, the faintest sets it (a recording
    whose voids are all faint keeps them).

    Parameters
    ----------
    frames : ``[T, H, W]`` grey levels.
    annotations : ``[T, H, W]`` uint8, 0 solid, 1 void, 255 unknown; each 8-connected void region of at least
        4 px is measured in its own frame (:func:`contrast_significance`), on what the annotation marks of it.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> frames = rng.normal(0.0, 1.0, (1, 64, 64))
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disc = (yy - 30) ** 2 + (xx - 30) ** 2 < 49
    >>> frames[0, disc] += 0.3  # a faint void: 0.3 noise standard deviations brighter
    >>> ann = np.full((1, 64, 64), 255, np.uint8); ann[0, disc] = 1
    >>> round(annotated_threshold(frames, ann), 2)  # its statistic is 3.04
    2.04
    >>> frames[0, disc] += 20.0
    >>> annotated_threshold(frames, ann)
    5.0
    """
    a = np.asarray(annotations)
    measured = [np.empty(0)]
    for k in np.flatnonzero((a == 1).any(axis=(1, 2))):
        labels, t = contrast_significance(frames[k], a[k] == 1)
        area = np.bincount(labels.ravel(), minlength=t.size + 1)[1:]
        measured.append(t[area >= 4])
    t = np.concatenate(measured)
    if not t.size:
        return 0.0
    clear = t[t >= VISIBLE_CONTRAST]
    lowest = float((clear if clear.size else t).min())
    return float(min(cap, max(lowest - ANNOTATION_MARGIN, 0.0)))


__all__ = [
    "ANNOTATION_MARGIN",
    "CONFIDENT_AREA_PX",
    "FITTED_MAX_CONTRAST",
    "SHOWN_AREA_PX",
    "SHOWN_COUNT",
    "SHOWN_FRACTION",
    "VISIBLE_CONTRAST",
    "annotated_threshold",
    "contrast_significance",
    "drop_faint",
    "null_spread",
    "ring_width",
    "shown_count",
]
