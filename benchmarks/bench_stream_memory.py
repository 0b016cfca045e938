"""Peak memory of ``neuradiff track`` on a short and a ten times longer recording: it must not grow with the length.

Two calibrated 256² TIFF stacks (``--short`` and ``--long`` frames; a few dark discs drifting on a noisy bright
background) are written frame by frame with ``tifffile`` (generation itself holds one frame). Each is tracked by
``python -m neuradiff track VIDEO --out DIR`` in a subprocess with the defaults: the shipped generalist recogniser,
void measurements with tracks, plots, the overlay video, COCO and ImageJ-ROI mask exports, provenance. The peak
resident memory of the whole process tree (``neuradiff`` and its ffmpeg encoder, sampled every 0.1 s with psutil)
and the peak of the largest process (``getrusage`` of the children) are printed with the wall time, and the ratio
long / short (goal: within 10 %). Void tables grow with the number of voids; frames and images must not be held.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tifffile

from _common import environment, print_environment, write_json


def synthetic_frames(n: int, size: int, dtype: np.dtype, seed: int = 0):
    """Yield ``n`` frames ``[size, size]``: four dark discs (radius 6–10 px) drifting slowly on a noisy bright
    background; one frame at a time."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    centres = rng.uniform(40, size - 40, (4, 2))
    radii = rng.uniform(6, 10, 4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    top = float(np.iinfo(dtype).max)
    for t in range(n):
        frame = 0.8 + 0.04 * rng.standard_normal((size, size), dtype=np.float32)
        for (cy, cx), r, p in zip(centres, radii, phases):
            y, x = cy + 20 * np.sin(2 * np.pi * t / 500 + p), cx + 20 * np.cos(2 * np.pi * t / 500 + p)
            frame[(yy - y) ** 2 + (xx - x) ** 2 < r**2] = 0.3
        yield np.clip(frame * top, 0, top).astype(dtype)


def write_recording(path: Path, n: int, size: int, dtype: np.dtype) -> None:
    """A calibrated ImageJ stack (0.5 nm/px, 0.01 s a frame) written frame by frame."""
    tifffile.imwrite(
        path,
        data=synthetic_frames(n, size, dtype),
        shape=(n, size, size),
        dtype=dtype,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "TYX", "unit": "nm", "finterval": 0.01},
    )


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (0 for those that ended meanwhile)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def track(video: Path, out: Path, chunk: int) -> dict:
    """Run ``neuradiff track`` in a subprocess; its peak memory and wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    cmd = [sys.executable, "-m", "neuradiff", "track", str(video), "--out", str(out), "--chunk", str(chunk)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    peak = [0, 0.0, 0]  # tree bytes, when (s), the neuradiff process's own bytes then
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                tree = tree_rss(watched)
                if tree > peak[0]:
                    peak[:] = [tree, time.perf_counter() - t0, watched.memory_info().rss]
            except psutil.Error:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"neuradiff track failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
    files = sorted(p.name for p in out.iterdir())
    return {
        "seconds": seconds,
        "peak_tree_rss_mib": peak[0] / 2**20,
        "tree_peak_at_fraction_of_run": peak[1] / seconds,
        "neuradiff_rss_at_tree_peak_mib": peak[2] / 2**20,
        "peak_process_rss_mib": after / 1024 if after > before else None,
        "output": stdout.strip().splitlines()[-1] if stdout.strip() else "",
        "files": files,
        "voids_rows": sum(1 for _ in open(out / "voids.csv")) - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--short", type=int, default=2000)
    ap.add_argument("--long", type=int, default=20000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--dtype", choices=["uint8", "uint16"], default="uint8")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=None, help="Scratch folder (default: a temporary one).")
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    dtype = np.dtype(args.dtype)
    runs = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in (args.short, args.long):
            video = Path(tmp) / f"rec_{n}.tif"
            t0 = time.perf_counter()
            write_recording(video, n, args.size, dtype)
            made = time.perf_counter() - t0
            out = Path(tmp) / f"out_{n}"
            run = track(video, out, args.chunk)
            run["frames"] = n
            run["generate_seconds"] = made
            run["ms_per_frame"] = 1000 * run["seconds"] / n
            runs[str(n)] = run
            rss = run["peak_process_rss_mib"]
            print(
                f"{n} frames {args.size}² {args.dtype}: {run['seconds']:.0f} s ({run['ms_per_frame']:.1f} ms/frame), "
                f"peak RSS tree {run['peak_tree_rss_mib']:.0f} MiB "
                f"(at {100 * run['tree_peak_at_fraction_of_run']:.0f} % of the run), largest process "
                f"{'n/a' if rss is None else f'{rss:.0f}'} MiB, {run['voids_rows']} voids"
            )
            shutil.rmtree(out)
            video.unlink()
    short, long = runs[str(args.short)], runs[str(args.long)]
    ratio = long["peak_tree_rss_mib"] / short["peak_tree_rss_mib"]
    proc_ratio = None
    if long["peak_process_rss_mib"] and short["peak_process_rss_mib"]:
        proc_ratio = long["peak_process_rss_mib"] / short["peak_process_rss_mib"]
    print(
        f"peak RSS {args.long} / {args.short} frames: tree {ratio:.3f}x"
        + ("" if proc_ratio is None else f", largest process {proc_ratio:.3f}x")
        + " (goal: within 1.10x)"
    )
    write_json(
        "stream_memory.json",
        {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
         "ratio_tree_rss": ratio, "ratio_process_rss": proc_ratio},
    )  # fmt: skip


if __name__ == "__main__":
    main()
