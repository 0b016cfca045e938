"""Denoising before recognition (``neuradiff track --denoise``): chunk by chunk it gives exactly what the whole
recording gives, it lowers the noise, it is refused with a clear line when misused, and track records it."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.measure.denoise import Denoise
from neuradiff.methods import SupervisedModel
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.workflows.track import run_track

runner = CliRunner()


def _noisy(n=9, size=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    clean = np.stack([np.where((yy - 16) ** 2 + (xx - 15) ** 2 < (5 + 0.3 * k) ** 2, 60.0, 200.0) for k in range(n)])
    return clean, clean + 25 * rng.standard_normal(clean.shape)


@pytest.mark.parametrize(
    ("denoise", "ratio"),
    [
        (Denoise("gaussian", sigma=1.5), 0.75),  # the blurred void rim keeps part of the error
        (Denoise("nlmeans"), 0.4),
        (Denoise("temporal"), 0.8),  # the median of 3 frames, the growing void and the repeated end frames
        (Denoise("temporal", window=5), 0.75),
    ],
)
def test_chunks_equal_the_whole_recording_and_lower_the_noise(denoise, ratio):
    clean, noisy = _noisy()
    whole = denoise.apply(noisy)
    assert whole.dtype == np.float32 and whole.shape == noisy.shape
    for size in (1, 2, 4, 100):
        chunks = list(denoise.chunks(lambda a, b: noisy[a:b], len(noisy), size))
        assert [s for s, _ in chunks] == list(range(0, len(noisy), size))
        assert np.array_equal(np.concatenate([c for _, c in chunks]), whole), size
    error_before = np.sqrt(((noisy - clean) ** 2).mean())
    assert np.sqrt(((whole - clean) ** 2).mean()) < ratio * error_before


def test_temporal_median_is_the_median_of_the_window():
    frames = np.arange(5, dtype=float)[:, None, None] ** 2 * np.ones((5, 4, 4))
    out = Denoise("temporal", window=3).apply(frames)
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 4.0, 9.0, 16.0]  # a monotone series is its own running median
    frames[2] = 1000.0  # one flash
    assert Denoise("temporal").apply(frames)[2, 0, 0] == 9.0
    assert np.array_equal(Denoise().apply(frames), frames.astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "median"}, "--denoise must be one of none, gaussian, nlmeans, temporal"),
        ({"method": "temporal", "sigma": 1.0}, "--denoise-sigma applies to --denoise gaussian"),
        ({"method": "gaussian", "window": 3}, "--denoise-window applies to --denoise temporal"),
        ({"method": "gaussian", "sigma": 0.0}, "--denoise-sigma must be in"),
        ({"method": "temporal", "window": 4}, "--denoise-window must be odd"),
    ],
)
def test_bad_settings_are_one_clear_line(kwargs, message):
    with pytest.raises(NeuradiffError, match=message):
        Denoise(**kwargs)


def _video(path, n=8, size=40):
    _, noisy = _noisy(n, size, seed=1)
    tifffile.imwrite(path, np.clip(noisy, 0, 255).astype(np.uint8), imagej=True, metadata={"axes": "TYX"})


@pytest.mark.slow
def test_track_streams_a_temporal_window_across_chunks(tmp_path):
    _video(tmp_path / "a.tif")
    torch.manual_seed(0)
    SupervisedModel(RecognitionNet(NetConfig(width=4, depth=1))).save(tmp_path / "model")
    opts = {"denoise": Denoise("temporal", window=5), "measure": False}
    run_track(tmp_path / "a.tif", tmp_path / "model", tmp_path / "one", chunk=1000, **opts)
    run_track(tmp_path / "a.tif", tmp_path / "model", tmp_path / "many", chunk=3, **opts)
    for name in ("eta.tif", "masks.tif", "masks_coco.json"):
        assert filecmp.cmp(tmp_path / "one" / name, tmp_path / "many" / name, shallow=False), name
    settings = json.loads((tmp_path / "many" / "provenance.json").read_text())["settings"]
    assert settings["denoise"] == {"method": "temporal", "statistic": "median", "window_frames": 5}
    run_track(tmp_path / "a.tif", tmp_path / "model", tmp_path / "raw", chunk=1000, measure=False)
    assert not filecmp.cmp(tmp_path / "one" / "eta.tif", tmp_path / "raw" / "eta.tif", shallow=False)


def test_track_cli_denoises_after_registering_and_refuses_misuse(tmp_path):
    _video(tmp_path / "a.tif")
    out = tmp_path / "reg"
    res = runner.invoke(app, ["track", str(tmp_path / "a.tif"), "--out", str(out), "--register", "--no-measure",
                              "--denoise", "gaussian", "--denoise-sigma", "1.5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    prov = json.loads((out / "provenance.json").read_text())["settings"]
    assert prov["register"] is True and prov["denoise"] == {"method": "gaussian", "sigma_px": 1.5}
    assert (out / "shifts.csv").is_file()
    bad = runner.invoke(app, ["track", str(tmp_path / "a.tif"), "--out", str(tmp_path / "x"), "--denoise", "nlmeans",
                              "--denoise-window", "3"])  # fmt: skip
    assert bad.exit_code == 2 and "--denoise-window applies to --denoise temporal" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
