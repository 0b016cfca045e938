"""Rollouts of many steps, with diagnostics and gradient checkpointing for long backpropagation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from neuradiff.core.allocator import configure_allocator, release_if_grown
from neuradiff.core.errors import SimulationError
from neuradiff.physics.forcing import Forcing, as_forcing
from neuradiff.physics.integrators import get_integrator
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.physics.parameters import ParameterSet


@dataclass
class Trajectory:
    """Saved states of a rollout and what happened on the way.

    ``states`` is ``[n_saved, batch, field, H, W]``; ``steps[k]`` is the global step index of
    ``states[k]`` and ``times[k] = steps[k]·dt``; ``diagnostics[name]`` is ``[n_saved, batch]``;
    ``clamped`` is ``[batch, field]``, the pixels found outside the bounds summed over all steps.
    """

    states: Tensor
    steps: list[int]
    times: list[float]
    diagnostics: dict[str, Tensor] = field(default_factory=dict)
    clamped: Tensor | None = None
    substeps: int = 0

    @property
    def final(self) -> Tensor:
        return self.states[-1]


def check_finite(state: Tensor, model: PhaseFieldModel, step: int) -> None:
    """Raise :class:`SimulationError` naming the step and field if ``state`` holds NaN or Inf."""
    # One sum tells (NaN and ±Inf propagate through it; finite values can only overflow it when far outside any
    # state), at a small part of the cost of an element-wise test; the fields are examined only when it is not finite.
    if math.isfinite(float(state.detach().sum())):
        return
    bad = [model.field_names[k] for k in range(state.shape[1]) if not bool(torch.isfinite(state[:, k]).all())]
    if bad:
        raise SimulationError(
            f"NaN/Inf in field {', '.join(bad)} at step {step}; the step is unstable or the parameters are extreme"
        )


def _release_after_backward(grad: Tensor) -> Tensor:
    release_if_grown()
    return grad


def rollout(
    model: PhaseFieldModel,
    state: Tensor,
    params: ParameterSet,
    *,
    dt: float,
    n_steps: int,
    dx: float = 1.0,
    integrator: str = "euler",
    forcing: Forcing | int | None = None,
    start_step: int = 0,
    save_every: int | None = None,
    checkpoint_every: int | None = None,
    guard: str = "substep",
    guard_every: int = 1,
    diagnostics: bool = True,
    callback: Callable[[int], None] | None = None,
) -> Trajectory:
    """Advance ``state`` (``[batch, field, H, W]``) by ``n_steps`` steps of length ``dt``.

    Parameters
    ----------
    forcing : None, int or Forcing
        ``None``: deterministic; an int: a seeded keyed stream; or a :class:`~neuradiff.physics.forcing.Forcing`.
        Step ``n`` uses the numbers of global index ``start_step + n``.
    save_every : int, optional
        Save the state every this many steps (the initial and final states are always saved).
    checkpoint_every : int, optional
        Under autograd, recompute segments of this many steps in the backward pass instead of storing
        them: the live tensors are the segment boundaries plus one segment, and the gradients are
        identical. A step that the guard splits into more sub-steps than this is itself recomputed in
        groups of this many sub-steps, so the memory is bounded however stiff the parameters make the
        equations (the sub-steps of such a step are computed three times instead of twice). On Linux with
        glibc, free heap pages are handed back to the kernel between segments once the resident memory has
        grown by 256 MiB (:mod:`neuradiff.core.allocator`), so it stays close to the live memory.
    guard, guard_every : str, int
        Explicit stability guard (``"substep"``, ``"raise"`` or ``"off"``), re-estimated every
        ``guard_every`` steps (default: every step) with a safety factor of 0.9.
    callback : callable, optional
        Called with the number of steps done after each segment (progress bars).

    Examples
    --------
    >>> from neuradiff.physics import VoidModel, VoidParameters, single_void
    >>> traj = rollout(VoidModel(), single_void((32, 32), 6.0), VoidParameters.paper(), dt=0.05, n_steps=400,
    ...                save_every=200, integrator="imex")
    >>> traj.steps, tuple(traj.states.shape)
    ([0, 200, 400], (3, 1, 3, 32, 32))
    >>> traj.diagnostics["void_area"][:, 0].tolist()  # the void shrinks (px)
    [112.0, 88.0, 76.0]
    """
    model.check_state(state)
    model.check_params(params)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    if save_every is not None and save_every < 1:
        raise ValueError(f"save_every must be >= 1, got {save_every}")
    if guard_every < 1:
        raise ValueError(f"guard_every must be >= 1, got {guard_every}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    scheme = get_integrator(integrator)
    source = as_forcing(forcing)
    check_finite(state, model, start_step)
    configure_allocator()

    save_at = set(range(save_every, n_steps + 1, save_every)) if save_every else set()
    save_at.add(n_steps)

    use_ckpt = (
        bool(checkpoint_every)
        and torch.is_grad_enabled()
        and (state.requires_grad or any(isinstance(v, Tensor) and v.requires_grad for v in vars(params).values()))
    )
    seg = checkpoint_every if use_ckpt and checkpoint_every else max(n_steps, 1)
    # Sub-steps of a split step are checkpointed in groups of the same size (nested in the segment).
    sub_ckpt = checkpoint_every if use_ckpt else None

    def advance(s: Tensor, first: int, last: int) -> tuple[Tensor, Tensor, int, list[Tensor]]:
        clamped = torch.zeros(s.shape[:2], dtype=torch.long, device=s.device)
        subs, saved, limit = 0, [], None
        for n in range(first, last):
            draws = source.draws(model, start_step + n, s)
            if guard != "off" and scheme.guarded and (limit is None or (n - first) % guard_every == 0):
                limit = 0.9 * scheme.stability_limit(model, s, params, dx)
            s, info = scheme.step(
                model, s, params, dt, dx=dx, draws=draws, guard=guard, limit=limit, checkpoint_substeps=sub_ckpt
            )
            check_finite(s, model, start_step + n + 1)
            clamped = clamped + info.clamped
            subs += info.substeps
            if n + 1 in save_at and n + 1 != last:
                saved.append(s)
        return s, clamped, subs, saved

    states, steps = [state], [start_step]
    clamped_total = torch.zeros(state.shape[:2], dtype=torch.long, device=state.device)
    substeps = 0
    s = state
    for first in range(0, n_steps, seg):
        last = min(first + seg, n_steps)
        if use_ckpt:
            box: dict = {}

            def segment(x: Tensor, first=first, last=last, box=box) -> tuple[Tensor, ...]:
                out, c, k, saved = advance(x, first, last)
                box["c"], box["k"] = c, k
                return (out, *saved)

            if s.requires_grad:
                # After this segment's backward (the gradient reaches its input), hand the freed pages of
                # its recomputation back, so the resident memory follows the live memory. (The hook goes on
                # an alias, never on the caller's tensor.)
                s = s.view_as(s)
                s.register_hook(_release_after_backward)
            out = checkpoint(segment, s, use_reentrant=False)
            s, saved, c, k = out[0], list(out[1:]), box["c"], box["k"]
            # The segment's boundary state outlives its temporaries, so the heap grows around it; hand the
            # free pages back now and then (the live memory is a few states per segment).
            release_if_grown()
        else:
            s, c, k, saved = advance(s, first, last)
        clamped_total += c
        substeps += k
        marks = sorted(m for m in save_at if first < m < last)
        states.extend(saved)
        steps.extend(start_step + m for m in marks)
        if last in save_at:
            states.append(s)
            steps.append(start_step + last)
        if callback is not None:
            callback(last)
    traj = Trajectory(torch.stack(states), steps, [st * dt for st in steps], clamped=clamped_total, substeps=substeps)
    if diagnostics:
        per = [model.diagnostics(x.detach(), params, dx) for x in states]
        traj.diagnostics = {k: torch.stack([d[k] for d in per]) for k in per[0]}
    return traj
