"""The Python API: arrays in, typed results with DataFrames out, ``.save`` writing what the commands write,
trackpy on the returned tables, ``python -m neuradiff``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import trackpy
from typer.testing import CliRunner

import neuradiff as nd
import neuradiff.measure.voids as voids_module
from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError

runner = CliRunner()

TINY_DATASET = {"steps_per_frame": 5, "annotations": {"fraction": 0.5}}
TINY_FIT = {
    "pretrain_iters": 4,
    "joint_iters": 2,
    "gap": 2,
    "batch": 1,
    "eval_every": 1,
    "net": {"width": 4, "depth": 1},
}


def moving_voids(n_frames: int = 8) -> np.ndarray:
    """Two 6 × 6 px voids: one moving right 1 px per frame, one moving down 2 px per frame."""
    masks = np.zeros((n_frames, 48, 48), np.uint8)
    for k in range(n_frames):
        masks[k, 4:10, 4 + k : 10 + k] = 1
        masks[k, 20 + 2 * k : 26 + 2 * k, 30:36] = 1
    return masks


def test_trackpy_runs_on_the_returned_table_without_renaming():
    voids = nd.measure(moving_voids(), nm_per_px=0.5, frame_interval_s=2.0)
    traj = voids.trajectories
    assert list(traj.columns[:4]) == ["frame", "particle", "x", "y"]
    assert {"x_nm", "y_nm", "area_nm2", "eq_diameter_nm", "time_s"} <= set(traj.columns)
    assert traj["particle"].nunique() == 2
    drift = trackpy.compute_drift(traj)
    # mean displacement of the two voids: x +0.5 px/frame, y +1 px/frame
    np.testing.assert_allclose(drift["x"].to_numpy(), 0.5 * drift.index.to_numpy(), atol=1e-9)
    np.testing.assert_allclose(drift["y"].to_numpy(), 1.0 * drift.index.to_numpy(), atol=1e-9)
    msd = trackpy.emsd(traj, mpp=0.5e-3, fps=0.5)  # µm per px, frames per s
    # lag 1 frame = 2 s; squared steps 1 px² and 4 px² averaged, (0.5 nm)² = 0.25e-6 µm² per px²
    assert msd.index[0] == pytest.approx(2.0)
    assert msd.iloc[0] == pytest.approx(2.5 * 0.25e-6)


@pytest.mark.slow
def test_measure_on_arrays_matches_the_measure_command(tmp_path):
    masks = moving_voids()
    tifffile.imwrite(tmp_path / "masks.tif", masks, imagej=True)
    res = runner.invoke(
        app,
        ["measure", str(tmp_path / "masks.tif"), "--out", str(tmp_path / "cli"), "--nm-per-px", "0.5", "--no-overlay"],
    )
    assert res.exit_code == 0, res.output
    api = nd.measure(masks, nm_per_px=0.5, overlay=False).save(tmp_path / "api")
    names = sorted(p.name for p in (tmp_path / "cli").iterdir())
    assert names == sorted(p.name for p in api.iterdir())
    for name in names:
        if name.endswith((".csv", ".json")) and name != "provenance.json":
            cli_text = (tmp_path / "cli" / name).read_text()
            api_text = (api / name).read_text()
            if name == "units.json":  # the calibration source names how the pixel size was given
                cli_json, api_json = json.loads(cli_text), json.loads(api_text)
                assert cli_json["calibration"]["source"] == "override"
                assert api_json["calibration"]["source"] == "argument"
                for d in (cli_json, api_json):
                    d.pop("calibration")
                    d["notes"] = d["notes"][:-1]
                assert cli_json == api_json
            else:
                assert cli_text == api_text, name
    back = nd.load(api)
    assert isinstance(back, nd.MeasuredVoids)
    pd.testing.assert_frame_equal(back.voids, nd.measure(masks, nm_per_px=0.5).voids, check_dtype=False)


def test_measure_is_the_room_and_the_function():
    assert nd.measure.voids is voids_module
    assert callable(nd.measure)
    assert isinstance(nd.measure(moving_voids(2)), nd.MeasuredVoids)


def test_bad_arrays_are_one_clear_error():
    with pytest.raises(NeuradiffError, match="NaN"):
        nd.track(np.full((2, 16, 16), np.nan), "no-model")
    with pytest.raises(NeuradiffError, match=r"\[frames, H, W\]"):
        nd.measure(np.zeros((2, 2, 16, 16), np.uint8))
    with pytest.raises(NeuradiffError, match="positive"):
        nd.measure(moving_voids(), nm_per_px=-1.0)
    with pytest.raises(NeuradiffError, match="annotations are needed"):
        nd.fit(np.zeros((4, 16, 16), np.float32))
    with pytest.raises(NeuradiffError, match="give out"):
        nd.fit(np.zeros((4, 16, 16), np.float32), np.zeros((4, 16, 16), np.uint8), resume=True)
    with pytest.raises(NeuradiffError, match="not a folder written by neuradiff"):
        nd.load(Path(__file__).parent)


@pytest.mark.slow
def test_python_dash_m_runs_the_command_line():
    res = subprocess.run([sys.executable, "-m", "neuradiff", "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == f"neuradiff {nd.__version__}"


def _same_files(a: Path, b: Path, skip: tuple[str, ...] = ()) -> list[str]:
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("."))
    assert names == sorted(p.name for p in b.iterdir() if not p.name.startswith("."))
    for name in names:
        # provenance.json names the inputs: files for a command, arrays in memory for the API
        if name not in skip and name != "provenance.json":
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


@pytest.mark.slow
def test_api_chain_saves_what_the_commands_write(tmp_path):
    """simulate → fit → track → forecast through the API (default device) and through the commands (explicit
    ``--device cpu``): the same files, byte for byte."""
    (tmp_path / "data.json").write_text(json.dumps(TINY_DATASET))
    (tmp_path / "fit.json").write_text(json.dumps(TINY_FIT))
    common = ["--seed", "0", "--size", "24", "--frames", "8", "--config", str(tmp_path / "data.json")]
    assert (
        runner.invoke(app, ["simulate", "--out", str(tmp_path / "cli-video"), *common, "--device", "cpu"]).exit_code
        == 0
    )
    sim = nd.simulate(size=24, frames=8, config=TINY_DATASET)
    _same_files(sim.save(tmp_path / "api-video"), tmp_path / "cli-video")
    assert list(sim.table.columns) == ["frame", "time_s", "void_area_px", "void_area_nm2"]

    video, ann = tmp_path / "cli-video" / "video.tif", tmp_path / "cli-video" / "annotations.tif"
    res = runner.invoke(
        app,
        ["fit", str(video), "--annotations", str(ann), "--out", str(tmp_path / "cli-model"), "--config",
         str(tmp_path / "fit.json"), "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    fitted = nd.fit(video, ann, config=TINY_FIT)
    fitted.save(tmp_path / "api-model")
    cli_files = {p.name for p in (tmp_path / "cli-model").iterdir()} - {"checkpoint.pt"}
    assert cli_files == {p.name for p in (tmp_path / "api-model").iterdir()}
    for name in sorted(cli_files - {"model.pt", "provenance.json"}):
        assert (tmp_path / "api-model" / name).read_bytes() == (tmp_path / "cli-model" / name).read_bytes(), name
    # torch.save names the archive after its (temporary) file: compare the weights, not the bytes
    api_net, cli_net = (torch.load(tmp_path / d / "model.pt", weights_only=True) for d in ("api-model", "cli-model"))
    assert api_net["config"] == cli_net["config"]
    assert api_net["state_dict"].keys() == cli_net["state_dict"].keys()
    for key, value in api_net["state_dict"].items():
        assert torch.equal(value, cli_net["state_dict"][key]), key
    assert fitted.parameters.loc["kBT", "learned"]
    assert len(fitted.history) == TINY_FIT["pretrain_iters"] + TINY_FIT["joint_iters"]
    # the simulated video in memory trains the same model as its files
    from_memory = nd.fit(sim, config=TINY_FIT, device="cpu")
    assert from_memory.parameters["value"].to_dict() == fitted.parameters["value"].to_dict()

    res = runner.invoke(
        app, ["track", str(video), "--model", str(tmp_path / "cli-model"), "--out", str(tmp_path / "cli-track")]
    )
    assert res.exit_code == 0, res.output
    tracked = nd.track(video, fitted, device="cpu")
    _same_files(tracked.save(tmp_path / "api-track"), tmp_path / "cli-track", skip=("overlay.mp4",))
    assert tracked.eta.shape == (8, 24, 24)
    assert list(tracked.trajectories.columns[:4]) == ["frame", "particle", "x", "y"]
    assert isinstance(nd.load(tmp_path / "api-track"), nd.TrackedVideo)
    voids = nd.measure(tracked)
    pd.testing.assert_frame_equal(voids.voids, tracked.voids)

    res = runner.invoke(
        app,
        ["forecast", "--model", str(tmp_path / "cli-model"), "--video", str(video), "--steps", "5", "--out",
         str(tmp_path / "cli-fc")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    fc = nd.forecast(tmp_path / "api-model", sim, steps=5)
    _same_files(fc.save(tmp_path / "api-fc"), tmp_path / "cli-fc")
    assert list(fc.table.columns) == ["frame", "time_s", "void_area_px", "void_area_nm2"]
    back = nd.load(tmp_path / "api-fc")
    assert isinstance(back, nd.VoidForecast)
    pd.testing.assert_frame_equal(back.table, fc.table, check_dtype=False)
