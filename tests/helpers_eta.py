"""Synthetic void order-parameter stacks for the render and annotate tests."""

from __future__ import annotations

import numpy as np


def disk_stack(
    n_frames: int = 24,
    size: int | tuple[int, int] = 48,
    r_start: float = 12.0,
    r_end: float | None = None,
    *,
    center: tuple[float, float] | None = None,
    width: float = 1.0,
) -> np.ndarray:
    """One void whose radius goes linearly from ``r_start`` to ``r_end`` (default: static), ``[T, H, W]``.

    ``width`` > 0 gives a tanh rim of that width in pixels, 0 a sharp 0/1 disk.
    """
    h, w = (size, size) if isinstance(size, int) else size
    r_end = r_start if r_end is None else r_end
    cy, cx = ((h - 1) / 2, (w - 1) / 2) if center is None else center
    y, x = np.mgrid[0:h, 0:w]
    dist = np.hypot(y - cy, x - cx)
    radii = np.linspace(r_start, r_end, n_frames)
    out = np.empty((n_frames, h, w))
    for t, r in enumerate(radii):
        out[t] = (dist < r) if width <= 0 else 0.5 * (1.0 - np.tanh((dist - r) / width))
    return out


def concentrations(
    eta: np.ndarray, c_v_matrix: float = 0.12, c_i_matrix: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """c_v (matrix value outside, 1 inside voids) and a uniform c_i for an eta stack."""
    c_v = c_v_matrix + (1.0 - c_v_matrix) * eta
    c_i = np.full_like(eta, c_i_matrix)
    return c_v, c_i
