"""Forecasts with a simulator: a start state simulated forward, the state kept at every frame."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neuradiff.methods.base import Forecast
from neuradiff.physics import Simulator, VoidParameters


@torch.no_grad()
def simulate_forward(
    simulator: Simulator,
    state: Tensor,
    params: VoidParameters,
    n_frames: int,
    *,
    start: int = 0,
    intervals: np.ndarray | None = None,
) -> Forecast:
    """Simulate a start state ``[1, 3, H, W]`` (c_v, c_i, eta) ``n_frames`` frame intervals forward
    (deterministic: no cascades or noise); the forecast holds the state at every frame ``start, start + 1, ...``.

    Parameters
    ----------
    intervals : ndarray, optional
        ``[n_frames]`` duration of each forecast step in frame intervals, for a recording with uneven frame
        times: step ``k`` is then one :meth:`~neuradiff.physics.Simulator.run` of ``intervals[k]`` (a fractional
        number of intervals) from the state at frame ``start + k``, so frame ``start + k`` is simulated for
        ``intervals[:k].sum()`` intervals. ``None`` (or all ones): every step one frame interval.

    Examples
    --------
    >>> from neuradiff.physics import Simulator, VoidParameters, single_void
    >>> fc = simulate_forward(Simulator(integrator="imex", dt=0.3), single_void((32, 32), 6.0), VoidParameters(), 3)
    >>> fc.fields.shape, fc.frames.tolist()
    ((4, 3, 32, 32), [0, 1, 2, 3])
    >>> uneven = simulate_forward(Simulator(integrator="imex", dt=0.3), single_void((32, 32), 6.0),
    ...                           VoidParameters(), 3, intervals=np.array([0.6, 1.0, 1.4]))
    >>> uneven.fields.shape
    (4, 3, 32, 32)
    """
    if n_frames < 1:
        raise ValueError(f"the forecast needs at least one frame, got {n_frames}")
    frames = np.arange(start, start + n_frames + 1)
    steps = check_intervals(intervals, n_frames)
    if steps is None:
        traj = simulator.run(state, params, n_frames, every_frame=True)
        fields = traj.states[:, 0].cpu().numpy()
        return Forecast(eta=fields[:, 2], frames=frames, fields=fields)
    states = [state]
    for duration in steps:
        states.append(simulator.run(states[-1], params, float(duration)).states[-1])
    fields = torch.cat(states).cpu().numpy()
    return Forecast(eta=fields[:, 2], frames=frames, fields=fields)


def check_intervals(intervals: np.ndarray | None, n_frames: int) -> np.ndarray | None:
    """The ``[n_frames]`` step durations (frame intervals) of an uneven forecast, or ``None`` when every step is
    one interval; a wrong length or a duration that is not positive and finite is an error.

    Examples
    --------
    >>> check_intervals(np.ones(3), 3) is None, check_intervals(np.array([0.5, 2.0]), 2).tolist()
    (True, [0.5, 2.0])
    """
    if intervals is None:
        return None
    steps = np.asarray(intervals, dtype=float)
    if steps.shape != (n_frames,) or not np.all(np.isfinite(steps)) or np.any(steps <= 0):
        raise ValueError(f"the forecast needs {n_frames} positive step durations, got {steps.tolist()}")
    return None if np.all(steps == 1.0) else steps
