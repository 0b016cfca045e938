"""``neuradiff track``: recognise eta in every frame of a video with a fitted model, threshold it into void
masks, measure the voids and write everything (atomically, into a staged folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.io.video import read_video
from neuradiff.measure.voids import Measurements, measure_masks
from neuradiff.methods import FittedMethod, load_model
from neuradiff.report.measurements import write_measurements
from neuradiff.workflows.placement import place_model


@dataclass
class TrackSummary:
    """Frames tracked, the seconds recognition took and the folder written."""

    n_frames: int
    seconds: float
    out: Path

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / max(self.seconds, 1e-9)


def recognise_video(
    fitted: FittedMethod,
    frames: np.ndarray,
    *,
    batch: int = 1,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> tuple[np.ndarray, float]:
    """Eta ``[T, H, W]`` (float32) of every frame and the seconds recognition took.

    Parameters
    ----------
    fitted : FittedMethod
        A model that tracks (``can_track``); its nets are moved to ``device``.
    frames : ndarray
        ``[T, H, W]`` raw intensities.
    batch : int
        Frames per inference batch (1 is fastest on a few CPU cores).
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` (see :func:`~neuradiff.core.devices.resolve_device`).
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    if not fitted.can_track:
        raise NeuradiffError(f"a {fitted.method} model does not track")
    place_model(fitted, device)
    frames = np.asarray(frames, dtype=np.float32)
    n = frames.shape[0]
    chunks = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        chunks.append(fitted.recognise(frames[i : i + batch], first_index=i, eta_only=True, batch=batch))
        progress("tracking", min(i + batch, n), n)
    eta = np.concatenate(chunks).astype(np.float32)
    return eta, time.perf_counter() - t0


def masks_of(eta: np.ndarray) -> np.ndarray:
    """Void masks (uint8, 1 where eta ≥ 0.5) of recognised eta maps."""
    return (np.asarray(eta) >= 0.5).astype(np.uint8)


def write_track(
    out: str | Path,
    eta: np.ndarray,
    masks: np.ndarray,
    measurements: Measurements | None,
    video_frames: np.ndarray | None,
) -> Path:
    """Write ``eta.tif``, ``masks.tif`` and, with ``measurements``, the void tables, plots and overlay into ``out``
    (files appear only when everything has been written)."""
    with staged_output(out) as stage:
        with atomic_path(stage / "eta.tif") as tmp:
            tifffile.imwrite(tmp, eta)
        with atomic_path(stage / "masks.tif") as tmp:
            tifffile.imwrite(tmp, masks, imagej=True)
        if measurements is not None:
            write_measurements(measurements, stage, video_frames=video_frames, masks=masks)
    return Path(out)


def run_track(
    video: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    batch: int = 1,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    measure: bool = True,
    device: str | torch.device | None = "cpu",
    progress: ProgressSink = no_progress,
) -> TrackSummary:
    """Write ``eta.tif`` (float), ``masks.tif`` (eta ≥ 0.5) and, with ``measure``, the void measurements.

    Parameters
    ----------
    video : path
        Any readable recording.
    model : path
        A model folder written by ``neuradiff fit`` (any method that tracks).
    out : path
        Output folder (files appear only when everything has been computed).
    batch : int
        Frames per inference batch (1 is fastest on a few CPU cores).
    nm_per_px, frame_interval_s : float, optional
        Override the recording's calibration.
    device : str or torch.device
        Where the net runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``).
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    fitted = load_model(model)
    if not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    place_model(fitted, device)
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    eta, seconds = recognise_video(fitted, vid.frames, batch=batch, device=device, progress=progress)
    masks = masks_of(eta)
    meas = measure_masks(masks, calibration=vid.calibration) if measure else None
    write_track(out, eta, masks, meas, vid.frames)
    return TrackSummary(eta.shape[0], seconds, Path(out))
