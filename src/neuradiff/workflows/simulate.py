"""``neuradiff simulate`` and ``neuradiff simulate-fields``: synthetic datasets and raw phase-field runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuradiff.core.config import read_config_file, read_parameter_file, settings_from
from neuradiff.core.files import check_output_dir, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.synth.datasets import Dataset, DatasetConfig, dataset_config, make_dataset, write_dataset
from neuradiff.synth.simulation import SimulationConfig, SimulationResult, run_simulation, write_simulation


def run_simulate(
    out: str | Path,
    *,
    scenario: str = "single-void",
    seed: int = 0,
    size: int | None = None,
    frames: int | None = None,
    config: str | Path | None = None,
    progress: ProgressSink = no_progress,
) -> tuple[Dataset, DatasetConfig]:
    """Simulate, render and annotate a synthetic dataset and write its folder (all files or none)."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    overrides = read_config_file(config) if config is not None else None
    cfg = dataset_config(scenario, overrides=overrides, seed=seed, size=size, frames=frames)
    check_output_dir(out)
    with staged_output(out) as stage:
        ds = make_dataset(cfg, progress=lambda done: progress(f"simulating {scenario}", done, cfg.simulation.steps))
        write_dataset(ds, stage)
        record = provenance(
            "simulate",
            inputs={"config": config},
            settings={"scenario": scenario, "seed": seed, "size": size, "frames": frames, "config": cfg.to_dict()},
            calibration={"nm_per_px": cfg.nm_per_px, "frame_interval_s": cfg.frame_interval_s, "source": "dataset"},
        )
        write_provenance(stage, record)
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
    check_output_dir(out)
    result = run_simulation(config, progress=lambda done: progress("simulating", done, config.steps))
    with staged_output(out) as stage:
        write_simulation(result, stage)
    return result
