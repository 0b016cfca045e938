"""Weak scaling of ``neuradiff batch``: the same folder of recordings with 1 and with 2 Dask workers.

A folder of ``--recordings`` synthetic recordings (``--frames`` frames of ``--size``² px, dark voids on a noisy
background, calibrated TIFF stacks) is tracked and measured (no overlay video) by ``run_batch`` with the shipped
generalist recogniser (the default of ``neuradiff batch``), once in-process with one worker and once on a local Dask
cluster of two worker processes (one torch thread each), cluster start-up included; ``--repeats`` times, alternating,
so that a change in the machine's speed hits both. The two runs' ``voids.csv`` must be identical.

With ``--split`` the folder holds one recording of ``--recordings`` × ``--frames`` frames instead, and the Dask run
splits it into parts of ``--frames`` frames (``neuradiff batch --span``) tracked by both workers and linked in one
pass.

Two baselines in the same run: the machine's ceiling for this very work, two independent ``neuradiff batch
--workers 1`` processes started at once on the two halves of the folder (no Dask: what two cores give when nothing
is shared), and for reference a pure-Python loop (no memory traffic) alone and as two processes at once. Printed:
wall seconds, frames/s, the batch ratio 2 workers / 1 worker (goal ≥ 1.7×), the two baselines' ratios, each repeat
and the medians. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import environment, print_environment, single_thread, write_json

single_thread(1)

import numpy as np
import pandas as pd
import tifffile

from neuradiff.workflows.batch import run_batch


def make_recordings(folder: Path, n: int, frames: int, size: int) -> None:
    """``n`` recordings, the first half in ``folder/a``, the rest in ``folder/b``."""
    yy, xx = np.mgrid[:size, :size]
    for k in range(n):
        half = folder / ("a" if k < max(n // 2, 1) else "b")
        half.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(k)
        centres = rng.uniform(20, size - 20, (12, 2))
        radii = rng.uniform(4, 10, 12)
        stack = np.empty((frames, size, size), np.uint8)
        for t in range(frames):
            f = 0.8 + 0.05 * rng.standard_normal((size, size))
            for (cy, cx), r in zip(centres, radii * (1 - 0.3 * t / frames)):
                f[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 0.25
            stack[t] = np.clip(f * 255, 0, 255)
        tifffile.imwrite(
            half / f"rec{k:02d}.tif",
            stack,
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"axes": "TYX", "unit": "nm", "finterval": 1.0},
        )


SPIN = "x = 0\nfor i in range(40_000_000):\n    x += i\n"


def ceiling() -> dict:
    """Wall seconds of a pure-Python loop alone and as two processes at once; their throughput ratio."""
    times = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
        for p in procs:
            p.wait()
        times[n] = time.perf_counter() - t0
    return {"one_s": times[1], "two_s": times[2], "ratio": 2 * times[1] / times[2]}


HALF = (
    "import sys, torch; torch.set_num_threads(1)\n"
    "from neuradiff.workflows.batch import run_batch\n"
    "s = run_batch(sys.argv[1], sys.argv[2], model=None, workers=1, overlay=False)\n"
    "assert not s.failed\n"
)


def two_processes(data: Path, out: Path) -> float:
    """Wall seconds of two independent in-process batches, one per half of the folder, started at once."""
    t0 = time.perf_counter()
    halves = [h for h in ("a", "b") if (data / h).is_dir()]
    procs = [subprocess.Popen([sys.executable, "-c", HALF, str(data / h), str(out / h)]) for h in halves]
    codes = [p.wait() for p in procs]
    assert not any(codes), codes
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=8)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--split", action="store_true", help="One long recording split into parts across the workers.")
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    repeats = []
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "in"
        data.mkdir()
        if args.split:
            make_recordings(data, 1, args.recordings * args.frames, args.size)
        else:
            make_recordings(data, args.recordings, args.frames, args.size)
        total = args.recordings * args.frames
        for r in range(args.repeats):
            rows = {"ceiling": ceiling()}
            for workers in (1, 2):
                t0 = time.perf_counter()
                span = args.frames if args.split and workers > 1 else None
                s = run_batch(data, tmp / f"out{r}_{workers}", model=None, workers=workers, overlay=False, span=span)
                seconds = time.perf_counter() - t0
                assert not s.failed, [x.error for x in s.failed]
                rows[workers] = {"seconds": seconds, "frames_per_s": total / seconds}
            rows["ratio"] = rows[2]["frames_per_s"] / rows[1]["frames_per_s"]
            if not args.split:
                seconds = two_processes(data, tmp / f"halves{r}")
                rows["two_processes"] = {"seconds": seconds, "frames_per_s": total / seconds}
                rows["two_processes_ratio"] = total / seconds / rows[1]["frames_per_s"]
            one, two = (pd.read_csv(tmp / f"out{r}_{w}" / "voids.csv") for w in (1, 2))
            same = same and one.equals(two)
            two = rows.get("two_processes_ratio", float("nan"))
            print(
                f"repeat {r + 1}: 1 worker {rows[1]['seconds']:.1f} s ({rows[1]['frames_per_s']:.1f} frames/s), "
                f"2 workers {rows[2]['seconds']:.1f} s ({rows[2]['frames_per_s']:.1f} frames/s): "
                f"{rows['ratio']:.2f}x; two independent processes {two:.2f}x; "
                f"pure-Python loop, 2 processes / 1: {rows['ceiling']['ratio']:.2f}x"
            )
            repeats.append(rows)
    ratio = statistics.median(x["ratio"] for x in repeats)
    ceil = statistics.median(x["ceiling"]["ratio"] for x in repeats)
    work = statistics.median(x.get("two_processes_ratio", float("nan")) for x in repeats)
    print(
        f"median ratio 2 workers / 1 worker: {ratio:.2f}x (goal >= 1.7x); two independent processes of the same "
        f"work {work:.2f}x (Dask / that: {ratio / work:.2f}); pure-Python loop {ceil:.2f}x; identical voids.csv: {same}"
    )
    write_json(
        "batch_scaling_split.json" if args.split else "batch_scaling.json",
        {"environment": env, "args": vars(args), "repeats": repeats, "ratio_median": ratio,
         "two_processes_median": work, "ceiling_median": ceil, "identical_tables": same},
    )  # fmt: skip


if __name__ == "__main__":
    main()
