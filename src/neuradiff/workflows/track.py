"""``neuradiff track``: recognise eta in every frame of a video with a fitted model, threshold it into void
masks, measure the voids and write everything (atomically, into a staged folder)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from neuradiff.core.checks import check_memory
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, check_output_dir, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.io.video import read_video
from neuradiff.measure.voids import measure_masks
from neuradiff.methods import load_model
from neuradiff.report.measurements import write_measurements

#: Bytes per pixel and frame tracking holds besides the video: eta (float32), its float copy and the masks.
TRACK_BYTES_PER_PX = 10


@dataclass
class TrackSummary:
    """Frames tracked, the seconds recognition took and the folder written."""

    n_frames: int
    seconds: float
    out: Path

    @property
    def frames_per_second(self) -> float:
        return self.n_frames / max(self.seconds, 1e-9)


def run_track(
    video: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    batch: int = 1,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    measure: bool = True,
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
    """
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    check_output_dir(out)
    fitted = load_model(model)
    if not fitted.can_track:
        raise NeuradiffError(f"{model} holds a {fitted.method} model, which does not track")
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    frames = vid.frames
    n = frames.shape[0]
    check_memory("tracking", n * float(frames[0].size) * TRACK_BYTES_PER_PX, f"{n} frames of {frames[0].size} px")
    chunks = []
    t0 = time.perf_counter()
    for i in range(0, n, batch):  # a float32 copy of one batch at a time, not of the whole recording
        chunk = frames[i : i + batch].astype(np.float32)
        chunks.append(fitted.recognise(chunk, first_index=i, eta_only=True, batch=batch))
        progress("tracking", min(i + batch, n), n)
    eta = np.concatenate(chunks).astype(np.float32)
    seconds = time.perf_counter() - t0
    masks = (eta >= 0.5).astype(np.uint8)
    with staged_output(out) as stage:
        with atomic_path(stage / "eta.tif") as tmp:
            tifffile.imwrite(tmp, eta)
        with atomic_path(stage / "masks.tif") as tmp:
            tifffile.imwrite(tmp, masks, imagej=True)
        if measure:
            meas = measure_masks(masks, calibration=vid.calibration)
            write_measurements(meas, stage, video_frames=vid.frames, masks=masks)
    return TrackSummary(n, seconds, Path(out))
