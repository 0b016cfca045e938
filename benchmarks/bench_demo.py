"""The main job, timed: ``neuradiff demo`` on 2 CPU cores, its figures against the acceptance goals.

Runs ``neuradiff demo --out TMP --seed S`` as a subprocess for each seed (``--threads`` torch threads,
default 1, ``OMP_NUM_THREADS`` set to match), records the wall-clock time (incl. Python start-up) and the
model's ``metrics.json``. In-run baseline: the same forecast from frame 0 made with the fit's initial guess
of the parameters instead of the learned ones (what learning the physics bought), with the ratio of their
area errors. The budget ratio is wall time / 600 s (goal ≤ 1). With ``--speed-baseline torch`` the first seed is
also run with the fit's simulator on the plain PyTorch step (``{"fit": {"kernel": "torch"}}``, the default of
earlier versions) right after, and the ratio of the two wall times is printed.

Run:  python benchmarks/bench_demo.py [--seeds 0] [--threads 1] [--keep DIR] [--speed-baseline torch]
Writes benchmarks/results/demo.json (``--out`` to change).
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

GOALS = {"pixel_accuracy": 0.99, "iou": 0.90, "max_relative_area_error": 0.10, "last_frame_iou": 0.80, "seconds": 600.0}


def run_demo(seed: int, threads: int, out: Path, kernel: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), MPLBACKEND="Agg")
    cmd = ["neuradiff", "demo", "--out", str(out), "--seed", str(seed), "--threads", str(threads)]
    if kernel is not None:
        out.mkdir(parents=True, exist_ok=True)
        config = out.parent / f"demo-seed{seed}-{kernel}.json"
        config.write_text(json.dumps({"fit": {"kernel": kernel}}))
        cmd += ["--config", str(config)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"neuradiff demo failed (seed {seed}):\n{proc.stderr[-2000:]}")
    m = json.loads((out / "model" / "metrics.json").read_text())
    t, f, g = m["held_out_tracking"], m["forecast"], m.get("forecast_initial_guess", {})
    params = json.loads((out / "model" / "params.json").read_text())
    return {
        "seed": seed,
        "kernel": kernel or "default",
        "seconds": seconds,
        "held_out_frames": len(t["frames"]),
        "pixel_accuracy": t["pixel_accuracy"],
        "iou": t["iou"],
        "dice": t["dice"],
        "max_relative_area_error": f["max_relative_area_error"],
        "last_frame_iou": f["last_frame_iou"],
        "last_frame_iou_without_drift": f["last_frame_iou_without_drift"],
        "guess_max_relative_area_error": g.get("max_relative_area_error"),
        "guess_last_frame_iou": g.get("last_frame_iou"),
        "area_error_ratio_learned_vs_guess": (
            f["max_relative_area_error"] / g["max_relative_area_error"] if g.get("max_relative_area_error") else None
        ),
        "band_fraction": m.get("forecast_band", {}).get("fraction_of_frames_in_band"),
        "best_combination": (m.get("identifiable_combinations") or m.get("bounded_combinations") or [None])[0],
        "determined_combinations": m.get("identifiable_combinations", []),
        "bounded_combinations": m.get("bounded_combinations", []),
        "statement": params.get("identifiability", {}).get("statement"),
        "area_forecast_px": f["area_forecast_px"],
        "area_truth_px": f["area_truth_px"],
        "parameters": m["parameters"],
        "params_json": params,
        "stdout_tail": proc.stdout[-3000:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", type=Path, default=None, help="keep the demo folders under this folder")
    ap.add_argument("--out", default="demo.json")
    ap.add_argument("--speed-baseline", default=None, help="also run the first seed with this fit kernel (torch)")
    args = ap.parse_args()
    single_thread(args.threads)
    env = environment()
    print_environment(env)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        base = args.keep or Path(tempfile.mkdtemp(prefix="neuradiff-demo-"))
        out = base / f"demo-seed{seed}"
        if out.exists():
            shutil.rmtree(out)
        rows.append(run_demo(seed, args.threads, out))
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
        r = rows[-1]
        print(f"seed {seed}: {r['seconds']:.0f} s", flush=True)
    baseline = None
    if args.speed_baseline:
        seed = rows[0]["seed"]
        base = args.keep or Path(tempfile.mkdtemp(prefix="neuradiff-demo-"))
        out = base / f"demo-seed{seed}-{args.speed_baseline}"
        if out.exists():
            shutil.rmtree(out)
        baseline = run_demo(seed, args.threads, out, kernel=args.speed_baseline)
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
        baseline["speedup_of_default"] = baseline["seconds"] / rows[0]["seconds"]
        print(
            f"seed {seed} with kernel={args.speed_baseline}: {baseline['seconds']:.0f} s; the default is "
            f"{baseline['speedup_of_default']:.2f}× faster",
            flush=True,
        )
    cols = [
        ("seed", "seed", "d"),
        ("seconds", "wall s", ".0f"),
        ("pixel_accuracy", "pixel acc", ".4f"),
        ("iou", "IoU", ".3f"),
        ("max_relative_area_error", "max area err", ".3f"),
        ("guess_max_relative_area_error", "guess: max area err", ".3f"),
        ("area_error_ratio_learned_vs_guess", "ratio", ".2f"),
        ("last_frame_iou", "last IoU", ".3f"),
        ("band_fraction", "in 90 % band", ".2f"),
        ("guess_last_frame_iou", "guess: last IoU", ".3f"),
    ]
    print(table(rows, cols))
    print(
        "goals: "
        + ", ".join(
            f"{k} {'≥' if k in ('pixel_accuracy', 'iou', 'last_frame_iou') else '≤'} {v}" for k, v in GOALS.items()
        )
    )
    for r in rows:
        print(
            f"seed {r['seed']}: budget ratio {r['seconds'] / GOALS['seconds']:.2f} (wall / 600 s); learned "
            "parameters vs true: "
            + ", ".join(f"{k} {v['learned']:.3g}/{v['true']:.3g}" for k, v in r["parameters"].items())
        )
    path = write_json(
        args.out,
        {
            "environment": env,
            "goals": GOALS,
            "threads": args.threads,
            "runs": [{k: v for k, v in r.items() if k != "stdout_tail"} for r in rows],
            "speed_baseline": None if baseline is None else {k: v for k, v in baseline.items() if k != "stdout_tail"},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
