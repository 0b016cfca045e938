"""Image outputs other tools read with their calibration (tifffile, RosettaSciIO), tables in nm and s, and
provenance.json in every output folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from rsciio.tiff import file_reader
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.provenance import file_sha256
from neuradiff.io.annotations import read_annotations
from neuradiff.io.stacks import write_stack
from neuradiff.io.video import Calibration, read_video
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset
from neuradiff.training import FitConfig
from neuradiff.workflows import run_fit, run_forecast, run_track

runner = CliRunner()
NM, DT = 0.5, 2.0


def _axes(path):
    """(name, scale, units, size) of each axis as RosettaSciIO reads the file."""
    signal = file_reader(str(path))[0]
    return [(a["name"], a["scale"], a["units"], a["size"]) for a in signal["axes"]]


def check_calibrated_stack(path, shape, nm=NM, dt=DT):
    """The stack is an ImageJ TYX hyperstack in nm and s, and RosettaSciIO reads time/height/width with scales."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "TYX" and tif.series[0].shape == shape
        meta = tif.imagej_metadata or {}
        assert meta["unit"] == "nm" and meta["finterval"] == pytest.approx(dt) and meta["frames"] == shape[0]
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(nm)
    assert _axes(path) == [
        ("time", pytest.approx(dt), "s", shape[0]),
        ("height", pytest.approx(nm), "nm", shape[1]),
        ("width", pytest.approx(nm), "nm", shape[2]),
    ]
    cal = read_video(path).calibration
    assert cal.nm_per_px == pytest.approx(nm) and cal.frame_interval_s == pytest.approx(dt)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, bool])
def test_stacks_round_trip_through_tifffile_and_rosettasciio(tmp_path, dtype):
    data = (np.random.default_rng(0).random((5, 12, 10)) * 200).astype(dtype)
    path = write_stack(tmp_path / "a.tif", data, Calibration(nm_per_px=NM, frame_interval_s=DT))
    check_calibrated_stack(path, (5, 12, 10))
    back = tifffile.imread(path)
    assert np.array_equal(back, data.astype(np.uint8) if dtype is bool else data)


def test_uneven_frame_times_give_their_mean_interval(tmp_path):
    cal = Calibration(nm_per_px=NM, frame_times_s=np.array([0.0, 49.0, 126.0, 203.0]))
    path = write_stack(tmp_path / "a.tif", np.zeros((4, 8, 8), np.uint8), cal)
    assert _axes(path)[0] == ("time", pytest.approx(203.0 / 3), "s", 4)


def test_uncalibrated_stack_says_nothing(tmp_path):
    path = write_stack(tmp_path / "a.tif", np.zeros((3, 8, 8), np.uint8))
    assert [a[:3] for a in _axes(path)] == [("time", 1.0, None), ("height", 1.0, None), ("width", 1.0, None)]
    assert read_video(path).calibration.source == "none"


@pytest.mark.slow
def test_measure_reads_the_calibration_of_a_mask_stack(tmp_path):
    masks = np.zeros((3, 32, 32), np.uint8)
    masks[:, 8:16, 8:16] = 1
    path = write_stack(tmp_path / "masks.tif", masks, Calibration(nm_per_px=NM, frame_interval_s=DT))
    res = runner.invoke(app, ["measure", str(path), "--out", str(tmp_path / "m"), "--no-overlay"])
    assert res.exit_code == 0, res.output
    assert "lengths in nm, times in s" in res.stdout
    voids = pd.read_csv(tmp_path / "m" / "voids.csv")
    assert voids["area_nm2"].tolist() == pytest.approx([64 * NM**2] * 3)
    assert voids["time_s"].tolist() == pytest.approx([0.0, DT, 2 * DT])
    prov = json.loads((tmp_path / "m" / "provenance.json").read_text())
    assert prov["command"] == "measure" and prov["inputs"]["masks"]["sha256"] == file_sha256(path)
    assert prov["calibration"]["source"] == "imagej metadata"
    # the options still win over the file
    res = runner.invoke(app, ["measure", str(path), "--out", str(tmp_path / "m2"), "--no-overlay", "--nm-per-px", "2"])
    assert res.exit_code == 0, res.output
    assert pd.read_csv(tmp_path / "m2" / "voids.csv")["area_nm2"].tolist() == pytest.approx([256.0] * 3)


@pytest.mark.slow
def test_every_image_output_of_simulate_track_and_forecast_is_calibrated(tmp_path):
    data = tmp_path / "video"
    cfg = dataset_config(
        "single-void",
        overrides={
            "frames": 8,
            "steps_per_frame": 8,
            "nm_per_px": NM,
            "frame_interval_s": DT,
            "simulation": {"size": 32},
            "annotations": {"fraction": 0.3},
        },
    )
    data.mkdir()
    write_dataset(make_dataset(cfg), data)
    check_calibrated_stack(data / "video.tif", (8, 32, 32))
    check_calibrated_stack(data / "annotations.tif", (8, 32, 32))

    fit_cfg = FitConfig(pretrain_iters=2, joint_iters=1, eval_every=1, batch=1, gap=2, net={"width": 4, "depth": 1})
    run_fit(data / "video.tif", data / "annotations.tif", tmp_path / "model", config=fit_cfg)
    prov = json.loads((tmp_path / "model" / "provenance.json").read_text())
    assert prov["inputs"]["video"]["sha256"] == file_sha256(data / "video.tif")
    assert prov["settings"]["config"]["pretrain_iters"] == 2 and prov["model"]["method"] == "neuradiff"

    run_track(data / "video.tif", tmp_path / "model", tmp_path / "track")
    check_calibrated_stack(tmp_path / "track" / "eta.tif", (8, 32, 32))
    check_calibrated_stack(tmp_path / "track" / "masks.tif", (8, 32, 32))
    prov = json.loads((tmp_path / "track" / "provenance.json").read_text())
    assert prov["inputs"]["model"]["kind"] == "folder" and set(prov["model"]["parameters"]) >= {"E_v", "kBT"}
    assert prov["calibration"]["nm_per_px"] == NM and prov["neuradiff_version"]
    coco = json.loads((tmp_path / "track" / "masks_coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [f"video.tif#{k}" for k in range(8)]
    back = read_annotations(tmp_path / "track" / "masks_coco.json", video=read_video(data / "video.tif"))
    np.testing.assert_array_equal(back, tifffile.imread(tmp_path / "track" / "masks.tif"))
    assert (tmp_path / "track" / "masks_rois.zip").is_file()

    run_track(data / "video.tif", tmp_path / "model", tmp_path / "reg", register=True, measure=False)
    shifts = pd.read_csv(tmp_path / "reg" / "shifts.csv")
    truth = np.load(data / "truth.npz")["drift_px"]
    assert list(shifts.columns) == ["frame", "time_s", "dy_px", "dx_px", "dy_nm", "dx_nm"]
    assert shifts[["dy_px", "dx_px"]].to_numpy() == pytest.approx(truth - truth[0], abs=0.3)
    assert shifts["dy_nm"].to_numpy() == pytest.approx(shifts["dy_px"].to_numpy() * NM, abs=1e-3)
    check_calibrated_stack(tmp_path / "reg" / "masks.tif", (8, 32, 32))

    res = runner.invoke(app, ["measure", str(tmp_path / "track" / "masks.tif"), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert "lengths in nm, times in s" in res.stdout

    run_forecast(tmp_path / "model", data / "video.tif", tmp_path / "fc", frame=2, steps=3)
    check_calibrated_stack(tmp_path / "fc" / "forecast.tif", (4, 32, 32))
    table = pd.read_csv(tmp_path / "fc" / "forecast_area.csv")
    assert table["time_s"].tolist() == pytest.approx([4.0, 6.0, 8.0, 10.0])
    assert table["void_area_nm2"].tolist() == pytest.approx((table["void_area_px"] * NM**2).tolist())
    assert json.loads((tmp_path / "fc" / "provenance.json").read_text())["settings"] == {
        "frame": 2,
        "steps": 3,
        "step_intervals": None,  # even frame times: one interval per step
        "history_intervals": None,  # and none before the start
    }
