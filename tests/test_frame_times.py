"""Frame times from flat file names and from a per-frame time table, carried into the outputs with uneven intervals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.frametimes import clock_seconds, read_frame_table, times_from_names
from neuradiff.io.video import read_video
from neuradiff.physics import Simulator
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset
from neuradiff.training import FitConfig
from neuradiff.workflows import run_fit, run_measure

runner = CliRunner()
UNEVEN = [0.0, 49.0, 126.0, 203.0]  # 49 s, then ~77 s


def _stack(path, n=4, size=24):
    masks = np.zeros((n, size, size), np.uint8)
    for t in range(n):
        masks[t, 6 : 12 + t, 6 : 12 + t] = 1
    tifffile.imwrite(path, masks * 255, photometric="minisblack")
    return masks


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("316L_insitu_Hour_00_Minute_07_Second_05_Frame_0002.dm4", (425.0, 2)),
        ("img-hour-1-minute-2-second-3.5.png", (3723.5, None)),
        ("a_Hours_00_Minutes_00_Seconds_09_Millisecond_250.tif", (9.25, None)),
        ("HOUR00MINUTE01SECOND02.tif", (62.0, None)),
        ("run_00h07m05s.tif", (425.0, None)),
        ("frame_0007.tif", None),
        ("15h_anneal.tif", None),
    ],
)
def test_clock_times_in_file_names(name, expected):
    assert clock_seconds(name) == expected


def test_frames_within_a_second_are_spread_over_it():
    names = [f"x_Hour_00_Minute_00_Second_{s:02d}_Frame_{k}.tif" for s in (4, 5) for k in range(4)]
    assert times_from_names(names).tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75])
    assert times_from_names(["a_Hour_00_Minute_00_Second_05.tif", "frame2.tif"]) is None
    assert times_from_names(["a_Hour_00_Minute_00_Second_09.tif", "a_Hour_00_Minute_00_Second_05.tif"]) is None


def test_flat_folder_with_clock_names_gives_uneven_times(tmp_path):
    for t in (10, 59, 136, 213):
        name = f"316L_Hour_00_Minute_{t // 60:02d}_Second_{t % 60:02d}.tif"
        tifffile.imwrite(tmp_path / name, np.zeros((8, 8), np.uint8))
    cal = read_video(tmp_path).calibration
    assert cal.times_s(4).tolist() == UNEVEN and cal.frame_interval_s == 77.0 and cal.source == "file names"
    assert read_video(tmp_path, frame_interval_s=2.0).calibration.times_s(4).tolist() == [0, 2, 4, 6]


def test_time_table_beside_the_video_wins_and_carries_conditions(tmp_path):
    _stack(tmp_path / "movie.tif")
    (tmp_path / "movie_frame_times.csv").write_text(
        "frame,time_s,dose_dpa,temperature_C\n2,138,0.3,452\n0,12,0.1,450\n1,61,0.2,451\n3,215,0.4,453\n"
    )
    cal = read_video(tmp_path / "movie.tif").calibration
    assert cal.times_s(4).tolist() == UNEVEN and cal.source == "time table movie_frame_times.csv"
    assert cal.conditions is not None and cal.conditions["temperature_C"].tolist() == [450, 451, 452, 453]
    other = tmp_path / "other.csv"
    other.write_text("frame,time\n0,0\n1,1\n2,3\n3,7\n")
    assert read_video(tmp_path / "movie.tif", frame_times=other).calibration.times_s(4).tolist() == [0, 1, 3, 7]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frame,time_s\n0,0\n1,49\n2,126\n", "lists 3 frames but the video has 4"),
        ("frame,time_s\n0,0\n1,49\n1,126\n3,200\n", "frame 2 is missing"),
        ("frame,time_s\n0,0\n1,49\n2,40\n3,200\n", "time of frame 2 (40 s) is not after"),
        ("frame,time_s\n0,0\n1,abc\n2,126\n3,200\n", "line 3, column time_s: 'abc' is not a number"),
        ("frame,time_s,temp\n0,0,1\n1,49,1\n2,126,1\n3,200,1\n", "unknown column 'temp'"),
        ("frames,seconds\n0,0\n", "lacks 'frame' and 'time_s'"),
        ("frame,time_s\n0,0\n1.5,49\n", "whole numbers"),
    ],
)
def test_bad_time_tables_are_one_line_exit_2(tmp_path, text, problem):
    _stack(tmp_path / "movie.tif")
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(NeuradiffError, match=None) as err:
        read_frame_table(tmp_path / "t.csv", 4)
    assert problem in str(err.value) and "\n" not in str(err.value)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["track", str(tmp_path / "movie.tif"), "--out", str(out), "--frame-times", str(tmp_path / "t.csv")]
    )
    assert res.exit_code == 2 and problem in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()


def test_frame_interval_and_time_table_exclude_each_other(tmp_path):
    _stack(tmp_path / "movie.tif")
    (tmp_path / "t.csv").write_text("frame,time_s\n0,0\n1,49\n2,126\n3,203\n")
    args = ["--frame-interval", "2", "--frame-times", str(tmp_path / "t.csv")]
    res = runner.invoke(app, ["track", str(tmp_path / "movie.tif"), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code == 2 and "not both" in res.output


@pytest.mark.slow
def test_measurements_carry_the_true_uneven_times_and_conditions(tmp_path):
    _stack(tmp_path / "masks.tif")
    (tmp_path / "t.csv").write_text("frame,time_s,dose_dpa\n0,0,0\n1,49,0.5\n2,126,1.2\n3,203,2\n")
    run_measure(tmp_path / "masks.tif", tmp_path / "m", frame_times=tmp_path / "t.csv", overlay=False)
    voids = pd.read_csv(tmp_path / "m" / "voids.csv")
    frames = pd.read_csv(tmp_path / "m" / "frames.csv")
    assert voids["time_s"].tolist() == UNEVEN and frames["time_s"].tolist() == UNEVEN
    assert frames["dose_dpa"].tolist() == [0, 0.5, 1.2, 2]
    prov = json.loads((tmp_path / "m" / "provenance.json").read_text())
    assert prov["calibration"]["frame_times_s"] == UNEVEN and "t.csv" in prov["inputs"]["frame_times"]["path"]
    (tmp_path / "short.csv").write_text("frame,time_s\n0,0\n1,49\n")
    with pytest.raises(NeuradiffError, match="lists 2 frames but the masks have 4"):
        run_measure(tmp_path / "masks.tif", tmp_path / "m2", frame_times=tmp_path / "short.csv", overlay=False)


@pytest.mark.slow
def test_fit_simulates_each_pair_for_its_real_duration(tmp_path, monkeypatch):
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 6, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 1.0}},
    )
    (tmp_path / "data").mkdir()
    write_dataset(make_dataset(cfg), tmp_path / "data")
    times = [12.0, 61.0, 138.0, 215.0, 292.0, 369.0]  # 49 s, then 77 s
    rows = "".join(f"{k},{t}\n" for k, t in enumerate(times))
    (tmp_path / "data" / "video_frame_times.csv").write_text("frame,time_s\n" + rows)
    seen: list[tuple[int, float]] = []
    run = Simulator.run

    def spy(self, state, params, n_frames, **kw):
        if not kw.get("every_frame"):  # the training rollouts (a forecast saves every frame)
            seen.append((int(state.shape[0]), float(n_frames)))
        return run(self, state, params, n_frames, **kw)

    monkeypatch.setattr(Simulator, "run", spy)
    fit_cfg = FitConfig(
        pretrain_iters=1, joint_iters=4, eval_every=2, gap=1, batch=3, dt=0.1, net={"width": 4, "depth": 1}
    )
    data = tmp_path / "data"
    run_fit(data / "video.tif", data / "annotations.tif", tmp_path / "model", config=fit_cfg)
    short = 49.0 / 77.0  # the first interval in median intervals
    durations = {round(d, 6) for _, d in seen}
    assert round(short, 6) in durations and 1.0 in durations
    allowed = {round((times[b] - times[a]) / 77.0, 6) for a in range(6) for b in range(a + 1, 6)}
    assert durations <= allowed
    assert all(n == 1 for n, d in seen if round(d, 6) == round(short, 6))  # uneven batches run pair by pair
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["video"]["frame_times_s"] == pytest.approx([t - 12.0 for t in times])
    prov = json.loads((tmp_path / "model" / "provenance.json").read_text())
    assert prov["inputs"]["video"]["path"].endswith("video.tif")
