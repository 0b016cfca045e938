"""Known bad inputs, each run as its own process the way a user runs the command: exit code 2, exactly one line
on stderr, no traceback, refused within a second, nothing written or left behind.

Every case here is one that once went wrong (a silent wrong answer, a hang or runaway memory, a traceback, a
partial output or unsafe loading); the campaign keeps them from coming back. Each command runs in a forked
child of the test process, so the import of torch is paid once and the time measured is the command's own;
stdout and stderr are real files, which are not terminals."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from helpers_cli import HANG_S, Outcome, run_command, start_command, tree
from neuradiff.evaluation.config import suite_config
from neuradiff.evaluation.suite import JobCache
from neuradiff.io.saved import write_model_folder
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="runs commands in forked children"),
]

#: A refusal must come within this many seconds of the command's start.
WITHIN_S = 1.0


# --------------------------------------------------------------------------- inputs shared by the cases


@dataclass
class Inputs:
    video: Path  # 10 frames of 24×24 px, calibrated (nm, s)
    annotations: Path  # its three-state masks
    model: Path  # a fitted NeuraDiff model folder (forecasts)
    supervised: Path  # a supervised model folder (net only)
    fit_stderr: list[str]  # what the fit of ``model`` wrote on stderr (a file, not a terminal)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    folder = tmp_path_factory.mktemp("inputs")
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 10, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 0.3}},
    )
    (folder / "data").mkdir()
    write_dataset(make_dataset(cfg), folder / "data")
    supervised = folder / "supervised"
    write_model_folder(
        supervised, info={"method": "supervised"}, nets={"net": RecognitionNet(NetConfig(width=4, depth=1))}
    )
    (folder / "fit.json").write_text(
        json.dumps({"pretrain_iters": 2, "joint_iters": 1, "net": {"width": 4, "depth": 1}})
    )
    data = folder / "data"
    fit = run_command(
        ["fit", str(data / "video.tif"), "--annotations", str(data / "annotations.tif")]
        + ["--out", str(folder / "model"), "--config", str(folder / "fit.json")],
        folder,
        timeout_s=300,
    )
    assert fit.code == 0, fit.lines
    for module in ("rsciio.mrc", "rsciio.emd"):  # time the checks, not the first import of a reader
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    return Inputs(data / "video.tif", data / "annotations.tif", folder / "model", supervised, fit.lines)


# --------------------------------------------------------------------------- the cases

#: A case writes what it needs into its folder and returns the command line and extra environment variables.
Build = Callable[[Path, Inputs], "tuple[list[str], dict[str, str]]"]


def _track(video: Path, *extra: str) -> list[str]:
    return ["track", str(video), "--model", "{supervised}", "--out", "out", "--no-measure", *extra]


def _video(folder: Path, frames: np.ndarray, name: str = "video.tif") -> Path:
    path = folder / name
    tifffile.imwrite(path, frames)
    return path


def _random(shape, *, uint8: bool = False) -> np.ndarray:
    a = np.random.default_rng(0).random(shape)
    return (a * 255).astype(np.uint8) if uint8 else a.astype(np.float32)


def truncated_tiff(folder: Path, inp: Inputs):
    path = _video(folder, _random((10, 48, 48), uint8=True))
    data = path.read_bytes()
    path.write_bytes(data[: int(0.9 * len(data))])
    return _track(path), {}


def truncated_tiff_pages(kind: str):
    """A compressed stack cut in half (a page offset points past the end), or an ImageJ hyperstack cut to 60 %:
    the stack's series cannot be built, so a reader that streams frames must refuse it, not read what is left."""

    def build(folder: Path, inp: Inputs):
        frames = _random((4, 32, 40), uint8=True)
        path = folder / ("masks.tif" if kind == "masks" else "video.tif")
        if kind == "imagej":
            tifffile.imwrite(path, frames, imagej=True)
        else:
            tifffile.imwrite(path, frames, compression="zlib", photometric="minisblack")
        data = path.read_bytes()
        path.write_bytes(data[: int((0.6 if kind == "imagej" else 0.5) * len(data))])
        if kind == "masks":
            return ["measure", str(path), "--out", "out"], {}
        return _track(path), {}

    return build


def nan_pixels(kind: str):
    def build(folder: Path, inp: Inputs):
        a = _random((6, 24, 24))
        if kind == "some NaN":
            a[3, 5:8, 5:8] = np.nan
        elif kind == "all NaN":
            a[:] = np.nan
        elif kind == "inf":
            a[2, 0, 0] = np.inf
        else:
            a[5] = -np.inf
        return _track(_video(folder, a)), {}

    return build


def folder_of_nan_frames(folder: Path, inp: Inputs):
    frames = folder / "frames"
    frames.mkdir()
    for k in range(4):
        tifffile.imwrite(frames / f"f{k:02d}.tif", np.full((24, 24), np.nan, np.float32))
    return _track(frames), {}


def one_pixel_frames(folder: Path, inp: Inputs):
    return _track(_video(folder, np.arange(10, dtype=np.uint8).reshape(10, 1, 1))), {}


def four_masks_ten_frames(folder: Path, inp: Inputs):
    masks = _video(folder, np.zeros((4, 24, 24), np.uint8), "masks.tif")
    return ["measure", str(masks), "--video", str(inp.video), "--out", "out"], {}


def model_json(change: str):
    def build(folder: Path, inp: Inputs):
        model = folder / "model"
        model.mkdir()
        for f in inp.supervised.iterdir():
            (model / f.name).write_bytes(f.read_bytes())
        meta = json.loads((model / "model.json").read_text())
        if change == "no net":
            meta.pop("net")
        else:
            meta["net"]["width"] = 2 * meta["net"]["width"]
        (model / "model.json").write_text(json.dumps(meta))
        return ["track", str(inp.video), "--model", str(model), "--out", "out"], {}

    return build


def forecast(steps: str):
    def build(folder: Path, inp: Inputs):
        return ["forecast", "--model", str(inp.model), "--video", str(inp.video), "--out", "out", "--steps", steps], {}

    return build


def coco_huge_image(folder: Path, inp: Inputs):
    coco = {
        "images": [{"id": 1, "file_name": "f0.png", "height": 100000, "width": 100000}],
        "annotations": [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 50, 1, 50, 50]]}],
    }
    (folder / "ann.json").write_text(json.dumps(coco))
    return ["measure", "ann.json", "--out", "out"], {}


def fit_with(config: dict | str, *extra: str):
    def build(folder: Path, inp: Inputs):
        text = config if isinstance(config, str) else json.dumps(config, ensure_ascii=False)
        (folder / "fit.json").write_text(text, encoding="utf-8")
        args = ["fit", str(inp.video), "--annotations", str(inp.annotations), "--out", "out/model"]
        return [*args, "--config", "fit.json", *extra], {}

    return build


def simulate_with(config: dict):
    def build(folder: Path, inp: Inputs):
        (folder / "simulate.json").write_text(json.dumps(config))
        return ["simulate", "--config", "simulate.json", "--out", "out"], {}

    return build


def measure_with(option: str, value: str):
    def build(folder: Path, inp: Inputs):
        return ["measure", str(inp.annotations), "--out", "out", option, value], {}

    return build


def command(*args: str, env: dict[str, str] | None = None):
    def build(folder: Path, inp: Inputs):
        return [*args, "--out", "out"], dict(env or {})

    return build


def mrc_over_claiming(folder: Path, inp: Inputs):
    head = bytearray(1024)
    n = 100000
    struct.pack_into("<4i", head, 0, n, n, n, 2)
    struct.pack_into("<3i", head, 28, n, n, n)
    struct.pack_into("<3f", head, 40, n, n, n)
    struct.pack_into("<3i", head, 64, 1, 2, 3)
    head[208:212] = b"MAP "
    head[212:214] = b"\x44\x44"
    (folder / "huge.mrc").write_bytes(bytes(head) + bytes(4096))
    return _track(folder / "huge.mrc"), {}


def fake_emd(folder: Path, inp: Inputs):
    (folder / "fake.emd").write_text("this is not an EMD file")
    return _track(folder / "fake.emd"), {}


class _RunsCode:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def fit_resume_unsafe(folder: Path, inp: Inputs):
    out = folder / "out"
    out.mkdir()
    torch.save({"format": "neuradiff-fit-checkpoint", "state": _RunsCode(folder / "pwned")}, out / "checkpoint.pt")
    (folder / "fit.json").write_text(
        json.dumps({"pretrain_iters": 2, "joint_iters": 1, "net": {"width": 4, "depth": 1}})
    )
    args = ["fit", str(inp.video), "--annotations", str(inp.annotations), "--out", "out", "--config", "fit.json"]
    return [*args, "--resume"], {}


def evaluate_resume_unsafe(folder: Path, inp: Inputs):
    """A checkpoint folder of ``evaluate`` whose saved model someone replaced by a pickle that runs code."""
    cfg = suite_config("paper", quick=True, overrides={"threads": 1})
    path = JobCache(folder / "out" / "checkpoints", cfg).path("supervised UNet")
    assert path is not None
    path.mkdir(parents=True)
    for f in inp.supervised.iterdir():
        (path / f.name).write_bytes(f.read_bytes())
    torch.save({"format": "neuradiff-recognition-net", "state": _RunsCode(folder / "pwned")}, path / "model.pt")
    (path / "job.json").write_text(json.dumps({"kind": "fit", "history": {}, "kept": None, "seconds": 1.0}))
    return ["evaluate", "--quick", "--out", "out", "--resume"], {}


def demo_bad_config(folder: Path, inp: Inputs):
    (folder / "bad.json").write_text(json.dumps({"joint_iters": -1}))
    return ["demo", "--out", "out", "--config", "bad.json"], {}


MEM = {"NEURADIFF_MAX_MEMORY_GB": "2"}

CASES: dict[str, Build] = {
    "track: TIFF truncated to 90 %": truncated_tiff,
    "track: compressed TIFF cut in half": truncated_tiff_pages("zlib"),
    "track: ImageJ TIFF cut to 60 %": truncated_tiff_pages("imagej"),
    "measure: compressed mask stack cut in half": truncated_tiff_pages("masks"),
    "track: video with some NaN pixels": nan_pixels("some NaN"),
    "track: all-NaN video": nan_pixels("all NaN"),
    "track: video with an inf pixel": nan_pixels("inf"),
    "track: video with a -inf frame": nan_pixels("-inf frame"),
    "track: folder of NaN frames": folder_of_nan_frames,
    "track: (10, 1, 1) TIFF": one_pixel_frames,
    "measure: 4 mask frames, 10-frame video": four_masks_ten_frames,
    "track: model.json without net": model_json("no net"),
    "track: model.json width contradicts model.pt": model_json("width"),
    "forecast --steps 1000000000": forecast("1000000000"),
    "forecast --steps 1e9": forecast("1e9"),
    "measure: COCO claiming a 100000² image": coco_huge_image,
    "fit: net depth 99": fit_with({"net": {"depth": 99}}),
    "simulate --frames 1e9": command("simulate", "--frames", "1e9"),
    "simulate --frames 1000000000": command("simulate", "--frames", "1000000000"),
    "simulate-fields --steps 1e9": command("simulate-fields", "--steps", "1e9"),
    "simulate-fields --steps 1000000000": command("simulate-fields", "--steps", "1000000000"),
    "fit: pretrain_iters 1e9": fit_with({"pretrain_iters": 1e9}),
    "fit: pretrain_iters 1000000000": fit_with({"pretrain_iters": 1_000_000_000}),
    "track: MRC header claiming 100000³": mrc_over_claiming,
    "simulate --size 100000": command("simulate", "--size", "100000"),
    "simulate-fields --device cuda": command("simulate-fields", "--device", "cuda"),
    'fit: {"pretrain_iters": "six"}': fit_with({"pretrain_iters": "six"}),
    "measure --nm-per-px 1e-320": measure_with("--nm-per-px", "1e-320"),
    "measure --frame-interval inf": measure_with("--frame-interval", "inf"),
    "track --frame-interval inf": lambda folder, inp: (_track(inp.video, "--frame-interval", "inf"), {}),
    "track --nm-per-px 1e-320": lambda folder, inp: (_track(inp.video, "--nm-per-px", "1e-320"), {}),
    "batch --nm-per-px 1e300": lambda folder, inp: (
        ["batch", str(inp.video.parent), "--out", "out", "--nm-per-px", "1e300"],
        {},
    ),
    "fit --sim-time-per-frame inf": fit_with({}, "--sim-time-per-frame", "inf"),
    "fit --sim-time-per-frame 0 (no checkpoint.pt left)": fit_with(
        {"pretrain_iters": 2, "joint_iters": 1, "net": {"width": 4, "depth": 1}}, "--sim-time-per-frame", "0"
    ),
    "fit: bad config leaves no out/": fit_with({"joint_iters": -1}),
    "simulate: bad config leaves no out/": simulate_with({"frames": -3}),
    "simulate-fields --dt 0 leaves no out/": command("simulate-fields", "--dt", "0"),
    "demo --config bad.json leaves no out/video": demo_bad_config,
    "fit --resume with a code-running checkpoint": fit_resume_unsafe,
    "evaluate --resume with a code-running checkpoint": evaluate_resume_unsafe,
    "fit: non-ASCII config value": fit_with('{"pretrain_iters": "٣٠x"}'),
    "fit: full-width digits in a config value": fit_with({"gap": "２ü"}),
    "track: fake .emd": fake_emd,
}

#: Words the one line must hold, where the case needs them.
WORDS: dict[str, list[str]] = {
    "track: TIFF truncated to 90 %": ["truncated"],
    "track: compressed TIFF cut in half": ["truncated"],
    "track: ImageJ TIFF cut to 60 %": ["truncated"],
    "measure: compressed mask stack cut in half": ["truncated"],
    "track: video with some NaN pixels": ["NaN"],
    "track: all-NaN video": ["NaN"],
    "track: folder of NaN frames": ["NaN"],
    "track: (10, 1, 1) TIFF": ["too small"],
    "measure: 4 mask frames, 10-frame video": ["4", "10"],
    "track: model.json without net": ["net"],
    "track: model.json width contradicts model.pt": ["width"],
    "forecast --steps 1000000000": ["memory", "NEURADIFF_MAX_MEMORY_GB"],
    "measure: COCO claiming a 100000² image": ["100000×100000"],
    "fit: net depth 99": ["depth 99"],
    "simulate-fields --steps 1000000000": ["memory", "NEURADIFF_MAX_MEMORY_GB"],
    "fit: pretrain_iters 1000000000": ["NEURADIFF_MAX_WORK"],
    "simulate --size 100000": ["memory"],
    "simulate-fields --device cuda": ["CUDA"],
    'fit: {"pretrain_iters": "six"}': ["pretrain_iters", "fit.json"],
    "measure --nm-per-px 1e-320": ["--nm-per-px"],
    "track --frame-interval inf": ["--frame-interval"],
    "track --nm-per-px 1e-320": ["--nm-per-px"],
    "batch --nm-per-px 1e300": ["--nm-per-px"],
    "fit --resume with a code-running checkpoint": ["checkpoint"],
    "evaluate --resume with a code-running checkpoint": ["checkpoint"],
    "fit: non-ASCII config value": ["pretrain_iters", "fit.json"],
    "fit: full-width digits in a config value": ["gap", "fit.json"],
    "track: fake .emd": ["emd"],
}


@pytest.fixture(scope="module")
def outcomes():
    table: dict[str, Outcome] = {}
    yield table
    print(
        "\n"
        + "\n".join(
            f"{k} | {o.code} | {len(o.lines)} | {o.seconds:.3f} s | {o.lines[-1] if o.lines else ''}"
            for k, o in table.items()
        )
    )


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_within_a_second_and_leaves_nothing(name, inputs, tmp_path, outcomes):
    args, env = CASES[name](tmp_path, inputs)
    args = [a.replace("{supervised}", str(inputs.supervised)) for a in args]
    before = tree(tmp_path)
    result = run_command(args, tmp_path, {**MEM, **env})
    outcomes[name] = result
    text = "\n".join(result.lines)
    assert "Traceback" not in text + result.stdout, text
    assert result.code == 2, (result.code, text)
    assert len(result.lines) == 1 and result.lines[0].startswith("neuradiff: error: "), text
    for word in WORDS.get(name, []):
        assert word in result.lines[0], result.lines[0]
    assert result.seconds < WITHIN_S, f"{result.seconds:.2f} s: {text}"
    assert tree(tmp_path) == before, result.changed
    assert not (tmp_path / "pwned").exists()


# --------------------------------------------------------------------------- leftovers of killed runs, logs


def test_a_killed_simulate_leaves_its_staging_folder_only_until_the_next_run(tmp_path):
    """kill -9 while ``simulate`` writes into its hidden staging folder; the next run into the same parent folder
    removes the dead run's stage and writes a complete output."""
    (tmp_path.parent / "short.json").write_text(json.dumps({"steps_per_frame": 5}))
    args = [
        "simulate",
        "--size",
        "32",
        "--frames",
        "30",
        "--config",
        str(tmp_path.parent / "short.json"),
        "--out",
        "out",
    ]
    pid, log = start_command(args, tmp_path)
    t0 = time.perf_counter()
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert time.perf_counter() - t0 < HANG_S and os.waitpid(pid, os.WNOHANG) == (0, 0), log.read_text()
        time.sleep(0.002)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    stages = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert stages and not (tmp_path / "out").exists()
    args[4] = "3"
    result = run_command(args, tmp_path, timeout_s=300)
    assert result.code == 0, result.lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "video.tif").is_file()


def test_progress_is_not_drawn_on_a_stderr_that_is_not_a_terminal(inputs):
    """A fit logged to files: stderr holds whole lines only (no bars, carriage returns or colour codes)."""
    text = "\n".join(inputs.fit_stderr)
    for mark in ("\r", "\x1b[", "━", "█", "it/s"):
        assert mark not in text, repr(text)
