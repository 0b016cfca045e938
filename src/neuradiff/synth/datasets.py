"""Synthetic in-situ TEM datasets whose physics is known: simulate, render, annotate, write.

A dataset folder holds ``video.tif`` (frames with ImageJ calibration), ``annotations.tif`` (0 solid,
1 void, 255 unknown), ``truth.npz`` (true c_v, c_i, eta of every frame, aligned with the video, and the
true parameters), ``dataset.json`` (everything needed to reproduce it) and ``contact_sheet.png``.

Calibration: one simulation length unit (dx) is ``nm_per_px`` nm and one frame is ``frame_interval_s``
seconds, i.e. one simulation time unit is ``frame_interval_s / (steps_per_frame · dt)`` s.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pydantic
import tifffile
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.measure import find_contours

from neuradiff._version import __version__
from neuradiff.core.checks import check_frame_interval, check_pixel_size
from neuradiff.core.config import (
    SettingsError,
    describe_validation_error,
    merge_config,
    settings_class,
    settings_schema,
)
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, write_json, write_npz
from neuradiff.core.labels import LABEL_NAMES, known
from neuradiff.io.stacks import write_stack
from neuradiff.io.video import Calibration
from neuradiff.synth.annotate import AnnotationSettings, annotate
from neuradiff.synth.render import RenderSettings, render_video, shift_like
from neuradiff.synth.simulation import SimulationConfig, run_simulation

#: Scenario defaults (any key can be overridden by a config file or the command line).
SCENARIOS: dict[str, dict[str, Any]] = {
    "single-void": {
        "description": "one void that shrinks under irradiation (the paper's Figure 4)",
        "simulation": {"initial": "single-disk", "size": 96},
        "frames": 60,
        "steps_per_frame": 60,
        "min_size": 24,
    },
    "multi-void": {
        "description": "several voids of different sizes (the paper's transfer test, Figure 6)",
        "simulation": {"initial": "several-disks", "size": 128, "n_voids": 4},
        "frames": 60,
        "steps_per_frame": 60,
        "min_size": 48,
    },
    "nucleation": {
        "description": "a vacancy-supersaturated matrix under irradiation in which voids appear and grow",
        # Paper parameters except stronger cascades and gradient energies of 4 (rounder nuclei).
        "simulation": {
            "initial": "uniform",
            "size": 96,
            "c_v": 0.38,
            "params": {"p_casc": 0.02, "V_g": 0.5, "kappa_eta": 4.0, "kappa_v": 4.0},
        },
        "frames": 60,
        "steps_per_frame": 20,
        "min_size": 32,
    },
}


#: Bytes per pixel and frame a dataset holds while it is made and written, besides the simulation's saved states
#: (aligned truth, rendered video and its float intermediates, the compressed truth file): an upper estimate.
DATASET_BYTES_PER_PX = 64


@settings_class("dataset")
class DatasetConfig:
    """Everything that defines a synthetic dataset (see :data:`SCENARIOS` for the defaults); types and ranges
    are checked on construction."""

    scenario: str = "single-void"
    seed: Annotated[int, pydantic.Field(ge=0)] = 0
    frames: Annotated[int, pydantic.Field(ge=1)] = 60
    steps_per_frame: Annotated[int, pydantic.Field(ge=1)] = 60
    nm_per_px: Annotated[float, pydantic.Field(gt=0)] = 1.0
    frame_interval_s: Annotated[float, pydantic.Field(gt=0)] = 1.0
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    render: RenderSettings = field(default_factory=RenderSettings)
    annotations: AnnotationSettings = field(default_factory=AnnotationSettings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "frames": self.frames,
            "steps_per_frame": self.steps_per_frame,
            "nm_per_px": self.nm_per_px,
            "frame_interval_s": self.frame_interval_s,
            "simulation": self.simulation.to_dict(),
            "render": self.render.to_dict(),
            "annotations": self.annotations.to_dict(),
        }

    @property
    def simulated_frames(self) -> int:
        """Saved simulation states needed (the reference renderer's 19-frame average uses 18 more)."""
        return self.frames + (18 if self.render.mode == "reference" else 0)


#: Keys of a ``neuradiff simulate --config`` file (a top-level ``parameters`` table overrides
#: ``simulation.params``).
DATASET_KEYS = (
    "seed",
    "frames",
    "steps_per_frame",
    "nm_per_px",
    "frame_interval_s",
    "simulation",
    "render",
    "annotations",
    "parameters",
)


def _build(cls, values: Any, what: str):
    if not isinstance(values, dict):
        raise NeuradiffError(f"bad dataset settings: {what} must be a table, got {type(values).__name__}")
    try:
        return cls(**values)
    except SettingsError as exc:
        if exc.validation is None:
            raise
        known = list(cls.__dataclass_fields__)
        raise NeuradiffError(describe_validation_error(exc.validation, "dataset", None, known, section=what)) from None


def dataset_config(
    scenario: str = "single-void",
    *,
    overrides: dict[str, Any] | None = None,
    seed: int | None = None,
    size: int | None = None,
    frames: int | None = None,
) -> DatasetConfig:
    """Resolve a scenario, a config-file dict and command-line values into a validated :class:`DatasetConfig`.

    A wrong type, an unknown key or a value out of range raises one :class:`NeuradiffError` naming the key.

    Examples
    --------
    >>> dataset_config("single-void", overrides={"frames": 10}).frames
    10
    >>> dataset_config("single-void", overrides={"render": {"dose": "high"}})
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: bad dataset settings: render.dose must be a valid number, got 'high' (text)
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = SCENARIOS[scenario]
    values = merge_config({k: v for k, v in spec.items() if k not in ("description", "min_size")}, overrides or {})
    unknown = sorted(set(values) - set(DATASET_KEYS))
    if unknown:
        raise NeuradiffError(f"bad dataset settings: unknown key {unknown[0]!r}; known: {', '.join(DATASET_KEYS)}")
    sim = values.get("simulation", {})
    if not isinstance(sim, dict):
        raise NeuradiffError(f"bad dataset settings: simulation must be a table, got {type(sim).__name__}")
    sim = dict(sim)
    if "parameters" in values:  # a top-level [parameters] table overrides the physical parameters
        if not isinstance(values["parameters"], dict):
            raise NeuradiffError("bad dataset settings: parameters must be a table")
        sim["params"] = {**sim.get("params", {}), **values["parameters"]}
    if size is not None:
        sim["size"] = size
    top = {k: values[k] for k in ("seed", "frames", "steps_per_frame", "nm_per_px", "frame_interval_s") if k in values}
    if seed is not None:
        top["seed"] = seed
    if frames is not None:
        top["frames"] = frames
    sim["seed"] = top.get("seed", 0)
    simulation = _build(SimulationConfig, sim, "simulation")
    render = _build(RenderSettings, values.get("render", {}), "render")
    annotations = _build(AnnotationSettings, values.get("annotations", {}), "annotations")
    try:
        cfg = DatasetConfig(scenario=scenario, simulation=simulation, render=render, annotations=annotations, **top)
    except SettingsError as exc:
        if exc.validation is None:
            raise
        raise NeuradiffError(describe_validation_error(exc.validation, "dataset", None, list(DATASET_KEYS))) from None
    check_pixel_size("nm_per_px", cfg.nm_per_px)
    check_frame_interval("frame_interval_s", cfg.frame_interval_s)
    if cfg.simulation.size < spec["min_size"]:
        raise NeuradiffError(
            f"size {cfg.simulation.size} px is too small for scenario {scenario!r}; use at least {spec['min_size']}"
        )
    cfg.simulation.steps = cfg.steps_per_frame * (cfg.simulated_frames - 1)
    cfg.simulation.save_every = cfg.steps_per_frame
    try:
        cfg.simulation.validate()
    except ValueError as exc:
        raise NeuradiffError(f"bad dataset settings: simulation: {str(exc).splitlines()[0]}") from None
    # the aligned truth, the rendered video and its float intermediates and the compressed truth file per frame
    cfg.simulation.check_resources("simulate", extra_bytes_per_state=DATASET_BYTES_PER_PX * cfg.simulation.size**2)
    return cfg


def dataset_schema() -> dict[str, Any]:
    """JSON schema of a ``neuradiff simulate --config`` file (every key optional; the scenario gives defaults)."""
    schema = settings_schema(
        DatasetConfig,
        "neuradiff simulate --config",
        "Settings of a synthetic dataset; every key is optional and overrides the scenario's defaults. "
        "simulation.steps and simulation.save_every are derived from frames and steps_per_frame.",
    )
    props = schema["properties"]
    props.pop("scenario", None)
    props["parameters"] = {
        "type": "object",
        "additionalProperties": {"type": "number"},
        "description": "physical parameters of the void model (E_v, kBT, ...), as simulation.params",
    }
    return schema


def time_per_frame(metadata: dict[str, Any]) -> float:
    """Simulation time between two frames of a synthetic dataset, from its ``dataset.json``."""
    return float(metadata["steps_per_frame"]) * float(metadata["dt"])


@dataclass
class Dataset:
    """A synthetic dataset in memory (frames ``[T, H, W]``, truth aligned with the frames)."""

    config: DatasetConfig
    video: np.ndarray
    annotations: np.ndarray
    annotated_frames: np.ndarray
    truth: dict[str, np.ndarray]
    render_info: dict[str, Any]
    annotation_info: dict[str, Any]
    metadata: dict[str, Any]


def make_dataset(config: DatasetConfig, *, progress: Callable[[int], None] | None = None) -> Dataset:
    """Simulate, render and annotate ``config`` (deterministic for a given config and seed).

    Examples
    --------
    >>> cfg = dataset_config("single-void", overrides={"frames": 4, "steps_per_frame": 5, "simulation": {"size": 24}})
    >>> ds = make_dataset(cfg)
    >>> ds.video.shape, ds.video.dtype.name, sorted(ds.truth)[:3]
    ((4, 24, 24), 'uint8', ['c_i', 'c_v', 'drift_px'])
    """
    sim = run_simulation(config.simulation, progress=progress)
    fields = sim.fields  # [T_sim, 3, H, W]
    c_v, c_i, eta = (np.ascontiguousarray(fields[:, k]) for k in range(3))
    video, rinfo = render_video(np.clip(eta, 0.0, 1.0), c_v=c_v, c_i=c_i, settings=config.render, seed=config.seed)
    off, crop = int(rinfo.get("frame_offset", 0)), int(rinfo.get("crop", 0))
    drift = np.asarray(rinfo["drift_px"], dtype=np.float64)
    idx = slice(off, off + video.shape[0])
    sl = (idx, slice(crop, eta.shape[1] - crop), slice(crop, eta.shape[2] - crop))
    aligned = {
        name: shift_like(arr[sl], drift).astype(np.float32) for name, arr in (("c_v", c_v), ("c_i", c_i), ("eta", eta))
    }
    aligned["eta"] = np.clip(aligned["eta"], 0.0, 1.0)
    ann, frames_ann, ainfo = annotate(aligned["eta"], settings=config.annotations, seed=config.seed)
    steps = sim.steps[idx]
    cal_time = config.frame_interval_s / (config.steps_per_frame * config.simulation.dt)
    pnames = list(sim.params.names())
    truth = {
        **aligned,
        "step": steps,
        "sim_time": steps * config.simulation.dt,
        "time_s": np.arange(video.shape[0]) * config.frame_interval_s,
        "drift_px": drift,
        "param_names": np.array(pnames),
        "param_values": np.array([sim.params.as_floats()[n] for n in pnames]),
        # the void area as simulated, counted on the simulation's own grid: the drifted truth above is resampled,
        # and resampling the sharp simulated interface at a sub-pixel offset drops up to ~5 % of its pixels
        "void_area_px": (np.clip(eta[sl], 0.0, 1.0) >= 0.5).sum(axis=(1, 2)).astype(np.int64),
    }
    meta = {
        "neuradiff_version": __version__,
        "scenario": config.scenario,
        "description": SCENARIOS[config.scenario]["description"],
        "seed": config.seed,
        "shape": list(video.shape),
        "dtype": str(video.dtype),
        "calibration": {
            "nm_per_px": config.nm_per_px,
            "frame_interval_s": config.frame_interval_s,
            "simulation_time_unit_s": cal_time,
            "simulation_length_unit_nm": config.nm_per_px,
        },
        "steps_per_frame": config.steps_per_frame,
        "dt": config.simulation.dt,
        "first_frame_step": int(steps[0]),
        "model": {
            "name": "void",
            "discretisation": config.simulation.discretisation,
            "integrator": config.simulation.integrator,
            "stochastic": config.simulation.stochastic,
            "generator": config.simulation.generator,
        },
        "parameters": sim.params.describe(),
        "renderer": {
            "settings": config.render.to_dict(),
            "cnr": float(rinfo["cnr"]),
            "frame_offset": off,
            "crop": crop,
        },
        "contrast_to_noise": float(rinfo["cnr"]),
        "annotations": {
            "settings": config.annotations.to_dict(),
            "annotated_frames": [int(k) for k in frames_ann],
            "states": LABEL_NAMES,
            **{k: v for k, v in ainfo.items() if k not in ("settings", "annotated_frames")},
        },
        "truth": {
            "void_area_px_first": int(truth["void_area_px"][0]),
            "void_area_px_last": int(truth["void_area_px"][-1]),
        },
        "simulation": {"clamped_pixels": sim.clamped, "explicit_substeps": sim.substeps},
        "config": config.to_dict(),
    }
    return Dataset(config, video, ann, np.asarray(frames_ann), truth, rinfo, ainfo, meta)


def write_dataset(ds: Dataset, folder: Path) -> None:
    """Write a dataset's files into ``folder`` (use a staging folder for all-or-nothing output)."""
    cal = ds.config
    calibration = Calibration(nm_per_px=cal.nm_per_px, frame_interval_s=cal.frame_interval_s, source="dataset")
    write_stack(folder / "video.tif", ds.video, calibration)
    if ds.annotations.dtype == np.uint8:
        write_stack(folder / "annotations.tif", ds.annotations, calibration)
    else:  # continuous annotations (NaN = unknown)
        with atomic_path(folder / "annotations.tif") as tmp:
            tifffile.imwrite(tmp, ds.annotations.astype(np.float32))
    write_npz(folder / "truth.npz", **ds.truth)
    write_json(folder / "dataset.json", ds.metadata)
    contact_sheet(ds, folder / "contact_sheet.png")


def contact_sheet(ds: Dataset, path: Path) -> None:
    """First, middle and last frame with the true void outline (red) and annotation outlines (cyan)."""
    t = ds.video.shape[0]
    picks = sorted({0, t // 2, t - 1})
    annotated = {int(k) for k in ds.annotated_frames}
    fig = Figure(figsize=(4.2 * len(picks), 4.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(picks), squeeze=False)
    cal = ds.config
    h, w = ds.video.shape[1:]
    for ax, k in zip(axes[0], picks):
        ax.imshow(ds.video[k], cmap="gray", extent=(0, w * cal.nm_per_px, h * cal.nm_per_px, 0))
        for c in find_contours(ds.truth["eta"][k], 0.5):
            ax.plot(c[:, 1] * cal.nm_per_px, c[:, 0] * cal.nm_per_px, color="red", lw=1.0)
        if k in annotated:
            a = ds.annotations[k]
            void = ((a == 1) if a.dtype == np.uint8 else (np.nan_to_num(a) >= 0.5)).astype(float)
            for c in find_contours(np.where(known(a), void, 0.0), 0.5):
                ax.plot(c[:, 1] * cal.nm_per_px, c[:, 0] * cal.nm_per_px, color="cyan", lw=1.0, ls="--")
        ax.set_title(
            f"frame {k}  (t = {k * cal.frame_interval_s:g} s){'  annotated' if k in annotated else ''}", fontsize=10
        )
        ax.set_xlabel("x (nm)")
        ax.set_ylabel("y (nm)")
    fig.suptitle(
        f"{ds.config.scenario}: red = true void outline (eta = 0.5), cyan dashed = annotation; "
        f"CNR {ds.render_info['cnr']:.1f}",
        fontsize=10,
    )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})


def read_dataset(folder: str | Path) -> Dataset:
    """A dataset folder written by :func:`write_dataset` back in memory (arrays as written, the config rebuilt
    from ``dataset.json``); one clear :class:`NeuradiffError` if it is incomplete or damaged."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "dataset.json").read_text())
        config_dict = dict(meta["config"])
        scenario = config_dict.pop("scenario")
        config = dataset_config(scenario, overrides=config_dict)
        video = tifffile.imread(folder / "video.tif")
        annotations = tifffile.imread(folder / "annotations.tif")
        with np.load(folder / "truth.npz", allow_pickle=False) as z:
            truth = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeuradiffError(f"{folder} is not a readable neuradiff dataset ({type(exc).__name__}: {exc})") from None
    frames_ann = np.asarray(meta["annotations"]["annotated_frames"], dtype=np.int64)
    render_info = {
        "cnr": meta["contrast_to_noise"],
        "drift_px": truth["drift_px"],
        "frame_offset": meta["renderer"]["frame_offset"],
        "crop": meta["renderer"]["crop"],
    }
    annotation_info = {k: v for k, v in meta["annotations"].items() if k not in ("settings", "states")}
    return Dataset(config, video, annotations, frames_ann, truth, render_info, annotation_info, meta)
