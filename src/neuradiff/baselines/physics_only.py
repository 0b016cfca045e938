"""Differentiable physics without a recognition net: the physical parameters are fitted by simulating from an
annotated frame to the next one and matching its annotation (the frames' pixels are never read)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from neuradiff.errors import NeuradiffError, SimulationError
from neuradiff.models import annotated_mask
from neuradiff.physics import LearnableParameters, VoidModel, rollout
from neuradiff.training.fit import FitConfig, TrainingData, annotated_pairs, split_frames


def state_from_annotation(annotation: np.ndarray | Tensor, *, c_v_matrix: float, c_i_matrix: float) -> Tensor:
    """A start state ``[B, 3, H, W]`` float32 from annotations ``[B, H, W]`` (0 solid, 1 void, 255 unknown):
    eta is the annotation (unknown pixels taken as solid), c_v is 1 in voids and ``c_v_matrix`` in the solid,
    c_i is ``c_i_matrix`` everywhere (the same priors the NeuraDiff fit puts on its latent fields)."""
    a = torch.as_tensor(np.asarray(annotation))
    eta = torch.where(annotated_mask(a), a.to(torch.float32).clamp(0, 1), torch.zeros((), dtype=torch.float32))
    c_v = eta + (1.0 - eta) * c_v_matrix
    c_i = torch.full_like(eta, c_i_matrix)
    return torch.stack((c_v, c_i, eta), dim=1)


@dataclass
class PhysicsOnlyFit:
    """Result: the learned parameters (kept at the best validation loss) and the loss history."""

    params: LearnableParameters
    history: list[dict[str, float]]


def fit_physics_only(data: TrainingData, config: FitConfig, *,
                     progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> PhysicsOnlyFit:
    """Fit the learned parameters of ``config`` for ``config.joint_iters`` iterations: each simulates one pair of
    consecutive training annotations (a → b) and minimises the squared eta error at b's annotated pixels."""
    config.validate()
    train, val = split_frames(data)
    pairs = annotated_pairs(train, config.max_gap)
    if not pairs:
        raise NeuradiffError("differentiable physics alone needs two annotated training frames at most "
                             f"{config.max_gap} frames apart")
    model = VoidModel(config.discretisation)
    params = LearnableParameters(config.initial_parameters(), learn=config.learned_names())
    opt = torch.optim.Adam(params.parameters(), lr=config.lr_phys)
    ann = torch.from_numpy(np.ascontiguousarray(data.annotations))
    steps_per_frame = data.sim_time_per_frame / config.dt

    def pair_loss(a: int, b: int) -> Tensor:
        state = state_from_annotation(ann[a:a + 1], c_v_matrix=config.c_v_matrix, c_i_matrix=config.c_i_matrix)
        n = max(1, round((b - a) * steps_per_frame))
        end = rollout(model, state, params(), dt=(b - a) * data.sim_time_per_frame / n, n_steps=n,
                      integrator=config.integrator, checkpoint_every=config.bptt_checkpoint, diagnostics=False,
                      guard_every=max(1, round(steps_per_frame))).final
        known = annotated_mask(ann[b:b + 1])
        return ((end[:, 2] - ann[b:b + 1].to(end.dtype))[known] ** 2).mean()

    # Validation: the rollout into the held-out annotation (else the mean over the training pairs).
    val_pairs = [(int(train[train < v][-1]), int(v)) for v in val if (train < v).any()] or pairs
    history: list[dict[str, float]] = []
    best = (float("inf"), None)
    for it in range(config.joint_iters):
        rng = np.random.default_rng([config.seed, 2, it])
        a, b = pairs[int(rng.integers(len(pairs)))]
        loss = pair_loss(a, b)
        if not bool(torch.isfinite(loss)):
            raise SimulationError(f"the physics-only loss became {float(loss.detach())} at iteration {it}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        row = {"phase": "physics-only", "iteration": it + 1, "loss_sim": float(loss.detach())}
        if (it + 1) % config.eval_every == 0 or it + 1 == config.joint_iters:
            with torch.no_grad():
                val_loss = float(np.mean([float(pair_loss(a, b)) for a, b in val_pairs]))
            row["val_loss"] = val_loss
            if val_loss < best[0]:
                best = (val_loss, {k: v.detach().clone() for k, v in params.state_dict().items()})
        with torch.no_grad():
            row.update({f"param_{k}": v for k, v in params().as_floats().items() if k in params.learned})
        history.append(row)
        if progress is not None:
            progress("physics-only", it + 1, config.joint_iters, row)
    if best[1] is not None:
        params.load_state_dict(best[1])
    return PhysicsOnlyFit(params, history)

