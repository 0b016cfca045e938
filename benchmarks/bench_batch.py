"""Weak scaling of ``neuradiff batch``: the same folder of recordings with 1 and with 2 Dask workers.

A folder of ``--recordings`` synthetic recordings (``--frames`` frames of ``--size``² px, dark voids on a noisy
background, calibrated TIFF stacks) is tracked and measured (no overlay video) by ``run_batch`` with the shipped
generalist recogniser (the default of ``neuradiff batch``; an untrained net would mark most of each frame as one
tangled void, whose outlines cost more to write than the recognition), once in-process with one worker and once
on a local Dask cluster of two worker processes (one torch thread each), cluster start-up included. Printed: wall
seconds, frames/s and the ratio (goal ≥ 1.7× on 2 cores); the two runs' ``voids.csv`` are compared (they must be identical).
Run on an otherwise idle machine: the ratio measures the cores that are free.
"""

from __future__ import annotations

import argparse
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
    yy, xx = np.mgrid[:size, :size]
    for k in range(n):
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
            folder / f"rec{k:02d}.tif",
            stack,
            imagej=True,
            resolution=(2.0, 2.0),
            metadata={"axes": "TYX", "unit": "nm", "finterval": 1.0},
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recordings", type=int, default=8)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "in"
        data.mkdir()
        make_recordings(data, args.recordings, args.frames, args.size)
        total = args.recordings * args.frames
        rows = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            s = run_batch(data, tmp / f"out{workers}", model=None, workers=workers, overlay=False)
            seconds = time.perf_counter() - t0
            assert not s.failed, [r.error for r in s.failed]
            rows[workers] = {"seconds": seconds, "frames_per_s": total / seconds}
            print(f"{workers} worker(s): {seconds:.1f} s, {total / seconds:.1f} frames/s")
        same = pd.read_csv(tmp / "out1" / "voids.csv").equals(pd.read_csv(tmp / "out2" / "voids.csv"))
    ratio = rows[2]["frames_per_s"] / rows[1]["frames_per_s"]
    print(f"ratio 2 workers / 1 worker: {ratio:.2f}x (goal >= 1.7x); identical voids.csv: {same}")
    write_json(
        "batch_scaling.json",
        {"environment": env, "args": vars(args), "runs": rows, "ratio": ratio, "identical_tables": same},
    )


if __name__ == "__main__":
    main()
