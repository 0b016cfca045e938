"""Settings of a fit from a partially annotated video (``neuradiff fit``), shared by every method that learns
from annotations (NeuraDiff, the supervised net, the physics-only and the residual fits)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from neuradiff.core.checks import check_memory, check_work
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


@dataclass
class FitConfig:
    """Settings of ``neuradiff fit``; every field can come from a config file (``{"fit": {...}}``).

    The losses and phases are described in :mod:`neuradiff.methods.neuradiff`.
    """

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
    crop: int | None = None  # training window side (px); default: whole frames up to 256 px, else 256
    crop_margin: int = 8  # px along a window's edge left out of the physics losses
    boundary: str = "auto"  # of the learned simulator: "periodic", "no-flux", or "auto" (no-flux when cropping)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        for name in ("gap", "batch", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_iters", "joint_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("dt", "lr_net", "lr_net_joint", "lr_phys", "c_i_scale", "void_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.crop is not None and self.crop < 16:
            raise ValueError(f"crop must be at least 16 px, got {self.crop}")
        if self.crop is not None and not 0 <= self.crop_margin <= self.crop // 4:
            raise ValueError(f"crop_margin must be in [0, crop/4], got {self.crop_margin} for crop {self.crop}")
        if self.boundary not in ("auto", "periodic", "no-flux"):
            raise ValueError(f"boundary must be 'auto', 'periodic' or 'no-flux', got {self.boundary!r}")
        if self.physics_loss not in ("total", "sim"):
            raise ValueError(f"physics_loss must be 'total' or 'sim', got {self.physics_loss!r}")
        if self.sim_time_per_frame is not None and not self.sim_time_per_frame > 0:
            raise ValueError(f"sim_time_per_frame must be positive, got {self.sim_time_per_frame}")
        if self.net:
            NetConfig.from_dict(self.net)
        self.simulator(1.0)  # raises on an unknown discretisation or integrator, or a bad dt
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
        work = (
            float(self.batch)
            * window
            * ((self.pretrain_iters + self.joint_iters) * NET_CELL_UPDATES + self.joint_iters * steps)
        )
        check_work(
            "this fit",
            work,
            f"{self.pretrain_iters} + {self.joint_iters} iterations of batch {self.batch} on "
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
        )

    def initial_parameters(self) -> VoidParameters:
        """The starting guess with the fixed parameters applied."""
        return VoidParameters.from_mapping({**self.initial_params, **self.fixed_params})

    def learned_names(self) -> list[str]:
        """The parameters this fit learns (the paper's nine unless ``learn`` says otherwise), minus the fixed ones."""
        names = list(self.learn) if self.learn is not None else list(VoidParameters.default_learned())
        return [n for n in names if n not in self.fixed_params]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
