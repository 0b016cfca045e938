"""``neuradiff batch``: finding recordings, per-recording failures, the manifest, resuming, Dask workers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.methods.supervised import SupervisedModel
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.workflows.batch import BatchSettings, find_recordings, read_manifest, run_batch


def _stack(path: Path, n: int = 4, size: int = 32, seed: int = 0, nm: float | None = 0.5) -> Path:
    """A small recording of dark disks on a bright noisy background (calibrated ImageJ TIFF)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = []
    for t in range(n):
        f = 0.8 + 0.05 * rng.standard_normal((size, size))
        for cy, cx in ((10, 10), (22, 20)):
            f[(yy - cy) ** 2 + (xx - cx - t) ** 2 < (4 + t % 2) ** 2] = 0.2
        frames.append(f)
    data = np.clip(np.asarray(frames) * 255, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    if nm is None:
        tifffile.imwrite(path, data, photometric="minisblack")
    else:
        tifffile.imwrite(
            path,
            data,
            imagej=True,
            resolution=(1 / nm, 1 / nm),
            metadata={"axes": "TYX", "unit": "nm", "finterval": 2.0},
        )
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A small untrained net: deterministic, so every run of the same batch gives the same tables."""
    import torch

    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("model") / "model"
    net = RecognitionNet(NetConfig(width=4, depth=1), input_mean=128.0, input_std=60.0)
    SupervisedModel(net).save(folder)
    return folder


@pytest.fixture()
def experiment(tmp_path) -> Path:
    top = tmp_path / "experiment"
    _stack(top / "300C" / "run1.tif", seed=1)
    _stack(top / "300C" / "run2.tif", seed=2)
    _stack(top / "500C" / "run3.tif", seed=3)
    (top / "500C" / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    (top / "notes.txt").write_text("not a recording")
    (top / "conditions.csv").write_text("recording,temperature_K,dose_dpa\n300C/run1.tif,573,0.1\nrun2,573,0.2\n")
    return top


def test_find_recordings_kinds(tmp_path):
    top = tmp_path / "t"
    _stack(top / "a" / "stack.tif")
    from PIL import Image

    (top / "pngs").mkdir()
    for k in range(3):
        Image.fromarray(np.full((8, 8), k * 50, np.uint8)).save(top / "pngs" / f"f{k}.png")
    (top / "singles").mkdir()
    for k in range(2):
        tifffile.imwrite(top / "singles" / f"frame{k}.tif", np.zeros((8, 8), np.uint8))
    gatan = top / "session" / "Hour_00" / "Minute_00" / "Second_01"
    gatan.mkdir(parents=True)
    tifffile.imwrite(gatan / "frame_0.tif", np.zeros((8, 8), np.uint8))
    (top / ".hidden").mkdir()
    _stack(top / ".hidden" / "x.tif")
    _stack(top / "out" / "y.tif")
    (top / "conditions.csv").write_text("recording\n")
    names = [r.name for r in find_recordings(top, exclude=top / "out")]
    assert names == ["a/stack.tif", "pngs", "session", "singles"]


@pytest.mark.slow
def test_batch_reports_bad_recordings_and_goes_on(experiment, model, tmp_path):
    out = tmp_path / "out"
    seen = []
    s = run_batch(experiment, out, model=model, overlay=False, on_result=seen.append)
    status = {r.name: r.status for r in s.results}
    assert status == {
        "300C/run1.tif": "done",
        "300C/run2.tif": "done",
        "500C/broken.tif": "failed",
        "500C/run3.tif": "done",
    }
    broken = next(r for r in s.results if r.status == "failed")
    assert "broken.tif" in broken.error and "\n" not in broken.error
    assert len(seen) == 4
    manifest = read_manifest(out)
    assert manifest["300C/run1.tif"].sha256 and manifest["300C/run1.tif"].n_frames == 4
    assert manifest["300C/run1.tif"].nm_per_px == pytest.approx(0.5)
    table = pd.read_csv(out / "recordings.csv")
    assert list(table["recording"]) == [r.name for r in s.results]
    assert table.loc[table["recording"] == "300C/run1.tif", "temperature_K"].item() == 573
    assert table.loc[table["recording"] == "300C/run2.tif", "dose_dpa"].item() == pytest.approx(0.2)
    voids = pd.read_csv(out / "voids.csv")
    assert {"recording", "temperature_K", "frame", "time_s", "eq_diameter_nm"} <= set(voids.columns)
    assert set(voids["recording"]) <= {"300C/run1.tif", "300C/run2.tif", "500C/run3.tif"}
    assert (out / "summary.png").read_bytes()[:4] == b"\x89PNG"
    for name in ("300C_run1.tif", "300C_run2.tif", "500C_run3.tif"):
        assert (out / "recordings" / name / "masks.tif").is_file()

    # a second call skips what is done and gives the same tables
    again = run_batch(experiment, out, model=model, overlay=False)
    assert again.skipped == 3
    pd.testing.assert_frame_equal(pd.read_csv(out / "voids.csv"), voids)

    # a changed input is redone
    _stack(experiment / "300C" / "run2.tif", seed=9)
    third = run_batch(experiment, out, model=model, overlay=False)
    assert third.skipped == 2


@pytest.mark.slow
def test_batch_without_a_model_uses_the_shipped_recogniser(tmp_path):
    top = tmp_path / "in"
    _stack(top / "a.tif", n=2, size=64)
    s = run_batch(top, tmp_path / "out", overlay=False)
    assert [r.status for r in s.results] == ["done"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["settings"]["model"] == "" and len(manifest["settings"]["model_sha256"]) == 64
    provenance = json.loads((tmp_path / "out" / "recordings" / "a.tif" / "provenance.json").read_text())
    assert "generalist" in json.dumps(provenance)


@pytest.mark.slow
def test_batch_chooses_each_recordings_scale_with_void_size_auto(tmp_path):
    from neuradiff.synth.corpus import CorpusSettings, corpus_sample

    frames = corpus_sample(1_000_005, CorpusSettings(size=64, frames=2)).frames.astype(np.float32)
    big = np.kron(frames, np.ones((1, 3, 3), np.float32))  # the same recording at three times the magnification
    big += np.random.default_rng(0).normal(0.0, 0.1 * float(frames.std()), big.shape).astype(np.float32)
    top = tmp_path / "in"
    top.mkdir()
    tifffile.imwrite(top / "as-recorded.tif", frames)
    tifffile.imwrite(top / "magnified.tif", big)
    s = run_batch(top, tmp_path / "out", overlay=False, void_size_unit="auto")
    assert [r.status for r in s.results] == ["done", "done"]
    factor = {
        r.name: json.loads((Path(r.output) / "provenance.json").read_text())["settings"]["resample_factor"]
        for r in s.results
    }
    assert factor["as-recorded.tif"] == 1.0 and factor["magnified.tif"] < 1
    # the key of a batch without a void size is the one it had before the setting existed
    plain = BatchSettings(model="", model_sha256="x")
    assert plain.key() == hashlib.sha256(json.dumps(
        {"model": "", "model_sha256": "x", "nm_per_px": None, "frame_interval_s": None, "require_nm": False,
         "overlay": True}, sort_keys=True).encode()).hexdigest()[:16]  # fmt: skip
    assert BatchSettings(model="", model_sha256="x", void_size_unit="auto").key() != plain.key()


@pytest.mark.slow
def test_batch_names_the_recordings_an_export_clipped(tmp_path):
    from neuradiff.synth.capture import to_8bit
    from neuradiff.synth.corpus import CorpusSettings, corpus_sample

    frames = corpus_sample(1_000_003, CorpusSettings(size=64, frames=2)).frames
    top = tmp_path / "in"
    top.mkdir()
    for name, clip in (("recorded", 0.0), ("clipped", 0.03), ("imagej", 0.0035)):
        tifffile.imwrite(top / f"{name}.tif", np.stack([to_8bit(f, clip=clip) for f in frames]))
    res = CliRunner().invoke(app, ["batch", str(top), "--out", str(tmp_path / "out"), "--workers", "1", "--no-overlay"])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if "clipped" in line]
    assert len(notes) == 1 and "1 of 3 recordings" in notes[0] and "clipped.tif" in notes[0], notes
    assert "recorded.tif" not in notes[0] and "imagej.tif" not in notes[0]


@pytest.mark.slow
def test_require_nm_fails_uncalibrated_recordings_only(tmp_path, model):
    top = tmp_path / "in"
    _stack(top / "calibrated.tif")
    _stack(top / "plain.tif", nm=None)
    s = run_batch(top, tmp_path / "out", model=model, overlay=False, require_nm=True)
    status = {r.name: (r.status, r.error) for r in s.results}
    assert status["calibrated.tif"][0] == "done"
    assert status["plain.tif"][0] == "failed" and "pixel size" in status["plain.tif"][1]


def test_cli_refuses_bad_input_before_writing(experiment, model, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    for bad, why in (
        ([str(tmp_path / "missing")], "not a folder"),
        ([str(experiment), "--workers", "0"], "--workers"),
        ([str(experiment), "--nm-per-px", "-1"], "--nm-per-px"),
        ([str(empty)], "no recordings"),
        ([str(experiment), "--conditions", str(tmp_path / "nope.csv")], "conditions"),
        ([str(experiment), "--void-size", "auto"], "--void-size applies to the generalist"),
        ([str(experiment), "--void-size", "big"], "must be a number"),
    ):
        target = tmp_path / "never"
        r = runner.invoke(app, ["batch", *bad, "--out", str(target), "--model", str(model)])
        assert r.exit_code == 2, r.output
        assert why in r.output and r.output.strip().count("\n") == 0 and "Traceback" not in r.output
        assert not target.exists()


@pytest.mark.slow
def test_cli_names_failures_and_exits_1(experiment, model, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        app, ["batch", str(experiment), "--out", str(out), "--model", str(model), "--workers", "1", "--no-overlay"]
    )
    assert r.exit_code == 1, r.output
    assert "3 of 4 recordings done" in r.output and "broken.tif: failed" in r.output
    never = tmp_path / "never"
    r = CliRunner().invoke(
        app, ["batch", str(experiment), "--out", str(never), "--model", str(model), "--scheduler", "tcp://127.0.0.1:9"]
    )
    assert r.exit_code == 2 and "Dask scheduler" in r.output and not never.exists(), r.output


@pytest.mark.slow
def test_dask_workers_give_the_same_tables(experiment, model, tmp_path):
    one = run_batch(experiment, tmp_path / "one", model=model, overlay=False)
    two = run_batch(experiment, tmp_path / "two", model=model, overlay=False, workers=2)
    assert [r.status for r in one.results] == [r.status for r in two.results]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one" / "voids.csv"), pd.read_csv(tmp_path / "two" / "voids.csv")
    )


@pytest.mark.slow
def test_killed_batch_resumes_to_the_same_table(tmp_path, model):
    top = tmp_path / "in"
    for k in range(5):
        _stack(top / f"rec{k}.tif", n=6, seed=k)
    full = run_batch(top, tmp_path / "full", model=model, overlay=False)
    assert not full.failed
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-c",
        "from neuradiff.cli import main; main()",
        "batch",
        str(top),
        "--out",
        str(out),
        "--model",
        str(model),
        "--workers",
        "1",
        "--no-overlay",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = len(read_manifest(out)) if (out / "manifest.json").is_file() else 0
        if done >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_manifest(out)
    assert 0 < len(partial) < 5, "the kill should land between the first and the last recording"
    resumed = run_batch(top, out, model=model, overlay=False)
    assert resumed.skipped == len(partial)
    pd.testing.assert_frame_equal(pd.read_csv(out / "voids.csv"), pd.read_csv(tmp_path / "full" / "voids.csv"))
    assert not list(out.glob(".*partial*")) and not list((out / "recordings").glob(".*partial*"))
    assert json.loads((out / "manifest.json").read_text())["version"] == 1


@pytest.mark.slow
def test_long_recordings_split_across_workers_give_the_same_tables(tmp_path, model):
    top = tmp_path / "in"
    _stack(top / "long.tif", n=12, seed=4)
    _stack(top / "short.tif", n=3, seed=5)
    one = run_batch(top, tmp_path / "one", model=model, overlay=False)
    split = run_batch(top, tmp_path / "split", model=model, overlay=False, workers=2, span=4)
    assert [r.status for r in split.results] == ["done", "done"]
    assert [r.status for r in one.results] == ["done", "done"]
    for name in ("voids.csv", "recordings.csv"):
        a, b = pd.read_csv(tmp_path / "one" / name), pd.read_csv(tmp_path / "split" / name)
        drop = [c for c in ("seconds", "frames_per_second", "output") if c in a.columns]
        pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop))
    tracks = pd.read_csv(tmp_path / "split" / "voids.csv").query("recording == 'long.tif'")
    frames = tracks.groupby("track_id")["frame"].agg(["min", "max"])
    assert ((frames["min"] < 4) & (frames["max"] >= 4)).any()  # linked across the first part border
