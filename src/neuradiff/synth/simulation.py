"""Running the void model from a named initial condition, in chunks, with the results kept on the CPU."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff._version import __version__
from neuradiff.core.checks import check_memory, check_work, torch_device
from neuradiff.core.config import settings_class
from neuradiff.core.files import write_json, write_npz, write_text
from neuradiff.physics import VoidModel, VoidParameters, initial_condition, rollout
from neuradiff.physics.forcing import RandomForcing
from neuradiff.physics.initial import INITIAL_CONDITIONS
from neuradiff.physics.integrators import get_integrator
from neuradiff.physics.random_numbers import GENERATORS

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Fields of the grid's size the model and integrators hold at once while stepping (an upper estimate).
WORKING_FIELDS = 48


@settings_class("simulation")
class SimulationConfig:
    """A void-model run: grid (pixels, dx in simulation length units), time stepping and randomness."""

    initial: str = "single-disk"
    size: int = 128
    radius: float | None = None  # single-disk radius in dx (default size/6.5)
    n_voids: int = 4  # several-disks
    c_v: float = 0.36  # uniform: mean vacancy supersaturation
    steps: int = 2000
    dt: float = 0.02
    dx: float = 1.0
    save_every: int = 100
    discretisation: str = "conservative"
    #: the Euler steps: "torch" (plain PyTorch, the default: datasets of earlier versions bit for bit) or "fused"
    #: (the compiled CPU kernel, several times faster, equal within float32 round-off; for the reference discretisation
    #: its explicit step only)
    kernel: str = "torch"
    integrator: str = "euler"
    guard_every: int = 10  # the stability limit changes slowly along a physical trajectory
    stochastic: bool = True
    seed: int = 0
    #: the random numbers of the cascades and noise: "torch" (torch's generator, the default: datasets of earlier
    #: versions bit for bit) or "philox" (the counter-based Philox4x32-10 drawn by a compiled loop, 2–3 times
    #: faster: another realisation of the same distribution)
    generator: str = "torch"
    dtype: str = "float32"
    device: str = "cpu"
    params: dict[str, float] = field(default_factory=dict)  # overrides of VoidParameters

    def validate(self) -> None:
        if self.size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {self.save_every}")
        if not (self.dt > 0) or not np.isfinite(self.dt):
            raise ValueError(f"dt must be a positive number, got {self.dt}")
        if not (self.dx > 0) or not np.isfinite(self.dx):
            raise ValueError(f"dx must be a positive number, got {self.dx}")
        if self.guard_every < 1:
            raise ValueError(f"guard_every must be >= 1, got {self.guard_every}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.initial not in INITIAL_CONDITIONS:
            raise ValueError(
                f"unknown initial condition {self.initial!r}; choose one of {', '.join(INITIAL_CONDITIONS)}"
            )
        if self.generator not in GENERATORS:
            raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}")
        if self.kernel not in ("torch", "fused"):
            raise ValueError(f"kernel must be 'torch' or 'fused', got {self.kernel!r}")
        get_integrator(self.integrator).check(VoidModel(self.discretisation, kernel=self.kernel))
        self.parameters()  # raises on bad values
        torch_device(self.device)
        self.check_resources()

    def check_resources(self, what: str = "the simulation", extra_bytes_per_state: float = 0.0) -> None:
        """Refuse a run whose memory (saved states and working fields) or number of cell updates is over the
        limits of :func:`~neuradiff.core.checks.check_memory` and :func:`~neuradiff.core.checks.check_work`.

        ``extra_bytes_per_state`` adds what a caller keeps per saved state (e.g. the rendered video).
        """
        cells = float(self.size) ** 2
        n_saved = self.steps // self.save_every + 2
        item = DTYPES[self.dtype].itemsize
        per_state = 3 * cells * item + extra_bytes_per_state
        check_memory(
            what,
            n_saved * per_state + WORKING_FIELDS * cells * item,
            f"{n_saved} saved states of {self.size}×{self.size} px",
        )
        check_work(what, cells * self.steps, f"{self.size}×{self.size} px × {self.steps} steps")

    def parameters(self) -> VoidParameters:
        return VoidParameters.from_mapping(self.params)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimulationResult:
    """Saved fields ``[n_saved, 3, H, W]`` (c_v, c_i, eta; float32 numpy), their steps and diagnostics."""

    fields: np.ndarray
    steps: np.ndarray
    times: np.ndarray
    diagnostics: dict[str, np.ndarray]
    clamped: dict[str, int]
    substeps: int
    config: SimulationConfig
    params: VoidParameters

    def metadata(self) -> dict[str, Any]:
        return {
            "neuradiff_version": __version__,
            "model": "void",
            "config": self.config.to_dict(),
            "parameters": self.params.describe(),
            "units": {
                "length": "grid units (dx); outputs in pixels of size dx",
                "time": "simulation time units (step index × dt)",
                "fields": "site fractions (c_v, c_i) and order parameter eta, dimensionless",
                "energy": "per site, in the units of kBT",
            },
            "seed": self.config.seed,
            "clamped_pixels": self.clamped,
            "explicit_substeps": self.substeps,
            "n_saved": int(self.fields.shape[0]),
        }


def make_initial_state(config: SimulationConfig) -> torch.Tensor:
    shape = (config.size, config.size)
    kw: dict[str, Any] = {}
    if config.initial == "single-disk":
        kw["radius"] = config.radius
    elif config.initial == "several-disks":
        kw["n"] = config.n_voids
    elif config.initial == "uniform":
        kw["c_v"] = config.c_v
    return initial_condition(config.initial, shape, seed=config.seed, dtype=DTYPES[config.dtype], **kw)


def run_simulation(
    config: SimulationConfig, *, state: torch.Tensor | None = None, progress: Callable[[int], None] | None = None
) -> SimulationResult:
    """Run ``config`` (from ``state`` if given, else its named initial condition); ``progress(steps_done)``."""
    config.validate()
    params = config.parameters()
    model = VoidModel(config.discretisation, kernel=config.kernel)
    device = torch.device(config.device)
    s = (make_initial_state(config) if state is None else state).to(device=device, dtype=DTYPES[config.dtype])
    forcing = RandomForcing(config.seed, generator=config.generator) if config.stochastic else None
    saved = [s[0].cpu()]
    steps, diags = [0], [model.diagnostics(s, params, config.dx)]
    clamped = torch.zeros(3, dtype=torch.long)
    substeps = 0
    done = 0
    with torch.no_grad():
        while done < config.steps:
            n = min(config.save_every, config.steps - done)
            tr = rollout(
                model,
                s,
                params,
                dt=config.dt,
                n_steps=n,
                dx=config.dx,
                integrator=config.integrator,
                forcing=forcing,
                start_step=done,
                guard_every=config.guard_every,
                diagnostics=False,
            )
            s = tr.final
            done += n
            saved.append(s[0].cpu())
            steps.append(done)
            diags.append(model.diagnostics(s, params, config.dx))
            assert tr.clamped is not None
            clamped += tr.clamped[0].cpu()
            substeps += tr.substeps
            if progress is not None:
                progress(done)
    fields = torch.stack(saved).to(torch.float32).numpy()
    diagnostics = {k: torch.stack([d[k][0] for d in diags]).cpu().numpy() for k in diags[0]}
    steps_arr = np.asarray(steps, dtype=np.int64)
    return SimulationResult(
        fields=fields,
        steps=steps_arr,
        times=steps_arr * config.dt,
        diagnostics=diagnostics,
        clamped={name: int(c) for name, c in zip(model.field_names, clamped)},
        substeps=substeps,
        config=config,
        params=params,
    )


def write_simulation(result: SimulationResult, out: Path) -> list[Path]:
    """Write ``fields.npz``, ``simulation.json`` and ``diagnostics.csv`` into ``out`` (each atomically)."""
    f = result.fields
    write_npz(out / "fields.npz", c_v=f[:, 0], c_i=f[:, 1], eta=f[:, 2], step=result.steps, time=result.times)
    write_json(out / "simulation.json", result.metadata())
    buf = io.StringIO()
    w = csv.writer(buf)
    names = list(result.diagnostics)
    w.writerow(["step", "time", *names])
    for k, step in enumerate(result.steps):
        w.writerow([int(step), f"{result.times[k]:.6g}", *(f"{result.diagnostics[n][k]:.10g}" for n in names)])
    write_text(out / "diagnostics.csv", buf.getvalue())
    return [out / "fields.npz", out / "simulation.json", out / "diagnostics.csv"]
