"""Initial states of the void model, ``[1, 3, H, W]`` (c_v, c_i, eta), lengths in grid units."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from neuradiff.physics.void_model import MATRIX_C_I, MATRIX_C_V

Disk = tuple[float, float, float]  # (y, x, radius) in grid units


def disk_indicator(
    shape: tuple[int, int], disks: Sequence[Disk], *, width: float = 0.0, dtype: torch.dtype = torch.float64
) -> Tensor:
    """1 inside any disk and 0 outside, ``[H, W]``; ``width`` > 0 gives a tanh rim of that width (periodic)."""
    h, w = shape
    y = torch.arange(h, dtype=dtype).view(h, 1)
    x = torch.arange(w, dtype=dtype).view(1, w)
    out = torch.zeros((h, w), dtype=dtype)
    for cy, cx, r in disks:
        if r <= 0:
            raise ValueError(f"disk radius must be positive, got {r}")
        dy = torch.remainder(y - cy + h / 2, h) - h / 2
        dxx = torch.remainder(x - cx + w / 2, w) - w / 2
        dist = torch.sqrt(dy * dy + dxx * dxx)
        ind = (dist < r).to(dtype) if width <= 0 else 0.5 * (1.0 - torch.tanh((dist - r) / width))
        out = torch.maximum(out, ind)
    return out


def void_disks(
    shape: tuple[int, int],
    disks: Sequence[Disk],
    *,
    c_v: float = MATRIX_C_V,
    c_i: float = MATRIX_C_I,
    c_i_void: float | None = None,
    width: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Voids as disks (c_v = eta = 1 inside) in a matrix of c_v, c_i (the paper's initial condition).

    ``c_i_void``: interstitials inside the voids (default: the matrix value, as in the reference code).
    """
    _check_shape(shape)
    ind = disk_indicator(shape, disks, width=width, dtype=torch.float64)
    ci_in = c_i if c_i_void is None else c_i_void
    state = torch.stack((c_v + (1.0 - c_v) * ind, c_i + (ci_in - c_i) * ind, ind)).unsqueeze(0)
    return state.to(dtype)


def matrix_state(eta: Tensor, *, c_v: float = MATRIX_C_V, c_i: float = MATRIX_C_I) -> Tensor:
    """Voids given by ``eta`` ``[B, H, W]`` in a uniform matrix: ``[B, 3, H, W]`` with c_v = 1 in voids and ``c_v``
    in the solid (eta clipped to [0, 1] and interpolated between), c_i = ``c_i`` everywhere, eta unchanged.

    The latent fields the video does not show, set to the matrix values the simulations start from.

    Examples
    --------
    >>> state = matrix_state(torch.tensor([[[0.0, 0.5, 1.0]]]), c_v=0.1, c_i=1e-3)
    >>> [[round(v, 4) for v in field] for field in state[0, :, 0].tolist()]
    [[0.1, 0.55, 1.0], [0.001, 0.001, 0.001], [0.0, 0.5, 1.0]]
    """
    e = eta.clamp(0.0, 1.0)
    return torch.stack((e + (1.0 - e) * c_v, torch.full_like(eta, c_i), eta), dim=1)


def carried_state(eta: Tensor, fields: Tensor) -> Tensor:
    """A start state ``[B, 3, H, W]`` from the voids ``eta`` ``[B, H, W]`` seen at a frame and the fields
    ``[B, 3, H, W]`` a simulation reached at that frame: eta unchanged, c_i as simulated, and c_v of the simulated
    solid outside the voids (carried into the simulated voids from the nearest solid pixel) blended with the mean
    simulated c_v inside the voids (1 when the simulation has none) by eta.

    The unseen fields carried over from a simulation of the frames before, onto the voids where they are seen, so that
    the few pixels where the two outlines differ take the solid's or the void's value, not the other's.

    Examples
    --------
    >>> sim = matrix_state(torch.tensor([[[0.0, 0.0, 1.0, 1.0]]]), c_v=0.2, c_i=1e-3)
    >>> state = carried_state(torch.tensor([[[0.0, 1.0, 1.0, 0.0]]]), sim)
    >>> [round(v, 3) for v in state[0, 0, 0].tolist()], state[0, 2, 0].tolist()
    ([0.2, 1.0, 1.0, 0.2], [0.0, 1.0, 1.0, 0.0])
    """
    sim = fields.detach().to("cpu", torch.float64).numpy()
    e = eta.clamp(0.0, 1.0).detach().to("cpu", torch.float64).numpy()
    c_v = np.empty_like(e)
    for b in range(sim.shape[0]):
        solid = sim[b, 2] < 0.5
        c_v_b = sim[b, 0]
        if solid.all() or not solid.any():
            c_solid = np.full_like(c_v_b, float(c_v_b.mean()) if solid.all() else MATRIX_C_V)
        else:
            nearest = np.asarray(ndimage.distance_transform_edt(~solid, return_distances=False, return_indices=True))
            c_solid = c_v_b[nearest[0], nearest[1]]
        c_void = float(c_v_b[~solid].mean()) if (~solid).any() else 1.0
        c_v[b] = e[b] * c_void + (1.0 - e[b]) * c_solid
    c_v_t = torch.from_numpy(c_v).to(eta.device, fields.dtype)
    return torch.stack((c_v_t, fields[:, 1].detach(), eta.to(fields.dtype)), dim=1)


def single_void(shape: tuple[int, int], radius: float | None = None, **kw) -> Tensor:
    """One centred void; default radius = min(H, W)/6.5 (20 on the paper's 130² grid)."""
    _check_shape(shape)
    h, w = shape
    r = min(h, w) / 6.5 if radius is None else radius
    if 2 * r >= min(h, w) - 2:
        raise ValueError(f"a void of radius {r:g} does not fit a {h}×{w} grid")
    return void_disks(shape, [((h - 1) / 2, (w - 1) / 2, r)], **kw)


def several_voids(
    shape: tuple[int, int], n: int = 4, *, seed: int = 0, r_min: float | None = None, r_max: float | None = None, **kw
) -> Tensor:
    """``n`` voids of different sizes at seeded, non-overlapping positions."""
    _check_shape(shape)
    h, w = shape
    size = min(h, w)
    r_max = size / 8 if r_max is None else r_max
    r_min = max(2.5, size / 20) if r_min is None else r_min
    if r_min > r_max:
        raise ValueError(f"grid {h}×{w} is too small for several voids")
    gen = torch.Generator().manual_seed(seed)
    radii = torch.linspace(r_max, r_min, n).tolist()
    disks: list[Disk] = []
    for r in radii:
        for _ in range(2000):
            cy, cx = (torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([h, w])).tolist()
            if all(_periodic_distance((cy, cx), (y, x), shape) > r + q + 3 for y, x, q in disks):
                disks.append((cy, cx, r))
                break
        else:
            raise ValueError(f"cannot place {n} separate voids on a {h}×{w} grid; use a larger size")
    return void_disks(shape, disks, **kw)


def supersaturated(
    shape: tuple[int, int],
    *,
    c_v: float = 0.36,
    c_i: float = MATRIX_C_I,
    fluctuation: float = 0.06,
    correlation_length: float = 8.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A supersaturated matrix (no void) whose c_v fluctuates around ``c_v`` with rms ``fluctuation``.

    The fluctuations are seeded Gaussian noise smoothed (periodically) over ``correlation_length`` grid
    units, so that voids nucleate where c_v locally passes the barrierless threshold (≈ 0.43 for the
    paper's parameters) and grow by draining their surroundings.
    """
    _check_shape(shape)
    if not (0.0 < c_v < 1.0) or not (0.0 <= c_i < 1.0 - c_v):
        raise ValueError(f"uniform concentrations must satisfy 0 < c_v, 0 <= c_i, c_v + c_i < 1; got {c_v}, {c_i}")
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(shape, generator=gen, dtype=torch.float64)
    if correlation_length > 0:
        ky = torch.fft.fftfreq(shape[0], dtype=torch.float64).view(-1, 1)
        kx = torch.fft.rfftfreq(shape[1], dtype=torch.float64).view(1, -1)
        kernel = torch.exp(-2.0 * (math.pi * correlation_length) ** 2 * (ky * ky + kx * kx))
        noise = torch.fft.irfft2(torch.fft.rfft2(noise) * kernel, s=shape)
    noise = fluctuation * (noise - noise.mean()) / noise.std()
    cv = torch.clamp(c_v + noise, 1e-4, 0.999 - c_i)
    state = torch.stack((cv, torch.full(shape, c_i, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)))
    return state.unsqueeze(0).to(dtype)


def _periodic_distance(a: tuple[float, float], b: tuple[float, float], shape: tuple[int, int]) -> float:
    dy = abs(a[0] - b[0]) % shape[0]
    dx = abs(a[1] - b[1]) % shape[1]
    return math.hypot(min(dy, shape[0] - dy), min(dx, shape[1] - dx))


def _check_shape(shape: tuple[int, int]) -> None:
    if len(shape) != 2 or min(shape) < 8:
        raise ValueError(f"grid shape must be (H, W) with H, W >= 8, got {tuple(shape)}")


INITIAL_CONDITIONS = {
    "single-disk": single_void,
    "several-disks": several_voids,
    "uniform": supersaturated,
}


def initial_condition(
    name: str, shape: tuple[int, int], *, seed: int = 0, dtype: torch.dtype = torch.float32, **kw
) -> Tensor:
    """A named initial condition: ``single-disk``, ``several-disks`` or ``uniform`` (supersaturation)."""
    if name not in INITIAL_CONDITIONS:
        raise ValueError(f"unknown initial condition {name!r}; choose one of {', '.join(INITIAL_CONDITIONS)}")
    if name == "single-disk":
        return single_void(shape, dtype=dtype, **kw)
    return INITIAL_CONDITIONS[name](shape, seed=seed, dtype=dtype, **kw)
