"""Time integrators: explicit Euler with a stability guard, its linearly implicit (IMEX) variant, a
semi-implicit spectral scheme and a second-order exponential one (ETDRK2, :mod:`~neuradiff.physics.etd`).

An integrator is a pure function ``(model, state, params, dt, *, dx, draws, guard) -> (state, StepInfo)``
for one step of length ``dt`` (simulation time units); ``draws`` are the step's random numbers (or
``None``). Both are differentiable with respect to the state and the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from neuradiff.core.errors import SimulationError, StiffnessError
from neuradiff.physics.etd import ETDSplit
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import laplacian_symbol
from neuradiff.physics.parameters import ParameterSet

GUARDS = ("substep", "raise", "off")


@dataclass
class StepInfo:
    """What a step did besides advancing the state."""

    clamped: Tensor  #: [batch, field] pixels found outside the model's bounds (clamped or counted)
    substeps: int  #: explicit sub-steps taken (1 when the step was within the stability bound)


def explicit_stability_limit(
    model: PhaseFieldModel, state: Tensor, params: ParameterSet, dx: float, *, implicit_local: bool = False
) -> float:
    """Largest stable explicit Euler step 2/λ for the current state (simulation time units); with
    ``implicit_local`` the limit of the IMEX step, whose pointwise stiff part is implicit."""
    rate = model.implicit_stability_rate if implicit_local else model.stability_rate
    lam = float(rate(state, params, dx))
    if not math.isfinite(lam):
        raise SimulationError("the stability estimate is not finite: the state or the parameters hold NaN/Inf")
    return math.inf if lam <= 0 else 2.0 / lam


def _check_dt(dt: float) -> float:
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"time step dt must be a positive finite number, got {dt}")
    return dt


def explicit_euler(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    dt: float,
    *,
    dx: float = 1.0,
    draws: dict[str, Tensor] | None = None,
    guard: str = "substep",
    limit: float | None = None,
    max_substeps: int = 1000,
    checkpoint_substeps: int | None = None,
) -> tuple[Tensor, StepInfo]:
    """One forward-Euler step; sources and noise enter once per step.

    ``guard``: ``"substep"`` splits a step longer than the stability limit into equal sub-steps,
    ``"raise"`` raises :class:`SimulationError`, ``"off"`` trusts ``dt`` (the reference code's behaviour).
    ``limit``: a stability limit computed by the caller (e.g. every few steps of a rollout); by default
    it is estimated from ``state``. ``checkpoint_substeps``: under autograd, recompute the sub-steps of a
    split step in groups of this many in the backward pass instead of storing them (identical gradients;
    the memory of a step is then bounded whatever the number of sub-steps).
    """
    return _euler(
        model,
        state,
        params,
        dt,
        dx=dx,
        draws=draws,
        guard=guard,
        limit=limit,
        max_substeps=max_substeps,
        implicit_local=False,
        checkpoint_substeps=checkpoint_substeps,
    )


def imex_euler(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    dt: float,
    *,
    dx: float = 1.0,
    draws: dict[str, Tensor] | None = None,
    guard: str = "substep",
    limit: float | None = None,
    max_substeps: int = 1000,
    checkpoint_substeps: int | None = None,
) -> tuple[Tensor, StepInfo]:
    """One linearly implicit Euler step φ' = φ + h·rate(φ) / (1 + h·d(φ)), with d the model's pointwise
    stiffness (:meth:`~neuradiff.physics.model.PhaseFieldModel.local_stiffness_diagonal`: for voids the
    double-well curvature of η and the recombination of c_v, c_i).

    First order, with the fixed points of explicit Euler; the guard only has to resolve transport, so the
    step is several times longer on stiff states (models without a diagonal fall back to explicit Euler).
    ``guard``, ``limit`` and ``checkpoint_substeps`` as in :func:`explicit_euler`.
    """
    return _euler(
        model,
        state,
        params,
        dt,
        dx=dx,
        draws=draws,
        guard=guard,
        limit=limit,
        max_substeps=max_substeps,
        implicit_local=True,
        checkpoint_substeps=checkpoint_substeps,
    )


def _euler(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    dt: float,
    *,
    dx: float,
    draws: dict[str, Tensor] | None,
    guard: str,
    limit: float | None,
    max_substeps: int,
    implicit_local: bool,
    checkpoint_substeps: int | None = None,
) -> tuple[Tensor, StepInfo]:
    dt = _check_dt(dt)
    if guard not in GUARDS:
        raise ValueError(f"unknown guard {guard!r}; choose one of {', '.join(GUARDS)}")
    n = 1
    if guard != "off":
        if limit is None:
            limit = explicit_stability_limit(model, state, params, dx, implicit_local=implicit_local)
        if dt > limit:
            if guard == "raise":
                raise SimulationError(
                    f"time step dt={dt:g} exceeds the explicit stability limit {limit:.4g} of this state; "
                    "use a smaller dt, guard='substep' or the spectral integrator"
                )
            n = math.ceil(dt / limit * (1.0 + 1e-9))
            if n > max_substeps:
                raise StiffnessError(
                    f"time step dt={dt:g} would need {n} explicit sub-steps (limit {limit:.3g}); "
                    "the parameters make the equations too stiff for explicit Euler"
                )
    forcing = model.forcing_increment(state, params, draws, dt, dx)
    h = dt / n

    def substeps(s: Tensor, f: Tensor | None, count: int) -> tuple[Tensor, Tensor]:
        return model.euler_substeps(
            s, params, h, dx, count, implicit_local=implicit_local, forcing=f, forcing_divisor=n
        )

    group = checkpoint_substeps if checkpoint_substeps and torch.is_grad_enabled() else n
    if group >= n:
        state, clamped = substeps(state, forcing, n)
        return state, StepInfo(clamped, n)
    # A split step under autograd: each group of sub-steps is recomputed in the backward pass, so only the
    # group boundaries are stored (the memory does not grow with the stiffness).
    clamped = torch.zeros(state.shape[:2], dtype=torch.long, device=state.device)
    for first in range(0, n, group):
        state, c = checkpoint(substeps, state, forcing, min(group, n - first), use_reentrant=False)
        clamped = clamped + c
    return state, StepInfo(clamped, n)


def semi_implicit_spectral(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    dt: float,
    *,
    dx: float = 1.0,
    draws: dict[str, Tensor] | None = None,
    guard: str = "off",
    limit: float | None = None,
    max_substeps: int = 1000,
    checkpoint_substeps: int | None = None,
) -> tuple[Tensor, StepInfo]:
    """One stabilised semi-implicit step on a periodic grid.

    The increment solves (1 + dt·a_f(k)) Δφ̂ = (dt·rate + forcing)^ with the model's linear stabiliser
    a_f(k) ~ M k²(κ k² + S) (Cahn-Hilliard) or L(κ k² + S) (Allen-Cahn): first order in time, consistent
    with the explicit step, and stable for much larger dt. ``guard``, ``limit`` and ``checkpoint_substeps``
    are accepted for a common signature (the step is never split). Models without a stabiliser
    (``model.supports_spectral`` false, e.g. the reference discretisation, which is clamp-driven and
    non-conservative) are refused.
    """
    dt = _check_dt(dt)
    if model.boundary != "periodic":
        raise ValueError("the spectral integrator needs periodic boundaries; use the explicit integrator")
    if not model.supports_spectral:
        raise ValueError(model.spectral_unsupported)
    inc = dt * model.rate(state, params, dx)
    forcing = model.forcing_increment(state, params, draws, dt, dx)
    if forcing is not None:
        inc = inc + forcing
    k2 = laplacian_symbol((state.shape[-2], state.shape[-1]), dx, device=state.device, dtype=state.dtype)
    a = model.stabiliser(state, params, k2).to(state.dtype)
    inc = torch.fft.irfft2(torch.fft.rfft2(inc) / (1.0 + dt * a), s=tuple(state.shape[-2:]))
    state, clamped = model.project(state + inc)
    return state, StepInfo(clamped, 1)


def etdrk2_spectral(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    dt: float,
    *,
    dx: float = 1.0,
    draws: dict[str, Tensor] | None = None,
    guard: str = "off",
    limit: float | None = None,
    max_substeps: int = 1000,
    checkpoint_substeps: int | None = None,
    laplacian: str = "five-point",
) -> tuple[Tensor, StepInfo]:
    """One second-order exponential (ETDRK2) step on a periodic grid.

    The integrator ``"etdrk2"`` of :func:`~neuradiff.physics.rollout.rollout`: the step of
    :func:`~neuradiff.physics.exponential.adaptive_spectral` at a fixed ``dt`` (see
    :mod:`~neuradiff.physics.etd`). Sources and noise (``draws``) are added after the deterministic step
    (first order in them). ``guard``, ``limit``, ``max_substeps`` and
    ``checkpoint_substeps`` are accepted for a common signature (the step is never split).

    Parameters
    ----------
    model : PhaseFieldModel
        A model with a spectral stabiliser on a periodic grid.
    state : Tensor
        ``[batch, field, H, W]``, floating point.
    params : ParameterSet
    dt : float
        Step length (simulation time units).
    laplacian : {"five-point", "spectral"}
        Symbol of −∇² (see :func:`~neuradiff.physics.etd.wavenumber_squared`; ``"spectral"`` only for models
        whose remainder uses it).

    Returns
    -------
    (Tensor, StepInfo)
        The state after the step, ``[batch, field, H, W]``, and what the step did.

    Examples
    --------
    >>> from neuradiff.physics import SpinodalModel, SpinodalParameters, pfhub1_initial_condition
    >>> c = pfhub1_initial_condition((32, 32))
    >>> c1, info = etdrk2_spectral(SpinodalModel(), c, SpinodalParameters(), 0.5)
    >>> tuple(c1.shape), abs(float(c1.mean() - c.mean())) < 1e-15
    ((1, 1, 32, 32), True)
    """
    dt = _check_dt(dt)
    split = ETDSplit(model, state, params, dx, laplacian)
    u_hat = torch.fft.rfft2(state)
    _, new, _ = split.step(u_hat, split.remainder(state, u_hat), dt)
    forcing = model.forcing_increment(state, params, draws, dt, dx)
    if forcing is not None:
        new = new + forcing
    new, clamped = model.project(new)
    return new, StepInfo(clamped, 1)


StepFunction = Callable[..., tuple[Tensor, StepInfo]]


@dataclass(frozen=True)
class Integrator:
    """A named time integrator: its step function and what its step-size guard needs.

    Attributes
    ----------
    name : str
    step : callable
        ``step(model, state, params, dt, *, dx, draws, guard, limit, checkpoint_substeps) -> (state, StepInfo)``.
    guarded : bool
        The step is limited by an explicit stability bound (estimated by :func:`explicit_stability_limit`).
    implicit_local : bool
        The bound is that of the IMEX step (the model's pointwise stiffness is implicit).
    spectral : bool
        The step needs the model's spectral stabiliser (``model.supports_spectral``).
    """

    name: str
    step: StepFunction
    guarded: bool
    implicit_local: bool = False
    spectral: bool = False

    def check(self, model: PhaseFieldModel) -> None:
        """Raise ``ValueError`` if this integrator cannot step ``model``."""
        if self.spectral and not model.supports_spectral:
            raise ValueError(model.spectral_unsupported)

    def stability_limit(self, model: PhaseFieldModel, state: Tensor, params: ParameterSet, dx: float) -> float:
        """Largest stable step of this integrator on ``state`` (``inf`` for unguarded integrators)."""
        if not self.guarded:
            return math.inf
        return explicit_stability_limit(model, state, params, dx, implicit_local=self.implicit_local)


INTEGRATORS: dict[str, Integrator] = {
    "euler": Integrator("euler", explicit_euler, guarded=True),
    "imex": Integrator("imex", imex_euler, guarded=True, implicit_local=True),
    "spectral": Integrator("spectral", semi_implicit_spectral, guarded=False, spectral=True),
    "etdrk2": Integrator("etdrk2", etdrk2_spectral, guarded=False, spectral=True),
}


def get_integrator(name: str) -> Integrator:
    """The :class:`Integrator` called ``name`` (``euler``, ``imex``, ``spectral`` or ``etdrk2``)."""
    try:
        return INTEGRATORS[name]
    except KeyError:
        raise ValueError(f"unknown integrator {name!r}; choose one of {', '.join(INTEGRATORS)}") from None
