"""What a phase-field model is to the engine: a free energy plus its kinetics.

A state is one tensor shaped ``[batch, field, H, W]`` (fields in ``model.field_names`` order); a field
is the slice ``state[:, k]`` shaped ``[batch, H, W]``. Conserved fields follow Cahn-Hilliard kinetics
∂c/∂t = ∇·(M∇μ) and non-conserved fields Allen-Cahn kinetics ∂η/∂t = −Lμ, with μ = δF/δφ.

Subclasses provide the local free energy and its derivatives; this base class provides the discrete
free energy (gradient energy with forward differences, so that ∂F_h/∂φ_ij = dx² μ_ij exactly), the
diagnostics and the defaults for sources and bounds (none).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from neuradiff.physics.operators import check_boundary, forward_differences
from neuradiff.physics.parameters import ParameterSet
from neuradiff.physics.random_numbers import PhiloxNumbers, RandomNumbers, draws_key


class PhaseFieldModel:
    """Base class of the engine's models (see the module docstring for the state layout)."""

    field_names: ClassVar[tuple[str, ...]] = ()
    conserved: ClassVar[tuple[bool, ...]] = ()
    params_type: ClassVar[type[ParameterSet]] = ParameterSet
    name: ClassVar[str] = "model"
    #: Capability: the model provides :meth:`stabiliser`, so the semi-implicit spectral integrator can step it.
    supports_spectral: ClassVar[bool] = False
    #: Why the spectral integrator cannot step this model (the error a user sees).
    spectral_unsupported: ClassVar[str] = "this model has no spectral stabiliser; use integrator='euler' or 'imex'"

    def __init__(self, *, boundary: str = "periodic") -> None:
        self.boundary = check_boundary(boundary)

    # ---- to be provided by each model ------------------------------------------------------------
    def local_free_energy(self, state: Tensor, params: ParameterSet) -> Tensor:
        """Bulk free-energy density f(φ), shape ``[batch, H, W]`` (energy per site)."""
        raise NotImplementedError

    def gradient_coefficients(self, params: ParameterSet) -> tuple[Any, ...]:
        """κ of each field (energy · length²), in field order."""
        raise NotImplementedError

    def chemical_potential(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """μ = δF/δφ of every field, shape ``[batch, field, H, W]``."""
        raise NotImplementedError

    def rate(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """Deterministic ∂φ/∂t of every field, shape ``[batch, field, H, W]``."""
        raise NotImplementedError

    def stability_rate(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """Estimate λ of the fastest decaying mode; explicit Euler is stable for dt < 2/λ (0-d tensor)."""
        raise NotImplementedError

    def local_stiffness_diagonal(self, state: Tensor, params: ParameterSet) -> Tensor | None:
        """Per-pixel d ≥ 0 with rate ≈ −d·φ + (the rest) for the pointwise (reaction) part of each field,
        shape ``[batch, field, H, W]`` (1/time); the ``imex`` integrator treats it implicitly. ``None``: none."""
        return None

    def rate_and_diagonal(self, state: Tensor, params: ParameterSet, dx: float) -> tuple[Tensor, Tensor | None]:
        """(:meth:`rate`, :meth:`local_stiffness_diagonal`); models override it to share work between the two."""
        return self.rate(state, params, dx), self.local_stiffness_diagonal(state, params)

    def euler_update(
        self, state: Tensor, params: ParameterSet, h: float, dx: float, *, implicit_local: bool = False
    ) -> Tensor:
        """``state + h·rate`` (explicit Euler) or, with ``implicit_local``, ``state + h·rate / (1 + h·d)`` with
        ``d`` the :meth:`local_stiffness_diagonal` (linearly implicit); before sources and projection."""
        if implicit_local:
            rate, d = self.rate_and_diagonal(state, params, dx)
        else:
            rate, d = self.rate(state, params, dx), None
        return state + (h * rate if d is None else h * rate / (1.0 + h * d))

    def euler_substep(
        self,
        state: Tensor,
        params: ParameterSet,
        h: float,
        dx: float,
        *,
        implicit_local: bool = False,
        forcing: Tensor | None = None,
        forcing_divisor: int = 1,
    ) -> tuple[Tensor, Tensor]:
        """One (sub-)step of the Euler integrators: :meth:`project` of :meth:`euler_update` plus
        ``forcing / forcing_divisor`` (a step's source and noise increment shared by its sub-steps);
        returns (state, the counts of :meth:`project`)."""
        new = self.euler_update(state, params, h, dx, implicit_local=implicit_local)
        if forcing is not None:
            new = new + (forcing if forcing_divisor == 1 else forcing / forcing_divisor)
        return self.project(new)

    def euler_substeps(
        self,
        state: Tensor,
        params: ParameterSet,
        h: float,
        dx: float,
        count: int,
        *,
        implicit_local: bool = False,
        forcing: Tensor | None = None,
        forcing_divisor: int = 1,
    ) -> tuple[Tensor, Tensor]:
        """``count`` :meth:`euler_substep` calls in a row (the sub-steps of a split step); returns (state, the
        counts of :meth:`project` summed over them). Models with a faster way of taking several sub-steps
        override it."""
        clamped = None
        for _ in range(count):
            state, c = self.euler_substep(
                state, params, h, dx, implicit_local=implicit_local, forcing=forcing, forcing_divisor=forcing_divisor
            )
            clamped = c if clamped is None else clamped + c
        assert clamped is not None, "count must be at least 1"
        return state, clamped

    def implicit_stability_rate(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """λ of the fastest mode left explicit when :meth:`local_stiffness_diagonal` is implicit (default: all)."""
        return self.stability_rate(state, params, dx)

    def stabiliser(self, state: Tensor, params: ParameterSet, k2: Tensor) -> Tensor:
        """Coefficient a_f(k) ≥ 0 of the linear stabilisation of each field, shape ``[field, H, W//2+1]``.

        The semi-implicit step solves (1 + dt·a_f(k)) Δφ̂ = dt·(rate)^ for the increment Δφ.
        """
        raise NotImplementedError

    #: :meth:`spectral_remainder` is written with the symbol ``k2`` it is given (so any Laplacian symbol is
    #: consistent); the default goes through :meth:`rate`, which uses the 5-point stencil.
    spectral_remainder_uses_k2: ClassVar[bool] = False

    # ---- defaults --------------------------------------------------------------------------------
    def spectral_remainder(
        self, state: Tensor, state_hat: Tensor, params: ParameterSet, k2: Tensor, a: Tensor, dx: float
    ) -> Tensor:
        """What the linear stabiliser leaves of the rate, in Fourier space: N̂ = rate(φ)^ + a(k)·φ̂.

        The exponential integrators (:mod:`~neuradiff.physics.etd`) solve φ̂' = −a(k)·φ̂ + N̂(φ)
        exactly in the linear part. ``state`` is ``[batch, field, H, W]``, ``state_hat`` its ``rfft2``,
        ``a`` the stabiliser ``[field, H, W//2+1]``; returns ``[batch, field, H, W//2+1]`` (complex).
        Models that know their rate in Fourier space override this (one transform fewer).
        """
        return torch.fft.rfft2(self.rate(state, params, dx)) + a * state_hat

    @property
    def random_terms(self) -> bool:
        """Whether the model's steps have random terms: its class defines :meth:`draw` (a keyed forcing gives the others
        no draws)."""
        return type(self).draw is not PhaseFieldModel.draw

    def draw(
        self, numbers: RandomNumbers | torch.Generator, shape: tuple[int, ...], dtype: torch.dtype
    ) -> dict[str, Tensor] | None:
        """Random numbers one step needs, drawn on the CPU from ``numbers`` (a
        :class:`~neuradiff.physics.random_numbers.RandomNumbers` or a ``torch.Generator``); ``None`` if the model has
        none."""
        return None

    def realise(self, draws: dict[str, Tensor] | None, state: Tensor) -> dict[str, Tensor] | None:
        """The fields of a step's ``draws`` for ``state``: keyed draws
        (:func:`~neuradiff.physics.random_numbers.keyed_draws`) made from their key by :meth:`draw` on the CPU and
        moved to the state's device; draws that hold their fields (or ``None``) as they are."""
        key = draws_key(draws)
        if key is None:
            return draws
        out = self.draw(PhiloxNumbers(key), tuple(state.shape), state.dtype)
        return None if out is None else {k: v.to(state.device) for k, v in out.items()}

    def forcing_increment(
        self, state: Tensor, params: ParameterSet, draws: dict[str, Tensor] | None, dt: float, dx: float
    ) -> Tensor | None:
        """Increment over a step of length ``dt`` from sources and noise (``None``: nothing)."""
        return None

    def project(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """Apply the model's bounds; returns (state, clamped pixel count per field ``[batch, field]``)."""
        return state, torch.zeros(state.shape[:2], dtype=torch.long, device=state.device)

    def extra_diagnostics(self, state: Tensor, params: ParameterSet, dx: float) -> dict[str, Tensor]:
        """Model-specific diagnostics, each shaped ``[batch]``."""
        return {}

    # ---- shared ----------------------------------------------------------------------------------
    def check_state(self, state: Tensor) -> None:
        """Raise ``ValueError`` unless ``state`` is a floating tensor ``[batch, field, H, W]`` of this model."""
        if not isinstance(state, Tensor):
            raise ValueError(f"state must be a torch.Tensor, got {type(state).__name__}")
        nf = len(self.field_names)
        if state.ndim != 4 or state.shape[1] != nf:
            raise ValueError(
                f"{self.name} state must be shaped [batch, {nf}, H, W] (fields {', '.join(self.field_names)}), "
                f"got {tuple(state.shape)}"
            )
        if not state.is_floating_point():
            raise ValueError(f"state must be floating point, got {state.dtype}")
        if state.shape[-1] < 3 or state.shape[-2] < 3:
            raise ValueError(f"grid {tuple(state.shape[-2:])} is too small; need at least 3×3")

    def check_params(self, params: ParameterSet) -> None:
        if not isinstance(params, self.params_type):
            raise ValueError(f"{self.name} needs {self.params_type.__name__}, got {type(params).__name__}")

    def free_energy_density(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """f(φ) + Σ κ/2 (|D⁺_x φ|² + |D⁺_y φ|²), shape ``[batch, H, W]`` (energy per site)."""
        density = self.local_free_energy(state, params)
        for k, kappa in enumerate(self.gradient_coefficients(params)):
            gx, gy = forward_differences(state[:, k], dx, boundary=self.boundary)
            density = density + 0.5 * kappa * (gx * gx + gy * gy)
        return density

    def free_energy(self, state: Tensor, params: ParameterSet, dx: float) -> Tensor:
        """Total free energy F_h = Σ density · dx², shape ``[batch]``."""
        return self.free_energy_density(state, params, dx).sum(dim=(-1, -2)) * dx * dx

    def diagnostics(self, state: Tensor, params: ParameterSet, dx: float) -> dict[str, Tensor]:
        """Free energy, the total of every field (Σφ dx²) and model extras; each shaped ``[batch]``."""
        with torch.no_grad():
            out = {"free_energy": self.free_energy(state, params, dx)}
            totals = state.sum(dim=(-1, -2), dtype=torch.float64) * dx * dx
            for k, name in enumerate(self.field_names):
                out[f"total_{name}"] = totals[:, k]
            out.update(self.extra_diagnostics(state, params, dx))
        return out
