"""Synthetic in-situ TEM videos of voids from phase-field fields (numpy in, numpy out).

Two modes:

``"tem"`` (default)
    an under-focused bright-field TEM video: voids brighter than the matrix with a dark Fresnel fringe just
    outside the rim, a mottled grainy background, slowly moving dark "black shades" (partly driven by the
    local vacancy and interstitial concentrations), point-spread blur, Poisson shot noise, brightness
    flicker and slow stage drift.
``"reference"``
    the published reference recipe: Gaussian void/matrix intensities i.i.d. per pixel and frame, a
    19 × 3 × 3 (time × space) box filter applied as a valid convolution, ``v·128 + 128`` as uint8.

Lengths are in pixels (= simulation grid units), times in frames.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from scipy import ndimage

from neuradiff.core.config import settings_class
from neuradiff.core.errors import NeuradiffError

MODES = ("tem", "reference")

#: Reference recipe: void and matrix intensity distributions (mean, std) before the box filter.
REFERENCE_VOID = (0.0560, 0.2528)
REFERENCE_MATRIX = (-0.2081, 0.2141)
#: Reference recipe: box filter size (time, y, x).
REFERENCE_BOX = (19, 3, 3)

#: tem mode: relative brightness gain inside a void (eta = 1) over the matrix.
VOID_GAIN = 0.45
#: tem mode: grey level of the unshaded matrix as a fraction of the full scale.
MATRIX_LEVEL = 0.42
#: tem mode: peak-to-peak relative amplitude of the (fixed, not drifting) illumination ramp.
ILLUMINATION_RAMP = 0.06
#: tem mode: speed of the black shades in the specimen, pixels per frame, and their morphing rate, rad per frame.
SHADE_SPEED = 0.12
SHADE_MORPH = 0.015
#: tem mode: relative excess of c_v, resp. c_i, over its matrix median that gives a clearly visible shade.
CV_EXCESS_SCALE = 0.1
CI_EXCESS_SCALE = 1.0
#: Tolerance on eta outside [0, 1] (clipped); larger excursions are an error.
ETA_TOLERANCE = 1e-3
#: Erosion (pixels) of both classes away from the void rim in the CNR measurement.
CNR_EROSION = 2
#: Width (pixels) of the Gaussian background estimate subtracted before the noise std is measured.
CNR_BACKGROUND_SIGMA = 3.0


@settings_class("render", frozen=True)
class RenderSettings:
    """How fields become frames.

    Parameters
    ----------
    mode : ``"tem"`` or ``"reference"`` (the reference recipe ignores all other knobs but ``bit_depth``).
    dose : electrons per pixel per frame on the unshaded matrix (Poisson shot noise); higher is less noisy.
    defocus : under-focus; sets both the width (≈ 0.5 + 0.7·defocus px) and the depth of the dark Fresnel
        fringe outside void rims. 0 = in focus, no fringe.
    blur_sigma : point-spread blur (Gaussian sigma), pixels.
    shade_strength : maximum relative darkening of the random black shades (0–1).
    shade_scale : correlation length of the black shades, pixels.
    concentration_coupling : relative darkening where c_v or c_i exceed their matrix median (0 = none).
    grain : relative rms amplitude of the static grainy/mottled specimen texture.
    flicker : relative rms frame-to-frame brightness fluctuation.
    drift : mean stage drift speed, pixels per frame (smooth random walk).
    bit_depth : 8 (uint8 frames) or 16 (uint16 frames).
    """

    mode: str = "tem"
    dose: float = 100.0
    defocus: float = 1.5
    blur_sigma: float = 0.8
    shade_strength: float = 0.3
    shade_scale: float = 20.0
    concentration_coupling: float = 0.3
    grain: float = 0.04
    flicker: float = 0.02
    drift: float = 0.1
    bit_depth: int = 8

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise NeuradiffError(f"unknown render mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for name in (
            "dose",
            "defocus",
            "blur_sigma",
            "shade_strength",
            "shade_scale",
            "concentration_coupling",
            "grain",
            "flicker",
            "drift",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise NeuradiffError(f"render setting {name} must be a finite number >= 0, got {value!r}")
        if self.dose <= 0:
            raise NeuradiffError(f"render setting dose must be > 0 electrons/pixel/frame, got {self.dose!r}")
        if self.shade_scale <= 0:
            raise NeuradiffError(f"render setting shade_scale must be > 0 pixels, got {self.shade_scale!r}")
        if self.shade_strength > 1:
            raise NeuradiffError(f"render setting shade_strength must be in [0, 1], got {self.shade_strength!r}")
        if self.bit_depth not in (8, 16):
            raise NeuradiffError(f"render setting bit_depth must be 8 or 16, got {self.bit_depth!r}")

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict."""
        return dataclasses.asdict(self)


def render_video(
    eta: np.ndarray,
    *,
    c_v: np.ndarray | None = None,
    c_i: np.ndarray | None = None,
    settings: RenderSettings = RenderSettings(),
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Render a video of voids from the void order parameter (and optionally the concentrations).

    Parameters
    ----------
    eta : ``[T, H, W]`` void order parameter in [0, 1] (1 = void).
    c_v, c_i : ``[T, H, W]`` vacancy and interstitial site fractions, or None (tem mode: drive part of the
        black shades; reference mode: unused).
    settings : the rendering recipe.
    seed : seed of every random number used.

    Returns
    -------
    frames : ``[T', H', W']`` uint8 (bit_depth 8) or uint16 (bit_depth 16). tem mode: ``T' = T``, same size.
        reference mode: ``T' = T − 18``, ``H' = H − 2``, ``W' = W − 2``; frame j shows simulation frame
        ``j + frame_offset`` cropped by ``crop`` pixels on each side.
    info : dict with ``mode``, ``cnr`` (measured by :func:`contrast_to_noise`, NaN if a class is empty),
        ``drift_px`` (``[T', 2]`` float, (y, x) shift of the specimen in each frame, see :func:`shift_like`),
        ``frame_offset``, ``crop``, ``void_mean``, ``matrix_mean``, ``noise_std`` (grey levels), ``seed``,
        ``settings``.
    """
    if not isinstance(settings, RenderSettings):
        raise NeuradiffError(f"settings must be a RenderSettings, got {type(settings).__name__}")
    eta = check_eta(eta)
    c_v = _check_concentration(c_v, "c_v", eta.shape)
    c_i = _check_concentration(c_i, "c_i", eta.shape)
    seed = _check_seed(seed)
    if settings.mode == "reference":
        frames, drift, offset, crop, mask = _render_reference(eta, settings.bit_depth, seed)
    else:
        frames, drift = _render_tem(eta, c_v, c_i, settings, seed)
        offset, crop = 0, 0
        mask = shift_like(eta, drift) >= 0.5
    stats = _cnr_stats(frames, mask)
    info = {
        "mode": settings.mode,
        "cnr": stats["cnr"],
        "void_mean": stats["void_mean"],
        "matrix_mean": stats["matrix_mean"],
        "noise_std": stats["noise_std"],
        "drift_px": drift,
        "frame_offset": offset,
        "crop": crop,
        "n_frames": int(frames.shape[0]),
        "seed": seed,
        "settings": settings.to_dict(),
    }
    return frames, info


def contrast_to_noise(frames: np.ndarray, void_mask: np.ndarray) -> float:
    """Measured contrast-to-noise ratio of voids against the matrix.

    ``CNR = |mean(void) − mean(matrix)| / σ``, both means over pixels at least 2 px away from the void rim
    (each class eroded by a radius-2 disk, frame by frame; pixels within 2 px of the image border are left
    out too). σ is the spatial high-frequency noise of the matrix: each frame minus a Gaussian (σ = 3 px)
    background estimated from the eroded matrix pixels alone (normalised convolution), taken over the eroded
    matrix pixels as a robust std (std of the residuals within 5 MAD-sigmas of their median), corrected to be
    unbiased for white noise. It includes shot noise and the fine specimen texture, not the slowly varying
    shades or flicker. Not temporal differences: those miss static texture and are blind to time-filtered
    noise (reference mode).

    Parameters
    ----------
    frames : ``[T, H, W]`` intensities (any real dtype).
    void_mask : ``[T, H, W]`` bool (or 0/1 integers), True on void pixels, aligned with ``frames``.

    Returns
    -------
    float, NaN when either class is empty after erosion or the noise is zero.
    """
    return _cnr_stats(frames, void_mask)["cnr"]


def shift_like(
    arrays: np.ndarray, drift_px: np.ndarray, *, order: int | None = None, mode: str = "grid-wrap"
) -> np.ndarray:
    """Apply per-frame specimen shifts (as returned in ``info["drift_px"]``) to a stack.

    Parameters
    ----------
    arrays : ``[T, H, W]`` stack (eta, a bool/int mask or an annotation stack).
    drift_px : ``[T, 2]`` (y, x) shift of frame t in pixels; content moves by +shift.
    order : interpolation order; default 0 (nearest) for bool/integer stacks, 1 (linear) for floats.
    mode : boundary handling of :func:`scipy.ndimage.shift` (default periodic, as used by the renderer).

    Returns
    -------
    ``[T, H, W]`` array of the input dtype.
    """
    a = np.asarray(arrays)
    d = np.asarray(drift_px, dtype=np.float64)
    if a.ndim != 3:
        raise NeuradiffError(f"shift_like expects a [T, H, W] stack, got shape {a.shape}")
    if d.shape != (a.shape[0], 2):
        raise NeuradiffError(f"drift_px must have shape ({a.shape[0]}, 2) for {a.shape[0]} frames, got {d.shape}")
    if not np.isfinite(d).all():
        raise NeuradiffError("drift_px contains NaN or Inf")
    if order is None:
        order = 0 if a.dtype.kind in "biu" else 1
    work = a.view(np.uint8) if a.dtype == np.bool_ else a
    out = np.empty_like(work)
    for t in range(a.shape[0]):
        if d[t, 0] == 0.0 and d[t, 1] == 0.0:
            out[t] = work[t]
        else:
            ndimage.shift(work[t], d[t], output=out[t], order=order, mode=mode)
    return out.view(np.bool_) if a.dtype == np.bool_ else out


# ----------------------------------------------------------------------------------------------- tem mode


def _render_tem(
    eta: np.ndarray, c_v: np.ndarray | None, c_i: np.ndarray | None, s: RenderSettings, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    t_len, h, w = eta.shape
    rng = np.random.default_rng(seed)
    # one independent stream per ingredient, so switching one off leaves the others unchanged
    r_texture, r_shade, r_drift, r_flicker, r_beam, r_noise = (
        np.random.default_rng(x) for x in rng.integers(0, 2**63 - 1, size=6)
    )

    # voids: brighter, with a dark Fresnel fringe outside and a faint bright one inside the rim
    img = 1.0 + VOID_GAIN * eta
    if s.defocus > 0:
        width = 0.5 + 0.7 * s.defocus
        depth = 0.7 * (1.0 - math.exp(-s.defocus))
        spread = ndimage.gaussian_filter(eta, (0, width, width), mode="wrap")
        outer = np.clip(spread - eta, 0.0, None)
        inner = np.clip(eta - spread, 0.0, None)
        img *= 1.0 - 2.0 * depth * outer + 0.8 * depth * inner

    # static specimen texture: fine grain plus a mottle of a few pixels
    if s.grain > 0:
        texture = _smooth_noise(r_texture, (h, w), 0.7) + 0.8 * _smooth_noise(r_texture, (h, w), 4.0)
        img *= (1.0 + s.grain * texture)[None]

    # black shades: moving random blotches plus darkening where c_v / c_i exceed the matrix level
    darkness = np.zeros_like(img)
    if s.shade_strength > 0:
        field = _moving_field(r_shade, t_len, (h, w), s.shade_scale / 2.0)
        darkness += s.shade_strength / (1.0 + np.exp(-(field - 0.9) / 0.25))
    if s.concentration_coupling > 0 and (c_v is not None or c_i is not None):
        terms = [
            _excess(c, eta, scale) for c, scale in ((c_v, CV_EXCESS_SCALE), (c_i, CI_EXCESS_SCALE)) if c is not None
        ]
        darkness += s.concentration_coupling * sum(terms) / len(terms)
    img *= 1.0 - np.clip(darkness, 0.0, 0.9)

    # stage drift moves the whole specimen image
    drift = _drift_path(r_drift, t_len, s.drift)
    if s.drift > 0:
        moved = np.empty_like(img)
        for t in range(t_len):
            ndimage.shift(img[t], drift[t], output=moved[t], order=3, mode="grid-wrap")
        img = np.clip(moved, 0.0, None, out=moved)

    if s.blur_sigma > 0:
        img = ndimage.gaussian_filter(img, (0, s.blur_sigma, s.blur_sigma), mode="wrap")

    # illumination (fixed ramp and flicker), then shot noise and grey levels
    angle = r_beam.uniform(0, 2 * np.pi)
    yy = (np.arange(h) - (h - 1) / 2) / max(h, w)
    xx = (np.arange(w) - (w - 1) / 2) / max(h, w)
    beam = 1.0 + ILLUMINATION_RAMP * (math.sin(angle) * yy[:, None] + math.cos(angle) * xx[None, :])
    gain = 1.0 + s.flicker * np.clip(r_flicker.standard_normal(t_len), -3, 3)
    img *= beam[None] * np.clip(gain, 0.05, None)[:, None, None]
    counts = r_noise.poisson(s.dose * img)
    full = 2**s.bit_depth - 1
    grey = np.rint(counts * (MATRIX_LEVEL * full / s.dose))
    frames = np.clip(grey, 0, full).astype(np.uint8 if s.bit_depth == 8 else np.uint16)
    return frames, drift


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Periodic Gaussian-correlated noise of unit std, ``[H, W]``."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-12)


def _moving_field(rng: np.random.Generator, t_len: int, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Unit-variance periodic Gaussian random field ``[T, H, W]`` that translates and slowly morphs."""
    h, w = shape
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    envelope = np.exp(-2.0 * np.pi**2 * sigma**2 * (ky**2 + kx**2))
    spectra = []
    for _ in range(2):
        spec = np.fft.rfft2(rng.standard_normal(shape)) * envelope
        spec[0, 0] = 0.0
        std = np.fft.irfft2(spec, s=shape).std()
        spectra.append(spec / (std + 1e-12))
    direction = rng.uniform(0, 2 * np.pi)
    phase0 = rng.uniform(0, 2 * np.pi)
    t = np.arange(t_len, dtype=np.float64)[:, None, None]
    dy, dx = SHADE_SPEED * math.sin(direction) * t, SHADE_SPEED * math.cos(direction) * t
    ramp = np.exp(-2j * np.pi * (ky[None] * dy + kx[None] * dx))
    theta = phase0 + SHADE_MORPH * t
    return np.cos(theta) * np.fft.irfft2(spectra[0][None] * ramp, s=shape, axes=(-2, -1)) + np.sin(
        theta
    ) * np.fft.irfft2(spectra[1][None] * ramp, s=shape, axes=(-2, -1))


def _excess(c: np.ndarray, eta: np.ndarray, rel_scale: float) -> np.ndarray:
    """Darkening weight in [0, 1) where the matrix concentration exceeds its median, ``[T, H, W]``."""
    matrix = eta < 0.5
    if not matrix.any():
        return np.zeros_like(c)
    ref = float(np.median(c[matrix]))
    scale = rel_scale * abs(ref)
    if scale <= 0:
        scale = float(np.std(c[matrix])) or 1.0
    dev = np.tanh(np.clip((c - ref) / scale, 0.0, None)) * (1.0 - eta) ** 2
    return ndimage.gaussian_filter(dev, (0, 1.5, 1.5), mode="wrap")


def _drift_path(rng: np.random.Generator, t_len: int, speed: float) -> np.ndarray:
    """Smooth random-walk stage positions ``[T, 2]`` (y, x) in pixels, starting at 0, mean step ``speed``."""
    if speed <= 0 or t_len < 2:
        return np.zeros((t_len, 2))
    heading = rng.uniform(0, 2 * np.pi)
    wobble = ndimage.gaussian_filter1d(rng.standard_normal((t_len - 1, 2)), 6.0, axis=0, mode="nearest")
    wobble /= np.sqrt((wobble**2).sum(axis=1).mean()) + 1e-12
    velocity = np.array([math.sin(heading), math.cos(heading)]) + 0.7 * wobble
    velocity *= speed / np.linalg.norm(velocity, axis=1).mean()
    return np.concatenate([np.zeros((1, 2)), np.cumsum(velocity, axis=0)])


# ----------------------------------------------------------------------------------------- reference mode


def _render_reference(eta: np.ndarray, bit_depth: int, seed: int):
    t_len, h, w = eta.shape
    bt, by, bx = REFERENCE_BOX
    if t_len < bt or h < by or w < bx:
        raise NeuradiffError(f"reference mode needs at least {bt} frames of {by}×{bx} pixels, got {eta.shape}")
    rng = np.random.default_rng(seed)
    a = rng.normal(REFERENCE_VOID[0], REFERENCE_VOID[1], size=eta.shape)
    b = rng.normal(REFERENCE_MATRIX[0], REFERENCE_MATRIX[1], size=eta.shape)
    v = eta * a + (1.0 - eta) * b
    v = _box_valid(v, REFERENCE_BOX)
    half = 2 ** (bit_depth - 1)
    full = 2**bit_depth - 1
    grey = np.clip(np.trunc(v * half + half), 0, full)
    frames = grey.astype(np.uint8 if bit_depth == 8 else np.uint16)
    offset, crop = bt // 2, by // 2
    mask = eta[offset : t_len - offset, crop : h - crop, crop : w - crop] >= 0.5
    return frames, np.zeros((frames.shape[0], 2)), offset, crop, mask


def _box_valid(v: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Mean over a box of ``size``, valid part only (output shrinks by size − 1 along each axis)."""
    for axis, n in enumerate(size):
        c = np.cumsum(v, axis=axis, dtype=np.float64)
        zero = np.zeros_like(np.take(c, [0], axis=axis))
        c = np.concatenate([zero, c], axis=axis)
        m = v.shape[axis]
        v = (np.take(c, np.arange(n, m + 1), axis=axis) - np.take(c, np.arange(0, m - n + 1), axis=axis)) / n
    return v


# ------------------------------------------------------------------------------------------ measurement


def _cnr_stats(frames: np.ndarray, void_mask: np.ndarray) -> dict:
    f = np.asarray(frames)
    m = np.asarray(void_mask)
    if f.ndim != 3:
        raise NeuradiffError(f"frames must be [T, H, W], got shape {f.shape}")
    if m.shape != f.shape:
        raise NeuradiffError(f"void_mask shape {m.shape} does not match frames {f.shape}")
    if m.dtype.kind not in "biu":
        raise NeuradiffError(f"void_mask must be bool (True on voids), got {m.dtype}")
    m = m.astype(bool)
    f = f.astype(np.float64)
    disk = _disk(CNR_EROSION)[None]
    void = np.asarray(ndimage.binary_erosion(m, disk), bool)
    matrix = np.asarray(ndimage.binary_erosion(~m, disk), bool)
    nan = float("nan")
    out = {"cnr": nan, "void_mean": nan, "matrix_mean": nan, "noise_std": nan}
    if matrix.any():
        out["matrix_mean"] = float(f[matrix].mean())
        wm = matrix.astype(np.float64)
        sig = (0, CNR_BACKGROUND_SIGMA, CNR_BACKGROUND_SIGMA)
        num = ndimage.gaussian_filter(f * wm, sig, mode="reflect")
        den = ndimage.gaussian_filter(wm, sig, mode="reflect")
        resid = (f - num / np.maximum(den, 1e-12))[matrix]
        out["noise_std"] = _robust_std(resid) / _residual_factor(CNR_BACKGROUND_SIGMA)
    if void.any():
        out["void_mean"] = float(f[void].mean())
    if matrix.any() and void.any() and out["noise_std"] > 0:
        out["cnr"] = float(abs(out["void_mean"] - out["matrix_mean"]) / out["noise_std"])
    return out


def _robust_std(x: np.ndarray) -> float:
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad == 0:
        return float(x.std())
    keep = np.abs(x - med) <= 5.0 * mad
    return float(x[keep].std())


def _residual_factor(sigma: float) -> float:
    """Std of white noise minus its Gaussian smoothing, relative to the white-noise std (2-D kernel)."""
    k = np.zeros((1, 1))
    k = np.pad(k, int(4 * sigma + 0.5) + 1)
    c = k.shape[0] // 2
    k[c, c] = 1.0
    g = ndimage.gaussian_filter(k, sigma, mode="constant")
    return math.sqrt(1.0 - 2.0 * g[c, c] + float((g**2).sum()))


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (y * y + x * x) <= radius * radius


# ------------------------------------------------------------------------------------------- validation


def check_eta(eta) -> np.ndarray:
    """eta ``[T, H, W]`` as float64 in [0, 1] (overshoot up to 1e-3 is clipped); ``NeuradiffError`` otherwise."""
    a = np.asarray(eta)
    if a.ndim != 3 or min(a.shape) < 1:
        raise NeuradiffError(f"eta must be a non-empty [T, H, W] array, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise NeuradiffError(f"eta must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise NeuradiffError("eta contains NaN or Inf")
    lo, hi = float(a.min()), float(a.max())
    if lo < -ETA_TOLERANCE or hi > 1 + ETA_TOLERANCE:
        raise NeuradiffError(f"eta must lie in [0, 1], found values in [{lo:g}, {hi:g}]")
    return np.clip(a, 0.0, 1.0)


def _check_concentration(c, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if c is None:
        return None
    a = np.asarray(c)
    if a.shape != shape:
        raise NeuradiffError(f"{name} must have the shape of eta {shape}, got {a.shape}")
    if a.dtype.kind not in "biuf":
        raise NeuradiffError(f"{name} must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise NeuradiffError(f"{name} contains NaN or Inf")
    return a


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NeuradiffError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)
