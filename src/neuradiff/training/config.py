"""Settings of a fit from a partially annotated video (``neuradiff fit``), shared by every method that learns
from annotations (NeuraDiff, the supervised net, the physics-only and the residual fits)."""

from __future__ import annotations

import math
from dataclasses import asdict, field, replace
from typing import Annotated, Any, Literal

from pydantic import Field

from neuradiff.core.checks import check_memory, check_work
from neuradiff.core.config import settings_class
from neuradiff.nets import NetConfig
from neuradiff.physics import Simulator, VoidParameters

#: Cost of one net pass (forward and backward) per pixel, in phase-field cell updates: a rough upper estimate.
NET_CELL_UPDATES = 50

#: Generic starting guess of the learned parameters (deliberately not the synthetic ground truth).
INITIAL_GUESS = {
    "E_v": 6.0,
    "E_i": 6.0,
    "kBT": 4.0,
    "kappa_v": 0.7,
    "kappa_i": 0.7,
    "kappa_eta": 1.5,
    "D_v": 0.7,
    "D_i": 0.7,
    "L": 2.0,
}

#: The net's pretraining learning rate from random weights.
SCRATCH_LR_NET = 2e-3
#: The net's pretraining learning rate from the generalist: a smaller step keeps more of what it knows. Chosen on eight
#: few-shot development recordings (corpus seeds 1 350 000–1 350 007, visible-void F1 with 1 / 3 annotated frames):
#: 2e-3 gave 0.786 / 0.776 (masks 13–16 % too small on the harder recordings with three frames), 1e-3 0.799 / 0.838,
#: 5e-4 0.758 / 0.832.
GENERALIST_LR_NET = 1e-3

#: Pretraining iterations per annotated frame of a net that starts from the generalist, when ``pretrain_iters`` is not
#: set, counted up to :data:`PRETRAIN_FRAMES_COUNTED` frames (150, 300 or 450); a net from random weights takes this
#: many whatever the frames. Chosen on few-shot development recordings (corpus seeds 1 350 000+, visible-void F1
#: pooled, 150 / 450 iterations): with three annotated frames 0.826 / 0.838 at 256² and 0.801 / 0.833 at 1024², with
#: one 0.776 / 0.765 and 0.786 / 0.773. One frame is learned by heart sooner than three.
PRETRAIN_ITERS_PER_FRAME = 150
#: The most annotated frames :data:`PRETRAIN_ITERS_PER_FRAME` is counted for.
PRETRAIN_FRAMES_COUNTED = 3


PositiveInt = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Weight = Annotated[float, Field(ge=0)]
SiteFraction = Annotated[float, Field(gt=0, lt=1)]


@settings_class("fit")
class FitConfig:
    """Settings of ``neuradiff fit``; every field can come from a config file (``{"fit": {...}}``).

    Types and ranges are checked on construction (pydantic): an unknown key, a wrong type or a value out of
    range raises a ``ValueError`` naming the key; ``docs/schemas/fit.schema.json`` is the JSON schema of the file.
    The losses and phases are described in :mod:`neuradiff.methods.neuradiff`.
    """

    seed: Count = 0
    #: :class:`~neuradiff.nets.NetConfig` overrides (stride: default_stride of the frames)
    net: dict[str, Any] = field(default_factory=dict)
    #: the recognition net's start: "generalist" (the shipped generalist void recogniser's architecture and
    #: weights, its batch norms folded into the convolutions, frames mapped as it sees them; ``net`` must then be
    #: empty), "scratch" (random weights, ``net``'s architecture) or "auto" (generalist unless ``net`` is given)
    init: Literal["auto", "generalist", "scratch"] = "auto"
    #: grey levels the recognition net reads: "per-frame" (each frame mapped by its own 1st and 99th
    #: percentiles, so that a recording that darkens or brightens over minutes reaches the net at one
    #: brightness) or "recording" (one linear mapping for the whole video)
    levels: Literal["per-frame", "recording"] = "per-frame"
    discretisation: Literal["conservative", "reference"] = "conservative"
    integrator: Literal["euler", "imex", "spectral"] = "imex"
    #: learner's time step (simulation time units; the guard sub-steps when needed)
    dt: PositiveFloat = 0.3
    #: simulation time between frames; default: from dataset.json beside the video, else 1.0
    sim_time_per_frame: PositiveFloat | None = None
    #: names of the learned parameters; default: the paper's nine
    learn: list[str] | None = None
    initial_params: dict[str, float] = field(default_factory=lambda: dict(INITIAL_GUESS))
    fixed_params: dict[str, float] = field(default_factory=dict)
    #: frames between the two frames of a short (consistency) pair
    gap: PositiveInt = 3
    #: longest pair between consecutive annotated frames
    max_gap: PositiveInt = 12
    batch: PositiveInt = 2
    #: the net's pretraining iterations; default: from the generalist :data:`PRETRAIN_ITERS_PER_FRAME` per annotated
    #: frame, for at most :data:`PRETRAIN_FRAMES_COUNTED` frames; from random weights 150
    #: (:meth:`pretraining_iterations`)
    pretrain_iters: Count | None = None
    joint_iters: Count = 50
    #: the net's learning rate in pretraining; default: :data:`SCRATCH_LR_NET` from random weights,
    #: :data:`GENERALIST_LR_NET` from the generalist (see :meth:`net_learning_rate`)
    lr_net: PositiveFloat | None = None
    lr_net_joint: PositiveFloat = 5e-4
    lr_phys: PositiveFloat = 0.02
    #: terms that move the physical parameters: "total" (L) or "sim" (L_sim only)
    physics_loss: Literal["total", "sim"] = "total"
    lambda_rec: Weight = 1.0
    lambda_sim_rec: Weight = 0.1
    prior_weight: Weight = 1.0
    #: weight of void pixels in the BCE (raise it for sparse voids, e.g. 3)
    void_weight: PositiveFloat = 1.0
    c_v_matrix: SiteFraction = 0.122
    c_i_matrix: SiteFraction = 6.9e-4
    #: c_v and c_i of the state the calibration and the forecasts start from: "matrix" (at the first annotated
    #: frame, c_v 1 in the recognised voids and ``c_v_matrix`` in the solid, c_i ``c_i_matrix``: the physics-only
    #: baseline's start; at a later frame, the fields the physics reaches from there, carried onto the voids seen)
    #: or "recognised" (the recognition net's latent fields, which no pixel of the video shows: fitted parameters
    #: then lean on them, and on another recording the net reads them differently)
    start_fields: Literal["matrix", "recognised"] = "matrix"
    c_i_scale: PositiveFloat = 1e-3
    eval_every: PositiveInt = 10
    checkpoint_every: PositiveInt = 25
    bptt_checkpoint: PositiveInt | None = 10
    augment: bool = True
    #: training window side (px); default: whole frames up to 256 px, else 256
    crop: Annotated[int, Field(ge=16)] | None = None
    #: px along a window's edge left out of the physics losses
    crop_margin: Count = 8
    #: of the learned simulator: "periodic", "no-flux", or "auto" (no-flux when cropping)
    boundary: Literal["auto", "periodic", "no-flux"] = "auto"
    #: the simulator's Euler steps: "fused" (compiled CPU kernel, several times faster), "torch" (plain PyTorch)
    #: or "auto" (fused: both discretisations have it; where it does not apply, e.g. on a GPU, the plain path runs)
    kernel: Literal["auto", "torch", "fused"] = "auto"
    #: Levenberg-Marquardt steps on the whole video's void-area curve after joint training
    refine_iters: Count = 6
    #: identifiability and Laplace posterior at the optimum (methods.posterior)
    uncertainty: bool = True
    #: finite-difference step in ln(parameter) of the Jacobian
    fd_step: PositiveFloat = 0.05
    #: prior standard deviation of ln(parameter) of the parameters the video does not determine, around their
    #: fitted values: the intervals of the determined combinations include what these uncertain values do to them
    prior_spread: Weight = 1.0
    #: simulations that draw the undetermined parameters from that prior (0: intervals without them)
    nuisance_samples: Count = 8
    #: Gauss-Newton steps that refit the determined combinations to each of those draws (one simulation each)
    nuisance_steps: PositiveInt = 4
    #: factor on the standard deviations of the determined combinations (statistical and nuisance parts
    #: together), calibrated by the coverage study (benchmarks/bench_coverage.py); 1: the analytic intervals
    interval_scale: PositiveFloat = 2.5
    #: standard deviation of ln θ added along every direction for what the model gets wrong (its
    #: time step, the noise it leaves out), calibrated by the same study: no combination is claimed to better than
    #: that (0: the intervals of the data alone)
    model_discrepancy: Weight = 0.04
    #: factor on the standard deviations of every determined direction but the best one, after the two above,
    #: calibrated by the same study (the weaker combinations carry more of the model's error); 1: none
    weak_interval_scale: Annotated[float, Field(ge=1)] = 4.0

    def net_learning_rate(self) -> float:
        """The pretraining learning rate of the net: ``lr_net``, or by default :data:`GENERALIST_LR_NET` when the net
        starts from the generalist (fine-tuning) and :data:`SCRATCH_LR_NET` from random weights."""
        if self.lr_net is not None:
            return self.lr_net
        return GENERALIST_LR_NET if self.starts_from_generalist() else SCRATCH_LR_NET

    def pretraining_iterations(self, annotated_frames: int | None = None) -> int:
        """The net's pretraining iterations: ``pretrain_iters``, or by default, for a net that starts from the
        generalist, :data:`PRETRAIN_ITERS_PER_FRAME` for each of the video's ``annotated_frames`` (frames with at
        least one annotated pixel), counting at most :data:`PRETRAIN_FRAMES_COUNTED` (unknown, ``None``: the most
        this gives), and for a net from random weights :data:`PRETRAIN_ITERS_PER_FRAME`.

        Examples
        --------
        >>> FitConfig().pretraining_iterations(1), FitConfig().pretraining_iterations(6)
        (150, 450)
        >>> FitConfig(init="scratch").pretraining_iterations(6), FitConfig(pretrain_iters=40).pretraining_iterations(6)
        (150, 40)
        """
        if self.pretrain_iters is not None:
            return self.pretrain_iters
        if not self.starts_from_generalist():
            return PRETRAIN_ITERS_PER_FRAME
        counted = PRETRAIN_FRAMES_COUNTED if annotated_frames is None else annotated_frames
        return PRETRAIN_ITERS_PER_FRAME * min(max(counted, 1), PRETRAIN_FRAMES_COUNTED)

    def for_annotated_frames(self, annotated_frames: int) -> FitConfig:
        """These settings with ``pretrain_iters`` set for a video of ``annotated_frames`` annotated frames (see
        :meth:`pretraining_iterations`); unchanged when it is set already.

        Examples
        --------
        >>> FitConfig().for_annotated_frames(2).pretrain_iters
        300
        """
        if self.pretrain_iters is not None:
            return self
        return replace(self, pretrain_iters=self.pretraining_iterations(annotated_frames))

    def starts_from_generalist(self) -> bool:
        """Whether the recognition net starts from the generalist (``init``, with ``"auto"`` resolved)."""
        return self.init == "generalist" or (self.init == "auto" and not self.net)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting that depends on others (types and ranges of single
        settings are checked on construction)."""
        if self.crop is not None and not 0 <= self.crop_margin <= self.crop // 4:
            raise ValueError(f"crop_margin must be in [0, crop/4], got {self.crop_margin} for crop {self.crop}")
        if self.learn is not None:
            unknown = [n for n in self.learn if n not in VoidParameters.specs()]
            if unknown:
                raise ValueError(f"learn: unknown parameter {unknown[0]!r}; known: {', '.join(VoidParameters.specs())}")
        if self.net:
            if "level" in self.net:
                raise ValueError("net: 'level' is set by the fit's levels setting ('per-frame' or 'recording')")
            if self.init == "generalist":
                raise ValueError("net: a fit that starts from the generalist takes its architecture; leave net empty")
            NetConfig.from_dict(self.net)
        self.simulator(1.0)  # raises on an unknown discretisation or integrator, or a bad dt
        for name in ("initial_params", "fixed_params"):
            unknown = [k for k in getattr(self, name) if k not in VoidParameters.specs()]
            if unknown:
                raise ValueError(
                    f"{name}: unknown parameter {unknown[0]!r}; known: {', '.join(VoidParameters.specs())}"
                )
        self.initial_parameters()

    def check_resources(self, n_frames: int, height: int, width: int, time_per_frame: float) -> None:
        """Refuse a fit whose memory or computation, estimated from the settings and the video's size, is over
        the limits of :mod:`neuradiff.core.checks` (before anything is written).

        The computation is counted in cell updates: :data:`NET_CELL_UPDATES` per pixel of a training window and
        net pass, plus the simulated steps of the joint phase (``max_gap`` frames of ``time_per_frame / dt``
        steps per batch item).
        """
        net = NetConfig.from_dict(self.net)
        side = self.crop if self.crop is not None else (256 if max(height, width) > 256 else max(height, width))
        window = float(min(height, side)) * float(min(width, side))
        check_memory(
            "this fit",
            net.training_bytes(self.batch, min(height, side), min(width, side)),
            f"batch {self.batch} of {min(width, side)}×{min(height, side)} px windows",
        )
        steps = math.ceil(time_per_frame / self.dt) * min(self.max_gap, max(n_frames - 1, 1))
        pretrain = self.pretraining_iterations()
        work = (
            float(self.batch) * window * ((pretrain + self.joint_iters) * NET_CELL_UPDATES + self.joint_iters * steps)
        )
        check_work(
            "this fit",
            work,
            f"{pretrain} + {self.joint_iters} iterations of batch {self.batch} on "
            f"{min(width, side)}×{min(height, side)} px",
        )

    def simulator(self, time_per_frame: float, *, cropped: bool = False) -> Simulator:
        """The learner's :class:`~neuradiff.physics.Simulator` for frames ``time_per_frame`` apart (no-flux walls
        when training on crops and ``boundary`` is ``"auto"``)."""
        boundary = ("no-flux" if cropped else "periodic") if self.boundary == "auto" else self.boundary
        return Simulator(
            discretisation=self.discretisation,
            integrator=self.integrator,
            dt=self.dt,
            time_per_frame=time_per_frame,
            boundary=boundary,
            kernel=self.kernel_name(),
        )

    def kernel_name(self) -> str:
        """The simulator kernel this fit uses: ``kernel``, with ``"auto"`` resolved to ``"fused"`` (the conservative
        discretisation's explicit and IMEX steps and the reference one's explicit step have the compiled kernel)."""
        return "fused" if self.kernel == "auto" else self.kernel

    def initial_parameters(self) -> VoidParameters:
        """The starting guess with the fixed parameters applied."""
        return VoidParameters.from_mapping({**self.initial_params, **self.fixed_params})

    def learned_names(self) -> list[str]:
        """The parameters this fit learns (the paper's nine unless ``learn`` says otherwise), minus the fixed ones."""
        names = list(self.learn) if self.learn is not None else list(VoidParameters.default_learned())
        return [n for n in names if n not in self.fixed_params]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
