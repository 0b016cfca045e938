"""A physics-informed (residual) fit: the recognition net and the physical parameters are trained so that the
recognised fields of consecutive frames satisfy the model's equations (a residual loss in place of NeuraDiff's
simulated rollouts).

For frames t and t + 1, Δ = ``sim_time_per_frame`` apart, with recognised states s_t, s_t+1 (eta replaced by the
annotation where one exists), the midpoint residual is

    r = (s_t+1 − s_t) − Δ · rate((s_t + s_t+1) / 2)           (per field; c_i divided by ``c_i_scale``)

(the eta rate zeroed where eta is at 0 or 1 and the rate points outward, like the simulator's projection)

and the joint loss is mean r² + λ_rec · L_rec + λ_prior · L_prior. Pretraining is NeuraDiff's; the kept model
is the best-validated one of the joint phase (validation: BCE on the held-out frames plus the residual into them).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neuradiff.models import annotated_mask, annotation_loss
from neuradiff.physics import LearnableParameters, VoidParameters
from neuradiff.physics.model import PhaseFieldModel
from neuradiff.training.fit import Trainer, _augment

#: Distance from 0 or 1 within which eta counts as at its bound.
BOUND_TOL = 1e-3

def midpoint_residual(model: PhaseFieldModel, s0: Tensor, s1: Tensor, params: VoidParameters, delta: float, *,
                      c_i_scale: float, dx: float = 1.0) -> Tensor:
    """Mean squared residual (s1 − s0) − delta · rate((s0 + s1)/2) of states ``[B, 3, H, W]`` delta apart
    (simulation time), the c_i channel divided by ``c_i_scale``. The eta rate is zero where eta sits at a bound
    (within ``BOUND_TOL``) and the rate points out of [0, 1], as the simulator's projection makes it."""
    mid = 0.5 * (s0 + s1)
    rate = model.rate(mid, params, dx)
    eta, r_eta = mid[:, 2], rate[:, 2]
    blocked = ((eta <= BOUND_TOL) & (r_eta < 0)) | ((eta >= 1 - BOUND_TOL) & (r_eta > 0))
    rate = torch.cat((rate[:, :2], torch.where(blocked, torch.zeros_like(r_eta), r_eta)[:, None]), dim=1)
    r = (s1 - s0) - delta * rate
    scale = torch.tensor([1.0, 1.0 / c_i_scale, 1.0], dtype=r.dtype).view(1, 3, 1, 1)
    return ((r * scale) ** 2).mean()


class ResidualTrainer(Trainer):
    """:class:`~neuradiff.training.fit.Trainer` with the residual loss as its joint phase."""

    def residual_loss(self, net, params: VoidParameters, starts: Tensor, k: int = 0, flip: bool = False,
                      annotations: Tensor | None = None) -> dict[str, Tensor]:
        cfg = self.config
        ann = self.train_annotations if annotations is None else annotations
        states, terms_rec, prior = [], [], 0.0
        for idx in (starts, starts + 1):
            f, z = self._recognise(net, idx, k, flip)
            a = _augment(ann[idx], k, flip)
            eta = torch.where(annotated_mask(a), a.to(f.dtype).clamp(0, 1), f[:, 2])
            states.append(torch.stack((f[:, 0], f[:, 1], eta), dim=1))
            terms_rec.append(annotation_loss(z, a, pos_weight=cfg.void_weight))
            prior = prior + self._prior_loss(f, a)
        res = midpoint_residual(self.model, states[0], states[1], params, self.data.sim_time_per_frame,
                                c_i_scale=cfg.c_i_scale)
        rec = terms_rec[0] + terms_rec[1]
        loss = res + cfg.lambda_rec * rec + cfg.prior_weight * prior
        return {"loss": loss, "sim": res, "rec": rec, "prior": prior}

    def _keep_if_best(self, state, force: bool = False) -> None:
        # The kept model is chosen among the joint iterations: the pretrained state has learned no physics.
        if state.phase == "joint" and state.iteration == 0 and self.config.joint_iters > 0:
            return
        super()._keep_if_best(state, force)

    def joint_loss(self, net, params: LearnableParameters, it: int) -> dict[str, Tensor]:
        rng = self._rng("joint", it)
        k, flip = (int(rng.integers(4)), bool(rng.integers(2))) if self.config.augment else (0, False)
        starts = torch.from_numpy(rng.integers(0, self.frames.shape[0] - 1, size=self.config.batch + 1))
        return self.residual_loss(net, params(), starts, k, flip)

    def validation_physics(self, net, params: LearnableParameters, idx: Tensor) -> float:
        """The residual into each held-out frame from the frame before it (no simulation)."""
        return float(self.residual_loss(net, params(), (idx - 1).clamp(min=0))["sim"])
