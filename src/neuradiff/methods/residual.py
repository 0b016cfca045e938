"""A physics-informed (residual) fit: the recognition net and the physical parameters are trained so that the
recognised fields of consecutive frames satisfy the model's equations (a residual loss in place of NeuraDiff's
simulated rollouts).

For frames t and t + 1, Δ = ``sim_time_per_frame`` apart, with recognised states s_t, s_t+1 (eta replaced by the
annotation where one exists), the midpoint residual is

    r = (s_t+1 − s_t) − Δ · rate((s_t + s_t+1) / 2)           (per field; c_i divided by ``c_i_scale``)

(the eta rate zeroed where eta is at 0 or 1 and the rate points outward, like the simulator's projection)

and the joint loss is mean r² + λ_rec · L_rec + λ_prior · L_prior. Pretraining is NeuraDiff's; the kept model
is the best-validated one of the joint phase (validation: BCE on the held-out frames plus the residual into them).
The fitted model is a :class:`~neuradiff.methods.neuradiff.NeuraDiffModel` (a net and parameters) and forecasts
the same way.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor

from neuradiff.core.labels import overlay_annotation
from neuradiff.methods.base import FitResult, run_objective
from neuradiff.methods.neuradiff import NeuraDiffModel, NeuraDiffObjective
from neuradiff.nets import annotation_loss
from neuradiff.physics import PhaseFieldModel, VoidParameters
from neuradiff.training import FitConfig, Progress, TrainingData, Window, augment, augmentation, batch_rng, cut_batch

#: Distance from 0 or 1 within which eta counts as at its bound.
BOUND_TOL = 1e-3


def midpoint_residual(
    model: PhaseFieldModel,
    s0: Tensor,
    s1: Tensor,
    params: VoidParameters,
    delta: float,
    *,
    c_i_scale: float,
    dx: float = 1.0,
) -> Tensor:
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


class ResidualModel(NeuraDiffModel):
    """A net and parameters fitted by the residual loss (forecasts like :class:`NeuraDiffModel`)."""

    method: ClassVar[str] = "residual"


class ResidualObjective(NeuraDiffObjective):
    """NeuraDiff's pretraining, then the residual loss in the joint phase."""

    @property
    def validate_pretrained(self) -> bool:
        # The kept model is chosen among the joint iterations: the pretrained state has learned no physics.
        return self.config.joint_iters == 0

    def residual_loss(
        self,
        params: VoidParameters,
        starts: Tensor,
        k: int = 0,
        flip: bool = False,
        annotations: Tensor | None = None,
        windows: list[Window] | None = None,
    ) -> dict[str, Tensor]:
        cfg, rec = self.config, self.rec
        ann = rec.train_annotations if annotations is None else annotations
        states, terms_rec, prior = [], [], 0.0
        for idx in (starts, starts + 1):
            f, z = rec.recognise(self.net, idx, k, flip, windows)
            a = augment(cut_batch(ann[idx], windows), k, flip)
            states.append(torch.stack((f[:, 0], f[:, 1], overlay_annotation(f[:, 2], a)), dim=1))
            terms_rec.append(annotation_loss(z, a, pos_weight=cfg.void_weight))
            prior = prior + rec.prior_loss(f, a)
        res = midpoint_residual(
            self.simulator.model, states[0], states[1], params, self.data.sim_time_per_frame, c_i_scale=cfg.c_i_scale
        )
        loss_rec = terms_rec[0] + terms_rec[1]
        loss = res + cfg.lambda_rec * loss_rec + cfg.prior_weight * prior
        return {"loss": loss, "sim": res, "rec": loss_rec, "prior": prior}

    def joint_loss(self, it: int) -> dict[str, Tensor]:
        rng = batch_rng(self.config.seed, "joint", it)
        k, flip = augmentation(rng, self.config.augment)
        starts = torch.from_numpy(rng.integers(0, self.rec.frames.shape[0] - 1, size=self.config.batch + 1))
        windows = self.rec.windows(rng, starts + 1, self.rec.train_annotations)
        return self.residual_loss(self.params(), starts, k, flip, windows=windows)

    def validation_physics(self) -> float:
        """The residual into each held-out frame from the frame before it (no simulation)."""
        idx = torch.from_numpy(self.rec.val_frames)
        windows = self.rec.windows(batch_rng(self.config.seed, "validation", 0), idx, self.rec.annotations)
        return float(self.residual_loss(self.params(), (idx - 1).clamp(min=0), windows=windows)["sim"])

    def fitted(self) -> ResidualModel:
        model = super().fitted()
        # Its parameters are fitted to the net's latent c_v, c_i (the residual is taken on them), with no
        # calibration on the area curve: its forecasts start from those fields too.
        return ResidualModel(model.net, model.params, model.simulator, {**model.info, "start_fields": "recognised"})


def fit_residual(
    data: TrainingData,
    config: FitConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> FitResult[ResidualModel]:
    """The residual fit of ``data``; ``result.model`` is a :class:`ResidualModel`.

    Its recognition net starts from random weights unless ``config.init`` is ``"generalist"`` explicitly: started
    from the generalist by default (``"auto"``), the residual loss drove the recognised voids away altogether
    (void IoU 0 on the paper suite's video), so ``"auto"`` means ``"scratch"`` here.
    """
    if config.init == "auto":
        config = replace(config, init="scratch")
    config = config.for_annotated_frames(data.annotated_frames().size)
    return run_objective(
        ResidualObjective(data, config),
        config,
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
        device=device,
    )
