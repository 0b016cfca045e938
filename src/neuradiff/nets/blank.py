"""Blank regions of a frame: parts that are not specimen and carry no shot noise.

A recorded frame is noisy everywhere the beam reached the camera through the specimen. What is flat instead was
added or cut afterwards: the zero-filled bands a drift correction leaves at the edges, the black corners beyond the
beam, a burned-in scale bar, a time stamp, a label. Such a region compresses the grey-level range a recognition net
sees (a zero band sets the 1st percentile) and its sharp, saturated shapes look like voids to it. This module
finds those regions (:func:`blank_regions`), fills them with featureless noise like the specimen's around them
before a frame reaches a net (:func:`fill_blank`, used by :func:`neuradiff.nets.levels.normalise_frame`), and drops
the void regions that touch them (:func:`off_blank`; :func:`specimen_frames` gives both for a stack).

What counts as blank, in a frame ``f`` with range ``R`` = its 99th − 1st grey-level percentile:

- a *flat patch*: a connected union of 3×3 windows of one grey level (shot noise makes nine equal neighbours
  vanishingly rare) of at least :data:`MIN_BLANK_PX` pixels;
- a *glyph*: at least :data:`MIN_GLYPH_PX` connected pixels at the frame's highest (or lowest) grey level, solid
  (:data:`SOLID_FRACTION` of them in 2×2 blocks of that level: the strokes of burned-in text);

either of them with a sharp edge (the median jump from its grey level to the pixels just outside it reaches
:data:`SHARP_JUMP` × ``R``) and either touching the frame's border (a padding band) or drawn: thin, its area at
least :data:`THIN_RATIO` times that of the largest disk inside it (a scale bar, a stroke of text), or an upright
rectangle of at least :data:`MIN_RECTANGLE_PX` pixels (a dot of text, a label's box). In a frame exported with its
extremes clipped (more than :data:`CLIPPED_FRACTION` of it at its highest or lowest grey level), what lies at a
clipped level away from the border is specimen.

A void whose interior is clipped at the camera's limit is not blank: it is compact, and its edge mostly falls
through the interface and blur rather than in one step. A hole inside a blank region no larger than the region is
blank too (the inside of an "o"), and every blank region is grown by one pixel (the anti-aliased fringe of text). A
frame more than :data:`MAX_BLANK_FRACTION` blank was not recorded through a specimen (a drawn, noise-free frame):
nothing in it is called blank. Not found: text whose strokes are one or two pixels wide (a label under about 25 px
high): it is rarely full white along a whole stroke. Such text still reaches the net; crop it away.
"""

from __future__ import annotations

from typing import cast

import numpy as np
from scipy import ndimage
from skimage.measure import label

#: Fewest pixels of a connected flat patch counted as blank.
MIN_BLANK_PX = 24
#: A flat patch or glyph is blank away from the border when the median jump to the pixels around it reaches this
#: fraction of the frame's 1st–99th percentile range.
SHARP_JUMP = 0.25
#: A sharp region away from the border is blank when its area is at least this many times that of the largest disk
#: inside it (a bar or a stroke, not a compact clipped void).
THIN_RATIO = 3.0
#: A sharp region away from the border that fills its bounding box exactly, with at least this many pixels, is
#: blank too (a dot of text, a label's box; a clipped void's interior is rounded).
MIN_RECTANGLE_PX = 9
#: Fewest connected pixels at the frame's highest (or lowest) grey level that can be a glyph.
MIN_GLYPH_PX = 6
#: A glyph is solid: at least this fraction of its pixels lie in 2×2 blocks of its level (the pixels of a noisy
#: clipped void's interior form ragged clusters).
SOLID_FRACTION = 0.9
#: A highest (lowest) grey level held by more than this fraction of a frame is clipped content (an export that
#: saturates its extremes): away from the border, nothing at it is blank.
CLIPPED_FRACTION = 0.02
#: A frame with more of its area blank than this is left as it is (drawn, not recorded).
MAX_BLANK_FRACTION = 0.5
#: Seed of the noise :func:`fill_blank` puts into blank regions (the same frame always gets the same fill).
FILL_SEED = 0
#: Width (px, Gaussian sigma) over which :func:`fill_blank` smooths the specimen's grey levels into a blank region.
FILL_SMOOTH_PX = 4.0

_SQUARE3 = np.ones((3, 3), bool)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of ``mask``: labels ``[H, W]`` (0 outside) and their number."""
    parts, n = cast(tuple[np.ndarray, int], ndimage.label(mask, structure=_SQUARE3))
    return np.asarray(parts, np.intp), int(n)


def _flat_cores(f: np.ndarray) -> np.ndarray:
    """Bool ``[H, W]``: the pixel is the centre of a 3×3 window of one grey level (False on the border row)."""
    core = np.zeros(f.shape, bool)
    if min(f.shape) < 3:
        return core
    rows = (f[:, :-2] == f[:, 1:-1]) & (f[:, 1:-1] == f[:, 2:])
    cols = (f[:-2, 1:-1] == f[1:-1, 1:-1]) & (f[1:-1, 1:-1] == f[2:, 1:-1])
    core[1:-1, 1:-1] = rows[:-2] & rows[1:-1] & rows[2:] & cols
    return core


def _blank_parts(
    f: np.ndarray, parts: np.ndarray, n: int, level: np.ndarray, span: float, clipped: tuple[float, ...]
) -> np.ndarray:
    """Bool ``[n + 1]``: which labelled parts are blank: sharp-edged (the median over a part's one-pixel outer ring,
    in another part or in none, of |grey level − the part's level|), and on the border or, not at a ``clipped``
    level, thin or rectangular. Each part is judged inside its own bounding box."""
    keep = np.zeros(n + 1, bool)
    h, w = f.shape
    threshold = SHARP_JUMP * max(span, 1e-12)
    for k, box in enumerate(ndimage.find_objects(parts), start=1):
        if box is None:
            continue
        rows, cols = box
        y0, y1, x0, x1 = max(rows.start - 1, 0), min(rows.stop + 1, h), max(cols.start - 1, 0), min(cols.stop + 1, w)
        mine = parts[y0:y1, x0:x1] == k
        ring = np.asarray(ndimage.binary_dilation(mine, _SQUARE3), bool) & ~mine
        if not ring.any():
            continue
        if np.median(np.abs(f[y0:y1, x0:x1][ring].astype(np.float64) - level[k])) < threshold:
            continue
        if rows.start == 0 or cols.start == 0 or rows.stop == h or cols.stop == w:
            keep[k] = True
            continue
        if float(level[k]) in clipped:
            continue
        area = int(np.count_nonzero(mine))
        widest = float(np.max(np.asarray(ndimage.distance_transform_edt(mine))))
        thin = area >= THIN_RATIO * np.pi * max(widest, 0.5) ** 2
        boxed = area >= MIN_RECTANGLE_PX and area == (rows.stop - rows.start) * (cols.stop - cols.start)
        keep[k] = thin or boxed
    return keep


def _with_small_holes(blank: np.ndarray) -> np.ndarray:
    """``blank`` with each hole it encloses filled when the hole is no larger than the part around it (the inside of
    an "o" or a "0"; not the specimen inside padding all round)."""
    holes = np.asarray(ndimage.binary_fill_holes(blank), bool) & ~blank
    if not holes.any():
        return blank
    parts, n = _components(blank)
    hole_parts, m = _components(holes)
    size = np.bincount(parts.ravel(), minlength=n + 1)
    hole_size = np.bincount(hole_parts.ravel(), minlength=m + 1)
    around = np.asarray(ndimage.maximum_filter(parts, size=3))
    owner = np.zeros(m + 1, np.intp)
    np.maximum.at(owner, hole_parts[holes], around[holes])
    small = hole_size <= size[owner]
    small[0] = False
    return blank | small[hole_parts]


def blank_regions(frame: np.ndarray) -> np.ndarray:
    """Bool ``[H, W]``: the pixels of ``frame`` that are not specimen (see the module's description).

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        Raw grey levels (any real dtype).

    Returns
    -------
    ndarray bool (H, W); all False for a frame that is noisy everywhere.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.poisson(100, (128, 128)).astype(np.uint16)
    >>> bool(blank_regions(f).any())
    False
    >>> f[:, :6] = 0  # a band left by a drift correction
    >>> f[100:106, 20:50] = f.max()  # a scale bar
    >>> b = blank_regions(f)
    >>> bool(b[:, :6].all()), bool(b[100:106, 20:50].all()), int(b[10:90, 20:120].sum())
    (True, True, 0)
    """
    f = np.asarray(frame)
    out = np.zeros(f.shape, bool)
    if f.ndim != 2 or min(f.shape) < 3:
        return out
    core = _flat_cores(f)
    lo = hi = None
    extremes = (float(f.max()), float(f.min()))
    clipped = tuple(v for v in extremes if np.count_nonzero(f == v) > CLIPPED_FRACTION * f.size)
    if core.any():
        # every pixel of a flat window holds the window's level; one part per connected patch of one level
        flat = np.asarray(ndimage.binary_dilation(core, _SQUARE3), bool)
        _, level_index = np.unique(f[flat], return_inverse=True)
        levels = np.zeros(f.shape, np.int64)
        levels[flat] = level_index.ravel() + 1
        parts = np.asarray(label(levels, background=0, connectivity=2), np.intp)
        n = int(parts.max())
        big = np.bincount(parts.ravel(), minlength=n + 1) >= MIN_BLANK_PX
        big[0] = False
        if big.any():
            lo, hi = np.percentile(f, [1.0, 99.0])
            parts = np.where(big[parts], parts, 0)
            level = np.zeros(n + 1)
            level[parts[core]] = f[core]
            out |= _blank_parts(f, parts, n, level, float(hi - lo), clipped)[parts]
    for value in extremes:
        if value in clipped:
            continue
        at = f == value
        if np.count_nonzero(at) < MIN_GLYPH_PX:
            continue
        parts, n = _components(at)
        size = np.bincount(parts.ravel(), minlength=n + 1)
        block = at[:-1, :-1] & at[1:, :-1] & at[:-1, 1:] & at[1:, 1:]
        in_block = np.zeros(f.shape, bool)
        for dy in (0, 1):
            for dx in (0, 1):
                in_block[dy : dy + block.shape[0], dx : dx + block.shape[1]] |= block
        solid = np.bincount(parts[in_block], minlength=n + 1) >= SOLID_FRACTION * size
        hit = (size >= MIN_GLYPH_PX) & solid
        hit[0] = False
        if not hit.any():
            continue
        parts = np.where(hit[parts], parts, 0)
        if lo is None or hi is None:
            lo, hi = np.percentile(f, [1.0, 99.0])
        out |= _blank_parts(f, parts, n, np.full(n + 1, value), float(hi - lo), clipped)[parts]
    if out.any():
        out = _with_small_holes(out)
        out = ndimage.binary_dilation(out, _SQUARE3)
    if np.count_nonzero(out) > MAX_BLANK_FRACTION * out.size:
        out[:] = False
    return out


def fill_blank(frame: np.ndarray, blank: np.ndarray | None = None) -> np.ndarray:
    """``frame`` (float64) with its blank regions replaced by featureless noise like the specimen around them.

    Each blank pixel takes the grey level of the nearest specimen pixel, smoothed over :data:`FILL_SMOOTH_PX`, plus
    Gaussian noise of the frame's own pixel-to-pixel spread (seeded: the same frame gets the same fill).

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        Raw grey levels.
    blank : ndarray bool (H, W), optional
        Its blank regions (default: :func:`blank_regions` of ``frame``).

    Returns
    -------
    ndarray float64 (H, W): ``frame`` itself (as float64) where nothing is blank or nothing is specimen.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(100.0, 5.0, (64, 64)).round()
    >>> f[:, :8] = 0.0
    >>> g = fill_blank(f)
    >>> bool(abs(g[:, :8].mean() - 100.0) < 3.0), bool(3.0 < g[:, :8].std() < 8.0), bool((g[:, 12:] == f[:, 12:]).all())
    (True, True, True)
    """
    x = np.asarray(frame, dtype=np.float64)
    b = blank_regions(x) if blank is None else np.asarray(blank, bool)
    if not b.any() or b.all():
        return x
    live = ~b
    step = np.diff(x, axis=1)[live[:, 1:] & live[:, :-1]]
    spread = 1.4826 * float(np.median(np.abs(step - np.median(step)))) / np.sqrt(2.0) if step.size else 0.0
    noise = np.zeros(x.shape)
    noise[b] = spread * np.random.default_rng(FILL_SEED).standard_normal(int(np.count_nonzero(b)))
    out = x.copy()
    parts, _ = _components(b)
    margin = int(np.ceil(4 * FILL_SMOOTH_PX)) + 4  # beyond the smoothing kernel's reach
    h, w = x.shape
    for rows, cols in (box for box in ndimage.find_objects(parts) if box is not None):
        # each blank part in its own box: the nearest specimen pixel, smoothed, plus the noise drawn above
        crop = np.s_[max(rows.start - margin, 0) : rows.stop + margin, max(cols.start - margin, 0) : cols.stop + margin]
        sub, xs = b[crop], x[crop]
        if sub.all():
            sub, xs, crop = b, x, np.s_[0:h, 0:w]
        nearest = np.asarray(ndimage.distance_transform_edt(sub, return_distances=False, return_indices=True), np.intp)
        smooth = ndimage.gaussian_filter(xs[nearest[0], nearest[1]], FILL_SMOOTH_PX)
        out[crop][sub] = smooth[sub] + noise[crop][sub]
    return out


def specimen_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blank regions ``[T, H, W]`` bool of ``frames`` ``[T, H, W]`` and the frames with them filled
    (:func:`fill_blank`; ``frames`` themselves when no frame has any).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.poisson(100, (2, 32, 32)).astype(np.uint16)
    >>> blank, filled = specimen_frames(f)
    >>> bool(blank.any()), filled is f
    (False, True)
    """
    a = np.asarray(frames)
    blank = np.stack([blank_regions(x) for x in a]) if a.shape[0] else np.zeros(a.shape, bool)
    if not blank.any():
        return blank, a
    filled = np.stack([fill_blank(x, b) if b.any() else x.astype(np.float64) for x, b in zip(a, blank)])
    return blank, filled


def clipped_share(frame: np.ndarray, blank: np.ndarray | None = None) -> float:
    """The larger of the shares of ``frame``'s specimen pixels (``[H, W]``; outside its blank regions,
    :func:`blank_regions` unless given) held by its darkest and by its brightest grey level: about 0 for a frame
    as recorded, the clipped share for an export that saturated its darkest or brightest pixels.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.normal(100.0, 10.0, (64, 64))
    >>> clipped_share(f) < 0.001
    True
    >>> round(clipped_share(np.clip(f, None, np.quantile(f, 0.97))), 2)
    0.03
    """
    f = np.asarray(frame)
    keep = ~(blank_regions(f) if blank is None else np.asarray(blank, bool))
    specimen = f[keep]
    if specimen.size == 0:
        return 0.0
    return float(max((specimen == specimen.min()).mean(), (specimen == specimen.max()).mean()))


def off_blank(masks: np.ndarray, blank: np.ndarray) -> np.ndarray:
    """``masks`` ``[T, H, W]`` bool without the void regions (8-connected) that touch ``blank`` ``[T, H, W]`` (the
    frames' blank regions, :func:`specimen_frames`): a region drawn on a scale bar, a label or a padding band is not
    a void.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> f = rng.poisson(100, (1, 64, 64)).astype(np.uint16); f[0, :, :6] = 0
    >>> m = np.zeros((1, 64, 64), bool); m[0, 10:14, 4:9] = True; m[0, 30:35, 30:35] = True
    >>> int(off_blank(m, specimen_frames(f)[0]).sum())
    25
    """
    m = np.asarray(masks, dtype=bool)
    b = np.asarray(blank, dtype=bool)
    out = m.copy()
    for k in range(m.shape[0]):
        if not (m[k].any() and b[k].any()):
            continue
        parts, n = _components(m[k])
        near = np.asarray(ndimage.binary_dilation(b[k], _SQUARE3), bool)
        touch = np.bincount(parts[near], minlength=n + 1) > 0
        touch[0] = False
        out[k] &= ~touch[parts]
    return out
