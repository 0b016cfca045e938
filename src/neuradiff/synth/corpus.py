"""A domain-randomised corpus of in-situ TEM void frames and short clips, for training and scoring a recogniser
that has to work on recordings it has never seen.

Every sample is drawn from one seed. Voids are faceted (round, hexagonal, rounded-square, slightly elongated),
3–60 px across, from one to a few hundred per frame, sometimes touching; each carries the phase-field model's
equilibrium interface profile ``eta = ½(1 − tanh(d / (√2 ξ)))`` (``d`` the signed distance to the facet outline,
``ξ`` the interface width). In a clip (``frames > 1``) the voids then evolve under the package's void model
(:class:`~neuradiff.physics.VoidModel`, deterministic, a randomised number of steps per frame), so they grow,
shrink, round off and vanish as the phase-field physics says. The frames show them with a randomised contrast
sign (under-focus: bright with a dark Fresnel rim; over-focus: dark with a bright rim) and fringe width,
on a background of things that are *not* voids: dislocation loops (dark rings, arcs and diffuse dark ellipses),
dislocation lines, black-white lobe pairs, bend contours (broad dark bands), thickness gradients, uneven
illumination, stage drift, brightness drift, blur, mottle, shot noise from low dose to clean, scan-line
streaks, and 8- or 16-bit grey levels with a random gain and offset. The void mask marks voids only; where
two voids touch, a one-pixel line between them is left out of the mask so that they stay two objects.

Lengths are in pixels, times in frames.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage
from skimage.measure import find_contours

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path
from neuradiff.physics import VoidModel, VoidParameters, rollout
from neuradiff.physics.void_model import MATRIX_C_I, MATRIX_C_V

SHAPES = ("round", "hexagon", "square")


@dataclass(frozen=True)
class CorpusSettings:
    """What one corpus sample looks like.

    Parameters
    ----------
    size : frame side, pixels.
    frames : frames per clip (1: a still frame, no simulation).
    min_diameter, max_diameter : range of void diameters, pixels (a clip draws its typical size
        log-uniformly in this range and each void scatters ±25 % around it).
    max_voids : most voids in one frame.
    fill : (lo, hi) range of the frame's void area fraction (a frame draws it uniformly; at least one void).
    distractors : draw loops, lines, lobes and bend contours.
    steps_per_frame : (lo, hi) range of phase-field steps between clip frames.
    kernel : {"torch", "fused"}
        How a clip's phase-field steps are computed (:class:`~neuradiff.physics.VoidModel`'s ``kernel``):
        ``"torch"`` (default; every shipped training corpus and scored set was drawn with it) or ``"fused"``, the
        compiled kernel, about 8× faster and equal within float32 round-off, so that a clip of 1024² frames takes
        seconds instead of minutes. A round-off difference can move a mask pixel where eta lies at 0.5, so a seed
        drawn with the other kernel is not guaranteed to be the same sample to the pixel.
    """

    size: int = 128
    frames: int = 1
    min_diameter: float = 3.0
    max_diameter: float = 60.0
    max_voids: int = 300
    distractors: bool = True
    steps_per_frame: tuple[int, int] = (20, 200)
    fill: tuple[float, float] = (0.01, 0.3)
    kernel: str = "torch"

    def __post_init__(self) -> None:
        if self.size < 16:
            raise NeuradiffError(f"corpus frame size must be >= 16 px, got {self.size}")
        if self.frames < 1:
            raise NeuradiffError(f"corpus clips need >= 1 frame, got {self.frames}")
        if not (2.0 <= self.min_diameter <= self.max_diameter):
            raise NeuradiffError(
                f"corpus void diameters need 2 <= min <= max, got {self.min_diameter} and {self.max_diameter}"
            )
        if self.max_voids < 1:
            raise NeuradiffError(f"corpus max_voids must be >= 1, got {self.max_voids}")
        lo, hi = self.steps_per_frame
        if not (1 <= lo <= hi):
            raise NeuradiffError(f"corpus steps_per_frame needs 1 <= lo <= hi, got {self.steps_per_frame}")
        f_lo, f_hi = self.fill
        if not (0 < f_lo <= f_hi < 1):
            raise NeuradiffError(f"corpus fill needs 0 < lo <= hi < 1, got {self.fill}")
        if self.kernel not in ("torch", "fused"):
            raise NeuradiffError(f"corpus kernel must be 'torch' or 'fused', got {self.kernel!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CorpusSample:
    """One clip: ``frames`` ``[T, H, W]`` uint8 or uint16, ``masks`` ``[T, H, W]`` bool (voids only),
    ``eta`` ``[T, H, W]`` float32 (the void order parameter before rendering), and what was drawn."""

    frames: np.ndarray
    masks: np.ndarray
    eta: np.ndarray
    info: dict


def corpus_sample(seed: int, settings: CorpusSettings = CorpusSettings()) -> CorpusSample:
    """Draw one clip of the corpus.

    Parameters
    ----------
    seed : non-negative integer; the same seed and settings give the same sample.
    settings : what to draw.

    Returns
    -------
    CorpusSample

    Examples
    --------
    >>> s = corpus_sample(3, CorpusSettings(size=64))
    >>> s.frames.shape, s.masks.dtype
    ((1, 64, 64), dtype('bool'))
    >>> bool((corpus_sample(3, CorpusSettings(size=64)).frames == s.frames).all())
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NeuradiffError(f"corpus seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([int(seed), 13])
    n = settings.size
    r_voids, r_phys, r_render = (np.random.default_rng(x) for x in rng.integers(0, 2**63 - 1, size=3))
    eta0, inst0, voids = _place_voids(r_voids, settings)
    if settings.frames > 1:
        eta = _evolve(eta0, settings, r_phys)
        drift = _drift(r_phys, settings.frames)
    else:
        eta = eta0[None]
        drift = np.zeros((1, 2))
    masks = np.empty(eta.shape, bool)
    for t in range(eta.shape[0]):
        inst = inst0
        if t > 0 and drift[t].any():  # stage drift moves the specimen: voids and their seeds alike
            eta[t] = ndimage.shift(eta[t], drift[t], order=1, mode="nearest")
            inst = ndimage.shift(inst0, drift[t], order=0, mode="nearest")
        masks[t] = _separate(eta[t] >= 0.5, inst)
    frames, render = _render(eta, r_render, settings, drift)
    info = {
        "seed": int(seed),
        "size": n,
        "n_voids": len(voids),
        "voids": voids,
        "render": render,
        "settings": settings.to_dict(),
    }
    return CorpusSample(frames=frames, masks=masks, eta=eta.astype(np.float32), info=info)


def corpus_batch(seeds, settings: CorpusSettings = CorpusSettings()) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[N, H, W]`` float32 (raw grey levels) and masks ``[N, H, W]`` bool of still samples, one per seed
    (the first frame of each clip)."""
    samples = [corpus_sample(int(s), settings) for s in seeds]
    return (
        np.stack([s.frames[0].astype(np.float32) for s in samples]),
        np.stack([s.masks[0] for s in samples]),
    )


# ------------------------------------------------------------------------------------------------ voids


def _place_voids(rng: np.random.Generator, s: CorpusSettings) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    n = s.size
    d0 = math.exp(rng.uniform(math.log(s.min_diameter), math.log(s.max_diameter)))
    d0 = min(d0, 0.6 * n)
    fill = rng.uniform(*s.fill)
    target = int(np.clip(round(fill * n * n / (math.pi * d0 * d0 / 4)), 1, s.max_voids))
    target = int(rng.integers(max(1, target // 4), target + 1))
    shape_kind = SHAPES[int(rng.integers(len(SHAPES)))]
    mixed = rng.random() < 0.3
    touch = rng.random() < 0.3
    xi = rng.uniform(0.4, 1.0)
    eta = np.zeros((n, n))
    inst = np.zeros((n, n), np.int32)
    placed: list[tuple[float, float, float]] = []
    voids: list[dict] = []
    for _ in range(target * 20):
        if len(placed) >= target:
            break
        d = float(np.clip(d0 * math.exp(rng.normal(0, 0.25)), s.min_diameter, s.max_diameter))
        r = d / 2
        cy, cx = rng.uniform(-0.3 * r, n - 1 + 0.3 * r, size=2)
        gap = rng.uniform(0.9, 1.05) if touch else rng.uniform(1.15, 1.6)
        if any((cy - y) ** 2 + (cx - x) ** 2 < (gap * (r + q)) ** 2 for y, x, q in placed):
            continue
        kind = SHAPES[int(rng.integers(len(SHAPES)))] if mixed else shape_kind
        aspect = rng.uniform(0.85, 1.0)
        angle = rng.uniform(0, 2 * math.pi)
        box = int(math.ceil(r / aspect + 4 * xi + 2))
        y0, y1 = max(0, int(cy) - box), min(n, int(cy) + box + 2)
        x0, x1 = max(0, int(cx) - box), min(n, int(cx) + box + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dist = _signed_distance(yy - cy, xx - cx, r, kind, aspect, angle)
        e = 0.5 * (1.0 - np.tanh(dist / (math.sqrt(2.0) * xi)))
        sub = eta[y0:y1, x0:x1]
        mine = (e >= 0.5) & (e > sub)
        inst[y0:y1, x0:x1][mine] = len(placed) + 1
        np.maximum(sub, e, out=sub)
        placed.append((cy, cx, r))
        voids.append({"y": float(cy), "x": float(cx), "diameter": d, "shape": kind, "aspect": float(aspect)})
    return eta, inst, voids


def _signed_distance(y, x, r, kind, aspect, angle):
    """Approximate signed distance (px, negative inside) to a facet outline of circumradius-like size ``r``."""
    c, s_ = math.cos(angle), math.sin(angle)
    u = c * x + s_ * y
    v = (-s_ * x + c * y) / aspect
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    if kind == "hexagon":
        seg = np.mod(theta, math.pi / 3) - math.pi / 6
        edge = r * math.cos(math.pi / 6) / np.cos(seg) / math.cos(math.pi / 6) ** 0.5
    elif kind == "square":
        p = 4.0
        edge = r * 0.92 / (np.abs(np.cos(theta)) ** p + np.abs(np.sin(theta)) ** p) ** (1 / p)
    else:
        edge = r
    return rho - edge


def _evolve(eta0: np.ndarray, s: CorpusSettings, rng: np.random.Generator) -> np.ndarray:
    """``[T, H, W]`` eta: frame 0 is ``eta0``, later frames follow the void model (deterministic, no-flux walls)."""
    model = VoidModel("conservative", boundary="no-flux", kernel=s.kernel)
    params = VoidParameters.paper()
    e = torch.from_numpy(eta0).to(torch.float32)
    state = torch.stack([MATRIX_C_V + (1 - MATRIX_C_V) * e, torch.full_like(e, MATRIX_C_I), e])[None]
    lo, hi = s.steps_per_frame
    every = int(rng.integers(lo, hi + 1))
    out = [eta0]
    with torch.no_grad():
        for _ in range(s.frames - 1):
            tr = rollout(model, state, params, dt=0.02, n_steps=every, diagnostics=False)
            state = tr.final
            out.append(state[0, 2].clamp(0, 1).double().numpy())
    return np.stack(out)


def _drift(rng: np.random.Generator, t_len: int) -> np.ndarray:
    """``[T, 2]`` (y, x) specimen shift per frame, pixels: a straight path at up to 0.5 px per frame."""
    speed, angle = rng.uniform(0.0, 0.5), rng.uniform(0, 2 * math.pi)
    t = np.arange(t_len, dtype=np.float64)[:, None]
    return t * speed * np.array([[math.sin(angle), math.cos(angle)]])


def _separate(mask: np.ndarray, inst0: np.ndarray) -> np.ndarray:
    """``mask`` with a 1-px line left out where pixels of two different voids meet (voids = nearest seed)."""
    if inst0.max() < 2 or not mask.any():
        return mask
    nearest = np.asarray(ndimage.distance_transform_edt(inst0 == 0, return_distances=False, return_indices=True))
    iy, ix = nearest[0], nearest[1]
    lab = np.where(mask, inst0[iy, ix], 0)
    grown = ndimage.grey_dilation(lab, size=3)
    lab_min = -ndimage.grey_dilation(np.where(lab > 0, -lab, -(10**9)), size=3)
    border = (lab > 0) & ((grown != lab) | (lab_min != lab))
    # keep the line one pixel thick: drop only the higher-numbered side
    border &= grown == lab
    return mask & ~border


# --------------------------------------------------------------------------------------------- rendering


def _smooth(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _distractors(rng: np.random.Generator, n: int, scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Dark (and bright) features that are not voids: ``(darkening, brightening)`` ``[H, W]`` and their counts."""
    dark = np.zeros((n, n))
    bright = np.zeros((n, n))
    counts = {"rings": 0, "blobs": 0, "lines": 0, "lobes": 0, "bends": 0}
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    density = rng.uniform(0.0, 1.0)
    area = (n / 128.0) ** 2
    # dislocation loops seen edge-on or inclined: rings and arcs, elongated
    for _ in range(rng.poisson(6 * density * area)):
        cy, cx = rng.uniform(0, n, 2)
        a = rng.uniform(2, 20) * scale
        b = a * rng.uniform(0.25, 0.8)
        ang = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
        v = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
        rr = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        w = rng.uniform(0.8, 2.0) / max(b, 1.0)
        ring = np.exp(-(((rr - 1) / w) ** 2))
        if rng.random() < 0.5:  # an arc
            phi = np.arctan2(v, u)
            ring *= np.cos(phi - rng.uniform(0, 2 * math.pi)) > rng.uniform(-0.5, 0.5)
        dark += rng.uniform(0.2, 0.6) * ring
        counts["rings"] += 1
    # loops as diffuse dark ellipses ("black dots", elongated)
    for _ in range(rng.poisson(8 * density * area)):
        cy, cx = rng.uniform(0, n, 2)
        a = rng.uniform(1.5, 18) * scale
        b = a * rng.uniform(0.2, 0.9)
        ang = rng.uniform(0, math.pi)
        u = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
        v = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
        dark += rng.uniform(0.15, 0.6) * np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))
        counts["blobs"] += 1
    # dislocation lines: thin dark curves
    for _ in range(rng.poisson(2 * density * area)):
        p = rng.uniform(0, n, 2)
        ang = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(20, 1.5 * n)
        curv = rng.normal(0, 0.01)
        pts = []
        for _ in range(int(length)):
            pts.append(p.copy())
            ang += curv
            p = p + (math.sin(ang), math.cos(ang))
        line = np.zeros((n, n))
        q = np.round(np.array(pts)).astype(int)
        ok = (q[:, 0] >= 0) & (q[:, 0] < n) & (q[:, 1] >= 0) & (q[:, 1] < n)
        line[q[ok, 0], q[ok, 1]] = 1.0
        line = ndimage.gaussian_filter(line, rng.uniform(0.6, 1.5))
        dark += rng.uniform(0.3, 0.8) * line / (line.max() + 1e-12)
        counts["lines"] += 1
    # black-white lobe pairs (small loops, strain contrast)
    for _ in range(rng.poisson(6 * density * area)):
        cy, cx = rng.uniform(0, n, 2)
        sig = rng.uniform(1.0, 5.0) * scale
        ang = rng.uniform(0, 2 * math.pi)
        oy, ox = 0.9 * sig * math.sin(ang), 0.9 * sig * math.cos(ang)
        amp = rng.uniform(0.2, 0.5)
        dark += amp * np.exp(-0.5 * (((yy - cy - oy) ** 2 + (xx - cx - ox) ** 2) / sig**2))
        bright += amp * np.exp(-0.5 * (((yy - cy + oy) ** 2 + (xx - cx + ox) ** 2) / sig**2))
        counts["lobes"] += 1
    # bend contours: broad dark bands along a level line of a smooth field
    if rng.random() < 0.5:
        f = _smooth(rng, (n, n), n / rng.uniform(2.0, 5.0))
        level = rng.uniform(-1, 1)
        width = rng.uniform(0.1, 0.4)
        dark += rng.uniform(0.2, 0.6) * np.exp(-(((f - level) / width) ** 2))
        counts["bends"] = 1
    return dark, bright, counts


def _render(eta: np.ndarray, rng: np.random.Generator, s: CorpusSettings, drift: np.ndarray) -> tuple[np.ndarray, dict]:
    t_len, n, _ = eta.shape
    sign = 1.0 if rng.random() < 0.5 else -1.0  # +1 under-focus (bright void, dark rim), -1 over-focus
    contrast = rng.uniform(0.12, 0.5)
    fringe = rng.uniform(0.15, 0.8)
    fringe_w = rng.uniform(0.6, 2.5)
    blur = rng.uniform(0.3, 1.5)
    dose = math.exp(rng.uniform(math.log(3.0), math.log(1000.0)))
    # keep every void visible: its contrast (weakened by blur for the smallest) at least 3 noise sigmas
    smallest = max(float(np.sum(eta[0] >= 0.5) > 0), 1.0) * s.min_diameter
    visible = (contrast + 0.5 * fringe) * min(1.0, smallest / (4.0 * blur))
    dose = max(dose, (3.0 / visible) ** 2)
    bit_depth = 8 if rng.random() < 0.6 else 16
    grain = rng.uniform(0.0, 0.1)
    streaks = rng.uniform(0.0, 0.06) if rng.random() < 0.3 else 0.0
    fade = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.6, 1.6)

    yy = (np.arange(n) - n / 2) / n
    ang = rng.uniform(0, 2 * math.pi)
    ramp = rng.uniform(0, 0.6) * (math.sin(ang) * yy[:, None] + math.cos(ang) * yy[None, :])
    lumpy = rng.uniform(0, 0.25) * _smooth(rng, (n, n), n / rng.uniform(1.5, 4.0))
    texture = grain * (_smooth(rng, (n, n), 0.7) + 0.8 * _smooth(rng, (n, n), rng.uniform(2, 6)))
    background = np.exp(ramp + lumpy + texture)
    if s.distractors:
        dark, bright, counts = _distractors(rng, n, scale)
    else:
        dark, bright, counts = np.zeros((n, n)), np.zeros((n, n)), {}
    specimen = background * np.clip(1.0 - dark, 0.1, None) * (1.0 + bright)
    if streaks:
        specimen *= 1.0 + streaks * ndimage.gaussian_filter1d(rng.standard_normal((n, 1)), 0.7, axis=0)

    offset = rng.uniform(0.02, 0.2)
    full = 2**bit_depth - 1
    gain = rng.uniform(0.2, 0.45) * full
    frames = np.empty(eta.shape, np.uint8 if bit_depth == 8 else np.uint16)
    for t in range(t_len):
        e = eta[t]
        spread = ndimage.gaussian_filter(e, fringe_w)
        outer = np.clip(spread - e, 0, None)
        inner = np.clip(e - spread, 0, None)
        void = 1.0 + sign * (contrast * e - 2.0 * fringe * outer + 0.8 * fringe * inner)
        img = specimen * np.clip(void, 0.05, None)
        if t > 0 and drift[t].any():  # eta is already shifted; the rest of the specimen moves with it
            img = np.clip(void, 0.05, None) * ndimage.shift(specimen, drift[t], order=1, mode="nearest")
        img = ndimage.gaussian_filter(img, blur)
        level = 1.0 + fade * t / max(t_len - 1, 1)
        counts_e = rng.poisson(np.clip(img * level, 0, None) * dose) / dose
        grey = offset * full + gain * counts_e / (1.0 + offset)
        frames[t] = np.clip(np.rint(grey), 0, full)
    info = {
        "contrast": "bright void, dark rim" if sign > 0 else "dark void, bright rim",
        "void_contrast": contrast,
        "fringe": fringe,
        "fringe_width_px": fringe_w,
        "blur_px": blur,
        "dose": dose,
        "bit_depth": bit_depth,
        "distractors": counts,
    }
    return frames, info


def corpus_contact_sheet(path, seeds, settings: CorpusSettings = CorpusSettings(), *, columns: int = 6) -> None:
    """A PNG of the first frame of each seed's sample, raw (top) and with the void outlines in red (below)."""
    seeds = [int(s) for s in seeds]
    rows = math.ceil(len(seeds) / columns)
    fig = Figure(figsize=(2.0 * columns, 4.1 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * rows, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, seed in enumerate(seeds):
        s = corpus_sample(seed, settings)
        r, c = divmod(k, columns)
        for j, ax in enumerate((axes[2 * r, c], axes[2 * r + 1, c])):
            ax.imshow(s.frames[0], cmap="gray")
            if j:
                for line in find_contours(s.masks[0].astype(float), 0.5):
                    ax.plot(line[:, 1], line[:, 0], color="red", lw=0.6)
        axes[2 * r, c].set_title(
            f"seed {seed}: {s.info['n_voids']} voids\n{s.info['render']['contrast']}, "
            f"{s.info['render']['bit_depth']}-bit",
            fontsize=6,
        )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, metadata={"Software": None})


__all__ = ["SHAPES", "CorpusSample", "CorpusSettings", "corpus_batch", "corpus_contact_sheet", "corpus_sample"]
