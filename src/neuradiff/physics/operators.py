"""Finite-difference and spectral operators on 2-D grids.

Every operator acts on the last two dimensions of a tensor shaped ``[..., H, W]`` (for example
``[batch, H, W]`` or ``[batch, field, H, W]``), with grid spacing ``dx`` (simulation length units).
Boundaries are ``"periodic"`` or ``"no-flux"`` (zero normal gradient and zero normal flux at the walls).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

BOUNDARIES = ("periodic", "no-flux")


def check_boundary(boundary: str) -> str:
    """Return ``boundary`` if it names a supported boundary condition, else raise ``ValueError``."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"unknown boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
    return boundary


def _neighbours(x: Tensor, boundary: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Values of the four neighbours (east, west, south, north) of every point."""
    if boundary == "periodic":
        return (
            torch.roll(x, -1, dims=-1),
            torch.roll(x, 1, dims=-1),
            torch.roll(x, -1, dims=-2),
            torch.roll(x, 1, dims=-2),
        )
    check_boundary(boundary)
    # Mirror ghost cells (ghost = edge value): zero normal gradient at the walls.
    east = torch.cat([x[..., :, 1:], x[..., :, -1:]], dim=-1)
    west = torch.cat([x[..., :, :1], x[..., :, :-1]], dim=-1)
    south = torch.cat([x[..., 1:, :], x[..., -1:, :]], dim=-2)
    north = torch.cat([x[..., :1, :], x[..., :-1, :]], dim=-2)
    return east, west, south, north


def laplacian(x: Tensor, dx: float = 1.0, *, boundary: str = "periodic") -> Tensor:
    """5-point Laplacian ∇²x, shape of ``x``; units of x per length²."""
    e, w, s, n = _neighbours(x, boundary)
    return (e + w + s + n - 4.0 * x) / (dx * dx)


def forward_differences(x: Tensor, dx: float = 1.0, *, boundary: str = "periodic") -> tuple[Tensor, Tensor]:
    """Forward differences (D⁺_x x, D⁺_y x) on the faces east and south of each point.

    With ``no-flux`` walls the difference across the outer wall is zero.
    """
    e, _, s, _ = _neighbours(x, boundary)
    return (e - x) / dx, (s - x) / dx


def _face_mobility(m_a: Tensor, m_b: Tensor, mu_a: Tensor, mu_b: Tensor, face: str) -> Tensor:
    if face == "mean":
        return 0.5 * (m_a + m_b)
    if face == "upwind":  # the cell that material leaves: flow goes from high to low μ
        return torch.where(mu_b > mu_a, m_b, m_a)
    raise ValueError(f"unknown face mobility {face!r}; choose 'mean' or 'upwind'")


def flux_divergence(
    mobility: Tensor, mu: Tensor, dx: float = 1.0, *, boundary: str = "periodic", face: str = "mean"
) -> Tensor:
    """Conservative divergence ∇·(M ∇μ) with face mobilities, shape of ``mu``.

    ``face="mean"``: M_face = (M_a + M_b)/2; ``face="upwind"``: M_face = M of the cell the flux leaves, which
    keeps a degenerate mobility (M ∝ c) from draining a cell below zero. ``mobility`` and ``mu`` share a
    shape ``[..., H, W]``. The sum over the grid of the result is zero to round-off (no mass is created
    or destroyed) for both boundary conditions and both face rules.
    """
    if boundary == "periodic":
        mu_e, mu_s = torch.roll(mu, -1, dims=-1), torch.roll(mu, -1, dims=-2)
        m_e = _face_mobility(mobility, torch.roll(mobility, -1, dims=-1), mu, mu_e, face)
        m_s = _face_mobility(mobility, torch.roll(mobility, -1, dims=-2), mu, mu_s, face)
        flux_e = m_e * (mu_e - mu)
        flux_s = m_s * (mu_s - mu)
        div = flux_e - torch.roll(flux_e, 1, dims=-1) + flux_s - torch.roll(flux_s, 1, dims=-2)
        return div / (dx * dx)
    check_boundary(boundary)
    # Face fluxes between interior neighbours; walls carry no flux.
    mx = _face_mobility(mobility[..., :, :-1], mobility[..., :, 1:], mu[..., :, :-1], mu[..., :, 1:], face)
    my = _face_mobility(mobility[..., :-1, :], mobility[..., 1:, :], mu[..., :-1, :], mu[..., 1:, :], face)
    fx = mx * (mu[..., :, 1:] - mu[..., :, :-1])
    fy = my * (mu[..., 1:, :] - mu[..., :-1, :])
    zx = torch.zeros_like(fx[..., :, :1])
    zy = torch.zeros_like(fy[..., :1, :])
    fx = torch.cat([zx, fx, zx], dim=-1)
    fy = torch.cat([zy, fy, zy], dim=-2)
    div = fx[..., :, 1:] - fx[..., :, :-1] + fy[..., 1:, :] - fy[..., :-1, :]
    return div / (dx * dx)


def laplacian_symbol(shape: tuple[int, int], dx: float, *, device=None, dtype=torch.float64) -> Tensor:
    """Fourier symbol k²_h of the periodic 5-point −Laplacian on an ``rfft2`` grid, shape ``[H, W//2+1]``.

    k²_h = (4/dx²)[sin²(k_x dx/2) + sin²(k_y dx/2)], so that ``irfft2(-k²_h · rfft2(x)) == laplacian(x)``.
    """
    h, w = shape
    ky = 2.0 * math.pi * torch.fft.fftfreq(h, d=dx, device=device, dtype=dtype)
    kx = 2.0 * math.pi * torch.fft.rfftfreq(w, d=dx, device=device, dtype=dtype)
    sy = torch.sin(0.5 * ky * dx) ** 2
    sx = torch.sin(0.5 * kx * dx) ** 2
    return (4.0 / (dx * dx)) * (sy[:, None] + sx[None, :])


#: Largest eigenvalue of the 5-point −Laplacian, times dx² (8 in 2-D).
LAPLACIAN_MAX_EIGENVALUE = 8.0
