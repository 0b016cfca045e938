"""The paper suite, timed: ``neuradiff evaluate --suite paper`` on 2 CPU cores, its figures and ratios.

Runs the command as a subprocess (default settings: 2 worker processes with 1 torch thread each), records the
wall-clock time against the 30-minute budget and the suite's own scores. In-run baselines: every other method
of the suite; the ratios printed are NeuraDiff's forecast area error over each baseline's (below 1: NeuraDiff
is better) and the budget ratio wall time / 1800 s (goal ≤ 1).

With ``--train multi-void`` the suite trains on a multi-void video (seed ``--seed``) instead of the single-void
one; the transfer video is an unseen multi-void video (seed ``--seed + 1``) either way. The transfer criterion
printed at the end: every NeuraDiff fit's forecast of the transfer video within 15 % largest area error and at
least as good as the physics-only fit's.

Run:  python benchmarks/bench_evaluate.py [--seed 0] [--train single-void|multi-void] [--workers 2] [--keep DIR]
      [--quick]
Writes benchmarks/results/evaluate_paper.json (``--out`` to change).
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

BUDGET_S = 1800.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--train", default="single-void", choices=("single-void", "multi-void"), help="training video")
    ap.add_argument("--workers", type=int, default=2, help="training processes side by side")
    ap.add_argument("--keep", type=Path, default=None, help="keep the report folder here")
    ap.add_argument("--out", default="evaluate_paper.json", help="file name under benchmarks/results")
    args = ap.parse_args()
    env_record = environment()
    print_environment(env_record)
    work = Path(tempfile.mkdtemp(prefix="neuradiff-evaluate-"))
    out = args.keep or work / "report"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    cmd = ["neuradiff", "evaluate", "--suite", "paper", "--out", str(out), "--seed", str(args.seed)]
    cmd += ["--workers", str(args.workers)]
    if args.train != "single-void":
        cfg = work / "suite.json"
        suite = {"train_scenario": args.train}
        if args.quick:  # the quick preset's 32 px training video is too small for several voids
            suite["data"] = {"simulation": {"size": 48, "n_voids": 3}}
        cfg.write_text(json.dumps(suite))
        cmd += ["--config", str(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + (["--quick"] if args.quick else []), env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"neuradiff evaluate failed:\n{proc.stderr[-3000:]}")
    res = json.loads((out / "results.json").read_text())
    cmd = [c if not c.endswith("suite.json") else "SUITE.json" for c in cmd]
    shutil.rmtree(work, ignore_errors=True)
    scores = res["scores"]
    rows = []
    for label, block in (("training video", scores["forecast"]), ("transfer video", scores["transfer"]["forecast"])):
        nd = block["methods"]["neuradiff"]["max_relative_area_error"]
        for name, m in block["methods"].items():
            err = m["max_relative_area_error"]
            rows.append(
                {
                    "video": label,
                    "method": name,
                    "err": 100 * err,
                    "iou": m["last_frame_iou"],
                    "ratio": None if name == "neuradiff" else nd / max(err, 1e-9),
                }
            )
    print(
        table(
            rows,
            [
                ("video", "video", ""),
                ("method", "forecast", ""),
                ("err", "max |area error| %", ".1f"),
                ("iou", "last-frame IoU", ".3f"),
                ("ratio", "NeuraDiff / this", ".2f"),
            ],
        )
    )
    trows = [
        {"frames": label, "method": name, "acc": 100 * m["pixel_accuracy"], "iou": m["iou"], "f1": m["object_f1"]}
        for label, block in (("held out", scores["tracking"]), ("transfer", scores["transfer"]["tracking"]))
        for name, m in block.items()
    ]
    print(
        table(
            trows,
            [
                ("frames", "frames", ""),
                ("method", "tracker", ""),
                ("acc", "pixel accuracy %", ".2f"),
                ("iou", "IoU", ".3f"),
                ("f1", "object F1", ".3f"),
            ],
        )
    )
    print(scores["parameters"]["statement"])
    transfer = scores["transfer"]["forecast"]["methods"]
    nd_errs = {k: v["max_relative_area_error"] for k, v in transfer.items() if k.split("_seed")[0] == "neuradiff"}
    phys = transfer["physics_only"]["max_relative_area_error"]
    worst = max(nd_errs.values())
    criterion = worst <= 0.15 and worst <= phys
    print(
        "transfer (largest area error): NeuraDiff fits "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in nd_errs.items())
        + f"; physics-only {100 * phys:.1f} %; worst NeuraDiff / physics-only {worst / max(phys, 1e-9):.2f}; "
        + f"criterion (every fit ≤ 15 % and ≤ physics-only): {'met' if criterion else 'not met'}"
    )
    print(f"wall time {seconds:.0f} s; budget ratio {seconds / BUDGET_S:.2f} (goal ≤ 1)")
    write_json(
        args.out,
        {
            "environment": env_record,
            "command": cmd,
            "wall_seconds": seconds,
            "budget_seconds": BUDGET_S,
            "budget_ratio": seconds / BUDGET_S,
            "stage_seconds": res["seconds"],
            "config": res["config"],
            "transfer_criterion": {
                "neuradiff_max_area_error": nd_errs,
                "physics_only_max_area_error": phys,
                "met": criterion,
            },
            "scores": scores,
        },
    )


if __name__ == "__main__":
    main()
