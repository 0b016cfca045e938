"""Forecasts with a simulator: a start state simulated forward, the state kept at every frame."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from neuradiff.methods.base import Forecast
from neuradiff.physics import Simulator, VoidParameters


@torch.no_grad()
def simulate_forward(
    simulator: Simulator, state: Tensor, params: VoidParameters, n_frames: int, *, start: int = 0
) -> Forecast:
    """Simulate a start state ``[1, 3, H, W]`` (c_v, c_i, eta) ``n_frames`` frame intervals forward
    (deterministic: no cascades or noise); the forecast holds the state at every frame ``start, start + 1, ...``.

    Examples
    --------
    >>> from neuradiff.physics import Simulator, VoidParameters, single_void
    >>> fc = simulate_forward(Simulator(integrator="imex", dt=0.3), single_void((32, 32), 6.0), VoidParameters(), 3)
    >>> fc.fields.shape, fc.frames.tolist()
    ((4, 3, 32, 32), [0, 1, 2, 3])
    """
    if n_frames < 1:
        raise ValueError(f"the forecast needs at least one frame, got {n_frames}")
    traj = simulator.run(state, params, n_frames, every_frame=True)
    fields = traj.states[:, 0].cpu().numpy()
    return Forecast(eta=fields[:, 2], frames=np.arange(start, start + n_frames + 1), fields=fields)
