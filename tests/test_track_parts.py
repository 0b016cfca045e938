"""Tracking one recording in parts (frame ranges run by other processes, then joined and linked in one pass):
the outputs equal one process's, tracks run on across part borders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.measure.denoise import Denoise
from neuradiff.workflows.track import InProcess, run_track

FILES = ("voids.csv", "tracks.csv", "frames.csv", "masks_coco.json", "units.json")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """20 frames of 48² px: two dark voids drifting right (one growing) on a noisy bright background, 0.5 nm/px."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    frames = []
    for t in range(20):
        f = 0.8 + 0.05 * rng.standard_normal((48, 48))
        for cy, cx, r in ((14, 8 + t, 5.0), (32, 12 + t // 2, 3.5 + 0.1 * t)):
            f[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 0.25
        frames.append(f)
    path = tmp_path_factory.mktemp("rec") / "rec.tif"
    data = np.clip(np.asarray(frames) * 255, 0, 255).astype(np.uint8)
    tifffile.imwrite(path, data, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX", "unit": "nm"})
    return path


def _same_outputs(a: Path, b: Path) -> None:
    for name in FILES:
        assert (a / name).read_text() == (b / name).read_text(), name
    for name in ("eta.tif", "masks.tif"):
        np.testing.assert_array_equal(tifffile.imread(a / name), tifffile.imread(b / name), err_msg=name)
    assert not (b / ".parts").exists()


@pytest.fixture(scope="module")
def whole(recording, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    run_track(recording, None, out, overlay=False, chunk=4)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("span", [1, 7, 20])
def test_parts_equal_one_pass(recording, whole, tmp_path, span):
    run_track(recording, None, tmp_path / "parts", overlay=False, chunk=4, runner=InProcess(), span=span)
    _same_outputs(whole, tmp_path / "parts")


@pytest.mark.slow
def test_tracks_run_on_across_part_borders(recording, tmp_path):
    run_track(recording, None, tmp_path / "parts", overlay=False, runner=InProcess(), span=6)
    voids = pd.read_csv(tmp_path / "parts" / "voids.csv")
    assert voids["frame"].nunique() == 20
    spans = voids.groupby("track_id")["frame"].agg(["min", "max", "count"])
    assert len(spans) == 2, spans
    assert (spans["min"] == 0).all() and (spans["max"] == 19).all() and (spans["count"] == 20).all()


@pytest.mark.slow
def test_temporal_denoising_reads_across_part_borders(recording, tmp_path):
    median = Denoise("temporal", window=3)
    run_track(recording, None, tmp_path / "one", overlay=False, denoise=median)
    run_track(recording, None, tmp_path / "parts", overlay=False, denoise=median, runner=InProcess(), span=5)
    _same_outputs(tmp_path / "one", tmp_path / "parts")


def test_parts_refuse_registration(recording, tmp_path):
    with pytest.raises(NeuradiffError, match="--register"):
        run_track(recording, None, tmp_path / "out", register=True, runner=InProcess())
    assert not (tmp_path / "out").exists()


def test_span_alone_is_refused(recording, tmp_path):
    result = CliRunner().invoke(app, ["track", str(recording), "--out", str(tmp_path / "o"), "--span", "5"])
    assert result.exit_code == 2 and "--span" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_local_cluster_of_two_workers_equals_one_process(recording, whole, tmp_path):
    out = tmp_path / "cluster"
    result = CliRunner().invoke(
        app,
        ["track", str(recording), "--out", str(out), "--no-measure", "--workers", "2", "--span", "6", "--chunk", "4"],
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(out / "masks.tif"), tifffile.imread(whole / "masks.tif"))
    out = tmp_path / "cluster_measured"
    result = CliRunner().invoke(
        app, ["track", str(recording), "--out", str(out), "--workers", "2", "--span", "6", "--chunk", "4"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "provenance.json").read_text())
    _same_outputs(whole, out)
