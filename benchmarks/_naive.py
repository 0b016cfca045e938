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


def naive_step(c_v, c_i, eta, p, dt, dx=1.0, eps=1e-6):
    """One deterministic explicit step of the reference discretisation, operation by operation."""
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
    c_v_new = c_v + dt * (M_v * naive_laplacian(mu_v, dx) - R)
    c_i_new = c_i + dt * (M_i * naive_laplacian(mu_i, dx) - R)
    eta_new = eta - dt * p.L * mu_eta
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
