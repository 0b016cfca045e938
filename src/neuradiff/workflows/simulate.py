"""``neuradiff simulate`` and ``neuradiff simulate-fields``: synthetic datasets and raw phase-field runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuradiff.core.config import read_config_file, read_parameter_file, settings_from
from neuradiff.core.devices import resolve_device
from neuradiff.core.files import check_output_dir, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.synth.datasets import Dataset, DatasetConfig, dataset_config, make_dataset, write_dataset
from neuradiff.synth.simulation import SimulationConfig, SimulationResult, run_simulation, write_simulation


def simulate_dataset(
    *,
    scenario: str = "single-void",
    seed: int | None = None,
    size: int | None = None,
    frames: int | None = None,
    config: str | Path | dict[str, Any] | None = None,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[Dataset, DatasetConfig]:
    """Simulate, render and annotate a synthetic dataset in memory.

    ``config`` is a settings file (JSON/TOML) or a dict of the same settings; ``device`` is where the phase-field
    simulation runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``). ``seed`` wins over the config's ``seed``
    (default 0).
    """
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    dev = resolve_device(device)
    overrides = read_config_file(config) if isinstance(config, (str, Path)) else config
    cfg = dataset_config(scenario, overrides=overrides, seed=seed, size=size, frames=frames)
    cfg.simulation.device = str(dev)
    ds = make_dataset(cfg, progress=lambda done: progress(f"simulating {scenario}", done, cfg.simulation.steps))
    return ds, cfg


def write_dataset_folder(out: str | Path, ds: Dataset, *, record: dict[str, Any] | None = None) -> Path:
    """Write a dataset's folder (``video.tif``, ``annotations.tif``, ``truth.npz``, ``dataset.json``,
    ``contact_sheet.png`` and, with ``record``, ``provenance.json``), all files or none."""
    with staged_output(out) as stage:
        write_dataset(ds, stage)
        if record is not None:
            write_provenance(stage, record)
    return Path(out)


def run_simulate(
    out: str | Path,
    *,
    scenario: str = "single-void",
    seed: int | None = None,
    size: int | None = None,
    frames: int | None = None,
    config: str | Path | None = None,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[Dataset, DatasetConfig]:
    """Simulate, render and annotate a synthetic dataset and write its folder (all files or none)."""
    check_output_dir(out)
    ds, cfg = simulate_dataset(
        scenario=scenario, seed=seed, size=size, frames=frames, config=config, device=device, progress=progress
    )
    record = provenance(
        "simulate",
        inputs={"config": config},
        settings={"scenario": scenario, "seed": cfg.seed, "size": size, "frames": frames, "config": cfg.to_dict()},
        calibration={"nm_per_px": cfg.nm_per_px, "frame_interval_s": cfg.frame_interval_s, "source": "dataset"},
    )
    write_dataset_folder(out, ds, record=record)
    return ds, cfg


def simulation_config(*, params: str | Path | None = None, **settings: Any) -> SimulationConfig:
    """A validated :class:`SimulationConfig` from keyword settings and an optional parameter file."""
    overrides = read_parameter_file(params) if params is not None else {}
    return settings_from(SimulationConfig, {**settings, "params": overrides}, "simulation")


def run_simulate_fields(
    out: str | Path, config: SimulationConfig, *, progress: ProgressSink = no_progress
) -> SimulationResult:
    """Run the void model from ``config`` and write ``fields.npz``, ``simulation.json``, ``diagnostics.csv``."""
    config.validate()
    config.device = str(resolve_device(config.device))
    check_output_dir(out)
    result = run_simulation(config, progress=lambda done: progress("simulating", done, config.steps))
    with staged_output(out) as stage:
        write_simulation(result, stage)
    return result
