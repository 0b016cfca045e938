"""NeuraDiff: the recognition net and the phase-field parameters trained jointly.

1. Pretraining (:class:`~neuradiff.training.RecognitionTraining`): the net learns eta from the annotated pixels,
   with weak priors on the latent fields c_v and c_i.
2. Joint training on frame pairs (t, t + gap): recognise at t, replace eta by the annotation where one exists
   (eta**), simulate gap frames with the learner's :class:`~neuradiff.physics.Simulator`, recognise at t + gap,
   and minimise

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
   Rollouts are deterministic (no cascades or noise), use the IMEX Euler step by default and are
   checkpointed for long gaps.

One annotated frame is held out for validation; the validation loss (recognition BCE on it plus L_sim of the
rollout into it) picks the kept model.

3. Calibration on the whole video (:func:`calibrate`): the kept net recognises every frame (annotations overlaid
   where they exist) and gives the observed void area of each; the physics is simulated from the first annotated
   frame to the last frame in one rollout and its void area (Σ eta) compared with the observed one at every
   frame. The rollout starts (as every forecast does) from the recognised eta with c_v and c_i at their matrix
   values (``start_fields = "matrix"``): the net's latent c_v, c_i are shaped only by the physics losses, and
   parameters calibrated on them do not carry over to a recording on which the net reads them differently.
   ``refine_iters`` Levenberg-Marquardt steps in log-parameter space (:func:`~neuradiff.methods.posterior.refine`)
   move the learned parameters along the directions this curve is sensitive to, and the Jacobian at the optimum
   gives the identifiability of the parameters and their Laplace posterior (:mod:`neuradiff.methods.posterior`),
   kept with the model and written to ``params.json``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import known, overlay_annotation
from neuradiff.io.saved import SavedModel, parameter_table, write_model_folder
from neuradiff.methods.base import FitResult, Forecast, run_objective
from neuradiff.methods.forecast import check_intervals, simulate_forward
from neuradiff.methods.posterior import (
    ForecastBand,
    Identifiability,
    Posterior,
    Refinement,
    analyse,
    forecast_band,
    log_jacobian,
    nuisance_covariance,
    refine,
)
from neuradiff.nets import RecognitionNet, annotation_loss, recognise
from neuradiff.physics import LearnableParameters, Simulator, VoidParameters, carried_state, matrix_state
from neuradiff.physics.void_model import MATRIX_C_I, MATRIX_C_V
from neuradiff.training import (
    FitConfig,
    Phase,
    Progress,
    RecognitionTraining,
    TrainingData,
    Window,
    annotated_pairs,
    augment,
    augmentation,
    batch_rng,
    crop_interior,
    cut_batch,
    resolve_crop,
)
from neuradiff.training.distributed import Processes, active, fraction, share

#: Least vacancy fraction of a forecast's start state. The net's c_v has no data to follow on a few pixels of a large
#: frame (on a 1024² recording, about 300 pixels along streaks fall to 4e-4–1e-2 beside values near 1): there
#: the face mobilities of the explicit step meet the entropy's curvature at a tiny c_v, which cut its stability
#: limit from 3e-3 to 3e-4 (over 1000 sub-steps per step of 0.3). 1 % is a twelfth of the matrix's c_v.
START_C_V_MIN = 0.01


@dataclass
class NeuraDiffModel:
    """A recognition net, the learned physical parameters and the simulator they were learned with.

    Attributes
    ----------
    net : RecognitionNet
    params : VoidParameters
    simulator : Simulator
    info : dict
        What the model was trained on and how (``learned``, ``video``, ...), as written to ``model.json``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> from neuradiff.physics import Simulator, VoidParameters
    >>> _ = torch.manual_seed(0)
    >>> model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), VoidParameters(), Simulator(dt=0.3))
    >>> model.forecast(np.zeros((1, 16, 16), np.float32), 0, 2).eta.shape
    (3, 16, 16)
    """

    method: ClassVar[str] = "neuradiff"
    can_track: ClassVar[bool] = True
    can_forecast: ClassVar[bool] = True

    net: RecognitionNet
    params: VoidParameters
    simulator: Simulator
    info: dict[str, Any] = field(default_factory=dict)
    identifiable: Identifiability | None = None
    posterior: Posterior | None = None

    def recognise(
        self, frames: np.ndarray, *, first_index: int = 0, eta_only: bool = False, batch: int = 8
    ) -> np.ndarray:
        return recognise(self.net, frames, first_index=first_index, eta_only=eta_only, batch=batch)

    @torch.no_grad()
    def start_state(
        self,
        frames: np.ndarray,
        start: int,
        annotation: np.ndarray | None = None,
        *,
        time_per_frame: float | None = None,
        history_intervals: np.ndarray | None = None,
    ) -> Tensor:
        """The state ``[1, 3, H, W]`` the physics starts from at ``frames[start]``: the recognised eta, replaced by
        ``annotation`` where known, and c_v, c_i as ``info["start_fields"]`` says.

        ``"matrix"``: at the frame the calibration started from (``info["start_frame"]``, the first annotated frame)
        and before it, the matrix values ``info["start_matrix"]`` around the voids
        (:func:`~neuradiff.physics.matrix_state`); at a later frame, the c_v and c_i that the physics reaches from
        there with the model's parameters (``time_per_frame`` a frame), carried onto the voids seen at ``start``
        (:func:`~neuradiff.physics.carried_state`). ``history_intervals``: the duration of each of the
        :meth:`history_frames` frame intervals before ``start``, in frame intervals, for a recording with uneven
        frame times (``None``: one each). ``"recognised"`` (models saved without the key): the net's latent fields,
        c_v raised to at least :data:`START_C_V_MIN`."""
        if not 0 <= start < frames.shape[0]:
            raise NeuradiffError(
                f"frame {start} is out of range: the video has {frames.shape[0]} frames (0..{frames.shape[0] - 1})"
            )
        self.net.eval()
        device = self.net.input_mean.device
        x = torch.from_numpy(self.net.prepare(frames[start : start + 1], first_index=start)).to(device)
        state = self.net(x, torch.tensor([float(start)], device=device))
        if annotation is not None:
            ann = torch.from_numpy(np.asarray(annotation))[None].to(device)
            state[:, 2] = overlay_annotation(state[:, 2], ann)
        if self.info.get("start_fields", "recognised") == "matrix":
            first = int(self.info.get("start_frame", 0))
            if start <= first:
                matrix = self.info.get("start_matrix", {})
                return matrix_state(
                    state[:, 2], c_v=float(matrix.get("c_v", MATRIX_C_V)), c_i=float(matrix.get("c_i", MATRIX_C_I))
                )
            sim = self.simulator.for_frames(time_per_frame)
            n = self.history_frames(start)
            try:
                steps = check_intervals(history_intervals, n)
            except ValueError as exc:
                raise NeuradiffError(f"the history before frame {start}: {exc}") from None
            before = self.start_state(frames, first)
            for d in np.ones(n) if steps is None else steps:  # frame by frame: only the last state is kept
                before = sim.run(before, self.params, float(d)).states[-1]
            return carried_state(state[:, 2], before)
        state[:, 0].clamp_(min=START_C_V_MIN)
        return state

    def history_frames(self, start: int) -> int:
        """Frames the start state at ``start`` simulates before it (:meth:`start_state`): from the calibration's first
        frame with the matrix start, none otherwise."""
        if self.info.get("start_fields", "recognised") != "matrix":
            return 0
        return max(start - int(self.info.get("start_frame", 0)), 0)

    def forecast(
        self,
        frames: np.ndarray,
        start: int,
        n_frames: int,
        *,
        annotation: np.ndarray | None = None,
        time_per_frame: float | None = None,
        intervals: np.ndarray | None = None,
        history_intervals: np.ndarray | None = None,
    ) -> Forecast:
        """Forecast ``n_frames`` frame intervals from ``frames[start]`` (:meth:`start_state`, whose
        ``history_intervals`` this passes on) with the model's parameters; ``intervals`` as in
        :func:`~neuradiff.methods.forecast.simulate_forward`."""
        state = self.start_state(
            frames, start, annotation, time_per_frame=time_per_frame, history_intervals=history_intervals
        )
        return simulate_forward(
            self.simulator.for_frames(time_per_frame), state, self.params, n_frames, start=start, intervals=intervals
        )

    def forecast_band(
        self,
        frames: np.ndarray,
        start: int,
        n_frames: int,
        *,
        annotation: np.ndarray | None = None,
        time_per_frame: float | None = None,
        nm_per_px: float | None = None,
        intervals: np.ndarray | None = None,
        state: Tensor | None = None,
        history_intervals: np.ndarray | None = None,
    ) -> ForecastBand:
        """The forecast's void area and mean radius per frame with their 90 % band from the posterior
        (:func:`~neuradiff.methods.posterior.forecast_band`); px² and px, or nm² and nm with ``nm_per_px``;
        ``intervals`` as in :meth:`forecast`; ``state``: the start state ``[1, 3, H, W]`` when the caller has it
        already (the first of :meth:`forecast`'s fields), else :meth:`start_state` (with ``history_intervals``)."""
        if self.posterior is None:
            raise NeuradiffError("this model has no posterior (it was fitted with uncertainty off): no band")
        if state is None:
            state = self.start_state(
                frames, start, annotation, time_per_frame=time_per_frame, history_intervals=history_intervals
            )
        sim = self.simulator.for_frames(time_per_frame)

        def run(values: Any) -> np.ndarray:
            return simulate_forward(sim, state, VoidParameters.from_mapping(values), n_frames, intervals=intervals).eta

        return forecast_band(run, self.posterior, np.arange(start, start + n_frames + 1), nm_per_px=nm_per_px)

    def parameters(self) -> VoidParameters:
        return self.params

    def with_parameters(self, params: VoidParameters) -> NeuraDiffModel:
        """The same model with other physical parameters (e.g. the starting guess, as a baseline)."""
        return replace(self, params=params)

    def save(self, folder: Path, *, history: list[dict] | None = None, config: dict | None = None) -> None:
        info = {
            **self.info,
            "method": self.method,
            "physics": self.simulator.to_dict(),
            "parameter_names": list(VoidParameters.names()),
            "learned": list(self.info.get("learned", [])),
        }
        table = dict(self.info.get("param_table") or parameter_table(self.params, learned=info["learned"]))
        if self.identifiable is not None:
            table = {
                name: (
                    {**entry, "identifiability": self.identifiable.status[name]}
                    if isinstance(entry, dict) and name in self.identifiable.status
                    else entry
                )
                for name, entry in table.items()
            }
            table["identifiability"] = {
                **self.identifiable.to_dict(),
                "posterior": None if self.posterior is None else self.posterior.to_dict(),
            }
        write_model_folder(
            folder,
            info={k: v for k, v in info.items() if k != "param_table"},
            nets={"net": self.net},
            params=table,
            history=history,
            config=config,
        )

    @classmethod
    def from_saved(cls, saved: SavedModel) -> NeuraDiffModel:
        """The model of a folder read by :func:`~neuradiff.io.saved.read_model_folder`."""
        if "net" not in saved.nets or saved.params is None or saved.info.get("physics") is None:
            raise NeuradiffError(f"a {cls.method} model needs a net, params.json and a physics section in model.json")
        try:
            simulator = Simulator.from_dict(saved.info["physics"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NeuradiffError(f"model.json has a bad physics section ({exc})") from None
        ident, post = None, None
        section = saved.param_table.get("identifiability")
        if isinstance(section, dict):
            try:
                ident = Identifiability.from_dict(section)
                post = None if section.get("posterior") is None else Posterior.from_dict(section["posterior"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise NeuradiffError("params.json has a bad identifiability section") from None
        info = {**saved.info, "param_table": {k: v for k, v in saved.param_table.items() if k != "identifiability"}}
        return cls(saved.nets["net"], saved.params, simulator, info, ident, post)


@dataclass(frozen=True)
class TermWeights:
    """Weights of the pooled means of :meth:`NeuraDiffObjective.pair_loss` on a share of a batch (its share of
    each mean's denominator, :func:`~neuradiff.training.fraction`): L_sim, the terms at t (BCE and prior) and at
    t + gap, and L_sim-rec."""

    sim: float
    start: float
    end: float
    sim_rec: float


class NeuraDiffObjective:
    """The NeuraDiff losses and phases (module docstring) on one video, for :class:`TrainingLoop`; with several
    training processes each computes its share of every batch (:mod:`neuradiff.training.distributed`)."""

    data_parallel: ClassVar[bool] = True

    def __init__(self, data: TrainingData, config: FitConfig, init: NeuraDiffModel | None = None) -> None:
        config.validate()
        config = config.for_annotated_frames(data.annotated_frames().size)
        self.data, self.config = data, config
        if init is not None and not isinstance(init, NeuraDiffModel):
            raise NeuradiffError(f"a fit can start from a {NeuraDiffModel.method} model only, not {init.method}")
        # retraining continues a net that reads frames its own way: the frames are prepared as it reads them
        self.rec = RecognitionTraining(data, config, level=None if init is None else init.net.config.level)
        t = data.frames.shape[0]
        if t <= config.gap:
            raise NeuradiffError(f"the video has {t} frames; pairs need more than gap = {config.gap}")
        self.simulator = config.simulator(data.sim_time_per_frame, cropped=self.rec.crop is not None)
        self.interior = None if self.rec.crop is None else crop_interior(self.rec.crop, config.crop_margin)
        self.annotated_pairs = annotated_pairs(self.rec.train_frames, config.max_gap)
        self.split = (self.rec.train_frames, self.rec.val_frames)
        if init is None:
            self.net = self.rec.new_net()
            self.initial = config.initial_parameters()
        else:  # retraining: a copy of the model's net and its parameters are the starting point
            self.net = copy.deepcopy(init.net).to("cpu").train()
            self.initial = init.params
        self.params = LearnableParameters(self.initial, learn=config.learned_names())

    # ---- Objective -------------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net, "params": self.params}

    def to(self, device: torch.device) -> NeuraDiffObjective:
        """Move the net, the parameters, the video and the annotations to ``device``."""
        self.net.to(device)
        self.params.to(device)
        self.rec.to(device)
        self.interior = None if self.interior is None else self.interior.to(device)
        return self

    def phases(self) -> list[Phase]:
        cfg = self.config
        joint = [lambda: torch.optim.Adam(self.net.parameters(), lr=cfg.lr_net_joint)]
        if self.params.learned:
            joint.append(lambda: torch.optim.Adam(self.params.parameters(), lr=cfg.lr_phys))
        return [
            Phase(
                "pretrain",
                cfg.pretraining_iterations(),
                lambda: [torch.optim.Adam(self.net.parameters(), lr=cfg.net_learning_rate())],
            ),
            Phase(
                "joint",
                cfg.joint_iters,
                lambda: [make() for make in joint],
                validate_every=cfg.eval_every,
                validate_at_start=self.validate_pretrained,
            ),
        ]

    @property
    def validate_pretrained(self) -> bool:
        """The pretrained model is a candidate for the kept model."""
        return True

    def loss(self, phase: str, iteration: int) -> dict[str, Tensor]:
        processes = active()
        if phase == "pretrain":
            return self.rec.pretrain_loss(self.net, iteration, processes)
        return self.joint_loss(iteration) if processes is None else self.joint_loss(iteration, processes)

    def backward(self, phase: str, terms: dict[str, Tensor]) -> None:
        phys = [p for p in self.params.parameters() if p.requires_grad]
        if phase != "pretrain" and phys and self.config.physics_loss == "sim" and terms["sim"].requires_grad:
            # The physics is fitted to the annotations only; the net learns from the whole loss.
            grads = torch.autograd.grad(terms["sim"], phys, retain_graph=True, allow_unused=True)
            terms["loss"].backward(inputs=list(self.net.parameters()))
            for p, g in zip(phys, grads):
                p.grad = torch.zeros_like(p) if g is None else g
        else:
            terms["loss"].backward()

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.net.eval()
        try:
            total = self.rec.validation_bce(self.net)
            return total + self.validation_physics() if self.rec.val_frames.size else total
        finally:
            self.net.train()

    def columns(self) -> dict[str, float]:
        return {f"param_{k}": v for k, v in self.params().as_floats().items() if k in self.params.learned}

    # ---- losses ----------------------------------------------------------------------------------------
    def pair_loss(
        self,
        params: VoidParameters,
        starts: Tensor,
        k: int = 0,
        flip: bool = False,
        annotations: Tensor | None = None,
        gap: int | None = None,
        windows: list[Window] | None = None,
        weights: TermWeights | None = None,
    ) -> dict[str, Tensor]:
        """The joint loss of pairs (starts, starts + gap) (default gap: ``config.gap``), each pair cut to its window
        when training on crops (the physics losses then leave out ``crop_margin`` px along the window edge); each
        pooled mean times its weight in ``weights`` (a share of a larger batch)."""
        cfg = self.config
        gap = cfg.gap if gap is None else gap
        ann = self.rec.train_annotations if annotations is None else annotations
        ends = starts + gap
        f0, z0 = self.rec.recognise(self.net, starts, k, flip, windows)
        f1, z1 = self.rec.recognise(self.net, ends, k, flip, windows)
        a0 = augment(cut_batch(ann[starts], windows), k, flip)
        a1 = augment(cut_batch(ann[ends], windows), k, flip)
        state0 = torch.stack((f0[:, 0], f0[:, 1], overlay_annotation(f0[:, 2], a0)), dim=1)  # eta**
        sim = self.simulate_pairs(state0, params, starts, ends)
        known1 = known(a1)
        inside = None if windows is None or self.interior is None else self.interior.expand_as(known1)
        if inside is not None:
            known1 = known1 & inside
        if bool(known1.any()):
            l_sim = ((sim[:, 2] - a1.to(sim.dtype))[known1] ** 2).mean()
        else:
            l_sim = sim.sum() * 0.0
        rec1 = annotation_loss(z1, a1, pos_weight=cfg.void_weight)
        rec0 = annotation_loss(z0, a0, pos_weight=cfg.void_weight)
        if weights is not None:
            l_sim, rec1, rec0 = l_sim * weights.sim, rec1 * weights.end, rec0 * weights.start
        l_rec = rec1 + rec0
        if inside is None:
            l_simrec = (
                F.mse_loss(sim[:, 2], f1[:, 2])
                + F.mse_loss(sim[:, 0], f1[:, 0])
                + F.mse_loss(sim[:, 1] / cfg.c_i_scale, f1[:, 1] / cfg.c_i_scale)
            )
        else:
            diff = (sim - f1) / torch.tensor([1.0, cfg.c_i_scale, 1.0], dtype=sim.dtype, device=sim.device).view(
                1, 3, 1, 1
            )
            l_simrec = (diff**2).permute(1, 0, 2, 3)[:, inside].mean(dim=1).sum()
        prior0 = self.rec.prior_loss(f0, a0)
        prior1 = self.rec.prior_loss(f1, a1)
        if weights is not None:
            l_simrec, prior0, prior1 = l_simrec * weights.sim_rec, prior0 * weights.start, prior1 * weights.end
        prior = prior0 + prior1
        loss = l_sim + cfg.lambda_rec * l_rec + cfg.lambda_sim_rec * l_simrec + cfg.prior_weight * prior
        return {"loss": loss, "sim": l_sim, "rec": l_rec, "sim_rec": l_simrec, "prior": prior}

    def joint_loss(self, it: int, processes: Processes | None = None) -> dict[str, Tensor]:
        """``batch`` short pairs anywhere in the video plus one pair of consecutive training annotations; with
        ``processes``, this process's share of them (:meth:`share_of_pairs`)."""
        cfg = self.config
        rng = batch_rng(cfg.seed, "joint", it)
        t = self.rec.frames.shape[0]
        k, flip = augmentation(rng, cfg.augment)
        p = self.params()
        starts = torch.from_numpy(rng.integers(0, t - cfg.gap, size=cfg.batch))
        long_pair = self.annotated_pairs[int(rng.integers(len(self.annotated_pairs)))] if self.annotated_pairs else None
        ann = self.rec.train_annotations
        windows = self.rec.windows(rng, starts + cfg.gap, ann)
        long_windows = None if long_pair is None else self.rec.windows(rng, torch.tensor([long_pair[1]]), ann)
        if processes is not None:
            return self.share_of_pairs(processes, p, starts, k, flip, windows, long_pair, long_windows)
        terms = self.pair_loss(p, starts, k, flip, windows=windows)
        if long_pair is not None:
            a, b = long_pair
            long = self.pair_loss(p, torch.tensor([a]), k, flip, gap=b - a, windows=long_windows)
            terms = {name: terms[name] + long[name] for name in terms}
        return terms

    def share_of_pairs(
        self,
        processes: Processes,
        params: VoidParameters,
        starts: Tensor,
        k: int,
        flip: bool,
        windows: list[Window] | None,
        long_pair: tuple[int, int] | None,
        long_windows: list[Window] | None,
    ) -> dict[str, Tensor]:
        """This process's items of a joint batch — short pairs ``starts`` and the ``long_pair``, shared by their
        simulated frames (:func:`~neuradiff.training.share`) — with each pooled mean weighted by this process's
        share of its denominator: summed over the processes, the terms of the whole batch."""
        cfg = self.config
        ann = self.rec.train_annotations
        costs = [float(cfg.gap)] * len(starts) + ([] if long_pair is None else [float(long_pair[1] - long_pair[0])])
        mine = share(costs, processes.world_size)[processes.rank]
        short = [i for i in mine if i < len(starts)]
        terms: dict[str, Tensor] = {}
        if short:
            known0 = known(cut_batch(ann[starts], windows))
            known1 = known(cut_batch(ann[starts + cfg.gap], windows))
            inside = known1 if windows is None or self.interior is None else known1 & self.interior.expand_as(known1)
            weights = TermWeights(
                sim=fraction(inside.sum(dim=(1, 2)), short),
                start=fraction(known0.sum(dim=(1, 2)), short),
                end=fraction(known1.sum(dim=(1, 2)), short),
                sim_rec=len(short) / len(starts),
            )
            own = None if windows is None else [windows[i] for i in short]
            terms = self.pair_loss(params, starts[short], k, flip, windows=own, weights=weights)
        if long_pair is not None and len(starts) in mine:
            a, b = long_pair
            long = self.pair_loss(params, torch.tensor([a]), k, flip, gap=b - a, windows=long_windows)
            terms = {name: terms[name] + long[name] for name in terms} if terms else long
        return terms

    def simulate_pairs(self, state0: Tensor, params: VoidParameters, starts: Tensor, ends: Tensor) -> Tensor:
        """The states at ``ends`` simulated from ``state0`` at ``starts``: one rollout of the batch when the pairs
        span the same time, else one per pair (uneven frame times: each for its own duration)."""
        cfg = self.config
        durations = self.data.intervals(starts.cpu().numpy(), ends.cpu().numpy())
        runs = [(slice(None), float(durations[0]))]
        if not np.allclose(durations, durations[0], rtol=1e-9, atol=0.0):
            runs = [(slice(i, i + 1), float(d)) for i, d in enumerate(durations)]
        finals = [
            self.simulator.run(
                state0[rows], params, d, checkpoint_every=cfg.bptt_checkpoint, guard_every=self.simulator.steps(1)
            ).final
            for rows, d in runs
        ]
        return finals[0] if len(finals) == 1 else torch.cat(finals)

    def validation_physics(self) -> float:
        """L_sim of the rollouts from the previous training annotation into each held-out annotation."""
        rec = self.rec
        idx = torch.from_numpy(rec.val_frames)
        ann = rec.train_annotations.clone()
        ann[idx] = rec.annotations[idx]
        total = 0.0
        for v in rec.val_frames:
            before = rec.train_frames[rec.train_frames < v]
            if before.size:
                a = int(before[-1])
                rng = batch_rng(self.config.seed, "validation", int(v))  # the same window at every validation
                windows = rec.windows(rng, torch.tensor([int(v)]), ann)
                terms = self.pair_loss(
                    self.params(), torch.tensor([a]), annotations=ann, gap=int(v) - a, windows=windows
                )
                total += float(terms["sim"])
        return total

    # ---- result ----------------------------------------------------------------------------------------
    def fitted(self) -> NeuraDiffModel:
        """The current net and parameters as a fitted model (in eval mode)."""
        self.net.eval()
        with torch.no_grad():
            params = self.params()
            values = VoidParameters.from_mapping(params.as_floats())
        table = parameter_table(
            values,
            initial=self.initial,
            learned=list(self.params.learned),
            bounds=self.params.bounds,
        )
        return NeuraDiffModel(
            self.net,
            values,
            self.simulator,
            {
                "learned": list(self.params.learned),
                "param_table": table,
                "bounds": dict(self.params.bounds),
                "min_contrast": self.rec.contrast_threshold(),
                "start_fields": self.config.start_fields,
                "start_matrix": {"c_v": self.config.c_v_matrix, "c_i": self.config.c_i_matrix},
                "start_frame": int(self.data.annotated_frames()[0]),
            },
        )


def fit_neuradiff(
    data: TrainingData,
    config: FitConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
    init: NeuraDiffModel | None = None,
) -> FitResult[NeuraDiffModel]:
    """Fit NeuraDiff to ``data`` (module docstring); ``result.model`` is a :class:`NeuraDiffModel`.

    Parameters
    ----------
    data : TrainingData
    config : FitConfig
    checkpoint_path : Path, optional
        Checkpoints are written there as the fit goes; with ``resume`` the fit continues from it.
    progress : callable, optional
        ``progress(phase, done, total, row)`` after every iteration.
    device : torch.device, optional
        Where to train (default: the CPU); the returned model stays there.
    init : NeuraDiffModel, optional
        Retrain: start from a copy of this model's net and physical parameters (instead of a fresh net and the
        config's initial guess), e.g. on corrected annotations. Its net is left as it is.

    Examples
    --------
    >>> from neuradiff.synth.datasets import dataset_config, make_dataset
    >>> from neuradiff.training import FitConfig, TrainingData
    >>> ds = make_dataset(dataset_config("single-void", overrides={
    ...     "frames": 6, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 0.5}}))
    >>> data = TrainingData(ds.video.astype("float32"), ds.annotations, 1.0, 1.0, 0.1)
    >>> fit = fit_neuradiff(data, FitConfig(pretrain_iters=2, joint_iters=1, gap=2, batch=1, dt=0.1,
    ...                                     net={"width": 4, "depth": 1}))
    >>> fit.model.forecast(data.frames, 0, 2).eta.shape
    (3, 24, 24)
    >>> sorted(fit.model.info["learned"])[:3]
    ['D_i', 'D_v', 'E_i']
    >>> fit.identifiable is fit.model.identifiable, isinstance(fit.identifiable.statement(), str)
    (True, True)
    """
    config = config.for_annotated_frames(data.annotated_frames().size)
    fit = run_objective(
        NeuraDiffObjective(data, config, init),
        config,
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
        device=device,
    )
    processes = active()
    if (config.uncertainty or config.refine_iters) and (processes is None or processes.main):
        if progress is not None:
            progress("calibrate", 0, 1, {})
        model = calibrate(fit.model, data, config, bounds=fit.model.info.get("bounds"))
        fit = replace(fit, model=model, identifiable=model.identifiable, posterior=model.posterior)
        if progress is not None:
            progress("calibrate", 1, 1, {})
    return fit


def soft_area(eta: np.ndarray) -> np.ndarray:
    """Void area (px) of each frame of ``eta`` ``[T, H, W]``: pixels of eta ≥ 0.6 count 1, ≤ 0.4 count 0, a
    linear ramp between (the count of eta ≥ 0.5, made continuous).

    Examples
    --------
    >>> soft_area(np.array([[[0.0, 0.45, 0.5, 0.9]]])).tolist()
    [1.75]
    """
    return np.clip((eta - 0.5) / 0.2 + 0.5, 0.0, 1.0).sum(axis=(1, 2), dtype=np.float64)


@dataclass
class AreaCurve:
    """The observed void area (px) of frames ``start + 1, ...`` and the state the simulation starts from.

    ``observed[k]`` counts ``eta ≥ 0.5`` of frame ``start + 1 + k`` as recognised, with the annotation overlaid
    where there is one; the simulated area counts ``eta ≥ 0.5`` too, with pixels of eta in [0.4, 0.6] counted
    in proportion (a ramp instead of a step), so that residuals are continuous in the parameters."""

    start: int
    state: Tensor
    observed: np.ndarray

    @classmethod
    def of(cls, model: NeuraDiffModel, data: TrainingData) -> AreaCurve:
        start = int(data.annotated_frames()[0])
        eta = model.recognise(data.frames[start + 1 :], first_index=start + 1, eta_only=True)
        eta = overlay_annotation(eta, data.annotations[start + 1 :])
        return cls(start, model.start_state(data.frames, start, data.annotations[start]), (eta >= 0.5).sum(axis=(1, 2)))

    def residuals(self, model: NeuraDiffModel) -> Any:
        """``{name: value}`` → simulated minus observed area of every frame after ``start`` (px)."""
        n = self.observed.size
        base = model.params

        def residuals(values: Any) -> np.ndarray:
            params = VoidParameters.from_mapping(values, base=base)
            eta = simulate_forward(model.simulator, self.state, params, n).eta[1:]
            return soft_area(eta) - self.observed

        return residuals


def calibrate(
    model: NeuraDiffModel,
    data: TrainingData,
    config: FitConfig,
    *,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> NeuraDiffModel:
    """Refine the learned parameters on the whole video's void-area curve and analyse what it determines (module
    docstring, step 3); returns the model with the refined parameters, ``identifiable`` and ``posterior``.

    Never raises on a fit it cannot analyse: the reasons go into ``identifiable.reasons``.
    """
    names = list(model.info.get("learned", []))
    values = model.params.as_floats()
    if not names:
        return model
    undetermined = dict.fromkeys(names, "not determined")
    if data.frames.shape[0] - int(data.annotated_frames()[0]) < 3:
        return replace(
            model, identifiable=Identifiability(names, [], undetermined, {"*": "fewer than two frames to calibrate on"})
        )
    if resolve_crop(config.crop, *data.frames.shape[1:]) is not None:
        why = "the fit trained on windows of large frames; the calibration runs on whole frames up to 256 px only"
        return replace(model, identifiable=Identifiability(names, [], undetermined, {"*": why}))
    curve = AreaCurve.of(model, data)
    residuals = curve.residuals(model)
    specs = VoidParameters.specs()
    limits = {n: (bounds or {}).get(n, specs[n].bounds) for n in names}
    info = dict(model.info)
    try:
        if config.refine_iters:
            out: Refinement = refine(
                residuals, values, names, iterations=config.refine_iters, step=config.fd_step, bounds=limits
            )
            values, r, jac = out.values, out.residuals, out.jacobian
            info["refinement"] = {"rss_px2": out.rss, "evaluations": out.evaluations, "start_frame": curve.start}
        else:
            r = residuals(values)
            jac = log_jacobian(residuals, values, names, step=config.fd_step, base=r)
    except NeuradiffError as exc:
        ident = Identifiability(names, [], dict.fromkeys(names, "not determined"), {"*": str(exc)})
        return replace(model, identifiable=ident)
    params = VoidParameters.from_mapping(values)
    if "param_table" in info:
        info["param_table"] = {
            k: ({**v, "value": values[k]} if isinstance(v, dict) and k in values else v)
            for k, v in info["param_table"].items()
        }
    ident, post = analyse_curve(residuals, r, jac, names, values, curve.observed, config, bounds=limits)
    if not config.uncertainty:
        ident, post = None, None
    return replace(model, params=params, info=info, identifiable=ident, posterior=post)


#: Resolution of an observed void area (px²): counting pixels rounds it, a uniform error of ±0.5 px².
AREA_RESOLUTION_PX2 = 1 / 12**0.5


def analyse_curve(
    residuals: Any,
    r: np.ndarray,
    jac: np.ndarray,
    names: list[str],
    values: dict[str, float],
    observed: np.ndarray,
    config: FitConfig,
    *,
    bounds: dict[str, tuple[float, float]] | None = None,
) -> tuple[Identifiability, Posterior]:
    """Identifiability and posterior of a void-area curve at the fit's optimum (``r``, ``jac``): the statistical
    intervals (:func:`~neuradiff.methods.posterior.analyse`), widened by what the undetermined parameters do to
    the determined combinations (:func:`~neuradiff.methods.posterior.nuisance_covariance`, ``nuisance_samples``
    draws with ``prior_spread``, each refitted by ``nuisance_steps`` simulations), scaled by ``interval_scale``,
    widened by ``model_discrepancy`` along every direction, and every direction but the best-determined one by
    ``weak_interval_scale``. The draws move along the directions the unscaled
    statistical analysis leaves undetermined."""
    kw: dict[str, Any] = {"unit": "px²", "floor": AREA_RESOLUTION_PX2, "observed": observed}
    ident, post = analyse(r, jac, names, values, **kw)
    nuisance = bool(post.rank and config.nuisance_samples and config.prior_spread > 0)
    widen = {
        "scale": config.interval_scale,
        "discrepancy": config.model_discrepancy,
        "weak_scale": config.weak_interval_scale,
    }
    if not nuisance and (config.interval_scale != 1.0 or config.model_discrepancy > 0 or widen["weak_scale"] > 1):
        ident, post = analyse(r, jac, names, values, **widen, **kw)
    if nuisance:
        extra = nuisance_covariance(
            residuals,
            post,
            jac,
            r,
            spread=config.prior_spread,
            samples=config.nuisance_samples,
            seed=config.seed,
            bounds=bounds,
            steps=config.nuisance_steps,
        )
        ident, post = analyse(r, jac, names, values, extra_covariance=extra, **widen, **kw)
    return ident, post
