"""Phase-field model of void kinetics in irradiated metals (Millett et al. 2011; NeuraDiff's simulator).

Fields (site fractions, dimensionless): vacancy concentration ``c_v``, interstitial concentration ``c_i``
and void order parameter ``eta`` (0 solid, 1 void); a state is ``[batch, 3, H, W]`` in that order.

Free energy per site (N = 1)::

    F = Σ h(η) f_s(c_v, c_i) + j(η) f_v(c_v, c_i) + κ_v/2 |∇c_v|² + κ_i/2 |∇c_i|² + κ_η/2 |∇η|²
    h = (η − 1)²,  j = η²,  f_v = (c_v − 1)² + c_i²
    f_s = E_v c_v + E_i c_i + kBT [c_v ln c_v + c_i ln c_i + s ln s],  s = 1 − c_v − c_i

Kinetics: ∂c_v/∂t = ∇·(M_v∇μ_v) + P_v − R + ξ_v, ∂c_i/∂t = ∇·(M_i∇μ_i) + P_i − R + ξ_i,
∂η/∂t = −L μ_η + P_η + ξ_η, with M_α = D_α c_α / kBT and R = (R_bulk + R_surf η²) c_v c_i. Cascades: where
η < 0.8, with probability p_casc per pixel and step, P = V_g·U(0,1); P_v = bP, P_i = (1 − b)P,
P_η = (2b − 1)P.

Units: lengths in grid units (dx), time in simulation time units, energies per site in the same arbitrary
energy unit as kBT. Two discretisations:

``"reference"``
    the published reference code: M∇²μ (non-conservative), logs floored at ``log_floor`` with f_s and
    its derivatives set to 0 where s < ``log_floor``, noise ``noise·N(0,1)`` added to the rates (not
    scaled by √dt), and every field clamped to [0, 1] after each step.
``"conservative"`` (default)
    flux form ∇·(M_face∇μ) with face mobilities (mass-conserving without sources), a C²
    entropy x ln x continued by its quadratic Taylor expansion below ``log_floor`` (no jump in μ), Langevin
    noise scaled by √dt and conservative on c_v and c_i (flux noise ∝ √(2 kBT M_face)), and only η held in
    [0, 1] (an obstacle on the non-conserved order parameter): concentrations are never clipped, so no
    mass is destroyed. Values of c outside [0, 1] are counted, not hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from neuradiff.physics.fused import (
    forcing_fixed_unavailable,
    fused_forcing,
    fused_forcing_unavailable,
    fused_stability,
    fused_step,
    fused_substeps,
    fused_unavailable,
    scalar,
)
from neuradiff.physics.fused_reference import (
    fused_reference_forcing,
    fused_reference_forcing_unavailable,
    fused_reference_philox_forcing,
    fused_reference_stability,
    fused_reference_step,
    fused_reference_substeps,
    fused_reference_unavailable,
)
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import LAPLACIAN_MAX_EIGENVALUE, flux_divergence, laplacian
from neuradiff.physics.parameters import ParameterSet, parameter
from neuradiff.physics.random_numbers import RandomNumbers, as_numbers, draws_key

#: The paper's matrix state outside a void: c_v, c_i (site fractions).
MATRIX_C_V = 0.122
MATRIX_C_I = 6.9e-4


@dataclass(frozen=True)
class VoidParameters(ParameterSet):
    """Parameters of the void model (dimensionless simulation units; defaults: the paper's ground truth)."""

    model_name: ClassVar[str] = "void"

    E_v: float = parameter(8.0, "energy/site", "vacancy formation energy", (0.05, 50.0), learn=True)
    E_i: float = parameter(8.0, "energy/site", "interstitial formation energy", (0.05, 50.0), learn=True)
    kBT: float = parameter(5.0, "energy/site", "thermal energy k_B T", (0.01, 50.0), learn=True, minimum=1e-12)
    kappa_v: float = parameter(1.0, "energy·dx²", "gradient coefficient of c_v", (0.01, 20.0), learn=True)
    kappa_i: float = parameter(1.0, "energy·dx²", "gradient coefficient of c_i", (0.01, 20.0), learn=True)
    kappa_eta: float = parameter(1.0, "energy·dx²", "gradient coefficient of eta", (0.01, 20.0), learn=True)
    D_v: float = parameter(1.0, "dx²/time", "vacancy diffusivity", (0.01, 20.0), learn=True)
    D_i: float = parameter(1.0, "dx²/time", "interstitial diffusivity", (0.01, 20.0), learn=True)
    L: float = parameter(1.0, "1/(energy·time)", "Allen-Cahn mobility of eta", (0.01, 50.0), learn=True)
    R_bulk: float = parameter(5.0, "1/time", "bulk recombination rate", (1e-3, 100.0))
    R_surf: float = parameter(10.0, "1/time", "extra recombination rate at void surfaces", (1e-3, 100.0))
    p_casc: float = parameter(
        0.01, "1/(pixel·step)", "cascade probability per pixel and step", (1e-5, 1.0), maximum=1.0
    )
    bias: float = parameter(0.3, "1", "vacancy share b of cascade defects", (0.0, 1.0), scale="linear", maximum=1.0)
    V_g: float = parameter(0.01, "1/time", "cascade defect generation amplitude", (1e-5, 100.0))
    noise: float = parameter(0.01, "1", "thermal noise amplitude", (1e-6, 1.0))

    @classmethod
    def paper(cls) -> VoidParameters:
        """The ground truth of the paper's synthetic data (E/kBT = 1.6: hot, chosen for numerics)."""
        return cls()

    @classmethod
    def petsc(cls) -> VoidParameters:
        """The PETSc ex61 / MOOSE Crow set (c_eq = exp(−E/kBT) = 6.9e-4)."""
        return cls(E_v=0.8, E_i=0.8, kBT=0.11, L=10.0, R_bulk=1e-3, R_surf=10.0, p_casc=0.05, V_g=100.0)


def _smooth_entropy(x: Tensor, delta: float) -> tuple[Tensor, Tensor, Tensor]:
    """x ln x continued below δ by its quadratic Taylor expansion: (g, g' − 1, g''), all C⁰ and g ∈ C²."""
    xc = torch.clamp(x, min=delta)
    lg = torch.log(xc)
    d = x - xc
    g = xc * lg + (lg + 1.0) * d + d * d / (2.0 * delta)
    return g, lg + d / delta, 1.0 / xc


def _harmonic_mean(a: Tensor, b: Tensor) -> Tensor:
    return 2.0 * a * b / (a + b + torch.finfo(a.dtype).tiny)


def _sqrt_nonnegative(x: Tensor) -> Tensor:
    """√x for x ≥ 0 whose gradient is 0 (not ∞) where x = 0.

    A face mobility is exactly 0 only where it does not depend on its inputs (a cell whose concentration is
    at or below zero has M = D·max(c, 0)/kBT = 0 for every nearby c and every parameter), so the derivative
    there is 0; ``torch.sqrt`` would give ∞·0 = NaN in the backward pass.
    """
    pos = x > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, x, torch.ones_like(x))), torch.zeros_like(x))


class VoidModel(PhaseFieldModel):
    """The void-kinetics model (module docstring); ``VoidModel(discretisation)`` returns the subclass that
    implements that discretisation (:class:`ConservativeVoidModel` or :class:`ReferenceVoidModel`).

    Parameters
    ----------
    discretisation : {"conservative", "reference"}
    log_floor : float, optional
        ε of the logarithms: the floor (reference, default 1e-6 as published) or the start of the quadratic
        continuation of c ln c for c_v and c_i (conservative, default 1e-3: just above the matrix c_i = 6.9e-4,
        so that noise or an explicit step driving c_i slightly negative does not make the equations stiff;
        the void kinetics are unchanged by it). The entropy is exact above the floor: for dilute parameter
        sets (e.g. ``VoidParameters.petsc()``, c_eq = 6.9e-4) choose a floor below the equilibrium
        concentrations, e.g. 1e-5.
    saturation_floor : float
        Start of the quadratic continuation of s ln s, s = 1 − c_v − c_i (conservative only). s → 0 only
        inside voids, where h(η) → 0; a floor of order 1e-2 keeps the equations non-stiff there when c_v
        overshoots 1 slightly, without changing the matrix thermodynamics.
    face_mobility : {"upwind", "mean"}
        Face mobility of the flux form (conservative only): ``"upwind"`` (default) takes the mobility of
        the cell the flux leaves, so the degenerate M ∝ c cannot drain a cell below zero; ``"mean"``
        averages the two cells.
    boundary : {"periodic", "no-flux"}
    kernel : {"torch", "fused"}
        How the Euler steps are computed: ``"torch"`` (default), the plain PyTorch expressions; ``"fused"``, a
        compiled CPU kernel with a hand-derived adjoint, equal to the plain path within round-off and several times
        faster: the explicit and IMEX steps of the conservative discretisation (:mod:`neuradiff.physics.fused`),
        the explicit step of the reference one (:mod:`neuradiff.physics.fused_reference`). Where the kernel does
        not apply (GPU, ``face_mobility="mean"``, the reference discretisation's IMEX step, no C compiler) the
        plain path is used.

    Examples
    --------
    >>> from neuradiff.physics import VoidModel
    >>> VoidModel("reference").discretisation
    'reference'
    >>> type(VoidModel()).__name__
    'ConservativeVoidModel'
    """

    field_names = ("c_v", "c_i", "eta")
    conserved = (True, True, False)
    params_type = VoidParameters
    name = "void"
    #: Name of the discretisation a subclass implements.
    discretisation: ClassVar[str] = ""
    #: Default ε of the logarithms.
    default_log_floor: ClassVar[float] = 1e-3
    #: η below which cascades can happen (reference code).
    cascade_eta_max = 0.8

    def __new__(cls, discretisation: str | None = None, **kwargs):
        if cls is not VoidModel:
            return super().__new__(cls)
        name = "conservative" if discretisation is None else discretisation
        if name not in DISCRETISATIONS:
            raise ValueError(f"unknown discretisation {name!r}; choose one of {', '.join(DISCRETISATIONS)}")
        return object.__new__(DISCRETISATIONS[name])

    def __init__(
        self,
        discretisation: str | None = None,
        *,
        log_floor: float | None = None,
        saturation_floor: float = 1e-2,
        face_mobility: str = "upwind",
        boundary: str = "periodic",
        kernel: str = "torch",
    ) -> None:
        super().__init__(boundary=boundary)
        if discretisation is not None and discretisation != self.discretisation:
            raise ValueError(
                f"{type(self).__name__} implements the {self.discretisation!r} discretisation, not {discretisation!r}"
            )
        log_floor = self.default_log_floor if log_floor is None else log_floor
        if not (0 < log_floor < 0.5):
            raise ValueError(f"log_floor must be in (0, 0.5), got {log_floor}")
        if not (0 < saturation_floor < 0.5):
            raise ValueError(f"saturation_floor must be in (0, 0.5), got {saturation_floor}")
        if face_mobility not in ("upwind", "mean"):
            raise ValueError(f"unknown face_mobility {face_mobility!r}; choose 'upwind' or 'mean'")
        if kernel not in ("torch", "fused"):
            raise ValueError(f"unknown kernel {kernel!r}; choose 'torch' or 'fused'")
        self.kernel = kernel
        self.log_floor = float(log_floor)
        self.saturation_floor = float(saturation_floor)
        self.face_mobility = face_mobility

    def __repr__(self) -> str:
        return (
            f"VoidModel(discretisation={self.discretisation!r}, log_floor={self.log_floor:g}, "
            f"saturation_floor={self.saturation_floor:g}, boundary={self.boundary!r}"
            + (f", kernel={self.kernel!r})" if self.kernel != "torch" else ")")
        )

    # ---- what a discretisation provides ------------------------------------------------------------
    def solid_free_energy(self, c_v: Tensor, c_i: Tensor, p: VoidParameters) -> tuple[Tensor, Tensor, Tensor]:
        """f_s and its derivatives ∂f_s/∂c_v, ∂f_s/∂c_i, each ``[batch, H, W]``."""
        raise NotImplementedError

    def _mobility_concentrations(self, c: Tensor) -> Tensor:
        """The concentrations ``[batch, 2, H, W]`` that enter M = D c / kBT."""
        raise NotImplementedError

    def _transport(self, m: Tensor, mu: Tensor, dx: float) -> Tensor:
        """The Cahn-Hilliard transport of c_v and c_i, ``[batch, 2, H, W]``."""
        raise NotImplementedError

    def _noise_channels(self) -> int:
        """Number of standard-normal fields a step draws for the thermal noise."""
        raise NotImplementedError

    def _source_and_noise(
        self, state: Tensor, p: VoidParameters, source: Tensor, xi: Tensor, dt: float, dx: float
    ) -> Tensor:
        """Increment of all three fields over ``dt`` from the cascade ``source`` rate and the thermal noise ``xi``."""
        raise NotImplementedError

    def _saturation_stiffness(self, state: Tensor, p: VoidParameters, fv: Tensor, fi: Tensor) -> tuple[Tensor, Tensor]:
        """Discretisation-specific additions to :meth:`local_stiffness` (default: none)."""
        return fv, fi

    # ---- thermodynamics --------------------------------------------------------------------------
    def local_free_energy(self, state: Tensor, params: VoidParameters) -> Tensor:
        c_v, c_i, eta = state.unbind(1)
        f_s, _, _ = self.solid_free_energy(c_v, c_i, params)
        f_v = (c_v - 1.0) ** 2 + c_i * c_i
        return (eta - 1.0) ** 2 * f_s + eta * eta * f_v

    def gradient_coefficients(self, params: VoidParameters) -> tuple:
        return params.kappa_v, params.kappa_i, params.kappa_eta

    def chemical_potential(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        return self._potentials(state, params, dx)[0]

    def _potentials(self, state: Tensor, p: VoidParameters, dx: float) -> tuple[Tensor, Tensor, Tensor]:
        """(μ stacked ``[batch, 3, H, W]``, f_s, f_v)."""
        c_v, c_i, eta = state.unbind(1)
        lap = laplacian(state, dx, boundary=self.boundary)
        f_s, dfs_v, dfs_i = self.solid_free_energy(c_v, c_i, p)
        f_v = (c_v - 1.0) ** 2 + c_i * c_i
        h = (eta - 1.0) ** 2
        j = eta * eta
        mu_v = h * dfs_v + 2.0 * j * (c_v - 1.0) - p.kappa_v * lap[:, 0]
        mu_i = h * dfs_i + 2.0 * j * c_i - p.kappa_i * lap[:, 1]
        mu_eta = 2.0 * (eta - 1.0) * f_s + 2.0 * eta * f_v - p.kappa_eta * lap[:, 2]
        return torch.stack((mu_v, mu_i, mu_eta), dim=1), f_s, f_v

    # ---- kinetics --------------------------------------------------------------------------------
    def mobilities(self, c_v: Tensor, c_i: Tensor, p: VoidParameters) -> Tensor:
        """M_v, M_i = D c / kBT stacked ``[batch, 2, H, W]`` (negative c gives zero mobility, conservative)."""
        c = self._mobility_concentrations(torch.stack((c_v, c_i), dim=1))
        d = torch.stack(torch.broadcast_tensors(torch.as_tensor(p.D_v), torch.as_tensor(p.D_i))).to(c)
        return c * (d / p.kBT).view(1, 2, 1, 1)

    @staticmethod
    def recombination_rate(c_v: Tensor, c_i: Tensor, eta: Tensor, p: VoidParameters) -> Tensor:
        """R = (R_bulk + R_surf η²) c_v c_i, ``[batch, H, W]`` (site fraction per time)."""
        return (p.R_bulk + p.R_surf * eta * eta) * c_v * c_i

    def rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        return self._rate(state, params, dx)[0]

    def rate_and_diagonal(self, state: Tensor, params: VoidParameters, dx: float) -> tuple[Tensor, Tensor]:
        rate, f_s, f_v = self._rate(state, params, dx)
        return rate, self._diagonal(state, params, 2.0 * (f_s + f_v))

    def _rate(self, state: Tensor, params: VoidParameters, dx: float) -> tuple[Tensor, Tensor, Tensor]:
        """(∂φ/∂t, f_s, f_v)."""
        c_v, c_i, eta = state.unbind(1)
        mu, f_s, f_v = self._potentials(state, params, dx)
        transport = self._transport(self.mobilities(c_v, c_i, params), mu[:, :2], dx)
        r = self.recombination_rate(c_v, c_i, eta, params)
        return torch.stack((transport[:, 0] - r, transport[:, 1] - r, -params.L * mu[:, 2]), dim=1), f_s, f_v

    # ---- sources and noise -----------------------------------------------------------------------
    def draw(
        self, numbers: RandomNumbers | torch.Generator, shape: tuple[int, ...], dtype: torch.dtype
    ) -> dict[str, Tensor]:
        b, _, h, w = shape
        source = as_numbers(numbers)
        gate = source.rand((b, h, w), dtype)
        amplitude = source.rand((b, h, w), dtype)
        xi = source.randn((b, self._noise_channels(), h, w), dtype)
        return {"gate": gate, "amplitude": amplitude, "xi": xi}

    def cascade_source(self, eta: Tensor, gate: Tensor, amplitude: Tensor, p: VoidParameters) -> Tensor:
        """P = V_g·U where η < 0.8 and the gate U₁ ≤ p_casc, else 0; ``[batch, H, W]`` (per time)."""
        hit = ((eta < self.cascade_eta_max) & (gate <= p.p_casc)).to(eta.dtype)
        return p.V_g * amplitude * hit

    def forcing_increment(
        self, state: Tensor, params: VoidParameters, draws: dict[str, Tensor] | None, dt: float, dx: float
    ) -> Tensor | None:
        draws = self.realise(draws, state)
        if draws is None:
            return None
        p = params
        cascade = self.cascade_source(state[:, 2], draws["gate"], draws["amplitude"], p)
        b = p.bias
        src = torch.stack((b * cascade, (1.0 - b) * cascade, (2.0 * b - 1.0) * cascade), dim=1)
        return self._source_and_noise(state, p, src, draws["xi"], dt, dx)

    # ---- step-size control -----------------------------------------------------------------------
    def local_stiffness(self, state: Tensor, params: VoidParameters) -> tuple[Tensor, Tensor]:
        """Per-pixel M·∂²f/∂c² of c_v and c_i (1/time), ``[batch, H, W]`` each: the bulk part of the stiffness."""
        p = params
        c_v, c_i, eta = state.unbind(1)
        h = (eta - 1.0) ** 2
        j = eta * eta
        m = self.mobilities(c_v, c_i, p)
        # The dilute entropy with the degenerate mobility gives D·h (no 1/c singularity).
        fv = p.D_v * h + 2.0 * j * m[:, 0]
        fi = p.D_i * h + 2.0 * j * m[:, 1]
        return self._saturation_stiffness(state, p, fv, fi)

    def _eta_curvature(self, c_v: Tensor, c_i: Tensor, p: VoidParameters) -> Tensor:
        """∂²f/∂η² = 2 (f_s + f_v), ``[batch, H, W]`` (energy per site)."""
        f_s, _, _ = self.solid_free_energy(c_v, c_i, p)
        return 2.0 * (f_s + (c_v - 1.0) ** 2 + c_i * c_i)

    def _transport_rates(self, state: Tensor, p: VoidParameters, k: float) -> tuple[Tensor, Tensor]:
        """Largest Cahn-Hilliard decay rates of c_v and c_i (1/time) for the Laplacian bound ``k``."""
        c_v, c_i, _ = state.unbind(1)
        m = self.mobilities(c_v, c_i, p)
        fv, fi = self.local_stiffness(state, p)
        return k * (fv + m[:, 0] * p.kappa_v * k).amax(), k * (fi + m[:, 1] * p.kappa_i * k).amax()

    def stability_rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        p = params
        with torch.no_grad():
            c_v, c_i, _ = state.unbind(1)
            k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
            lam_v, lam_i = self._transport_rates(state, p, k)
            lam_eta = p.L * (self._eta_curvature(c_v, c_i, p).abs().amax() + p.kappa_eta * k)
            return torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in (lam_v, lam_i, lam_eta)]).amax()

    def local_stiffness_diagonal(self, state: Tensor, params: VoidParameters) -> Tensor:
        """∂²f/∂η² · L for η (where positive) and the recombination coefficients of c_v and c_i,
        ``[batch, 3, H, W]``."""
        c_v, c_i, _ = state.unbind(1)
        return self._diagonal(state, params, self._eta_curvature(c_v, c_i, params))

    @staticmethod
    def _diagonal(state: Tensor, p: VoidParameters, eta_curvature: Tensor) -> Tensor:
        c_v, c_i, eta = state.unbind(1)
        k_r = p.R_bulk + p.R_surf * eta * eta
        d_eta = p.L * torch.clamp(eta_curvature, min=0.0)
        return torch.stack((k_r * torch.clamp(c_i, min=0.0), k_r * torch.clamp(c_v, min=0.0), d_eta), dim=1)

    def implicit_stability_rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        p = params
        with torch.no_grad():
            k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
            lam_c = self._transport_rates(state, p, k)
            c_v, c_i, _ = state.unbind(1)
            lam_eta = p.L * (torch.clamp(-self._eta_curvature(c_v, c_i, p), min=0.0).amax() + p.kappa_eta * k)
            return torch.stack([torch.as_tensor(x, dtype=torch.float64) for x in (*lam_c, lam_eta)]).amax()

    # ---- the compiled kernel ---------------------------------------------------------------------
    def _fused(self, state: Tensor, params: VoidParameters, implicit_local: bool = False) -> bool:
        """Whether the compiled kernel takes this step (``kernel="fused"`` and the kernel covers it)."""
        return False

    def _kernel(self, implicit_local: bool) -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
        """The compiled kernel's (step, sub-steps) functions and their options (:mod:`neuradiff.physics.fused`,
        :mod:`neuradiff.physics.fused_reference`); only called where :meth:`_fused` is true."""
        raise NotImplementedError

    def euler_update(
        self, state: Tensor, params: VoidParameters, h: float, dx: float, *, implicit_local: bool = False
    ) -> Tensor:
        if self._fused(state, params, implicit_local):
            step, _, options = self._kernel(implicit_local)
            return step(state, params, h, dx, **options)[0]
        return super().euler_update(state, params, h, dx, implicit_local=implicit_local)

    def euler_substep(
        self,
        state: Tensor,
        params: VoidParameters,
        h: float,
        dx: float,
        *,
        implicit_local: bool = False,
        forcing: Tensor | None = None,
        forcing_divisor: int = 1,
    ) -> tuple[Tensor, Tensor]:
        if self._fused(state, params, implicit_local) and (forcing is None or forcing.shape == state.shape):
            step, _, options = self._kernel(implicit_local)
            return step(state, params, h, dx, forcing=forcing, forcing_divisor=forcing_divisor, project=True, **options)
        kw = {"implicit_local": implicit_local, "forcing": forcing, "forcing_divisor": forcing_divisor}
        return super().euler_substep(state, params, h, dx, **kw)

    def euler_substeps(
        self,
        state: Tensor,
        params: VoidParameters,
        h: float,
        dx: float,
        count: int,
        *,
        implicit_local: bool = False,
        forcing: Tensor | None = None,
        forcing_divisor: int = 1,
    ) -> tuple[Tensor, Tensor]:
        if self._fused(state, params, implicit_local) and (forcing is None or forcing.shape == state.shape):
            _, substeps, options = self._kernel(implicit_local)
            return substeps(state, params, h, dx, count, forcing=forcing, forcing_divisor=forcing_divisor, **options)
        kw = {"implicit_local": implicit_local, "forcing": forcing, "forcing_divisor": forcing_divisor}
        return super().euler_substeps(state, params, h, dx, count, **kw)

    def extra_diagnostics(self, state: Tensor, params: VoidParameters, dx: float) -> dict[str, Tensor]:
        """``void_area``: area with η ≥ 0.5 (dx²), shape ``[batch]``."""
        return {"void_area": (state[:, 2] >= 0.5).sum(dim=(-1, -2)).to(torch.float64) * dx * dx}


class ConservativeVoidModel(VoidModel):
    """Flux-form transport with face mobilities, a smooth entropy continuation, √dt Langevin noise conservative
    on c_v and c_i, and only η held in [0, 1] (see the module docstring)."""

    discretisation = "conservative"
    default_log_floor = 1e-3
    supports_spectral = True

    def solid_free_energy(self, c_v: Tensor, c_i: Tensor, p: VoidParameters) -> tuple[Tensor, Tensor, Tensor]:
        eps = self.log_floor
        s = 1.0 - c_v - c_i
        gv, dv, _ = _smooth_entropy(c_v, eps)
        gi, di, _ = _smooth_entropy(c_i, eps)
        gs, ds, _ = _smooth_entropy(s, self.saturation_floor)
        f_s = p.E_v * c_v + p.E_i * c_i + p.kBT * (gv + gi + gs)
        return f_s, p.E_v + p.kBT * (dv - ds), p.E_i + p.kBT * (di - ds)

    def _mobility_concentrations(self, c: Tensor) -> Tensor:
        return torch.clamp(c, min=0.0)

    def _fused(self, state: Tensor, params: VoidParameters, implicit_local: bool = False) -> bool:
        if self.kernel != "fused":
            return False
        return fused_unavailable(state, params, boundary=self.boundary, face=self.face_mobility) is None

    def forcing_increment(
        self, state: Tensor, params: VoidParameters, draws: dict[str, Tensor] | None, dt: float, dx: float
    ) -> Tensor | None:
        draws = self.realise(draws, state)
        if draws is not None and self._fused(state, params) and fused_forcing_unavailable(state, params, draws) is None:
            return fused_forcing(state, params, draws, dt, dx, eta_max=self.cascade_eta_max)
        return super().forcing_increment(state, params, draws, dt, dx)

    def stability_rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        if self._fused(state, params):
            return self._fused_stability_rate(state, params, dx, imex=False)
        return super().stability_rate(state, params, dx)

    def implicit_stability_rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        if self._fused(state, params):
            return self._fused_stability_rate(state, params, dx, imex=True)
        return super().implicit_stability_rate(state, params, dx)

    def _fused_stability_rate(self, state: Tensor, params: VoidParameters, dx: float, *, imex: bool) -> Tensor:
        """The plain path's estimate (:meth:`VoidModel.stability_rate`) from one pass of the fused kernel."""
        tv, ti, te = fused_stability(
            state, params, dx, imex=imex, log_floor=self.log_floor, saturation_floor=self.saturation_floor
        )
        k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
        lam_eta = scalar(params.L) * (te + scalar(params.kappa_eta) * k)
        return torch.tensor([k * tv, k * ti, lam_eta], dtype=torch.float64).amax()

    def _kernel(self, implicit_local: bool) -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
        options = {"imex": implicit_local, "log_floor": self.log_floor, "saturation_floor": self.saturation_floor}
        return fused_step, fused_substeps, {**options, "boundary": self.boundary}

    def _transport(self, m: Tensor, mu: Tensor, dx: float) -> Tensor:
        return flux_divergence(m, mu, dx, boundary=self.boundary, face=self.face_mobility)

    def _noise_channels(self) -> int:
        return 5  # flux noise on the x and y faces of c_v and c_i, point noise on eta

    def _source_and_noise(
        self, state: Tensor, p: VoidParameters, source: Tensor, xi: Tensor, dt: float, dx: float
    ) -> Tensor:
        # Langevin terms: η point noise √(2 kBT L dt)·ξ; c flux noise through the discrete divergence.
        c_v, c_i, _ = state.unbind(1)
        m = self.mobilities(c_v, c_i, p)
        # Face noise scaled by the harmonic mean of the two cells' mobilities (smooth, and an empty cell
        # exchanges no noise flux).
        m_e = _harmonic_mean(m, torch.roll(m, -1, dims=-1))
        m_s = _harmonic_mean(m, torch.roll(m, -1, dims=-2))
        zx = _sqrt_nonnegative(m_e) * xi[:, 0:2]
        zy = _sqrt_nonnegative(m_s) * xi[:, 2:4]
        div = (zx - torch.roll(zx, 1, dims=-1) + zy - torch.roll(zy, 1, dims=-2)) / dx
        amp = p.noise * torch.sqrt(2.0 * p.kBT * dt * torch.ones((), dtype=state.dtype)) / dx
        noise_c = amp * div
        noise_eta = p.noise * torch.sqrt(2.0 * p.kBT * p.L * dt * torch.ones((), dtype=state.dtype)) * xi[:, 4]
        return dt * source + torch.cat((noise_c, noise_eta.unsqueeze(1)), dim=1)

    def project(self, state: Tensor) -> tuple[Tensor, Tensor]:
        counts = ((state < 0.0) | (state > 1.0)).sum(dim=(-1, -2))
        eta = torch.clamp(state[:, 2:3], 0.0, 1.0)
        return torch.cat((state[:, :2], eta), dim=1), counts

    def _saturation_stiffness(self, state: Tensor, p: VoidParameters, fv: Tensor, fi: Tensor) -> tuple[Tensor, Tensor]:
        c_v, c_i, eta = state.unbind(1)
        h = (eta - 1.0) ** 2
        # Vacancy saturation s = 1 − c_v − c_i → 0: M·kBT·h/max(s, floor), bounded by the continuation.
        inv_s = h / torch.clamp(1.0 - c_v - c_i, min=self.saturation_floor)
        fv = fv + p.D_v * torch.clamp(c_v, min=0.0) * inv_s
        fi = fi + p.D_i * torch.clamp(c_i, min=0.0) * inv_s
        # Below the log floor the curvature is kBT/floor while the upwind mobility is a neighbour's.
        c = torch.clamp(torch.stack((c_v, c_i), dim=1), min=0.0)
        nb = torch.maximum(
            torch.maximum(torch.roll(c, 1, -1), torch.roll(c, -1, -1)),
            torch.maximum(torch.roll(c, 1, -2), torch.roll(c, -1, -2)),
        )
        low = (c < self.log_floor).to(c.dtype) * nb / self.log_floor
        return fv + p.D_v * low[:, 0], fi + p.D_i * low[:, 1]

    def stabiliser(self, state: Tensor, params: VoidParameters, k2: Tensor) -> Tensor:
        p = params
        c_v, c_i, _ = state.unbind(1)
        # Cahn-Hilliard: a(k) = k² (A κ k² + S) with the mobility bound A = D max(c, 1)/kBT and S the largest
        # local stiffness M·f'' (≥ D in the matrix), so the explicit remainder of each mode is damped.
        fv, fi = self.local_stiffness(state, p)
        a_v = k2 * (
            (p.D_v * torch.clamp(c_v.amax(), min=1.0) / p.kBT) * p.kappa_v * k2 + torch.clamp(fv.amax(), min=p.D_v)
        )
        a_i = k2 * (
            (p.D_i * torch.clamp(c_i.amax(), min=1.0) / p.kBT) * p.kappa_i * k2 + torch.clamp(fi.amax(), min=p.D_i)
        )
        # Allen-Cahn: S ≥ max |∂²f/∂η²| = max |2 (f_s + f_v)| keeps the step energy-stable.
        a_eta = p.L * (p.kappa_eta * k2 + torch.clamp(self._eta_curvature(c_v, c_i, p).abs().amax(), min=2.0))
        return torch.stack(torch.broadcast_tensors(a_v, a_i, a_eta))


class ReferenceVoidModel(VoidModel):
    """The published code's discretisation: M∇²μ, hard log floor with f_s zeroed where s < floor, noise added
    to the rates (not scaled by √dt), every field clamped to [0, 1]; defined with explicit Euler only.

    (The reference form floors the logarithms at 1e-6 and clamps; its saturation stiffness is left out, as in
    the published code, whose measured limit is the gradient-energy bound.)"""

    discretisation = "reference"
    default_log_floor = 1e-6
    spectral_unsupported = "the reference discretisation is defined with explicit Euler; use integrator='euler'"

    def solid_free_energy(self, c_v: Tensor, c_i: Tensor, p: VoidParameters) -> tuple[Tensor, Tensor, Tensor]:
        eps = self.log_floor
        s = 1.0 - c_v - c_i
        lv, li, ls = (torch.log(torch.clamp(x, min=eps)) for x in (c_v, c_i, s))
        keep = (s >= eps).to(c_v.dtype)
        f_s = keep * (p.E_v * c_v + p.E_i * c_i + p.kBT * (c_v * lv + c_i * li + s * ls))
        return f_s, keep * (p.E_v + p.kBT * (lv - ls)), keep * (p.E_i + p.kBT * (li - ls))

    def _mobility_concentrations(self, c: Tensor) -> Tensor:
        return c

    def _transport(self, m: Tensor, mu: Tensor, dx: float) -> Tensor:
        return m * laplacian(mu, dx, boundary=self.boundary)

    def _noise_channels(self) -> int:
        return 3

    def _fused(self, state: Tensor, params: VoidParameters, implicit_local: bool = False) -> bool:
        """Whether the fused kernel computes this explicit step (it does not define the IMEX one)."""
        if self.kernel != "fused" or implicit_local:
            return False
        return fused_reference_unavailable(state, params, boundary=self.boundary) is None

    def stability_rate(self, state: Tensor, params: VoidParameters, dx: float) -> Tensor:
        if not self._fused(state, params):
            return super().stability_rate(state, params, dx)
        # the plain path's estimate (VoidModel.stability_rate) from one pass of the fused kernel
        tv, ti, te = fused_reference_stability(state, params, dx, log_floor=self.log_floor)
        k = LAPLACIAN_MAX_EIGENVALUE / (dx * dx)
        lam_eta = scalar(params.L) * (te + scalar(params.kappa_eta) * k)
        return torch.tensor([k * tv, k * ti, lam_eta], dtype=torch.float64).amax()

    def _kernel(self, implicit_local: bool) -> tuple[Callable[..., Any], Callable[..., Any], dict[str, Any]]:
        return fused_reference_step, fused_reference_substeps, {"log_floor": self.log_floor, "boundary": self.boundary}

    def forcing_increment(
        self, state: Tensor, params: VoidParameters, draws: dict[str, Tensor] | None, dt: float, dx: float
    ) -> Tensor | None:
        if draws is None or not self._fused(state, params) or forcing_fixed_unavailable(params) is not None:
            return super().forcing_increment(state, params, draws, dt, dx)
        key = draws_key(draws)
        if key is not None:  # the numbers made from their key in the kernel, without fields
            return fused_reference_philox_forcing(state, params, key, dt, eta_max=self.cascade_eta_max)
        if fused_reference_forcing_unavailable(state, params, draws) is None:
            return fused_reference_forcing(state, params, draws, dt, eta_max=self.cascade_eta_max)
        return super().forcing_increment(state, params, draws, dt, dx)

    def _source_and_noise(
        self, state: Tensor, p: VoidParameters, source: Tensor, xi: Tensor, dt: float, dx: float
    ) -> Tensor:
        return dt * (source + p.noise * xi)

    def project(self, state: Tensor) -> tuple[Tensor, Tensor]:
        counts = ((state < 0.0) | (state > 1.0)).sum(dim=(-1, -2))
        return torch.clamp(state, 0.0, 1.0), counts


#: Discretisation name → model class.
DISCRETISATIONS: dict[str, type[VoidModel]] = {"conservative": ConservativeVoidModel, "reference": ReferenceVoidModel}


def equilibrium_vacancy_fraction(params: VoidParameters, c_i: float = 0.0) -> float:
    """Homogeneous matrix equilibrium (η = 0, no sources): c_v with c_v/(1 − c_v − c_i) = exp(−E_v/kBT)."""
    p = params.as_floats()
    r = math.exp(-p["E_v"] / p["kBT"])
    return r * (1.0 - c_i) / (1.0 + r)
