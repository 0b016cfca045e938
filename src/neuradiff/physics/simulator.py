"""A learned simulator's numerics as one frozen object: the model, its integrator, the time step and how much
simulation time one video frame spans.

Every fit, forecast and score asks a :class:`Simulator` how many steps ``n`` frames take
(:meth:`Simulator.steps`) and runs it (:meth:`Simulator.run`); nothing else derives a step count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from torch import Tensor

from neuradiff.physics.forcing import Forcing
from neuradiff.physics.integrators import get_integrator
from neuradiff.physics.rollout import Trajectory, rollout
from neuradiff.physics.void_model import VoidModel, VoidParameters


@dataclass(frozen=True)
class Simulator:
    """The void model integrated with a fixed step, and the simulation time between two video frames.

    Parameters
    ----------
    discretisation : {"conservative", "reference"}
        Which :class:`~neuradiff.physics.void_model.VoidModel`.
    integrator : {"euler", "imex", "spectral"}
        Time integrator (the stability guard sub-steps guarded integrators where needed).
    dt : float
        Requested time step (simulation time units); the step actually taken divides the frame span evenly.
    time_per_frame : float
        Simulation time units between two consecutive video frames.
    dx : float
        Grid spacing (simulation length units) of one pixel.
    boundary : {"periodic", "no-flux"}
        Boundary of the simulated field: periodic for simulated periodic boxes, no-flux for a window cut out of a
        larger field of view (a crop of a real recording).
    kernel : {"torch", "fused"}
        How the model's Euler steps are computed (:class:`~neuradiff.physics.void_model.VoidModel`): the plain
        PyTorch path (default) or the fused CPU kernel (faster; equal within round-off; for the reference
        discretisation its explicit step, so with ``integrator="euler"``).

    Examples
    --------
    >>> sim = Simulator(integrator="imex", dt=0.3, time_per_frame=1.2)
    >>> sim.steps(1), sim.steps(3)
    (4, 12)
    >>> round(sim.step_size(3), 12)
    0.3
    """

    discretisation: str = "conservative"
    integrator: str = "imex"
    dt: float = 0.3
    time_per_frame: float = 1.0
    dx: float = 1.0
    boundary: str = "periodic"
    kernel: str = "torch"
    model: VoidModel = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("dt", "time_per_frame", "dx"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        object.__setattr__(self, "model", VoidModel(self.discretisation, boundary=self.boundary, kernel=self.kernel))
        get_integrator(self.integrator).check(self.model)

    def steps(self, n_frames: float) -> int:
        """Number of time steps that span ``n_frames`` frame intervals (at least 1)."""
        return max(1, round(n_frames * self.time_per_frame / self.dt))

    def step_size(self, n_frames: float) -> float:
        """The step length used over ``n_frames`` frame intervals: their span divided evenly into :meth:`steps`."""
        return n_frames * self.time_per_frame / self.steps(n_frames)

    def for_frames(self, time_per_frame: float | None) -> Simulator:
        """This simulator for a video whose frames are ``time_per_frame`` apart (itself when ``None`` or equal)."""
        if time_per_frame is None or time_per_frame == self.time_per_frame:
            return self
        return replace(self, time_per_frame=float(time_per_frame))

    def with_boundary(self, boundary: str) -> Simulator:
        """This simulator with another boundary (itself when it is the same)."""
        return self if boundary == self.boundary else replace(self, boundary=boundary)

    def run(
        self,
        state: Tensor,
        params: VoidParameters,
        n_frames: float,
        *,
        every_frame: bool = False,
        checkpoint_every: int | None = None,
        forcing: Forcing | int | None = None,
        guard_every: int = 1,
        diagnostics: bool = False,
    ) -> Trajectory:
        """Simulate ``state`` (``[batch, 3, H, W]``) ``n_frames`` frame intervals forward (a fractional number
        for uneven frame times, unless ``every_frame``).

        Parameters
        ----------
        every_frame : bool
            Save the state at every frame (the trajectory then holds ``n_frames + 1`` states, the first one
            ``state``); otherwise only the start and the end.
        checkpoint_every : int, optional
            Steps per recomputed segment under autograd (bounds the memory of backpropagation).
        forcing : None, int or Forcing
            Cascades and noise (``None``: deterministic).
        guard_every : int
            Steps between two estimates of the stability limit (training passes ``steps(1)``: once a frame).
        """
        if every_frame:
            if n_frames != int(n_frames):
                raise ValueError(f"every_frame needs a whole number of frames, got {n_frames}")
            per_frame = self.steps(1)
            n_steps, dt, save_every = per_frame * int(n_frames), self.step_size(1), per_frame
        else:
            n_steps, dt, save_every = self.steps(n_frames), self.step_size(n_frames), None
        return rollout(
            self.model,
            state,
            params,
            dt=dt,
            n_steps=n_steps,
            dx=self.dx,
            integrator=self.integrator,
            forcing=forcing,
            save_every=save_every,
            checkpoint_every=checkpoint_every,
            guard_every=guard_every,
            diagnostics=diagnostics,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings as written to ``model.json`` (``physics`` section)."""
        return {
            "model": "void",
            "discretisation": self.discretisation,
            "integrator": self.integrator,
            "dt": self.dt,
            "sim_time_per_frame": self.time_per_frame,
            "steps_per_frame": self.steps(1),
            "dx": self.dx,
            "boundary": self.boundary,
        } | ({"kernel": self.kernel} if self.kernel != "torch" else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Simulator:
        """Inverse of :meth:`to_dict` (``steps_per_frame`` is derived, not read)."""
        return cls(
            discretisation=d.get("discretisation", "conservative"),
            integrator=d.get("integrator", "imex"),
            dt=float(d["dt"]),
            time_per_frame=float(d["sim_time_per_frame"]),
            dx=float(d.get("dx", 1.0)),
            boundary=d.get("boundary", "periodic"),
            kernel=d.get("kernel", "torch"),
        )
