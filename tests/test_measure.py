"""Void measurements: known answers on drawn disks, the creme frames, and the written outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk
from skimage.measure import label, regionprops

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.annotations import UNKNOWN, read_annotations
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.voids import measure_masks
from neuradiff.report.measurements import write_measurements

CREME = Path(__file__).parent / "data" / "creme-316L" / "fov200nm"
CAL = Calibration(nm_per_px=0.5, frame_interval_s=0.1, frame_times_s=None, source="test")


def _movie(n=6, shape=(80, 120)):
    """A disk (r 10 px) moving +2 px/frame in x and a disk growing +1 px radius/frame."""
    m = np.zeros((n,) + shape, np.uint8)
    for k in range(n):
        m[k][disk((40, 25 + 2 * k), 10)] = 1
        m[k][disk((30, 90), 5 + k)] = 1
    return m


def test_disk_equivalent_diameter():
    m = np.zeros((1, 64, 64), np.uint8)
    m[0][disk((32, 32), 10)] = 1
    meas = measure_masks(m, calibration=CAL)
    row = meas.voids.iloc[0]
    assert row["eq_diameter_nm"] == pytest.approx(10.0, rel=0.03)
    assert row["eq_diameter_px"] == pytest.approx(20.0, rel=0.03)
    assert row["x_nm"] == pytest.approx(16.0) and row["y_px"] == pytest.approx(32.0)
    assert row["circularity"] > 0.9 and not row["touches_border"]
    assert meas.units["eq_diameter_nm"] == "nm"


def test_drift_growth_and_separate_tracks():
    meas = measure_masks(_movie(), calibration=CAL)
    v = meas.voids
    assert len(v) == 12 and v["track_id"].nunique() == 2
    moving = v.loc[v["x_px"] < 60, "track_id"].unique()
    growing = v.loc[v["x_px"] > 60, "track_id"].unique()
    assert len(moving) == len(growing) == 1 and moving[0] != growing[0]
    tr = meas.tracks.set_index("track_id")
    # 2 px/frame × 0.5 nm/px / 0.1 s/frame = 10 nm/s
    assert tr.loc[moving[0], "drift_velocity_nm_per_s"] == pytest.approx(10.0, rel=1e-6)
    assert tr.loc[moving[0], "drift_vx_nm_per_s"] == pytest.approx(10.0, rel=1e-6)
    assert abs(tr.loc[moving[0], "growth_rate_nm_per_s"]) < 1e-6
    # radius +1 px/frame: diameter about +2 px/frame = +10 nm/s
    assert tr.loc[growing[0], "growth_rate_nm_per_s"] == pytest.approx(10.0, rel=0.1)
    assert tr.loc[moving[0], "lifetime_s"] == pytest.approx(0.5)
    assert tr.loc[moving[0], "lifetime_frames"] == 5
    assert meas.frames["count"].tolist() == [2] * 6
    np.testing.assert_allclose(meas.frames["time_s"], np.arange(6) * 0.1)


def test_uncalibrated_stays_in_px():
    meas = measure_masks(_movie(), calibration=Calibration(None, None, None, "none"))
    cols = set(meas.voids.columns) | set(meas.frames.columns) | set(meas.tracks.columns)
    assert not any("nm" in c for c in cols) and "time_s" not in cols
    assert "number_density_per_px2" in meas.frames
    tr = meas.tracks
    assert sorted(tr["drift_velocity_px_per_frame"].round(6)) == [0.0, 2.0]
    assert meas.units["growth_rate_px_per_frame"] == "px/frame"
    assert all("nm" not in u for u in meas.units.values())


def test_dose_swelling_and_unknown_frames():
    m = _movie(n=4)
    m[2] = UNKNOWN  # not annotated: left out
    m[3, :, 60:] = UNKNOWN  # half annotated: density per annotated area
    meas = measure_masks(m, calibration=CAL, dose_rate_dpa_per_s=0.01, foil_thickness_nm=50)
    fr = meas.frames.set_index("frame")
    assert list(fr.index) == [0, 1, 3]
    assert fr.loc[3, "count"] == 1
    assert fr.loc[3, "annotated_area_nm2"] == pytest.approx(80 * 60 * 0.25)
    assert fr.loc[1, "dose_dpa"] == pytest.approx(0.001)
    d = meas.voids.loc[meas.voids["frame"] == 0, "eq_diameter_nm"].to_numpy()
    vol = np.sum(np.pi / 6 * d**3)
    assert fr.loc[0, "swelling"] == pytest.approx(vol / (80 * 120 * 0.25 * 50 - vol))
    assert any("spherical" in n for n in meas.notes)
    with pytest.raises(NeuradiffError, match="frame interval"):
        measure_masks(m, calibration=Calibration(0.5, None, None, "x"), dose_rate_dpa_per_s=1.0)
    with pytest.raises(NeuradiffError, match="pixel size"):
        measure_masks(m, calibration=Calibration(None, 1.0, None, "x"), foil_thickness_nm=50)
    with pytest.raises(NeuradiffError, match="everywhere"):
        measure_masks(np.full((2, 4, 4), UNKNOWN, np.uint8), calibration=CAL)
    with pytest.raises(NeuradiffError, match="values"):
        measure_masks(np.full((1, 4, 4), 7, np.uint8), calibration=CAL)


def test_creme_sizes_match_regionprops():
    video = read_video(CREME / "imgs", nm_per_px=200 / 512)
    masks = read_annotations(CREME / "masks1", video=video)
    meas = measure_masks(masks, calibration=video.calibration)
    d = meas.voids["eq_diameter_nm"]
    assert 3.0 < d.median() < 40.0
    expected = []
    for frame in masks:
        props = regionprops(label(frame == 1, connectivity=2), spacing=(200 / 512, 200 / 512))
        expected += sorted(p.equivalent_diameter_area for p in props if p.num_pixels >= 4)
    got = [x for k in range(4) for x in sorted(meas.voids.loc[meas.voids["frame"] == k, "eq_diameter_nm"])]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert meas.frames["count"].sum() == len(meas.voids)


@pytest.mark.slow
def test_write_measurements(tmp_path):
    m = _movie(n=5, shape=(64, 120))
    frames = (m * 120 + 40).astype(np.uint8)
    meas = measure_masks(m, calibration=CAL, dose_rate_dpa_per_s=0.01)
    written = write_measurements(meas, tmp_path / "out", video_frames=frames, masks=m)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "voids.csv",
            "frames.csv",
            "tracks.csv",
            "units.json",
            "time_series.png",
            "size_histograms.png",
            "trajectories.png",
            "overlay.mp4",
        ]
    )
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    voids = pd.read_csv(tmp_path / "out" / "voids.csv")
    assert len(voids) == 10 and "eq_diameter_nm" in voids
    info = json.loads((tmp_path / "out" / "units.json").read_text())
    assert info["units"]["x_nm"] == "nm" and info["calibration"]["nm_per_px"] == 0.5
    import imageio.v2 as iio2

    with iio2.get_reader(tmp_path / "out" / "overlay.mp4", format="FFMPEG") as r:
        first = r.get_data(0)
    assert first.shape == (64, 120, 3)
    assert (first[..., 0].astype(int) - first[..., 1] > 100).any()  # red outlines


def test_overlay_falls_back_to_gif_without_ffmpeg(tmp_path, monkeypatch):
    import imageio_ffmpeg

    def no_ffmpeg():
        raise RuntimeError("no ffmpeg")

    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_ffmpeg)
    m = _movie(n=3)
    meas = measure_masks(m, calibration=CAL)
    with pytest.warns(UserWarning, match="GIF"):
        written = write_measurements(meas, tmp_path, masks=m, plots=False)
    assert (tmp_path / "overlay.gif") in written and not (tmp_path / "overlay.mp4").exists()


def test_overlay_outlines_are_the_inner_boundaries():
    from skimage.segmentation import find_boundaries

    from neuradiff.measure.voids import label_voids
    from neuradiff.report.overlay import inner_edges

    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = label_voids(rng.random((40, 50)) < rng.uniform(0.2, 0.7), 3)
        np.testing.assert_array_equal(inner_edges(labels), find_boundaries(labels, mode="inner"))
