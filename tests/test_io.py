"""Reading videos: TIFF metadata, folders, the Gatan in-situ tree, movies, microscope files."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.video import Calibration, length_to_nm, normalise_frames, read_video

CREME = Path(__file__).parent / "data" / "creme-316L" / "fov200nm"


def _stack(t=3, h=24, w=32, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top, size=(t, h, w), endpoint=True).astype(dtype)


def test_imagej_tiff_round_trip(tmp_path):
    frames = _stack()
    path = tmp_path / "ij.tif"
    # 4 px per µm -> 250 nm/px; 0.2 s between frames
    tifffile.imwrite(
        path, frames, imagej=True, resolution=(4.0, 4.0), metadata={"axes": "TYX", "unit": "um", "finterval": 0.2}
    )
    v = read_video(path)
    assert v.frames.dtype == np.uint16
    np.testing.assert_array_equal(v.frames, frames)
    assert v.calibration.nm_per_px == pytest.approx(250.0)
    assert v.calibration.frame_interval_s == pytest.approx(0.2)
    assert v.calibration.source == "imagej metadata"
    assert v.names == [f"{path}#{k}" for k in range(3)]


def test_imagej_angstrom_and_escaped_micro_sign(tmp_path):
    frames = _stack(t=2, dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "a.tif", frames, imagej=True, resolution=(0.5, 0.5), metadata={"axes": "TYX", "unit": "\\u00B5m"}
    )
    assert read_video(tmp_path / "a.tif").calibration.nm_per_px == pytest.approx(2000.0)
    assert length_to_nm(3.0, "Å") == pytest.approx(0.3)
    assert length_to_nm(2.0, "pm") == pytest.approx(0.002)
    assert length_to_nm(1e-9, "m") == pytest.approx(1.0)
    assert length_to_nm(1.0, "pixel") is None


def test_ome_tiff_round_trip(tmp_path):
    frames = _stack(t=4)
    path = tmp_path / "v.ome.tif"
    tifffile.imwrite(
        path,
        frames,
        ome=True,
        metadata={
            "axes": "TYX",
            "PhysicalSizeX": 5.0,
            "PhysicalSizeXUnit": "Å",
            "PhysicalSizeY": 5.0,
            "PhysicalSizeYUnit": "Å",
            "TimeIncrement": 50.0,
            "TimeIncrementUnit": "ms",
        },
    )
    v = read_video(path)
    np.testing.assert_array_equal(v.frames, frames)
    assert v.calibration.nm_per_px == pytest.approx(0.5)
    assert v.calibration.frame_interval_s == pytest.approx(0.05)
    assert v.calibration.source == "ome"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_overrides_win_and_plain_tiff_is_uncalibrated(tmp_path):
    frames = _stack(t=3).astype(np.float32) / 7.0
    # tifffile stores a [3, H, W] stack as planar "RGB": it must still come back as 3 frames
    tifffile.imwrite(tmp_path / "f.tif", frames)
    v = read_video(tmp_path / "f.tif")
    assert v.frames.dtype == np.float32 and v.frames.shape == (3, 24, 32)
    assert v.calibration == Calibration(None, None, None, "none")
    tifffile.imwrite(
        tmp_path / "ij.tif",
        frames.astype(np.uint16),
        imagej=True,
        resolution=(4.0, 4.0),
        metadata={"unit": "um", "finterval": 0.2},
    )
    v = read_video(tmp_path / "ij.tif", nm_per_px=0.4, frame_interval_s=2.0)
    assert (v.calibration.nm_per_px, v.calibration.frame_interval_s) == (0.4, 2.0)
    assert v.calibration.source == "override"
    with pytest.raises(NeuradiffError, match="nm_per_px"):
        read_video(tmp_path / "f.tif", nm_per_px=-1)


def test_rgb_becomes_grey(tmp_path):
    rgb = np.zeros((2, 10, 12, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = 100
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    v = read_video(tmp_path / "rgb.tif")
    assert v.frames.shape == (2, 10, 12) and v.frames.dtype == np.uint8
    assert int(v.frames[0, 0, 0]) == round(0.2126 * 200 + 0.7152 * 100)
    iio.imwrite(tmp_path / "rgba.png", np.dstack([rgb[0], np.full((10, 12), 255, np.uint8)]))
    assert read_video(tmp_path / "rgba.png").frames.shape == (1, 10, 12)


def test_folder_natural_order_and_16_bit(tmp_path):
    for k in (10, 2, 1):
        iio.imwrite(tmp_path / f"frame{k}.png", np.full((6, 8), 1000 * k, np.uint16))
    (tmp_path / "notes.txt").write_text("not a frame")
    v = read_video(tmp_path)
    assert v.names == ["frame1.png", "frame2.png", "frame10.png"]
    assert v.frames.dtype == np.uint16
    assert v.frames[:, 0, 0].tolist() == [1000, 2000, 10000]


def test_creme_folder():
    v = read_video(CREME / "imgs", nm_per_px=200 / 512)
    assert v.frames.shape == (4, 512, 512) and v.frames.dtype == np.uint8
    assert v.names == ["1.png", "2.png", "3.png", "4.png"]
    assert v.calibration.nm_per_px == pytest.approx(0.390625)
    assert v.calibration.frame_interval_s is None


def _gatan_tree(root: Path, suffix=".png", fps=4, seconds=3):
    for s in range(seconds):
        folder = root / "Hour_00" / "Minute_01" / f"Second_{s:02d}"
        folder.mkdir(parents=True)
        for k in range(fps):
            name = f"Run_Hour_00_Minute_01_Second_{s:02d}_Frame_{k:04d}{suffix}"
            if suffix == ".png":
                iio.imwrite(folder / name, np.full((8, 8), 10 * s + k, np.uint8))
            else:
                (folder / name).write_bytes(b"DM4 not really" * 10)


def test_gatan_tree_times_from_folder_names(tmp_path):
    _gatan_tree(tmp_path / "Run")
    v = read_video(tmp_path / "Run")
    assert v.frames.shape == (12, 8, 8)
    assert v.frames[:, 0, 0].tolist() == [10 * s + k for s in range(3) for k in range(4)]
    np.testing.assert_allclose(v.calibration.frame_times_s, np.arange(12) * 0.25)
    assert v.calibration.frame_interval_s == pytest.approx(0.25)
    assert v.calibration.nm_per_px is None
    assert "file names" in v.calibration.source
    assert v.names[0].endswith("Second_00_Frame_0000.png")


def test_gatan_tree_dm4_errors_clearly(tmp_path, monkeypatch):
    _gatan_tree(tmp_path / "Run", suffix=".dm4", fps=2, seconds=1)
    with pytest.raises(NeuradiffError, match=r"Frame_0000\.dm4") as err:
        read_video(tmp_path / "Run")
    assert "\n" not in str(err.value)
    monkeypatch.setitem(sys.modules, "rsciio.digitalmicrograph", None)  # as if not installed
    with pytest.raises(NeuradiffError, match=r"pip install neuradiff\[io\]"):
        read_video(tmp_path / "Run")
    (tmp_path / "one.dm4").write_bytes(b"x" * 100)
    with pytest.raises(NeuradiffError, match=r"one\.dm4.*pip install neuradiff\[io\]"):
        read_video(tmp_path / "one.dm4")


def test_mp4_round_trip(tmp_path):
    frames = np.zeros((5, 32, 48), np.uint8)
    for k in range(5):
        frames[k, 8:24, 4 + 6 * k : 20 + 6 * k] = 220
    iio.imwrite(tmp_path / "v.mp4", frames, plugin="FFMPEG", fps=10, macro_block_size=1)
    v = read_video(tmp_path / "v.mp4")
    assert v.frames.shape == (5, 32, 48) and v.frames.dtype == np.uint8
    assert v.calibration.frame_interval_s == pytest.approx(0.1)
    assert v.calibration.nm_per_px is None
    assert np.abs(v.frames.astype(int) - frames).mean() < 10


def test_normalise_frames():
    assert normalise_frames(np.array([0, 65535], np.uint16)).tolist() == [0.0, 1.0]
    assert normalise_frames(np.array([0, 255], np.uint8)).dtype == np.float32
    f = np.linspace(-3, 7, 1000, dtype=np.float64).reshape(10, 10, 10)
    f[0, 0, 0] = np.nan
    out = normalise_frames(f)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert np.all(np.isfinite(out))
    assert np.all(normalise_frames(np.ones((2, 3, 3))) == 0)


@pytest.mark.parametrize(
    "problem", ["missing", "empty_folder", "mixed_sizes", "mixed_types", "unsupported", "zero_frames", "multichannel"]
)
def test_bad_inputs_raise_one_line(tmp_path, problem):
    path = tmp_path / "x"
    if problem == "missing":
        path = tmp_path / "nope.tif"
    elif problem == "empty_folder":
        path.mkdir()
    elif problem == "mixed_sizes":
        path.mkdir()
        iio.imwrite(path / "a1.png", np.zeros((5, 5), np.uint8))
        iio.imwrite(path / "a2.png", np.zeros((6, 5), np.uint8))
    elif problem == "mixed_types":
        path.mkdir()
        iio.imwrite(path / "a1.png", np.zeros((5, 5), np.uint8))
        iio.imwrite(path / "a2.png", np.zeros((5, 5), np.uint16))
    elif problem == "unsupported":
        path = tmp_path / "video.xyz"
        path.write_bytes(b"123")
    elif problem == "zero_frames":
        path = tmp_path / "z.tif"
        with pytest.warns(UserWarning):
            tifffile.imwrite(path, np.zeros((0, 4), np.uint8))
    elif problem == "multichannel":
        path = tmp_path / "c.tif"
        tifffile.imwrite(path, np.zeros((3, 2, 8, 8), np.uint8), imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(NeuradiffError) as err:
        read_video(path)
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_small_uint8_stack_is_frames_not_colour(tmp_path):
    frames = _stack(t=3, dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", frames)  # tifffile tags this as planar RGB
    np.testing.assert_array_equal(read_video(tmp_path / "s.tif").frames, frames)
