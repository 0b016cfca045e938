"""Never a silent wrong answer: bad input is one line and exit code 2, refused before anything is written;
over-sized requests are refused at once with their estimate; readers refuse corrupt, truncated, non-finite and
over-claiming files; nothing is unpickled."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import remove_stale_stages, staged_output
from neuradiff.io.saved import read_model_folder, write_model_folder
from neuradiff.io.video import read_video
from neuradiff.nets import NetConfig, RecognitionNet, load_net, save_net
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset

runner = CliRunner()


def run_cli(*args: str):
    """Run the CLI in-process; returns (exit code, stdout, stderr, seconds)."""
    t0 = time.perf_counter()
    r = runner.invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr, time.perf_counter() - t0, r.exception


def assert_one_line_error(result, *words: str, within_s: float | None = None) -> str:
    code, _out, err, seconds, exc = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err, exc)
    assert len(lines) == 1 and lines[0].startswith("neuradiff: error: "), err
    assert "Traceback" not in err
    assert exc is None or isinstance(exc, SystemExit), repr(exc)
    for word in words:
        assert word in lines[0], lines[0]
    if within_s is not None:
        assert seconds < within_s, seconds
    return lines[0]


@pytest.fixture(scope="module", autouse=True)
def _warm_cli():
    """Load the CLI's lazy imports once, so that the timings below measure the checks, not the start-up."""
    run_cli("simulate", "--help")


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("robust")
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 10, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 0.3}},
    )
    write_dataset(make_dataset(cfg), folder)
    return folder


@pytest.fixture
def small_memory(monkeypatch):
    """A memory limit of 2 GB, whatever the machine."""
    monkeypatch.setenv("NEURADIFF_MAX_MEMORY_GB", "2")


# --------------------------------------------------------------------------- the CLI's error boundary


@pytest.mark.parametrize(
    "args, words",
    [
        (["simulate", "--frames", "1e9"], ["--frames"]),
        (["simulate", "--frames", "1000000000"], ["memory", "NEURADIFF_MAX_MEMORY_GB"]),
        (["simulate", "--size", "100000"], ["memory", "100000×100000"]),
        (["simulate-fields", "--steps", "1000000000"], ["NEURADIFF_MAX"]),
        (["simulate-fields", "--size", "1000000"], ["memory"]),
        (["simulate-fields", "--device", "nonsense"], ["device"]),
        (["simulate-fields", "--dt", "inf"], ["dt"]),
        (["simulate", "--no-such-option"], ["--no-such-option"]),
    ],
)
def test_bad_or_oversized_requests_are_one_line_within_a_second(tmp_path, args, words):
    out = tmp_path / "out"
    assert_one_line_error(run_cli(*args, "--out", out), *words, within_s=1.0)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refusal_says_how_to_allow_more_and_the_override_works(tmp_path, monkeypatch):
    line = assert_one_line_error(
        run_cli("simulate-fields", "--steps", "20000000", "--save-every", "1000000", "--out", tmp_path / "o")
    )
    assert "cell updates" in line and "NEURADIFF_MAX_WORK" in line
    monkeypatch.setenv("NEURADIFF_MAX_WORK", "1e6")
    line = assert_one_line_error(run_cli("simulate-fields", "--size", "128", "--steps", "100", "--out", tmp_path / "o"))
    assert "1.64e+06 cell updates" in line
    monkeypatch.setenv("NEURADIFF_MAX_WORK", "1e7")
    args = ("simulate-fields", "--size", "16", "--steps", "4", "--save-every", "2", "--out", tmp_path / "o")
    assert run_cli(*args)[0] == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine has the device")
def test_unavailable_device_is_one_line(tmp_path):
    assert_one_line_error(run_cli("simulate-fields", "--device", "cuda", "--out", tmp_path / "o"), "CUDA")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 80000000000 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
    ],
)
def test_allocator_failures_are_one_line(tmp_path, monkeypatch, error):
    def explode(*_a, **_k):
        raise error

    monkeypatch.setattr("neuradiff.cli.simulate.run_simulate_fields", explode)
    assert_one_line_error(run_cli("simulate-fields", "--out", tmp_path / "o"), "memory")


def test_a_bug_is_not_hidden_as_bad_input(tmp_path, monkeypatch):
    def bug(*_a, **_k):
        raise RuntimeError("shape mismatch in an internal function")

    monkeypatch.setattr("neuradiff.cli.simulate.run_simulate_fields", bug)
    code, *_rest, exc = run_cli("simulate-fields", "--out", tmp_path / "o")
    assert code == 1 and isinstance(exc, RuntimeError)


@pytest.mark.parametrize("option", ["--nm-per-px", "--frame-interval"])
@pytest.mark.parametrize("value", ["1e-320", "inf", "nan", "-1", "0", "1e300"])
def test_calibrations_outside_physical_ranges_are_refused(tiny_video, tmp_path, option, value):
    out = tmp_path / "m"
    line = assert_one_line_error(run_cli("measure", tiny_video / "annotations.tif", "--out", out, option, value))
    assert option in line
    assert not out.exists()


def test_measure_refuses_fewer_mask_frames_than_video_frames(tiny_video, tmp_path):
    masks = tmp_path / "masks.tif"
    tifffile.imwrite(masks, np.zeros((4, 24, 24), np.uint8))
    out = tmp_path / "m"
    assert_one_line_error(run_cli("measure", masks, "--video", tiny_video / "video.tif", "--out", out), "4", "10")
    assert not out.exists()


# --------------------------------------------------------------------------- validation before side effects


def _fit(tiny_video, out, *extra, config: dict | None = None, tmp: Path):
    args = ["fit", tiny_video / "video.tif", "--annotations", tiny_video / "annotations.tif", "--out", out, *extra]
    if config is not None:
        path = tmp / "fit.json"
        path.write_text(json.dumps(config))
        args += ["--config", path]
    return run_cli(*args)


@pytest.mark.parametrize(
    "extra, config, words",
    [
        (["--sim-time-per-frame", "0"], None, ["--sim-time-per-frame"]),
        (["--sim-time-per-frame", "inf"], None, ["--sim-time-per-frame"]),
        ([], {"pretrain_iters": 1_000_000_000}, ["cell updates", "NEURADIFF_MAX_WORK"]),
        ([], {"net": {"depth": 99}}, ["memory", "depth 99"]),
        ([], {"net": {"width": 100000}}, ["memory"]),
    ],
)
def test_fit_refuses_before_creating_the_output(tiny_video, tmp_path, extra, config, words):
    out = tmp_path / "deep" / "model"
    assert_one_line_error(_fit(tiny_video, out, *extra, config=config, tmp=tmp_path), *words, within_s=1.0)
    assert not (tmp_path / "deep").exists()


def test_demo_with_a_bad_config_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"joint_iters": -1}))
    out = tmp_path / "demo"
    assert_one_line_error(run_cli("demo", "--out", out, "--config", bad), "joint_iters")
    assert not out.exists()


def test_staged_output_leaves_nothing_on_failure_and_sweeps_stages_of_dead_processes(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(KeyboardInterrupt), staged_output(out) as stage:
        (stage / "half.txt").write_text("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.{int(dead.stdout)}.x1y2.partial"
    stale.mkdir()
    (stale / "video.tif").write_bytes(b"half")
    live = tmp_path / f".out.{os.getpid()}.z3.partial"
    live.mkdir()
    assert remove_stale_stages(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


@pytest.mark.slow
def test_sigterm_cleans_the_staging_folder(tmp_path):
    code = (
        "import sys, time\n"
        "from neuradiff.cli import app\n"
        "import neuradiff.workflows.simulate as ws\n"
        "def slow(*a, **k):\n"
        "    print('running', flush=True); time.sleep(30)\n"
        "ws.write_dataset = slow\n"  # the files are being written into the staging folder
        f"sys.argv = ['neuradiff', 'simulate', '--size', '32', '--frames', '2', '--out', {str(tmp_path / 'out')!r}]\n"
        "app()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    proc.terminate()
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and err.strip().splitlines() == ["neuradiff: interrupted"]
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- readers


def _tiff_variants(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    a = (rng.random((10, 48, 48)) * 255).astype(np.uint8)
    paths = []
    for name, kw in {
        "plain": {},
        "imagej": {"imagej": True},
        "zlib": {"compression": "zlib"},
        "bigtiff": {"bigtiff": True},
    }.items():
        path = tmp_path / f"{name}.tif"
        tifffile.imwrite(path, a, **kw)
        paths.append(path)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as w:
        for frame in a:
            w.write(frame, contiguous=False)
    return [*paths, path]


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9, 0.99])
def test_truncated_tiffs_are_refused(tmp_path, fraction):
    for path in _tiff_variants(tmp_path):
        data = path.read_bytes()
        cut = tmp_path / f"cut-{path.name}"
        cut.write_bytes(data[: int(len(data) * fraction)])
        with pytest.raises(NeuradiffError, match=r"truncated|corrupt"):
            read_video(cut)


def test_a_stack_of_one_pixel_frames_is_not_read_as_one_image(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.arange(10, dtype=np.uint8).reshape(10, 1, 1))
    with pytest.raises(NeuradiffError, match="too small"):
        read_video(path)


@pytest.mark.parametrize("poison", ["one nan", "one inf", "all nan", "-inf frame"])
def test_non_finite_pixels_are_refused(tmp_path, poison):
    a = np.random.default_rng(1).random((6, 16, 16)).astype(np.float32)
    if poison == "one nan":
        a[4, 3, 3] = np.nan
    elif poison == "one inf":
        a[2, 0, 0] = np.inf
    elif poison == "all nan":
        a[:] = np.nan
    else:
        a[5] = -np.inf
    tifffile.imwrite(tmp_path / "v.tif", a)
    with pytest.raises(NeuradiffError, match="NaN/inf"):
        read_video(tmp_path / "v.tif")


def test_a_folder_of_nan_frames_is_not_tracked(tiny_video, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"f{k}.tif", np.full((24, 24), np.nan, np.float32))
    out = tmp_path / "m"
    assert_one_line_error(run_cli("measure", folder, "--video", folder, "--out", out), "NaN/inf")
    assert not out.exists()


def _mrc(path: Path, n: int, payload: bytes) -> Path:
    head = bytearray(1024)
    struct.pack_into("<4i", head, 0, n, n, n, 2)
    struct.pack_into("<3i", head, 28, n, n, n)
    struct.pack_into("<3f", head, 40, n, n, n)
    struct.pack_into("<3i", head, 64, 1, 2, 3)
    head[208:212] = b"MAP "
    head[212:214] = b"\x44\x44"
    path.write_bytes(bytes(head) + payload)
    return path


def test_over_claiming_mrc_header_is_refused_within_a_second(tmp_path, monkeypatch):
    pytest.importorskip("rsciio")
    path = _mrc(tmp_path / "huge.mrc", 100000, bytes(4096))
    t0 = time.perf_counter()
    with pytest.raises(NeuradiffError, match="memory"):
        read_video(path)
    monkeypatch.setenv("NEURADIFF_MAX_MEMORY_GB", "1e9")
    with pytest.raises(NeuradiffError, match="truncated"):
        read_video(path)
    assert time.perf_counter() - t0 < 1.0
    small = _mrc(tmp_path / "ok.mrc", 16, np.ones((16, 16, 16), "<f4").tobytes())
    assert read_video(small).frames.shape == (16, 16, 16)


def test_over_claiming_tiff_is_refused_before_reading(tmp_path, small_memory):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((4, 16, 16), np.uint8))
    data = bytearray(path.read_bytes())
    # the first page's width and length tags (256, 257) claim 100000 px a side
    with tifffile.TiffFile(path) as tif:
        offsets = [tif.pages[0].tags[t].valueoffset for t in (256, 257)]
        dtypes = [tif.pages[0].tags[t].dtype for t in (256, 257)]
    for off, dt in zip(offsets, dtypes):
        struct.pack_into("<H" if int(dt) == 3 else "<I", data, off, 60000)
    path.write_bytes(bytes(data))
    t0 = time.perf_counter()
    with pytest.raises(NeuradiffError):
        read_video(path)
    assert time.perf_counter() - t0 < 1.0


def test_coco_claiming_a_huge_image_is_refused_within_a_second(tmp_path, small_memory):
    coco = {
        "images": [{"id": 1, "file_name": "f0.png", "height": 100000, "width": 100000}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 50, 1, 50, 50]]}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    out = tmp_path / "m"
    assert_one_line_error(run_cli("measure", path, "--out", out), "memory", "100000×100000", within_s=1.0)
    assert not out.exists()


def test_fake_emd_says_what_is_wrong(tmp_path):
    pytest.importorskip("rsciio")
    path = tmp_path / "fake.emd"
    path.write_text("this is not an EMD file")
    with pytest.raises(NeuradiffError) as info:
        read_video(path)
    assert "cannot read this .emd file" in str(info.value) and "needs RosettaSciIO" not in str(info.value)


# --------------------------------------------------------------------------- saved models and checkpoints


class _RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_weights_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"format": "x", "payload": _RunsCode(marker)}, path)
    with pytest.raises(NeuradiffError, match="not a readable recognition-net file"):
        load_net(path)
    assert not marker.exists()


def test_a_malicious_checkpoint_is_refused_with_one_line_by_fit_resume(tiny_video, tmp_path):
    marker = tmp_path / "pwned"
    out = tmp_path / "model"
    out.mkdir()
    torch.save({"format": "neuradiff-fit-checkpoint", "state": _RunsCode(marker)}, out / "checkpoint.pt")
    config = {"pretrain_iters": 2, "joint_iters": 0, "net": {"width": 4, "depth": 1}}
    assert_one_line_error(_fit(tiny_video, out, "--resume", config=config, tmp=tmp_path), "checkpoint")
    assert not marker.exists()


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    write_model_folder(folder, info={"method": "supervised"}, nets={"net": RecognitionNet(NetConfig(width=4, depth=1))})
    read_model_folder(folder)
    return folder


def test_model_json_without_net_or_contradicting_the_weights_is_refused(tmp_path):
    folder = _model_folder(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "net"}))
    with pytest.raises(NeuradiffError, match="no 'net' section"):
        read_model_folder(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "net": {**meta["net"], "width": 8}}))
    with pytest.raises(NeuradiffError, match=r"contradicts model\.pt: net width is 8"):
        read_model_folder(folder)
    save_net(RecognitionNet(NetConfig(width=4, depth=2)), folder / "model.pt")
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(NeuradiffError, match="net depth"):
        read_model_folder(folder)


@pytest.mark.slow
def test_forecast_of_a_billion_frames_is_refused_within_a_second(tiny_video, tmp_path):
    config = tmp_path / "fit.json"
    config.write_text(json.dumps({"pretrain_iters": 2, "joint_iters": 1, "net": {"width": 4, "depth": 1}}))
    model = tmp_path / "model"
    args = ["fit", tiny_video / "video.tif", "--annotations", tiny_video / "annotations.tif", "--out", model]
    assert run_cli(*args, "--config", config)[0] == 0
    out = tmp_path / "fc"
    args = ["forecast", "--model", model, "--video", tiny_video / "video.tif", "--out", out]
    assert_one_line_error(run_cli(*args, "--steps", "1000000000"), "memory", within_s=1.0)
    assert not out.exists()
    assert run_cli(*args, "--steps", "2")[0] == 0 and (out / "forecast.npz").is_file()


@pytest.mark.parametrize(
    "blob, words",
    [
        ({"format": "neuradiff-fit-checkpoint", "version": 1}, ["version 1", "without --resume"]),
        ({"format": "neuradiff-fit-checkpoint"}, ["version None", "without --resume"]),
        ({"weight": torch.zeros(2)}, ["not a neuradiff fit checkpoint"]),
    ],
)
def test_a_checkpoint_of_another_version_or_program_is_one_line(tiny_video, tmp_path, blob, words):
    out = tmp_path / "model"
    out.mkdir()
    torch.save(blob, out / "checkpoint.pt")
    config = {"pretrain_iters": 2, "joint_iters": 0, "net": {"width": 4, "depth": 1}}
    assert_one_line_error(_fit(tiny_video, out, "--resume", config=config, tmp=tmp_path), *words)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_a_batch_manifest_of_another_version_is_one_line(tiny_video, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"version": 0, "recordings": {}}))
    line = assert_one_line_error(run_cli("batch", tiny_video, "--out", out), "manifest", "version 0")
    assert "use another --out" in line


@pytest.mark.slow
def test_the_seed_of_a_simulate_config_is_used_and_checked(tmp_path):
    """A config's seed is not silently replaced by the default of --seed; a bad one is refused."""
    (tmp_path / "bad.json").write_text(json.dumps({"seed": "five"}))
    assert_one_line_error(run_cli("simulate", "--config", tmp_path / "bad.json", "--out", tmp_path / "o"), "seed")
    assert not (tmp_path / "o").exists()
    args = ["simulate", "--size", "24", "--frames", "2", "--config", tmp_path / "s.json"]
    (tmp_path / "s.json").write_text(json.dumps({"seed": 3, "steps_per_frame": 2}))
    assert run_cli(*args, "--out", tmp_path / "a")[0] == 0
    assert run_cli(*args, "--seed", "3", "--out", tmp_path / "b")[0] == 0
    assert run_cli(*args, "--seed", "0", "--out", tmp_path / "c")[0] == 0
    video = {k: tifffile.imread(tmp_path / k / "video.tif") for k in "abc"}
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["seed"] == 3
    np.testing.assert_array_equal(video["a"], video["b"])
    assert not np.array_equal(video["a"], video["c"])
