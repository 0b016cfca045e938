"""Rigid drift correction (``neuradiff track --register``): sub-pixel phase correlation recovers a known random
drift of up to 3 px/frame and keeps a moving void on one track."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.video import Calibration
from neuradiff.measure.drift import estimate_drift, shift_frames
from neuradiff.measure.voids import measure_masks
from neuradiff.synth.datasets import dataset_config, make_dataset
from neuradiff.workflows.track import shifts_table


def _drifting_video(seed: int, frames: int = 20, size: int = 96):
    """A synthetic video whose specimen moves by a random step of up to ±3 px per axis each frame (periodic
    scene, cubic-spline shifts as the renderer uses), shot noise added after the move; and its true drift."""
    cfg = dataset_config(
        "single-void",
        overrides={
            "frames": frames,
            "steps_per_frame": 20,
            "simulation": {"size": size},
            "render": {"drift": 0.0, "dose": 1e5},
        },
        seed=seed,
    )
    ds = make_dataset(cfg)
    rng = np.random.default_rng(100 + seed)
    steps = rng.uniform(-3, 3, (frames, 2))
    steps[0] = 0
    drift = np.cumsum(steps, axis=0)
    clean = ds.video.astype(np.float64)
    moved = np.stack([ndimage.shift(clean[k], drift[k], order=3, mode="grid-wrap") for k in range(frames)])
    video = rng.poisson(np.clip(moved, 0, None) * 100 / clean.mean()).astype(np.float32)
    eta = np.stack([ndimage.shift(ds.truth["eta"][k], drift[k], order=1, mode="grid-wrap") for k in range(frames)])
    return video, drift, eta


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_known_random_drift_is_recovered_within_0_2_px_rms_and_tracks_hold(seed):
    video, true, eta = _drifting_video(seed)
    assert np.abs(np.diff(true, axis=0)).max() > 2.5  # the drift really reaches ~3 px/frame
    est = estimate_drift(video)
    rms = float(np.sqrt(((est - true) ** 2).sum(axis=1).mean()))
    assert rms < 0.2, f"drift RMS error {rms:.3f} px"

    masks = (shift_frames(eta, -est, order=1) >= 0.5).astype(np.uint8)
    meas = measure_masks(masks, calibration=Calibration())
    assert len(meas.tracks) == 1 and meas.voids["track_id"].nunique() == 1
    assert len(meas.voids) == len(video)  # one void in every frame, on one track
    centre = meas.voids[["x_px", "y_px"]].to_numpy()
    assert np.abs(centre - centre[0]).max() < 0.5  # the void no longer moves


def test_drift_of_two_frames_and_bad_input():
    scene = ndimage.gaussian_filter(np.random.default_rng(0).random((64, 64)), 2)
    video = np.stack([scene, ndimage.shift(scene, (2.4, -1.3), order=3, mode="grid-wrap")])
    assert estimate_drift(video)[1] == pytest.approx([2.4, -1.3], abs=0.05)
    with pytest.raises(NeuradiffError, match="NaN"):
        estimate_drift(np.where(video > 0.5, np.nan, video))
    with pytest.raises(NeuradiffError, match="at least 8x8"):
        estimate_drift(video[:, :4, :4])


def test_shifts_table_in_px_nm_and_s():
    text = shifts_table(np.array([[0.0, 0.0], [1.5, -0.25]]), Calibration(nm_per_px=2.0, frame_interval_s=3.0))
    assert text.splitlines() == [
        "frame,time_s,dy_px,dx_px,dy_nm,dx_nm",
        "0,0,0.0000,0.0000,0,0",
        "1,3,1.5000,-0.2500,3,-0.5",
    ]
