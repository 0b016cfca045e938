"""A fit at real size, end to end: ``neuradiff fit`` of a 512² × 100-frame multi-void recording, 10 % annotated.

Makes the recording with ``neuradiff simulate --scenario multi-void --size 512 --frames 100`` (seeded; the
default annotation: every tenth frame, whole frames; simulated with the fused kernel unless ``--sim-kernel
torch``), then runs ``neuradiff fit`` on it once per simulator
kernel (``--kernels fused,torch``: the compiled kernel and the plain PyTorch step, the baseline) with the
default settings otherwise (256² training windows with a rollout per window, 150 + 50 iterations), each as a
subprocess on one torch thread (``--threads T``: T). Records the wall-clock time of each fit (Python start-up
included), the peak resident memory of the fit's process (``ru_maxrss``), the held-out recognition scores from
``metrics.json`` and the learned parameters, and states the ratio of the times. Goals: ≤ 30 min and, for a 1024²
recording (``--size 1024``), ≤ 4 GB peak.

Run:  python benchmarks/bench_fit_size.py [--size 512] [--frames 100] [--kernels fused,torch] [--threads 1] [--keep DIR]
Writes benchmarks/results/fit_size.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

GOAL_SECONDS = 30 * 60
GOAL_PEAK_GB_1024 = 4.0


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``cmd``; its wall time (s), the peak resident memory of its process (GiB, from ``wait4``) and its output."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        done = subprocess.CompletedProcess(cmd, code, out.read(), err.read())
    return seconds, usage.ru_maxrss / 2**20, done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernels", default="fused,torch", help="simulator kernels to fit with, in order")
    ap.add_argument("--data", type=Path, default=None, help="reuse a dataset folder made by an earlier run")
    ap.add_argument("--sim-kernel", default="fused", help="kernel of the recording's simulation (torch or fused)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the dataset and model folders here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each fit (the simulation takes one)")
    ap.add_argument("--out", default="fit_size.json")
    args = ap.parse_args()
    single_thread(1)
    env_vars = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env = environment()
    print_environment(env)
    base = args.keep or Path(tempfile.mkdtemp(prefix="neuradiff-fit-size-"))
    base.mkdir(parents=True, exist_ok=True)
    data = args.data or base / "data"
    sim_seconds = None
    if args.data is None:
        if data.exists():
            shutil.rmtree(data)
        cmd = ["neuradiff", "simulate", "--out", str(data), "--scenario", "multi-void", "--size", str(args.size)]
        cmd += ["--frames", str(args.frames), "--seed", str(args.seed), "--threads", "1"]
        sim_config = base / "simulate.json"
        sim_config.write_text(json.dumps({"simulation": {"kernel": args.sim_kernel}}))
        cmd += ["--config", str(sim_config)]
        sim_seconds, _, proc = run_measured(cmd, env_vars)
        if proc.returncode != 0:
            raise SystemExit(f"neuradiff simulate failed:\n{proc.stderr[-2000:]}")
        print(f"simulated {args.size}² × {args.frames} frames in {sim_seconds:.0f} s", flush=True)
    info = json.loads((data / "dataset.json").read_text())
    rows = []
    for kernel in args.kernels.split(","):
        out = base / f"fit-{kernel}"
        if out.exists():
            shutil.rmtree(out)
        config = base / f"fit-{kernel}.json"
        config.write_text(json.dumps({"fit": {"kernel": kernel, "seed": args.seed}}))
        cmd = ["neuradiff", "fit", str(data / "video.tif"), "--annotations", str(data / "annotations.tif")]
        cmd += ["--out", str(out), "--config", str(config), "--truth", str(data), "--threads", str(args.threads)]
        fit_env = dict(env_vars, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        seconds, peak, proc = run_measured(cmd, fit_env)
        if proc.returncode != 0:
            raise SystemExit(f"neuradiff fit ({kernel}) failed:\n{proc.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        t = metrics.get("held_out_tracking", {})
        rows.append(
            {
                "kernel": kernel,
                "threads": args.threads,
                "seconds": seconds,
                "minutes": seconds / 60,
                "peak_rss_gib": peak,
                "pixel_accuracy": t.get("pixel_accuracy"),
                "iou": t.get("iou"),
                "object_f1": t.get("object_f1"),
                "masks_object_f1": t.get("masks", {}).get("object_f1"),
                "masks_iou": t.get("masks", {}).get("iou"),
                "parameters": metrics.get("parameters"),
            }
        )
        print(f"fit with kernel={kernel}: {seconds / 60:.1f} min, peak RSS {peak:.2f} GiB", flush=True)
    print(
        table(
            rows,
            [
                ("kernel", "kernel", ""),
                ("minutes", "wall min", ".1f"),
                ("peak_rss_gib", "peak RSS GiB", ".2f"),
                ("pixel_accuracy", "pixel acc (held out)", ".4f"),
                ("iou", "void IoU (held out)", ".3f"),
                ("object_f1", "object F1 (eta ≥ 0.5)", ".3f"),
                ("masks_object_f1", "object F1 (track's masks)", ".3f"),
            ],
        )
    )
    ratio = None
    if len(rows) > 1:
        ratio = rows[-1]["seconds"] / rows[0]["seconds"]
        print(f"{rows[0]['kernel']} is {ratio:.2f}× faster than {rows[-1]['kernel']} (same recording, same settings)")
    print(
        f"goal: ≤ {GOAL_SECONDS / 60:.0f} min"
        + (f", ≤ {GOAL_PEAK_GB_1024} GB peak at 1024²" if args.size >= 1024 else "")
    )
    path = write_json(
        args.out,
        {
            "environment": env,
            "size": args.size,
            "frames": args.frames,
            "annotated_frames": info.get("annotations", {}).get("annotated_frames"),
            "simulate_seconds": sim_seconds,
            "goal_seconds": GOAL_SECONDS,
            "runs": rows,
            "speedup_first_vs_last": ratio,
        },
    )
    print(f"wrote {path}")
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
