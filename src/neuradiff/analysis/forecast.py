"""Forecasts: recognise one frame, then simulate forward with the learned physics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuradiff.models import RecognitionNet, annotated_mask
from neuradiff.physics import VoidModel, VoidParameters, rollout


@dataclass
class Forecast:
    """Forecast fields ``[n_frames + 1, 3, H, W]`` (c_v, c_i, eta) at frames ``start, start+1, ...``."""

    fields: np.ndarray
    frames: np.ndarray  # frame index of each forecast state

    @property
    def eta(self) -> np.ndarray:
        return self.fields[:, 2]


@torch.inference_mode()
def recognise(net: RecognitionNet, frames: np.ndarray, *, batch: int = 8, first_index: int = 0,
              eta_only: bool = False) -> np.ndarray:
    """Fields ``[T, 3, H, W]`` (c_v, c_i, eta) of every frame, in batches (inference mode); with ``eta_only``
    just eta ``[T, H, W]`` (the tracking output; skips the c_v and c_i heads' mapping)."""
    net.eval()
    out = []
    for i in range(0, frames.shape[0], batch):
        x = torch.from_numpy(np.ascontiguousarray(frames[i:i + batch], dtype=np.float32))
        t = torch.arange(i, i + x.shape[0], dtype=torch.float32) + first_index
        out.append((torch.sigmoid(net.eta_logits(x, t)) if eta_only else net(x, t)).numpy())
    if out:
        return np.concatenate(out)
    return np.zeros((0,) + (() if eta_only else (3,)) + frames.shape[1:], np.float32)


@torch.no_grad()
def forecast(net: RecognitionNet, params: VoidParameters, frames: np.ndarray, start: int, n_frames: int, *,
             sim_time_per_frame: float, dt: float, discretisation: str = "conservative", integrator: str = "euler",
             annotation: np.ndarray | None = None) -> Forecast:
    """Recognise ``frames[start]`` (eta replaced by ``annotation`` where it is known) and simulate ``n_frames``
    frame intervals forward; returns the state at every frame."""
    if not 0 <= start < frames.shape[0]:
        raise ValueError(f"frame {start} is out of range: the video has {frames.shape[0]} frames (0..{frames.shape[0] - 1})")
    if n_frames < 1:
        raise ValueError(f"the forecast needs at least one frame, got {n_frames}")
    net.eval()
    x = torch.from_numpy(np.ascontiguousarray(frames[start:start + 1], dtype=np.float32))
    state = net(x, torch.tensor([float(start)]))
    if annotation is not None:
        a = torch.from_numpy(np.asarray(annotation))[None]
        known = annotated_mask(a)
        state[:, 2] = torch.where(known, a.to(state.dtype).clamp(0, 1), state[:, 2])
    return simulate_forward(state, params, n_frames, start=start, sim_time_per_frame=sim_time_per_frame, dt=dt,
                            discretisation=discretisation, integrator=integrator)


@torch.no_grad()
def simulate_forward(state: torch.Tensor, params: VoidParameters, n_frames: int, *, start: int = 0,
                     sim_time_per_frame: float, dt: float, discretisation: str = "conservative",
                     integrator: str = "euler") -> Forecast:
    """Simulate a start state ``[1, 3, H, W]`` (c_v, c_i, eta) ``n_frames`` frame intervals forward
    (deterministic: no cascades or noise); returns the state at every frame."""
    steps_per_frame = max(1, round(sim_time_per_frame / dt))
    model = VoidModel(discretisation)
    traj = rollout(model, state, params, dt=sim_time_per_frame / steps_per_frame, n_steps=steps_per_frame * n_frames,
                   save_every=steps_per_frame, integrator=integrator, diagnostics=False)
    return Forecast(traj.states[:, 0].numpy(), np.arange(start, start + n_frames + 1))
