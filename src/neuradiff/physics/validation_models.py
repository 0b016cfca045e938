"""Two classic models for validating the engine: PFHub benchmark 1 and a double-well Allen-Cahn model.

Both use the same operators and integrators as the void model; their states are ``[batch, 1, H, W]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import LAPLACIAN_MAX_EIGENVALUE, flux_divergence, laplacian
from neuradiff.physics.parameters import ParameterSet, parameter


@dataclass(frozen=True)
class SpinodalParameters(ParameterSet):
    """PFHub benchmark 1: f = ρ (c − c_α)² (c_β − c)², κ, M (its published values are the defaults)."""

    model_name: ClassVar[str] = "spinodal"

    rho: float = parameter(5.0, "energy/area", "height of the double well", (0.1, 50.0), learn=True)
    c_alpha: float = parameter(0.3, "1", "composition of the alpha phase", (0.0, 1.0), scale="linear")
    c_beta: float = parameter(0.7, "1", "composition of the beta phase", (0.0, 1.0), scale="linear")
    kappa: float = parameter(2.0, "energy", "gradient energy coefficient", (0.01, 50.0), learn=True)
    M: float = parameter(5.0, "area²/(energy·time)", "mobility", (0.01, 50.0), learn=True)


class SpinodalModel(PhaseFieldModel):
    """Cahn-Hilliard spinodal decomposition of PFHub benchmark 1 (1a periodic, 1b no-flux).

    ``stabilisation``: the constant S of the spectral stabiliser a(k) = M k²(κk² + S) as a fraction of the
    double well's curvature at its minima, 2ρ(c_β − c_α)² (default 1: S = 1.6 for the benchmark). The
    semi-implicit step needs about that much to stay stable at large steps; the exponential steps
    (:mod:`~neuradiff.physics.etd`) integrate a(k) exactly and treat the rest explicitly, so a smaller
    S leaves less to the explicit part (smaller errors per step, less stability at very long steps). The
    equations and their solution do not depend on it.
    """

    supports_spectral = True

    field_names = ("c",)
    conserved = (True,)
    params_type = SpinodalParameters
    name = "spinodal"

    def __init__(self, *, boundary: str = "periodic", stabilisation: float = 1.0) -> None:
        super().__init__(boundary=boundary)
        stabilisation = float(stabilisation)
        if not math.isfinite(stabilisation) or stabilisation < 0:
            raise ValueError(f"stabilisation must be a finite number ≥ 0, got {stabilisation}")
        self.stabilisation = stabilisation

    def _stabilisation_constant(self, p: SpinodalParameters):
        return self.stabilisation * 2.0 * p.rho * (p.c_beta - p.c_alpha) ** 2

    def local_free_energy(self, state: Tensor, p: SpinodalParameters) -> Tensor:
        c = state[:, 0]
        return p.rho * (c - p.c_alpha) ** 2 * (p.c_beta - c) ** 2

    def gradient_coefficients(self, p: SpinodalParameters) -> tuple:
        return (p.kappa,)

    def chemical_potential(self, state: Tensor, p: SpinodalParameters, dx: float) -> Tensor:
        c = state[:, 0]
        df = 2.0 * p.rho * (c - p.c_alpha) * (p.c_beta - c) * (p.c_alpha + p.c_beta - 2.0 * c)
        return (df - p.kappa * laplacian(c, dx, boundary=self.boundary)).unsqueeze(1)

    def rate(self, state: Tensor, p: SpinodalParameters, dx: float) -> Tensor:
        mu = self.chemical_potential(state, p, dx)
        return flux_divergence(p.M * torch.ones_like(mu), mu, dx, boundary=self.boundary)

    def _curvature(self, c: Tensor, p: SpinodalParameters) -> Tensor:
        a, b = p.c_alpha, p.c_beta
        return 2.0 * p.rho * ((b - c) ** 2 - 4.0 * (c - a) * (b - c) + (c - a) ** 2)

    def stability_rate(self, state: Tensor, p: SpinodalParameters, dx: float) -> Tensor:
        with torch.no_grad():
            k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
            fpp = self._curvature(state[:, 0], p).abs().amax()
            return torch.as_tensor(p.M * k * (fpp + p.kappa * k), dtype=torch.float64)

    def stabiliser(self, state: Tensor, p: SpinodalParameters, k2: Tensor) -> Tensor:
        s = self._stabilisation_constant(p)  # (a fraction of) f'' at the wells
        return (p.M * k2 * (p.kappa * k2 + s)).unsqueeze(0)

    spectral_remainder_uses_k2 = True

    def spectral_remainder(
        self, state: Tensor, state_hat: Tensor, p: SpinodalParameters, k2: Tensor, a: Tensor, dx: float
    ) -> Tensor:
        """N̂ = −M k² (f'(c) − S c)^ with S the stabiliser's constant, the rate minus the stabiliser's part.

        With u = c − (c_α + c_β)/2 and d = (c_β − c_α)/2, f'(c) = 4ρ u (u² − d²); constants only reach the
        k = 0 mode, which k² removes (so the mean is conserved exactly by the exponential steps).
        """
        s = self._stabilisation_constant(p)
        d2 = 0.25 * (p.c_beta - p.c_alpha) ** 2
        u = state[:, 0] - 0.5 * (p.c_alpha + p.c_beta)
        g = u * u
        g.mul_(4.0 * p.rho).sub_(4.0 * p.rho * d2 + s).mul_(u)
        return torch.fft.rfft2(g).mul_(-p.M * k2).unsqueeze(1)


def pfhub1_initial_condition(
    shape: tuple[int, int] = (200, 200), dx: float = 1.0, *, dtype: torch.dtype = torch.float64
) -> Tensor:
    """The benchmark's cosine initial condition, ``[1, 1, H, W]`` (x along W, y along H, cell centres at
    (i + ½)·dx, which gives the benchmark's mean composition 0.5025227 on 200×200)."""
    h, w = shape
    y = (torch.arange(h, dtype=dtype).view(h, 1) + 0.5) * dx
    x = (torch.arange(w, dtype=dtype).view(1, w) + 0.5) * dx
    c = 0.5 + 0.01 * (
        torch.cos(0.105 * x) * torch.cos(0.11 * y)
        + (torch.cos(0.13 * x) * torch.cos(0.087 * y)) ** 2
        + torch.cos(0.025 * x - 0.15 * y) * torch.cos(0.07 * x - 0.02 * y)
    )
    return c.view(1, 1, h, w)


@dataclass(frozen=True)
class AllenCahnParameters(ParameterSet):
    """Double-well Allen-Cahn: f = W η²(1 − η)², gradient κ, mobility L."""

    model_name: ClassVar[str] = "allen-cahn"

    W: float = parameter(1.0, "energy/area", "height of the double well", (0.01, 50.0), learn=True)
    kappa: float = parameter(1.0, "energy", "gradient energy coefficient", (0.01, 50.0), learn=True)
    L: float = parameter(1.0, "area/(energy·time)", "mobility", (0.01, 50.0), learn=True)


class AllenCahnModel(PhaseFieldModel):
    """Non-conserved order parameter η in a double well (curvature-driven motion: R² = R0² − 2Lκt)."""

    supports_spectral = True

    field_names = ("eta",)
    conserved = (False,)
    params_type = AllenCahnParameters
    name = "allen-cahn"

    def local_free_energy(self, state: Tensor, p: AllenCahnParameters) -> Tensor:
        eta = state[:, 0]
        return p.W * eta * eta * (1.0 - eta) ** 2

    def gradient_coefficients(self, p: AllenCahnParameters) -> tuple:
        return (p.kappa,)

    def chemical_potential(self, state: Tensor, p: AllenCahnParameters, dx: float) -> Tensor:
        eta = state[:, 0]
        df = 2.0 * p.W * eta * (1.0 - eta) * (1.0 - 2.0 * eta)
        return (df - p.kappa * laplacian(eta, dx, boundary=self.boundary)).unsqueeze(1)

    def rate(self, state: Tensor, p: AllenCahnParameters, dx: float) -> Tensor:
        return -p.L * self.chemical_potential(state, p, dx)

    def stability_rate(self, state: Tensor, p: AllenCahnParameters, dx: float) -> Tensor:
        with torch.no_grad():
            eta = state[:, 0]
            fpp = (2.0 * p.W * (1.0 - 6.0 * eta + 6.0 * eta * eta)).abs().amax()
            k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
            return torch.as_tensor(p.L * (fpp + p.kappa * k), dtype=torch.float64)

    def stabiliser(self, state: Tensor, p: AllenCahnParameters, k2: Tensor) -> Tensor:
        return (p.L * (p.kappa * k2 + 2.0 * p.W)).unsqueeze(0)

    def extra_diagnostics(self, state: Tensor, p: AllenCahnParameters, dx: float) -> dict[str, Tensor]:
        """``radius``: √(Σ η dx² / π), the radius of a disk of the same area, shape ``[batch]``."""
        area = state[:, 0].sum(dim=(-1, -2), dtype=torch.float64) * dx * dx
        return {"radius": torch.sqrt(area / math.pi)}
