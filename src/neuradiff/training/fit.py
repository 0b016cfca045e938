"""Joint training of the recognition net and the phase-field parameters (NeuraDiff).

1. Pretraining: the net learns eta from the annotated pixels (binary cross-entropy), with weak priors
   on the latent fields where a pixel is annotated (c_v = 1 in voids and ``c_v_matrix`` in the solid,
   c_i = ``c_i_matrix``); no simulator fields are used.
2. Joint training on frame pairs (t, t + gap): recognise at t, replace eta by the annotation where one
   exists (eta**), simulate gap·``sim_time_per_frame`` with the engine, recognise at t + gap, and minimise

       L = L_sim + λ_rec · L_rec + λ_sim_rec · L_sim-rec + λ_prior · L_prior       (all terms means)
       L_sim     = mean over annotated pixels of (eta_sim − A)²           at t + gap
       L_rec     = BCE of the recognised eta against the annotations      at t and t + gap
       L_sim-rec = mean (eta_sim − eta_rec)² + (c_v,sim − c_v,rec)² + ((c_i,sim − c_i,rec)/c_i_scale)²
       L_prior   = the pretraining priors on the recognised c_v, c_i at annotated pixels, at t and t + gap

   with separate Adam learning rates for the net and the physical parameters (bounded, positive). With
   ``physics_loss = "sim"`` the physical parameters move with L_sim alone (they are fitted to the
   annotations, not to the net's guesses of the unobserved c_v, c_i) while the net learns from L. Each
   iteration takes one pair between consecutive annotated training frames (annotated at both ends, up to
   ``max_gap`` frames apart: the physics' main signal) and ``batch`` short pairs of ``gap`` frames from
   anywhere in the video (the recognition-simulation consistency of unannotated frames).
   Rollouts are deterministic (no cascades or noise), use the IMEX Euler step (the pointwise stiffness
   implicit, so a frame takes a few sub-steps) and are checkpointed for long gaps.

One annotated frame is held out for validation; the validation loss picks the kept model. Batches come
from a generator seeded by (seed, phase, iteration), so a run resumed from a checkpoint reaches exactly
the result of an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neuradiff.errors import NeuradiffError, SimulationError
from neuradiff.models import NetConfig, RecognitionNet, annotated_mask, annotation_loss, default_stride
from neuradiff.physics import LearnableParameters, VoidModel, VoidParameters, rollout
from neuradiff.physics.integrators import get_integrator

UNKNOWN = 255
#: Generic starting guess of the learned parameters (deliberately not the synthetic ground truth).
INITIAL_GUESS = {"E_v": 6.0, "E_i": 6.0, "kBT": 4.0, "kappa_v": 0.7, "kappa_i": 0.7, "kappa_eta": 1.5,
                 "D_v": 0.7, "D_i": 0.7, "L": 2.0}


@dataclass
class FitConfig:
    """Settings of ``neuradiff fit`` (see the module docstring); every field can come from a config file."""

    seed: int = 0
    net: dict[str, Any] = field(default_factory=dict)  # NetConfig overrides (stride: default_stride of the frames)
    discretisation: str = "conservative"
    integrator: str = "imex"
    dt: float = 0.3  # learner's time step (simulation time units; the guard sub-steps when needed)
    sim_time_per_frame: float | None = None  # default: from dataset.json beside the video, else 1.0
    learn: list[str] | None = None  # default: the paper's nine
    initial_params: dict[str, float] = field(default_factory=lambda: dict(INITIAL_GUESS))
    fixed_params: dict[str, float] = field(default_factory=dict)
    gap: int = 3  # frames between the two frames of a short (consistency) pair
    max_gap: int = 12  # longest pair between consecutive annotated frames
    batch: int = 2
    pretrain_iters: int = 150
    joint_iters: int = 50
    lr_net: float = 2e-3
    lr_net_joint: float = 5e-4
    lr_phys: float = 0.02
    physics_loss: str = "total"  # terms that move the physical parameters: "total" (L) or "sim" (L_sim only)
    lambda_rec: float = 1.0
    lambda_sim_rec: float = 0.1
    prior_weight: float = 1.0
    void_weight: float = 1.0  # weight of void pixels in the BCE (raise it for sparse voids, e.g. 3)
    c_v_matrix: float = 0.122
    c_i_matrix: float = 6.9e-4
    c_i_scale: float = 1e-3
    eval_every: int = 10
    checkpoint_every: int = 25
    bptt_checkpoint: int | None = 10
    augment: bool = True

    def validate(self) -> None:
        for name in ("gap", "batch", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_iters", "joint_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("dt", "lr_net", "lr_net_joint", "lr_phys", "c_i_scale", "void_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.physics_loss not in ("total", "sim"):
            raise ValueError(f"physics_loss must be 'total' or 'sim', got {self.physics_loss!r}")
        if self.sim_time_per_frame is not None and not self.sim_time_per_frame > 0:
            raise ValueError(f"sim_time_per_frame must be positive, got {self.sim_time_per_frame}")
        NetConfig.from_dict(self.net) if self.net else None
        VoidModel(self.discretisation)  # raises on an unknown discretisation
        get_integrator(self.integrator)
        self.initial_parameters()

    def initial_parameters(self) -> VoidParameters:
        return VoidParameters.from_mapping({**self.initial_params, **self.fixed_params})

    def learned_names(self) -> list[str]:
        names = list(self.learn) if self.learn is not None else list(VoidParameters.default_learned())
        return [n for n in names if n not in self.fixed_params]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainingData:
    """A video prepared for training: frames ``[T, H, W]`` float32, annotations ``[T, H, W]`` uint8."""

    frames: np.ndarray
    annotations: np.ndarray
    nm_per_px: float | None
    frame_interval_s: float | None
    sim_time_per_frame: float

    def __post_init__(self) -> None:
        if self.frames.ndim != 3:
            raise NeuradiffError(f"the video must be [frames, H, W], got shape {self.frames.shape}")
        if self.annotations.shape != self.frames.shape:
            raise NeuradiffError(f"annotations {self.annotations.shape} and video {self.frames.shape} differ in size "
                                 "or length")
        bad = np.setdiff1d(np.unique(self.annotations), [0, 1, UNKNOWN])
        if bad.size:
            raise NeuradiffError(f"annotations hold values {bad[:5].tolist()}; only 0 (solid), 1 (void) and "
                                 "255 (unknown) are allowed")
        if not self.annotated_frames().size:
            raise NeuradiffError("the annotations are all unknown (255): at least one annotated frame is needed")

    def annotated_frames(self) -> np.ndarray:
        return np.flatnonzero((self.annotations != UNKNOWN).any(axis=(1, 2)))


@dataclass
class FitState:
    """Everything a checkpoint holds."""

    phase: str
    iteration: int
    net: RecognitionNet
    params: LearnableParameters
    history: list[dict[str, float]]
    best: dict[str, Any] | None


def split_frames(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """(training annotated frames, validation frames): one annotated frame is held out when there are ≥ 3."""
    ann = data.annotated_frames()
    if ann.size >= 3:
        val = np.array([ann[-2]])
        return np.setdiff1d(ann, val), val
    return ann, np.array([], dtype=np.int64)


def annotated_pairs(frames: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """Consecutive annotated frames (a, b) at most ``max_gap`` apart."""
    return [(int(a), int(b)) for a, b in zip(frames[:-1], frames[1:]) if b - a <= max_gap]


def _augment(x: Tensor, k: int, flip: bool) -> Tensor:
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


class Trainer:
    """Runs a fit; ``run()`` returns the final :class:`FitState` (the kept model is ``state.best``)."""

    def __init__(self, data: TrainingData, config: FitConfig, *, checkpoint_path: Path | None = None,
                 progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> None:
        config.validate()
        self.data, self.config = data, config
        self.checkpoint_path = checkpoint_path
        self.progress = progress
        self.model = VoidModel(config.discretisation)
        self.train_frames, self.val_frames = split_frames(data)
        if not self.train_frames.size:
            raise NeuradiffError("no annotated frame is left for training")
        t = data.frames.shape[0]
        if t <= config.gap:
            raise NeuradiffError(f"the video has {t} frames; pairs need more than gap = {config.gap}")
        self.steps_per_frame = data.sim_time_per_frame / config.dt
        self.steps_per_pair = max(1, round(config.gap * self.steps_per_frame))
        self.annotated_pairs = annotated_pairs(self.train_frames, config.max_gap)
        self.frames = torch.from_numpy(np.ascontiguousarray(data.frames, dtype=np.float32))
        self.annotations = torch.from_numpy(np.ascontiguousarray(data.annotations))
        train_mask = torch.zeros(t, dtype=torch.bool)
        train_mask[torch.from_numpy(self.train_frames)] = True
        # Validation frames' annotations are hidden from training.
        self.train_annotations = torch.where(train_mask.view(-1, 1, 1), self.annotations,
                                             torch.full_like(self.annotations, UNKNOWN))

    # ---- pieces --------------------------------------------------------------------------------------
    def new_state(self) -> FitState:
        torch.manual_seed(self.config.seed)
        net_cfg = NetConfig.from_dict({"stride": default_stride(*self.frames.shape[-2:]), **self.config.net})
        mean, std = float(self.frames.mean()), float(self.frames.std())
        net = RecognitionNet(net_cfg, input_mean=mean, input_std=max(std, 1e-6))
        params = LearnableParameters(self.config.initial_parameters(), learn=self.config.learned_names())
        return FitState("pretrain", 0, net, params, [], None)

    def _rng(self, phase: str, it: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, 0 if phase == "pretrain" else 1, it])

    def _recognise(self, net: RecognitionNet, idx: Tensor, k: int = 0, flip: bool = False) -> tuple[Tensor, Tensor]:
        """(fields [B, 3, H, W], eta logits [B, H, W]) of frames ``idx`` (augmented by rot k / flip)."""
        x = _augment(self.frames[idx], k, flip)
        z = net.logits(x, idx.to(torch.float32))
        return net.fields(z), z[:, 2]

    def _prior_loss(self, fields: Tensor, ann: Tensor) -> Tensor:
        known = annotated_mask(ann)
        if not bool(known.any()):
            return fields.sum() * 0.0
        void = (ann == 1).to(fields.dtype)
        target_cv = void + (1.0 - void) * self.config.c_v_matrix
        err_cv = (fields[:, 0] - target_cv)[known]
        err_ci = (torch.log10(fields[:, 1]) - math.log10(self.config.c_i_matrix))[known]
        return (err_cv ** 2).mean() + 0.01 * (err_ci ** 2).mean()

    def pretrain_loss(self, net: RecognitionNet, it: int) -> dict[str, Tensor]:
        rng = self._rng("pretrain", it)
        idx = torch.from_numpy(rng.choice(self.train_frames, size=self.config.batch))
        k, flip = (int(rng.integers(4)), bool(rng.integers(2))) if self.config.augment else (0, False)
        fields, logits = self._recognise(net, idx, k, flip)
        ann = _augment(self.train_annotations[idx], k, flip)
        rec = annotation_loss(logits, ann, pos_weight=self.config.void_weight)
        prior = self._prior_loss(fields, ann)
        return {"loss": rec + self.config.prior_weight * prior, "rec": rec, "prior": prior}

    def pair_loss(self, net: RecognitionNet, params: VoidParameters, starts: Tensor, k: int = 0,
                  flip: bool = False, annotations: Tensor | None = None, gap: int | None = None) -> dict[str, Tensor]:
        """The joint loss of pairs (starts, starts + gap) (default gap: ``config.gap``)."""
        cfg = self.config
        gap = cfg.gap if gap is None else gap
        ann = self.train_annotations if annotations is None else annotations
        ends = starts + gap
        f0, z0 = self._recognise(net, starts, k, flip)
        f1, z1 = self._recognise(net, ends, k, flip)
        a0, a1 = _augment(ann[starts], k, flip), _augment(ann[ends], k, flip)
        known0 = annotated_mask(a0)
        eta0 = torch.where(known0, a0.to(f0.dtype).clamp(0, 1), f0[:, 2])  # eta**
        state0 = torch.stack((f0[:, 0], f0[:, 1], eta0), dim=1)
        n_steps = max(1, round(gap * self.steps_per_frame))
        sim = rollout(self.model, state0, params, dt=gap * self.data.sim_time_per_frame / n_steps,
                      n_steps=n_steps,
                      integrator=cfg.integrator, checkpoint_every=cfg.bptt_checkpoint, diagnostics=False,
                      guard_every=max(1, round(self.steps_per_frame))).final
        known1 = annotated_mask(a1)
        if bool(known1.any()):
            l_sim = ((sim[:, 2] - a1.to(sim.dtype))[known1] ** 2).mean()
        else:
            l_sim = sim.sum() * 0.0
        l_rec = (annotation_loss(z1, a1, pos_weight=cfg.void_weight)
                 + annotation_loss(z0, a0, pos_weight=cfg.void_weight))
        l_simrec = (F.mse_loss(sim[:, 2], f1[:, 2]) + F.mse_loss(sim[:, 0], f1[:, 0])
                    + F.mse_loss(sim[:, 1] / cfg.c_i_scale, f1[:, 1] / cfg.c_i_scale))
        prior = self._prior_loss(f0, a0) + self._prior_loss(f1, a1)
        loss = l_sim + cfg.lambda_rec * l_rec + cfg.lambda_sim_rec * l_simrec + cfg.prior_weight * prior
        return {"loss": loss, "sim": l_sim, "rec": l_rec, "sim_rec": l_simrec, "prior": prior}

    def joint_loss(self, net: RecognitionNet, params: LearnableParameters, it: int) -> dict[str, Tensor]:
        cfg = self.config
        rng = self._rng("joint", it)
        t = self.frames.shape[0]
        k, flip = (int(rng.integers(4)), bool(rng.integers(2))) if cfg.augment else (0, False)
        p = params()
        starts = torch.from_numpy(rng.integers(0, t - cfg.gap, size=cfg.batch))
        terms = self.pair_loss(net, p, starts, k, flip)
        if self.annotated_pairs:
            a, b = self.annotated_pairs[int(rng.integers(len(self.annotated_pairs)))]
            long = self.pair_loss(net, p, torch.tensor([a]), k, flip, gap=b - a)
            terms = {name: terms[name] + long[name] for name in terms}
        return terms

    @torch.no_grad()
    def validation_loss(self, net: RecognitionNet, params: LearnableParameters) -> float:
        """Recognition BCE on the held-out frames plus :meth:`validation_physics` (training loss if none)."""
        net.eval()
        try:
            if not self.val_frames.size:
                return float(sum(self.pretrain_loss(net, 10_000 + i)["loss"] for i in range(2)))
            idx = torch.from_numpy(self.val_frames)
            _, logits = self._recognise(net, idx)
            total = float(annotation_loss(logits, self.annotations[idx], pos_weight=self.config.void_weight))
            return total + self.validation_physics(net, params, idx)
        finally:
            net.train()

    def validation_physics(self, net: RecognitionNet, params: LearnableParameters, idx: Tensor) -> float:
        """L_sim of the rollouts from the previous training annotation into each held-out annotation."""
        ann = self.train_annotations.clone()
        ann[idx] = self.annotations[idx]
        total = 0.0
        for v in self.val_frames:
            before = self.train_frames[self.train_frames < v]
            if before.size:
                a = int(before[-1])
                total += float(self.pair_loss(net, params(), torch.tensor([a]), annotations=ann,
                                              gap=int(v) - a)["sim"])
        return total

    # ---- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, state: FitState, opt_net, opt_phys) -> None:
        if self.checkpoint_path is None:
            return
        from neuradiff.data.files import atomic_path

        blob = {
            "format": "neuradiff-fit-checkpoint", "version": 1, "phase": state.phase, "iteration": state.iteration,
            "net_config": state.net.config.to_dict(), "net": state.net.state_dict(),
            "params": state.params.state_dict(), "opt_net": opt_net.state_dict(),
            "opt_phys": opt_phys.state_dict() if opt_phys is not None else None,
            "history": state.history, "best": state.best, "config": self.config.to_dict(),
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(blob, tmp)

    def load_checkpoint(self) -> dict[str, Any]:
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise NeuradiffError(f"no checkpoint to resume from at {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
            raise NeuradiffError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__})") from None
        if not isinstance(blob, dict) or blob.get("format") != "neuradiff-fit-checkpoint" or blob.get("version") != 1:
            raise NeuradiffError(f"checkpoint {path} is not a neuradiff fit checkpoint of this version")
        if blob["config"] != self.config.to_dict():
            raise NeuradiffError(f"checkpoint {path} was made with other settings; resume with the same config")
        return blob

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> FitState:
        cfg = self.config
        state = self.new_state()
        opt_net = torch.optim.Adam(state.net.parameters(), lr=cfg.lr_net)
        opt_phys = torch.optim.Adam(state.params.parameters(), lr=cfg.lr_phys) if state.params.learned else None
        if resume:
            blob = self.load_checkpoint()
            state.net.load_state_dict(blob["net"])
            state.params.load_state_dict(blob["params"])
            state.phase, state.iteration = blob["phase"], blob["iteration"]
            state.history, state.best = blob["history"], blob["best"]
            if state.phase == "joint":
                opt_net = torch.optim.Adam(state.net.parameters(), lr=cfg.lr_net_joint)
            opt_net.load_state_dict(blob["opt_net"])
            if opt_phys is not None and blob["opt_phys"] is not None:
                opt_phys.load_state_dict(blob["opt_phys"])
        state.net.train()
        if state.phase == "pretrain":
            for it in range(state.iteration, cfg.pretrain_iters):
                terms = self.pretrain_loss(state.net, it)
                self._step(terms, "pretrain", it, opt_net, None)
                state.iteration = it + 1
                self._record(state, terms, "pretrain", it)
                if state.iteration % cfg.checkpoint_every == 0:
                    self.save_checkpoint(state, opt_net, opt_phys)
            state.phase, state.iteration = "joint", 0
            opt_net = torch.optim.Adam(state.net.parameters(), lr=cfg.lr_net_joint)
            self._keep_if_best(state, force=state.best is None)
            self.save_checkpoint(state, opt_net, opt_phys)
        for it in range(state.iteration, cfg.joint_iters):
            terms = self.joint_loss(state.net, state.params, it)
            self._step(terms, "joint", it, opt_net, opt_phys)
            state.iteration = it + 1
            self._record(state, terms, "joint", it)
            if state.iteration % cfg.eval_every == 0 or state.iteration == cfg.joint_iters:
                self._keep_if_best(state)
            if state.iteration % cfg.checkpoint_every == 0 or state.iteration == cfg.joint_iters:
                self.save_checkpoint(state, opt_net, opt_phys)
        if state.best is None:
            self._keep_if_best(state, force=True)
        return state

    def _step(self, terms: dict[str, Tensor], phase: str, it: int, opt_net, opt_phys) -> None:
        loss = terms["loss"]
        if not bool(torch.isfinite(loss)):
            where = f" (last good checkpoint: {self.checkpoint_path})" if self.checkpoint_path else ""
            raise SimulationError(f"the {phase} loss became {float(loss.detach())} at iteration {it}{where}")
        opt_net.zero_grad(set_to_none=True)
        if opt_phys is not None:
            opt_phys.zero_grad(set_to_none=True)
        weights = list(opt_net.param_groups[0]["params"])
        phys = list(opt_phys.param_groups[0]["params"]) if opt_phys is not None else []
        if phys and self.config.physics_loss == "sim" and terms["sim"].requires_grad:
            # The physics is fitted to the annotations only; the net learns from the whole loss.
            grads = torch.autograd.grad(terms["sim"], phys, retain_graph=True, allow_unused=True)
            loss.backward(inputs=weights)
            for p, g in zip(phys, grads):
                p.grad = torch.zeros_like(p) if g is None else g
        else:
            loss.backward()
        for p in weights + phys:
            if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                raise SimulationError(f"non-finite gradient in the {phase} phase at iteration {it}")
        opt_net.step()
        if opt_phys is not None:
            opt_phys.step()

    def _record(self, state: FitState, terms: dict[str, Tensor], phase: str, it: int) -> None:
        row = {"phase": phase, "iteration": it + 1, **{f"loss_{k}": float(v.detach()) for k, v in terms.items()}}
        with torch.no_grad():
            row.update({f"param_{k}": v for k, v in state.params().as_floats().items()
                        if k in state.params.learned})
        state.history.append(row)
        if self.progress is not None:
            total = self.config.pretrain_iters if phase == "pretrain" else self.config.joint_iters
            self.progress(phase, it + 1, total, row)

    def _keep_if_best(self, state: FitState, force: bool = False) -> None:
        val = self.validation_loss(state.net, state.params)
        if state.history:
            state.history[-1]["val_loss"] = val
        if force or state.best is None or val < state.best["val_loss"]:
            state.best = {"val_loss": val, "phase": state.phase, "iteration": state.iteration,
                          "net": {k: v.detach().clone() for k, v in state.net.state_dict().items()},
                          "params": {k: v.detach().clone() for k, v in state.params.state_dict().items()}}


def restore_best(state: FitState) -> tuple[RecognitionNet, LearnableParameters]:
    """The kept (best-validation) net and parameters of a finished fit."""
    if state.best is not None:
        state.net.load_state_dict(state.best["net"])
        state.params.load_state_dict(state.best["params"])
    state.net.eval()
    return state.net, state.params


def elapsed(t0: float) -> float:
    return time.perf_counter() - t0
