"""``measure`` of a TIFF mask stack reads it (and the video) a chunk at a time: the same tables as reading it
whole, and never more than a chunk of frames at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from neuradiff.io.annotations import open_mask_stack, read_annotations
from neuradiff.io.stream import DEFAULT_CHUNK, VideoSource
from neuradiff.io.video import Calibration
from neuradiff.measure.voids import measure_masks
from neuradiff.workflows.measure import run_measure


def _masks(n: int, size: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), np.uint8)
    for t in range(n):
        out[t][(yy - 12) ** 2 + (xx - 10 - (t % 15)) ** 2 < 25] = 1
        out[t][(yy - 28) ** 2 + (xx - 25) ** 2 < (2 + t % 5) ** 2] = 1
    out[n // 2, :5] = 255  # part of one frame unknown
    return out


@pytest.mark.slow
def test_measure_streams_a_mask_stack(tmp_path, monkeypatch):
    n = DEFAULT_CHUNK + 17
    masks = _masks(n)
    path = tmp_path / "masks.tif"
    tifffile.imwrite(path, masks, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX", "unit": "nm"})
    largest = [0]
    read = VideoSource.read

    def counting(self, start, stop):
        largest[0] = max(largest[0], min(stop, self.n_frames) - start)
        return read(self, start, stop)

    monkeypatch.setattr(VideoSource, "read", counting)
    summary = run_measure(path, tmp_path / "out", overlay=True)
    assert 0 < largest[0] <= DEFAULT_CHUNK
    whole = measure_masks(read_annotations(path), calibration=Calibration(nm_per_px=0.5))
    pd.testing.assert_frame_equal(summary.measurements.voids, whole.voids)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "voids.csv"), whole.voids, check_dtype=False)
    assert (tmp_path / "out" / "overlay.mp4").stat().st_size > 0


@pytest.mark.parametrize(
    ("stored", "decoded"),
    [
        (np.array([0, 255], np.uint8), [0, 1]),  # binary: 255 = void
        (np.array([0, 1], np.uint8), [0, 1]),
        (np.array([0, 1, 255], np.uint8), [0, 1, 255]),  # three-state
    ],
)
def test_mask_stack_decodes_like_reading_it_whole(tmp_path, stored, decoded):
    rng = np.random.default_rng(0)
    frames = stored[rng.integers(0, len(stored), (5, 6, 7))]
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")
    with open_mask_stack(path, n_frames=7, chunk=2) as stack:
        assert stack.shape == (7, 6, 7)
        np.testing.assert_array_equal(stack[0:7], read_annotations(path, n_frames=7))
        assert set(np.unique(stack[0:5]).tolist()) == set(decoded)
        assert (stack[6] == 255).all()  # past the stack's end: unknown
