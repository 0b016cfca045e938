"""Few-shot fits: one annotated frame, the recognition net started from scratch against the shipped generalist.

For each seed of ``--seeds``: ``neuradiff simulate --scenario multi-void --size 256 --frames 20 --seed S`` with one
annotated frame (``{"annotations": {"fraction": 0.05}}``: frame 0, whole), then ``neuradiff fit`` of it twice with
the default settings otherwise, ``{"fit": {"init": "scratch"}}`` (random weights, the default architecture: the
baseline) and ``{"fit": {"init": "generalist"}}`` (this version's default), each a subprocess on one torch thread
with ``--truth`` for the held-out scores. Records, per fit, the held-out pixel accuracy, void IoU and object F1 on
the 19 frames the fit never saw annotated (``metrics.json``), the largest forecast area error from frame 0 and the
wall-clock time (Python start-up included), and states the generalist start's figures against the scratch ones.

Run:  python benchmarks/bench_fewshot.py [--seeds 3,4] [--size 256] [--frames 20] [--keep DIR]
Writes benchmarks/results/fewshot.json (``--out`` to change).
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
from _common import environment, print_environment, table, write_json

STARTS = ("scratch", "generalist")


def run(cmd: list[str], env: dict[str, str]) -> float:
    """Run ``cmd`` (raising with its error output if it fails); its wall time in s."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="3,4")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--keep", type=Path, default=None, help="keep the datasets and models under this folder")
    ap.add_argument("--out", default="fewshot.json", help="file name under benchmarks/results")
    args = ap.parse_args()
    env_record = environment()
    print_environment(env_record)
    work = args.keep or Path(tempfile.mkdtemp(prefix="neuradiff-fewshot-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    exe = [sys.executable, "-m", "neuradiff"]
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        data = work / f"data-{seed}"
        sim = work / f"simulate-{seed}.json"
        sim.write_text(json.dumps({"frames": args.frames, "annotations": {"fraction": 0.05}}))
        run(
            exe
            + ["simulate", "--scenario", "multi-void", "--size", str(args.size), "--seed", str(seed)]
            + ["--config", str(sim), "--out", str(data)],
            env,
        )
        annotated = json.loads((data / "dataset.json").read_text())["annotations"]["annotated_frames"]
        for start in STARTS:
            cfg = work / f"fit-{start}.json"
            cfg.write_text(json.dumps({"fit": {"init": start}}))
            model = work / f"model-{seed}-{start}"
            seconds = run(
                exe
                + ["fit", str(data / "video.tif"), "--annotations", str(data / "annotations.tif")]
                + ["--truth", str(data), "--config", str(cfg), "--out", str(model)],
                env,
            )
            m = json.loads((model / "metrics.json").read_text())
            held = m["held_out_tracking"]
            row = {
                "seed": seed,
                "start": start,
                "annotated_frames": annotated,
                "seconds": seconds,
                "pixel_accuracy": held["pixel_accuracy"],
                "iou": held["iou"],
                "object_f1": held["object_f1"],
                "masks_object_f1": held["masks"]["object_f1"],
                "max_area_error": m["forecast"]["max_relative_area_error"],
            }
            rows.append(row)
            print(
                f"seed {seed}, {start}: held-out IoU {row['iou']:.3f}, object F1 {row['object_f1']:.3f}, "
                f"forecast {100 * row['max_area_error']:.1f} %, {seconds:.0f} s",
                flush=True,
            )
    print(
        table(
            rows,
            [
                ("seed", "seed", "d"),
                ("start", "net start", ""),
                ("pixel_accuracy", "pixel accuracy", ".4f"),
                ("iou", "void IoU", ".3f"),
                ("object_f1", "object F1", ".3f"),
                ("masks_object_f1", "object F1 (track's masks)", ".3f"),
                ("max_area_error", "max area error", ".3f"),
                ("seconds", "wall s", ".0f"),
            ],
        )
    )
    by = {(r["seed"], r["start"]): r for r in rows}
    ratios = []
    for seed in sorted({r["seed"] for r in rows}):
        g, s = by[(seed, "generalist")], by[(seed, "scratch")]
        ratios.append({"seed": seed, "iou_gain": g["iou"] - s["iou"], "time_ratio": g["seconds"] / s["seconds"]})
        print(
            f"seed {seed}: generalist start − scratch: IoU {g['iou'] - s['iou']:+.3f}, object F1 "
            f"{g['object_f1'] - s['object_f1']:+.3f}; time ratio {g['seconds'] / s['seconds']:.2f}"
        )
    write_json(
        args.out,
        {
            "environment": env_record,
            "settings": vars(args) | {"keep": str(args.keep)},
            "rows": rows,
            "against_scratch": ratios,
        },
    )
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
