"""``neuradiff demo``, the main job: make the default synthetic video, fit NeuraDiff, track, forecast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from neuradiff.core.devices import resolve_device
from neuradiff.core.files import output_dir
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.synth.datasets import dataset_config
from neuradiff.training import FitConfig
from neuradiff.workflows.fit import FitSummary, read_fit_config, run_fit
from neuradiff.workflows.forecast import ForecastSummary, run_forecast
from neuradiff.workflows.simulate import run_simulate
from neuradiff.workflows.track import TrackSummary, run_track


@dataclass
class DemoSummary:
    """Each stage's summary; ``fit.metrics`` holds the scores against the video's truth."""

    fit: FitSummary
    track: TrackSummary
    forecast: ForecastSummary
    out: Path


def run_demo(
    out: str | Path,
    *,
    seed: int = 0,
    config: str | Path | None = None,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> DemoSummary:
    """Write ``video/`` (the synthetic dataset), ``model/`` (the fit, with ``metrics.json``), ``track/`` and
    ``forecast/`` into ``out``.

    Parameters
    ----------
    seed : int
        Seed of the synthetic video and of the fit.
    config : path, optional
        Fit settings (JSON/TOML); the seed is set by ``seed``.
    device : str or torch.device
        Where the simulation, the fit, the tracking and the forecast run (``"auto"``, ``"cpu"``, ``"cuda"``,
        ``"mps"``).
    """
    resolve_device(device)
    fit_cfg = read_fit_config(config)
    fit_cfg.seed = seed
    video_cfg = dataset_config("single-void", seed=seed)
    size = video_cfg.simulation.size
    fit_cfg.check_resources(video_cfg.frames, size, size, video_cfg.steps_per_frame * video_cfg.simulation.dt)
    with output_dir(out) as root:
        return _demo(root, seed, fit_cfg, device, progress)


def _demo(
    root: Path, seed: int, fit_cfg: FitConfig, device: str | torch.device | None, progress: ProgressSink
) -> DemoSummary:
    video = root / "video"
    ds, _ = run_simulate(
        video,
        scenario="single-void",
        seed=seed,
        device=device,
        progress=lambda _task, done, total, info=None: progress("simulating the video", done, total),
    )
    fit = run_fit(
        video / "video.tif",
        video / "annotations.tif",
        root / "model",
        config=fit_cfg,
        truth_path=video / "truth.npz",
        progress=progress,
        device=device,
    )
    track = run_track(video / "video.tif", root / "model", root / "track", batch=1, device=device, progress=progress)
    forecast = run_forecast(
        root / "model", video / "video.tif", root / "forecast", frame=0, steps=ds.video.shape[0] - 1, device=device
    )
    return DemoSummary(fit, track, forecast, root)
