"""Adaptive exponential time stepping on periodic grids: ETDRK2 steps (:mod:`~neuradiff.physics.etd`) whose
length follows the embedded ETD1 error estimate, with accept/reject control and exact output times.

The remainder at the end of an accepted step is the next step's first evaluation, so an accepted step costs
four real FFTs for the spinodal model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from neuradiff.core.errors import SimulationError
from neuradiff.physics.etd import ETDSplit
from neuradiff.physics.integrators import _check_dt
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.parameters import ParameterSet
from neuradiff.physics.rollout import check_finite

#: Proposed steps are rounded down to 2^(j/STEP_LEVELS) (at most 6 % shorter), so that step lengths recur and
#: their ETD coefficients are computed once.
STEP_LEVELS = 12
NORMS = ("max", "rms", "relative")


def _quantise(h: float) -> float:
    """The largest 2^(j/STEP_LEVELS) ≤ h (integer j)."""
    return 2.0 ** (math.floor(math.log2(h) * STEP_LEVELS + 1e-9) / STEP_LEVELS)


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
    split = ETDSplit(model, state, params, dx, laplacian)

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
