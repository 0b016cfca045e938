"""The published NeuraDiff code's step, emulated operation by operation, and the bandwidth of this machine.

``naive_step`` is the reference update written the way the published code is written (three ``[B, H, W]``
fields, ``F.conv2d`` Laplacian after periodic padding by concatenation, clamped logs, masked f_s, M∇²μ,
recombination, clamp to [0, 1]); ``bench_step.py`` checks it against the engine's reference discretisation.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

LAP_KERNEL = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def naive_laplacian(x, dx=1.0):
    """5-point Laplacian of a [B, H, W] field: periodic padding by concatenation, then a 3×3 conv2d."""
    x = torch.cat([x[:, -1:, :], x, x[:, :1, :]], dim=1)
    x = torch.cat([x[:, :, -1:], x, x[:, :, :1]], dim=2)
    return F.conv2d(x.unsqueeze(1), LAP_KERNEL.to(x.dtype)).squeeze(1) / (dx * dx)


def naive_forcing(eta, p, generator=None):
    """The published code's random terms of one step, drawn fresh per pixel as it does: cascades (R₁, R₂ ~ U[0, 1);
    P = V_g R₂ where η < 0.8 and R₁ ≤ p_casc; P_v = b P, P_i = (1 − b) P, P_η = (2b − 1) P) and the "thermal
    fluctuation" N(0, 1)/100 added to each field's rate. Returns the three rate increments."""
    r1 = torch.rand(eta.shape, generator=generator, dtype=eta.dtype)
    r2 = torch.rand(eta.shape, generator=generator, dtype=eta.dtype)
    cascade = p.V_g * r2 * ((eta < 0.8) & (r1 <= p.p_casc)).to(eta.dtype)
    xi = [torch.randn(eta.shape, generator=generator, dtype=eta.dtype) / 100.0 for _ in range(3)]
    return (xi[0] + p.bias * cascade, xi[1] + (1.0 - p.bias) * cascade, xi[2] + (2.0 * p.bias - 1.0) * cascade)


def naive_step(c_v, c_i, eta, p, dt, dx=1.0, eps=1e-6, forcing=None):
    """One explicit step of the reference discretisation, operation by operation; ``forcing``: the rate increments
    of :func:`naive_forcing` (``None``: deterministic)."""
    s = 1.0 - c_v - c_i
    ln_v = torch.log(torch.clamp(c_v, min=eps))
    ln_i = torch.log(torch.clamp(c_i, min=eps))
    ln_s = torch.log(torch.clamp(s, min=eps))
    mask = (s >= eps).float()
    f_s = p.E_v * c_v + p.E_i * c_i + p.kBT * (c_v * ln_v + c_i * ln_i + s * ln_s)
    f_s = f_s * mask
    dfs_dcv = (p.E_v + p.kBT * (ln_v - ln_s)) * mask
    dfs_dci = (p.E_i + p.kBT * (ln_i - ln_s)) * mask
    f_v = (c_v - 1.0) ** 2 + c_i**2
    h = (eta - 1.0) ** 2
    j = eta**2
    mu_v = h * dfs_dcv + 2.0 * j * (c_v - 1.0) - p.kappa_v * naive_laplacian(c_v, dx)
    mu_i = h * dfs_dci + 2.0 * j * c_i - p.kappa_i * naive_laplacian(c_i, dx)
    mu_eta = 2.0 * (eta - 1.0) * f_s + 2.0 * eta * f_v - p.kappa_eta * naive_laplacian(eta, dx)
    M_v = p.D_v * c_v / p.kBT
    M_i = p.D_i * c_i / p.kBT
    R = (p.R_bulk + p.R_surf * eta**2) * c_v * c_i
    rate_v = M_v * naive_laplacian(mu_v, dx) - R
    rate_i = M_i * naive_laplacian(mu_i, dx) - R
    rate_eta = -p.L * mu_eta
    if forcing is not None:
        rate_v, rate_i, rate_eta = rate_v + forcing[0], rate_i + forcing[1], rate_eta + forcing[2]
    c_v_new = c_v + dt * rate_v
    c_i_new = c_i + dt * rate_i
    eta_new = eta + dt * rate_eta
    return (torch.clamp(c_v_new, 0.0, 1.0), torch.clamp(c_i_new, 0.0, 1.0), torch.clamp(eta_new, 0.0, 1.0))


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    """Bytes read + written per second by ``dst.copy_(src)`` of ``nbytes`` float32 bytes (best of repeats)."""
    n = nbytes // 4
    src = torch.rand(n)
    dst = torch.empty(n)
    dst.copy_(src)
    inner = max(1, int(2e8 // nbytes))
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(inner):
            dst.copy_(src)
        best = min(best, (time.perf_counter() - t) / inner)
    return 2 * n * 4 / best
