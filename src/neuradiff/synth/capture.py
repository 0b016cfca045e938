"""What capturing and exporting do to a frame: the artefacts of frames as users hand them over.

A recorded frame rarely reaches analysis as the camera read it. It is converted to 8 bits with its grey levels
stretched (clipping the darkest and brightest), saved as JPEG, given a burned-in scale bar and time stamp,
padded with zeros by a drift correction, or cut off by the beam's edge. Each function here takes one frame
``[H, W]`` (any real dtype) and returns the frame as it would be handed over (uint8 unless stated); they are
used to check that recognition survives them (``benchmarks/bench_capture.py``, ``tests/test_blank.py``).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> f = rng.poisson(200, (128, 128)).astype(np.uint16)
>>> g = burn_in(f)
>>> g.dtype, g.shape, int(g.max())
(dtype('uint8'), (128, 128), 255)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

#: Artefacts by name (each a function of one frame): what ``benchmarks/bench_capture.py`` scores.
ARTEFACTS: dict = {}


def to_8bit(frame: np.ndarray, clip: float = 0.0) -> np.ndarray:
    """``frame`` stretched to 0–255 (uint8) between its ``clip`` and ``1 − clip`` quantiles (0: min and max), the
    darker and brighter pixels clipped, as an export with "saturate ``clip``" does (an 8-bit frame without ``clip``
    is returned as it is).

    Examples
    --------
    >>> y = to_8bit(np.linspace(0.0, 1.0, 10000).reshape(100, 100), clip=0.02)
    >>> y.dtype, float((y == 255).mean()) > 0.02, float((y == 0).mean()) > 0.02
    (dtype('uint8'), True, True)
    """
    if clip == 0 and np.asarray(frame).dtype == np.uint8:
        return np.asarray(frame).copy()
    x = np.asarray(frame, dtype=np.float64)
    lo, hi = np.quantile(x, [clip, 1.0 - clip]) if clip > 0 else (x.min(), x.max())
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return np.clip(np.rint(255.0 * (x - lo) / (hi - lo)), 0, 255).astype(np.uint8)


def jpeg(frame: np.ndarray, quality: int = 50) -> np.ndarray:
    """``frame`` in 8 bits saved as a JPEG of ``quality`` (1–95) and read back."""
    buf = io.BytesIO()
    Image.fromarray(to_8bit(frame)).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(buf))


def burn_in(frame: np.ndarray, label: bool = True, stamp: bool = True, text_px: int | None = None) -> np.ndarray:
    """``frame`` in 8 bits with a white scale bar burned in at the bottom left, with ``label`` its label ("50 nm")
    above it and with ``stamp`` a time stamp at the top right: anti-aliased text of Pillow's default font,
    ``text_px`` high (default: a twentieth of the frame for the label, a twenty-fourth for the stamp)."""
    x = to_8bit(frame)
    n = min(x.shape)
    image = Image.fromarray(x)
    draw = ImageDraw.Draw(image)
    h, w = x.shape
    draw.rectangle([0.05 * w, 0.90 * h, 0.30 * w, 0.90 * h + max(3.0, 0.03 * n)], fill=255)
    if label:
        draw.text((0.05 * w, 0.80 * h), "50 nm", fill=255, font_size=text_px or max(10, n // 20))
    if stamp:
        draw.text((0.70 * w, 0.03 * h), "00:01:23", fill=255, font_size=text_px or max(10, n // 24))
    return np.asarray(image).copy()


def pad_band(frame: np.ndarray, width: float = 1 / 16) -> np.ndarray:
    """``frame`` in 8 bits with the zero bands a drift correction leaves: ``width`` of the height along the top and
    half as much along the right."""
    x = to_8bit(frame)
    h, w = x.shape
    top, right = max(4, round(width * h)), max(2, round(width * w / 2))
    x[:top] = 0
    x[:, w - right :] = 0
    return x


def beam_edge(frame: np.ndarray, radius: float = 1.25, soft: float = 0.15) -> np.ndarray:
    """``frame`` in 8 bits darkened to black beyond a round beam edge of ``radius`` half-widths from the centre,
    falling over ``soft`` half-widths (dark corners)."""
    x = to_8bit(frame).astype(np.float64)
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    return np.clip(np.rint(x * np.clip((radius - r) / soft, 0.0, 1.0)), 0, 255).astype(np.uint8)


#: Clipping of a random export (:func:`random_export`): none, ImageJ's default, or up to 5 % at each end.
EXPORT_CLIPS = (0.0, 0.0035, (0.005, 0.05))
#: JPEG qualities of a random export, drawn uniformly; half of the exports are saved as JPEG.
EXPORT_JPEG_QUALITY = (30, 95)


def random_export(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames ``[T, H, W]`` exported as a user might have exported them (uint8 ``[T, H, W]``): stretched to 8
    bits frame by frame with one clipping drawn from :data:`EXPORT_CLIPS` (each a third of the time; the last
    uniform in its range), then, half of the time, saved as JPEG of one quality drawn from
    :data:`EXPORT_JPEG_QUALITY`. The same export for every frame, as a recording is exported at once.

    Examples
    --------
    >>> f = np.random.default_rng(0).poisson(200, (2, 32, 32)).astype(np.uint16)
    >>> g = random_export(f, np.random.default_rng(1))
    >>> g.dtype, g.shape
    (dtype('uint8'), (2, 32, 32))
    """
    a = np.asarray(frames)
    choice = EXPORT_CLIPS[int(rng.integers(len(EXPORT_CLIPS)))]
    clip = float(rng.uniform(*choice)) if isinstance(choice, tuple) else float(choice)
    quality = int(rng.integers(EXPORT_JPEG_QUALITY[0], EXPORT_JPEG_QUALITY[1] + 1)) if rng.random() < 0.5 else 0
    out = np.stack([to_8bit(f, clip=clip) for f in a])
    return np.stack([jpeg(f, quality) for f in out]) if quality else out


def all_overlays(frame: np.ndarray) -> np.ndarray:
    """:func:`burn_in` and :func:`pad_band` together."""
    return burn_in(pad_band(frame))


ARTEFACTS.update(
    {
        "as recorded": lambda f: np.asarray(f),
        "8-bit": to_8bit,
        "JPEG quality 50": jpeg,
        "clipped 0.35 %": lambda f: to_8bit(f, clip=0.0035),
        "clipped 2 %": lambda f: to_8bit(f, clip=0.02),
        "padding band": pad_band,
        "beam edge": beam_edge,
        "scale bar and time stamp": burn_in,
        "scale bar, time stamp, padding band": all_overlays,
    }
)
