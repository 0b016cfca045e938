"""Exponential time differencing on periodic grids: a second-order step with an embedded error estimate and an
adaptive driver.

The model's rate is split in Fourier space as φ̂' = −a(k)·φ̂ + N̂(φ), with a(k) the model's linear stabiliser
(Cahn-Hilliard: a = M k²(κk² + S)) and N̂ the remainder
(:meth:`~neuradiff.physics.model.PhaseFieldModel.spectral_remainder`). The linear part is integrated exactly:

- ETD1 (exponential Euler): φ̂₁ = e^{−ah}·φ̂ + h·φ₁(−ah)·N̂(φ), first order;
- ETDRK2 (Cox & Matthews 2002): φ̂₂ = φ̂₁ + h·φ₂(−ah)·(N̂(φ₁) − N̂(φ)), second order,

with φ₁(z) = (eᶻ − 1)/z and φ₂(z) = (eᶻ − 1 − z)/z². φ₂ − φ₁ is the local error of the first-order step
(O(h²)), the error estimate of :func:`adaptive_spectral`, which advances with the second-order solution. A step
costs two evaluations of N̂ and two inverse transforms (four real FFTs for the spinodal model); the remainder at
the end of an accepted step is the next step's first evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from neuradiff.core.errors import SimulationError
from neuradiff.physics.integrators import StepInfo, _check_dt
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.operators import laplacian_symbol
from neuradiff.physics.parameters import ParameterSet
from neuradiff.physics.rollout import check_finite

LAPLACIANS = ("five-point", "spectral")
#: Proposed steps are rounded down to 2^(j/STEP_LEVELS) (at most 6 % shorter), so that step lengths recur and
#: their ETD coefficients are computed once.
STEP_LEVELS = 12
NORMS = ("max", "rms", "relative")


def wavenumber_squared(
    shape: tuple[int, int], dx: float, laplacian: str = "five-point", *, device=None, dtype=torch.float64
) -> Tensor:
    """Symbol of −∇² on an ``rfft2`` grid, shape ``[H, W//2+1]``.

    Parameters
    ----------
    shape : (int, int)
        Grid ``(H, W)``.
    dx : float
        Grid spacing.
    laplacian : {"five-point", "spectral"}
        ``"five-point"``: (4/dx²)[sin²(k_x dx/2) + sin²(k_y dx/2)], the engine's stencil (what
        :meth:`~neuradiff.physics.model.PhaseFieldModel.rate` computes); ``"spectral"``: k_x² + k_y², the exact
        Laplacian of the band-limited interpolant.

    Examples
    --------
    >>> k2 = wavenumber_squared((8, 8), 1.0, "spectral")
    >>> tuple(k2.shape), round(float(k2[0, 4]), 4)  # Nyquist in x: π²
    ((8, 5), 9.8696)
    """
    if laplacian == "five-point":
        return laplacian_symbol(shape, dx, device=device, dtype=dtype)
    if laplacian == "spectral":
        h, w = shape
        ky = 2.0 * math.pi * torch.fft.fftfreq(h, d=dx, device=device, dtype=dtype)
        kx = 2.0 * math.pi * torch.fft.rfftfreq(w, d=dx, device=device, dtype=dtype)
        return ky[:, None] ** 2 + kx[None, :] ** 2
    raise ValueError(f"unknown laplacian {laplacian!r}; choose one of {', '.join(LAPLACIANS)}")


def _series_coefficients(dtype: torch.dtype, device) -> Tensor:
    """[9, 2]: 1/(n+1)! and 1/(n+2)!, the Taylor coefficients of φ₁ and φ₂."""
    return torch.tensor(
        [[1.0 / math.factorial(n + 1), 1.0 / math.factorial(n + 2)] for n in range(9)], dtype=dtype, device=device
    )


def etd_coefficients(a: Tensor, h: float, *, small: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """e^{−ah}, h·φ₁(−ah) and h·φ₂(−ah) for a step of length ``h`` (each shaped like ``a``, ``a ≥ 0``).

    φ₁(z) = (eᶻ − 1)/z and φ₂(z) = (eᶻ − 1 − z)/z² are evaluated by their Taylor series where |z| < 0.1 (no
    cancellation; φ₁(0) = 1, φ₂(0) = ½; relative error ≲ 10⁻¹³ everywhere). ``small``: the indices into
    ``a.reshape(-1)`` of the entries with a·h < 0.1, if the caller knows them (found here otherwise).

    Examples
    --------
    >>> e, p1, p2 = etd_coefficients(torch.tensor([0.0, 1.0], dtype=torch.float64), 0.5)
    >>> [round(float(x), 6) for x in (e[1], p1[0], p2[0], p1[1])]  # e^-0.5, h, h/2, 1 − e^-0.5
    [0.606531, 0.5, 0.25, 0.393469]
    """
    z = (a * (-h)).reshape(-1)
    e = torch.exp(z)
    if small is None:
        small = (z > -0.1).nonzero().squeeze(1)
    zs = z.index_fill(0, small, 1.0)
    phi1 = (e - 1.0).div_(zs)
    phi2 = (phi1 - 1.0).div_(zs)
    if small.numel():
        y = z[small]
        powers = y.unsqueeze(1).pow(torch.arange(9, dtype=y.dtype, device=y.device))  # yⁿ, n ≤ 8
        series = powers @ _series_coefficients(y.dtype, y.device)  # φ₁ = Σ yⁿ/(n+1)!, φ₂ = Σ yⁿ/(n+2)!
        s1, s2 = series[:, 0], series[:, 1]
        phi1[small] = s1
        phi2[small] = s2
    return e.view_as(a), phi1.mul_(h).view_as(a), phi2.mul_(h).view_as(a)


def _quantise(h: float) -> float:
    """The largest 2^(j/STEP_LEVELS) ≤ h (integer j)."""
    return 2.0 ** (math.floor(math.log2(h) * STEP_LEVELS + 1e-9) / STEP_LEVELS)


class _Split:
    """The linear symbol and remainder of one model on one grid (built once per run)."""

    def __init__(self, model: PhaseFieldModel, state: Tensor, params: ParameterSet, dx: float, laplacian: str) -> None:
        if model.boundary != "periodic":
            raise ValueError("exponential integrators need periodic boundaries; use the explicit integrator")
        if not model.supports_spectral:
            raise ValueError(model.spectral_unsupported)
        if laplacian != "five-point" and not model.spectral_remainder_uses_k2:
            raise ValueError(
                f"{model.name} computes its rate with the 5-point stencil; laplacian={laplacian!r} needs a model "
                "whose spectral_remainder uses the symbol it is given"
            )
        self.model, self.params, self.dx = model, params, dx
        self.shape = (state.shape[-2], state.shape[-1])
        self.k2 = wavenumber_squared(self.shape, dx, laplacian, device=state.device, dtype=state.dtype)
        self.a = model.stabiliser(state, params, self.k2).to(state.dtype)
        self.project = type(model).project is not PhaseFieldModel.project
        flat = self.a.reshape(-1)
        self._order = flat.argsort()
        self._a_sorted = flat[self._order].contiguous()
        self.complex = torch.complex128 if state.dtype == torch.float64 else torch.complex64
        self._cache: dict[float, tuple[Tensor, Tensor, Tensor]] = {}

    def coefficients(self, h: float) -> tuple[Tensor, Tensor, Tensor]:
        """The step's ETD coefficients, computed once per step length (the last 32 lengths are kept)."""
        got = self._cache.pop(h, None)  # re-inserted last: the dict is in order of use
        if got is None:
            n_small = int(torch.searchsorted(self._a_sorted, torch.tensor(0.1 / h, dtype=self._a_sorted.dtype)))
            # complex copies: products with the complex spectra then need no promotion on every step
            got = tuple(x.to(self.complex) for x in etd_coefficients(self.a, h, small=self._order[:n_small]))
            if len(self._cache) >= 32:
                del self._cache[next(iter(self._cache))]
        self._cache[h] = got
        return got

    def remainder(self, state: Tensor, state_hat: Tensor) -> Tensor:
        return self.model.spectral_remainder(state, state_hat, self.params, self.k2, self.a, self.dx)

    def real(self, state_hat: Tensor) -> Tensor:
        return torch.fft.irfft2(state_hat, s=self.shape)

    def step(self, u_hat: Tensor, n0: Tensor, h: float) -> tuple[Tensor, Tensor, Tensor]:
        """(φ̂₂, φ₂, φ₁) of one step of length h from φ̂ with remainder n0."""
        e, p1, p2 = self.coefficients(h)
        u1_hat = torch.addcmul(e * u_hat, p1, n0)
        u1 = self.real(u1_hat)
        n1 = self.remainder(u1, u1_hat)
        u2_hat = torch.addcmul(u1_hat, p2, n1.sub_(n0))  # n1 is not needed after this
        return u2_hat, self.real(u2_hat), u1


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
    :func:`adaptive_spectral` at a fixed ``dt`` (see the module docstring). Sources and noise (``draws``) are
    added after the deterministic step (first order in them). ``guard``, ``limit``, ``max_substeps`` and
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
        Symbol of −∇² (see :func:`wavenumber_squared`; ``"spectral"`` only for models whose remainder uses it).

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
    split = _Split(model, state, params, dx, laplacian)
    u_hat = torch.fft.rfft2(state)
    _, new, _ = split.step(u_hat, split.remainder(state, u_hat), dt)
    forcing = model.forcing_increment(state, params, draws, dt, dx)
    if forcing is not None:
        new = new + forcing
    new, clamped = model.project(new)
    return new, StepInfo(clamped, 1)


@dataclass
class AdaptiveTrajectory:
    """What :func:`adaptive_spectral` computed.

    Attributes
    ----------
    times : list of float
        Saved times (the start, each requested time, the end), exactly as requested.
    states : Tensor or None
        ``[n_saved, batch, field, H, W]``, or ``None`` with ``keep_states=False``.
    final : Tensor
        The state at the last time, ``[batch, field, H, W]``.
    diagnostics : dict of str to Tensor
        The model's diagnostics (free energy, totals, ...) at the saved times, each ``[n_saved, batch]``.
    accepted, rejected : int
        Steps accepted and rejected by the error control.
    step_sizes : list of float
        Length of every accepted step, in order.
    wall_s : float
        Wall time of the run (seconds).
    """

    times: list[float]
    states: Tensor | None
    final: Tensor
    diagnostics: dict[str, Tensor] = field(default_factory=dict)
    accepted: int = 0
    rejected: int = 0
    step_sizes: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def adaptive_spectral(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    *,
    t_end: float,
    tol: float = 1e-3,
    dx: float = 1.0,
    t_start: float = 0.0,
    save_times: Sequence[float] | None = None,
    dt0: float | None = None,
    dt_min: float = 1e-10,
    dt_max: float = math.inf,
    safety: float = 0.9,
    grow: float = 2.0,
    shrink: float = 0.2,
    norm: str = "max",
    laplacian: str = "five-point",
    keep_states: bool = True,
    diagnostics: bool = True,
    max_steps: int = 1_000_000,
    callback: Callable[[float, Tensor], None] | None = None,
) -> AdaptiveTrajectory:
    """Integrate ``state`` from ``t_start`` to ``t_end`` with ETDRK2 steps whose length follows an error estimate.

    Each step's ETDRK2 solution φ₂ is compared with its embedded ETD1 solution φ₁ (module docstring):
    err = ‖φ₂ − φ₁‖ / tol, the local error of the first-order step. A step is accepted if err ≤ 1 and the
    solver advances with φ₂ (second order); the next step is h·min(grow, max(shrink, safety·err^(−½)))
    (at most h after a rejection). Saved times are hit exactly (a step is shortened to end on one; the step
    proposed before shortening is kept for the step after). With the error per step bounded by ``tol``,
    h ∝ tol^½ and the global error of the second-order solution is roughly proportional to ``tol``.

    Works under ``torch.no_grad`` (the step sizes are decisions, not differentiable); float64 is advised.

    Parameters
    ----------
    model : PhaseFieldModel
        A model with a spectral stabiliser (``supports_spectral``) on a periodic grid.
    state : Tensor
        Initial state ``[batch, field, H, W]`` (finite, floating point).
    params : ParameterSet
    t_end : float
        Final time (> ``t_start``).
    tol : float
        Tolerance on the local error of a step, in the units of the fields (absolute). Positive.
    dx : float
        Grid spacing.
    t_start : float
        Time of ``state``.
    save_times : sequence of float, optional
        Times in (t_start, t_end] at which to save the state and diagnostics; ``t_start`` and ``t_end`` are
        always saved.
    dt0 : float, optional
        First trial step; by default tol / max|∂φ/∂t| (limited to the span and ``dt_max``).
    dt_min, dt_max : float
        Bounds of the step; a step below ``dt_min`` raises :class:`~neuradiff.core.errors.SimulationError`.
    safety, grow, shrink : float
        Controller: safety factor (0 < safety ≤ 1) and limits of the step ratio (shrink < 1 < grow).
    norm : {"max", "rms"}
        Norm of the error estimate over pixels, fields and batch.
    laplacian : {"five-point", "spectral"}
        Symbol of −∇² (:func:`wavenumber_squared`); ``"spectral"`` only for models whose remainder uses it
        (the spinodal model). The diagnostics use the model's own (finite-difference) free energy either way.
    keep_states : bool
        Keep the saved states (else only ``final`` and the diagnostics).
    diagnostics : bool
        Compute the model's diagnostics at the saved times.
    max_steps : int
        Largest number of attempted steps before :class:`~neuradiff.core.errors.SimulationError`.
    callback : callable, optional
        Called as ``callback(t, state)`` at each saved time.

    Returns
    -------
    AdaptiveTrajectory
        Saved times, states and diagnostics, accepted and rejected step counts, step sizes, wall time.

    Raises
    ------
    ValueError
        Bad arguments (non-positive or non-finite ``tol``, ``t_end`` ≤ ``t_start``, saved times outside the
        interval, unknown ``norm``/``laplacian``, a model without a spectral stabiliser or a non-periodic one).
    SimulationError
        The state holds NaN/Inf, or the step fell below ``dt_min``, or ``max_steps`` attempts were not enough.

    Examples
    --------
    >>> from neuradiff.physics import SpinodalModel, SpinodalParameters, pfhub1_initial_condition
    >>> c = pfhub1_initial_condition((64, 64))
    >>> with torch.no_grad():
    ...     tr = adaptive_spectral(SpinodalModel(), c, SpinodalParameters(), t_end=20.0, tol=1e-3,
    ...                            save_times=[5.0, 10.0, 15.0])
    >>> tr.times
    [0.0, 5.0, 10.0, 15.0, 20.0]
    >>> tuple(tr.diagnostics["free_energy"].shape), tr.accepted > 0
    ((5, 1), True)
    >>> abs(float(tr.final.mean() - c.mean())) < 1e-14  # mass is conserved
    True
    """
    model.check_state(state)
    model.check_params(params)
    tol = float(tol)
    if not math.isfinite(tol) or tol <= 0:
        raise ValueError(f"tol must be a positive finite number, got {tol}")
    t_start, t_end = float(t_start), float(t_end)
    if not (math.isfinite(t_start) and math.isfinite(t_end)) or t_end <= t_start:
        raise ValueError(f"need finite t_start < t_end, got t_start={t_start}, t_end={t_end}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    if not (0.0 < safety <= 1.0) or not (0.0 < shrink < 1.0 < grow):
        raise ValueError(f"need 0 < safety ≤ 1 and 0 < shrink < 1 < grow, got {safety}, {shrink}, {grow}")
    if not (0.0 < dt_min <= dt_max):
        raise ValueError(f"need 0 < dt_min ≤ dt_max, got {dt_min}, {dt_max}")
    if dt0 is not None:
        dt0 = _check_dt(dt0)
    outputs = sorted({float(t) for t in (save_times or ())} | {t_end})
    if outputs[0] <= t_start or outputs[-1] > t_end:
        raise ValueError(f"save_times must lie in (t_start, t_end] = ({t_start:g}, {t_end:g}]")
    check_finite(state, model, 0)
    split = _Split(model, state, params, dx, laplacian)

    wall = time.perf_counter()
    c = state
    c_hat = torch.fft.rfft2(c)
    n0 = split.remainder(c, c_hat)
    if dt0 is None:
        rate = split.real(n0 - split.a * c_hat)
        speed = float(rate.abs().amax())
        dt0 = tol / speed if speed > 0 else t_end - t_start
    h = min(dt0, dt_max, t_end - t_start)

    def spread(x: Tensor) -> float:
        """RMS deviation of the fields from their means (the scale of the ``relative`` norm)."""
        dev = x - x.mean(dim=(-2, -1), keepdim=True)
        return max(float(dev.pow(2).mean().sqrt()), 1e-300)

    scale = spread(c) if norm == "relative" else 1.0

    def measure(err: Tensor) -> float:
        if norm == "max":
            return float(err.abs().amax())
        return float(err.pow(2).mean().sqrt()) / scale

    t, k_out = t_start, 0
    times, kept, diags = [t_start], [c] if keep_states else [], []
    if diagnostics:
        diags.append(model.diagnostics(c, params, dx))
    accepted = rejected = 0
    sizes: list[float] = []
    while k_out < len(outputs):
        if accepted + rejected >= max_steps:
            raise SimulationError(f"adaptive_spectral: {max_steps} steps did not reach t = {t_end:g} (at t = {t:g})")
        target = outputs[k_out]
        hit = t + 1.05 * h >= target  # stretch by up to 5 % rather than leave a sliver
        h_step = target - t if hit else h
        u2_hat, u2, u1 = split.step(c_hat, n0, h_step)
        err = measure(u2.sub(u1)) / tol
        if not math.isfinite(err):
            err = math.inf
        if err <= 1.0:
            t = target if hit else t + h_step
            c_hat, c = u2_hat, u2
            if split.project:
                c, _ = model.project(c)
                c_hat = torch.fft.rfft2(c)
            n0 = split.remainder(c, c_hat)
            if norm == "relative":
                scale = spread(c)
            accepted += 1
            sizes.append(h_step)
            factor = grow if err == 0.0 else min(grow, max(shrink, safety * err**-0.5))
            h_new = h_step * factor
            h = _quantise(min(max(h_new, h) if hit else h_new, dt_max))
            if hit:
                k_out += 1
                check_finite(c, model, accepted)
                times.append(t)
                if keep_states:
                    kept.append(c)
                if diagnostics:
                    diags.append(model.diagnostics(c, params, dx))
                if callback is not None:
                    callback(t, c)
        else:
            rejected += 1
            factor = shrink if math.isinf(err) else min(1.0, max(shrink, safety * err**-0.5))
            h = _quantise(h_step * factor)
            if h < dt_min:
                raise SimulationError(
                    f"adaptive_spectral: the step fell below dt_min = {dt_min:g} at t = {t:g} "
                    f"(error estimate {err * tol:.3g} for tol {tol:g}); the state may be blowing up"
                )
    out = AdaptiveTrajectory(
        times=times,
        states=torch.stack(kept) if keep_states else None,
        final=c,
        accepted=accepted,
        rejected=rejected,
        step_sizes=sizes,
    )
    if diagnostics:
        out.diagnostics = {k: torch.stack([d[k] for d in diags]) for k in diags[0]}
    out.wall_s = time.perf_counter() - wall
    return out
