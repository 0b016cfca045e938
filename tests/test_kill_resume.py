"""``kill -9`` at random points of ``neuradiff fit`` followed by ``--resume`` gives the uninterrupted result bit for
bit; ``kill -9`` at random points of ``neuradiff evaluate`` followed by ``--resume`` gives the same scores."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers_cli import run_command, start_command
from neuradiff.synth.datasets import dataset_config, make_dataset, write_dataset

FIT = {
    "pretrain_iters": 6,
    "joint_iters": 4,
    "eval_every": 2,
    "checkpoint_every": 1,
    "batch": 2,
    "gap": 2,
    "dt": 0.2,
    "net": {"width": 4, "depth": 2},
}


def _fit_command(folder: Path, out: Path, *extra: str) -> list[str]:
    code = "import sys; from neuradiff.cli import main; sys.argv[0] = 'neuradiff'; main()"
    return [
        sys.executable,
        "-c",
        code,
        "fit",
        str(folder / "video.tif"),
        "--annotations",
        str(folder / "annotations.tif"),
        "--out",
        str(out),
        "--config",
        str(folder / "fit.json"),
        "--threads",
        "1",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _result(out: Path) -> tuple[dict, dict]:
    weights = torch.load(out / "model.pt", map_location="cpu", weights_only=True)["state_dict"]
    return weights, json.loads((out / "params.json").read_text())


@pytest.mark.slow
def test_fit_killed_at_random_points_resumes_bit_for_bit(tmp_path):
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 8, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 0.3}},
    )
    write_dataset(make_dataset(cfg), tmp_path)
    (tmp_path / "fit.json").write_text(json.dumps(FIT))

    t0 = time.perf_counter()
    subprocess.run(_fit_command(tmp_path, tmp_path / "a"), check=True, env=_env(), capture_output=True)
    duration = time.perf_counter() - t0
    print(f"uninterrupted fit: {duration:.1f} s")

    rng = random.Random(16)
    out = tmp_path / "b"
    kills, scale = 0, 1.0
    for _ in range(8):  # killed twice in a row, at random points of the run (import, pretraining, joint)
        if kills == 2:
            break
        proc = subprocess.Popen(
            _fit_command(tmp_path, out, *(["--resume"] if kills else [])),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.4, 0.9) * duration * scale)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        else:  # the machine ran faster than the timed run: start again, killing sooner
            shutil.rmtree(out, ignore_errors=True)
            kills, scale = 0, scale / 2
        proc.wait()
    r = subprocess.run(_fit_command(tmp_path, out, "--resume"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert kills == 2
    (wa, pa), (wb, pb) = _result(tmp_path / "a"), _result(out)
    assert pa == pb
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


#: The smallest evaluation suite: every job of the paper suite, on tiny videos with tiny budgets (about 10 s).
TINY_SUITE = {
    "fit_seeds": 1,
    "surrogate_seeds": 1,
    "data": {"simulation": {"size": 24}, "frames": 8, "steps_per_frame": 10, "annotations": {"fraction": 0.4}},
    "transfer_data": {"simulation": {"size": 48, "n_voids": 2}, "frames": 8, "steps_per_frame": 10},
    "fit": {"pretrain_iters": 10, "joint_iters": 2, "gap": 2, "eval_every": 2, "net": {"width": 4, "depth": 1}},
    "surrogate": {"iters": 4, "batch": 2, "net": {"embedding": "none", "width": 4, "depth": 1}},
}


def _scores(out: Path) -> tuple[dict, dict[str, str]]:
    """The scores of results.json and every table but the timings."""
    tables = {p.name: p.read_text() for p in sorted((out / "tables").glob("*.csv")) if p.name != "timing.csv"}
    return json.loads((out / "results.json").read_text())["scores"], tables


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="runs commands in forked children")
def test_evaluate_killed_at_random_points_resumes_to_the_same_scores(tmp_path):
    (tmp_path / "suite.json").write_text(json.dumps(TINY_SUITE))
    args = ["evaluate", "--quick", "--config", str(tmp_path / "suite.json"), "--threads", "1"]
    ref = run_command([*args, "--out", "a"], tmp_path, timeout_s=300)
    assert ref.code == 0, ref.lines
    print(f"uninterrupted evaluate: {ref.seconds:.1f} s")

    rng = random.Random(int(os.environ.get("NEURADIFF_KILL_SEED", "16")))
    pid, _log = start_command([*args, "--out", "b"], tmp_path)
    time.sleep(rng.uniform(0.15, 0.9) * ref.seconds)  # a random point: data, training, scoring or the report
    assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the run ended before it was killed"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    checkpoints = tmp_path / "b" / "checkpoints"
    saved = [p.name for p in checkpoints.iterdir() if not p.name.endswith(".partial")] if checkpoints.is_dir() else []
    print(f"jobs saved when killed: {len(saved)}")
    resumed = run_command([*args, "--out", "b", "--resume"], tmp_path, timeout_s=300)
    assert resumed.code == 0, resumed.lines
    assert _scores(tmp_path / "b") == _scores(tmp_path / "a")
    leftovers = [p for p in (tmp_path / "b").rglob("*") if p.name.endswith((".part", ".partial"))]
    assert leftovers == []
