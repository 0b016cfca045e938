"""Tracking-inference speed of the recognition net on 512×512 frames on the 2-core CPU (frames/s).

For each net (``default`` = ``RecognitionNet(NetConfig())``, width 16, depth 3, sinusoidal time embedding;
``stride2`` = ``NetConfig(stride=2)``, the same net on a 2× coarser grid, which ``neuradiff fit`` trains for
frames of 256 px a side and more; ``small`` = ``NetConfig(width=8, depth=3)``): the median over ``--reps`` timed
calls (after one warm-up call)
of ``net(frames, times)`` under ``torch.inference_mode()`` on real frames (the creme 316L frames), for the
variants below; ``eager`` at batch sizes 1, 4, 8 with 1 and 2 torch threads, the others (to keep the run
under 10 minutes: each compilation takes 10-35 s here) at batch 8 with 2 threads only (see the batch-1 run
below for all variants at batch 1):

- ``eager``:     as constructed (the net puts its weights in ``channels_last`` itself);
- ``eager-nchw``: weights moved back to ``torch.contiguous_format`` (to see what channels_last buys);
- ``bf16``:      eager under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
- ``compiled``:  ``torch.compile(net)`` (inductor, default mode; cold cache in a temporary folder; the first
  call per batch size is reported as compile time, not in the fps);
- ``compiled-frozen``: the same with ``torch._inductor.config.freezing = True`` (weights constant-folded
  and pre-packed for oneDNN; an inference-only option).

Outputs of bf16 / compiled variants are compared with eager fp32 (max |Δeta| and the fraction of pixels
whose ``eta ≥ 0.5`` decision flips).

End-to-end: a ``--cli-frames``-frame 512² TIFF stack (default 300; creme frames 1–16 tiled in time) tracked with
``neuradiff track --threads 2 --batch B`` for each B of ``--cli-batches`` (default 1, 4) (wall clock of the subprocess
incl. Python start-up, the inference-only frames/s the CLI prints, with and without ``--measure``), using a
model folder written with ``neuradiff.io.saved.write_fit`` around the net trained by ``bench_creme.py``
(``/tmp/neuradiff-bench/creme_net.pt``; an untrained net of the same architecture if that file is missing —
speed does not depend on the weights), and the Python inference path ``neuradiff.methods.forecast.recognise``
on the same stack with the same batch sizes. Temporary files go to /tmp.

Run:  python benchmarks/bench_track_speed.py [--reps 3] [--nets default,stride2,small] [--variants ...] [--no-cli]
Writes benchmarks/results/track_speed.json (``--out`` to change). The batch-1 run of REAL_DATA.md:
      python benchmarks/bench_track_speed.py --batches 1 --extra-batches 1 --reps 10 --no-cli --out track_speed_b1.json
the end-to-end run alone:
      python benchmarks/bench_track_speed.py --cli-only --cli-reps 2 --out track_speed_cli.json
and the run with the stride-2 net (REAL_DATA.md, 2026-12-03):
      python benchmarks/bench_track_speed.py --variants eager --batches 1,4 --threads 1,2 --reps 5 --cli-reps 2 \
          --out track_speed_stride2.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(2)  # the thread pools may grow to 2; each measurement sets torch.set_num_threads itself
_CACHE = tempfile.mkdtemp(prefix="neuradiff-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE

import numpy as np
import torch
import torch._dynamo

from neuradiff.io.video import read_video
from neuradiff.nets import NetConfig, RecognitionNet, count_parameters, default_stride, load_net

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "creme-316L" / "fov200nm" / "imgs"
TRAINED = Path("/tmp/neuradiff-bench/creme_net.pt")
GOAL_FPS = 15.0
NETS = {"default": NetConfig(), "stride2": NetConfig(stride=2), "small": NetConfig(width=8, depth=3)}
#: The net ``neuradiff fit`` trains on 512² frames (``default_stride``): the one the goal is about.
FIT_NET = "stride2" if default_stride(512, 512) == 2 else "default"
VARIANTS = ("eager", "eager-nchw", "bf16", "compiled", "compiled-frozen")


def make_net(cfg: NetConfig, frames: np.ndarray) -> RecognitionNet:
    torch.manual_seed(0)
    return RecognitionNet(cfg, input_mean=float(frames.mean()), input_std=float(frames.std())).eval()


def runner(net: RecognitionNet, variant: str):
    """A callable ``(x, t) -> eta`` for the variant (compiled variants compile lazily on first call)."""
    if variant == "eager":
        return lambda x, t: net(x, t)[:, 2]
    if variant == "eager-nchw":
        net.to(memory_format=torch.contiguous_format)
        return lambda x, t: net(x, t)[:, 2]
    if variant == "bf16":

        def run(x, t):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(x, t)[:, 2].float()

        return run
    if variant in ("compiled", "compiled-frozen"):
        import torch._inductor.config as ind

        torch._dynamo.reset()
        ind.freezing = variant == "compiled-frozen"
        cnet = torch.compile(net, dynamic=False)
        return lambda x, t: cnet(x, t)[:, 2]
    raise ValueError(variant)


def time_variant(cfg, variant, frames, batches, threads, reps, reference):
    """Rows for one (net, variant) over thread counts and batch sizes."""
    rows = []
    net = make_net(cfg, frames)
    with torch.inference_mode():
        run = runner(net, variant)
        for b in batches:
            x = torch.from_numpy(np.ascontiguousarray(frames[:b]))
            t = torch.arange(b, dtype=torch.float32)
            torch.set_num_threads(max(threads))
            t0 = time.perf_counter()
            eta = run(x, t)  # warm-up (compiles for the compiled variants)
            first_s = time.perf_counter() - t0
            ref = reference.get((id(cfg), b))
            if ref is None:
                reference[(id(cfg), b)] = eta.clone()
                agree = {}
            else:
                agree = {
                    "max_abs_diff_eta": float((eta - ref).abs().max()),
                    "mask_flip_fraction": float(((eta >= 0.5) != (ref >= 0.5)).float().mean()),
                }
            for th in threads:
                torch.set_num_threads(th)
                if th != max(threads):
                    run(x, t)  # warm-up at this thread count
                ts = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    run(x, t)
                    ts.append(time.perf_counter() - t0)
                med = statistics.median(ts)
                row = {
                    "variant": variant,
                    "batch": b,
                    "threads": th,
                    "median_s": med,
                    "min_s": min(ts),
                    "fps": b / med,
                    "fps_best": b / min(ts),
                    "first_call_s": first_s,
                    **agree,
                }
                if variant.startswith("compiled"):
                    row["compile_s"] = first_s  # first call: tracing + inductor compilation + one run
                rows.append(row)
                print(
                    f"  {variant:16s} batch {b}  threads {th}: {b / med:6.2f} frames/s "
                    f"(median {med * 1e3:7.1f} ms/call, first call {first_s:6.2f} s)",
                    flush=True,
                )
    return rows


def make_stack(frames: np.ndarray, path: Path, n: int) -> np.ndarray:
    import tifffile

    idx = [k % len(frames) for k in range(n)]
    stack = frames[idx].astype(np.uint8)
    tifffile.imwrite(path, stack, imagej=True)
    return stack


def model_folder(folder: Path, frames: np.ndarray) -> str:
    from neuradiff.methods import NeuraDiffModel
    from neuradiff.physics import Simulator, VoidParameters

    if TRAINED.is_file():
        net, source = load_net(TRAINED), f"trained by bench_creme.py ({TRAINED})"
    else:
        net = make_net(NetConfig(embedding="none", stride=default_stride(*frames.shape[-2:])), frames)
        source = "untrained net of the bench_creme.py architecture (bench_creme.py not run)"
    folder.mkdir(parents=True, exist_ok=True)
    model = NeuraDiffModel(
        net,
        VoidParameters(),
        Simulator(integrator="euler", dt=0.01, time_per_frame=1.0),
        {"video": {"note": "benchmark model folder"}},
    )
    model.save(folder, history=[], config={"note": "benchmark"})
    return source


def end_to_end(frames: np.ndarray, reps: int, cli_batches: list[int], n_frames: int) -> dict:
    import re

    from neuradiff.methods import load_model
    from neuradiff.nets import recognise

    tmp = Path(tempfile.mkdtemp(prefix="neuradiff-track-"))
    try:
        stack_path = tmp / f"stack{n_frames}.tif"
        stack = make_stack(frames, stack_path, n_frames)
        source = model_folder(tmp / "model", frames)
        cli = shutil.which("neuradiff") or str(Path(sys.executable).parent / "neuradiff")
        out = {
            "stack": f"{stack.shape[0]} frames {stack.shape[1]}x{stack.shape[2]} uint8 TIFF (creme frames tiled)",
            "model": source,
            "command": "neuradiff track STACK --model MODEL --out OUT --threads 2 --batch B "
            "--nm-per-px 0.390625 [--no-measure]",
        }
        env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", NO_COLOR="1")
        for batch in cli_batches:
            for measure in (False, True):
                walls, fps = [], []
                for r in range(reps):
                    dest = tmp / f"track_{batch}_{measure}_{r}"
                    cmd = [
                        cli,
                        "track",
                        str(stack_path),
                        "--model",
                        str(tmp / "model"),
                        "--out",
                        str(dest),
                        "--threads",
                        "2",
                        "--batch",
                        str(batch),
                        "--nm-per-px",
                        str(200 / 512),
                    ]
                    if not measure:
                        cmd.append("--no-measure")
                    t0 = time.perf_counter()
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    walls.append(time.perf_counter() - t0)
                    if proc.returncode != 0:
                        raise RuntimeError(f"neuradiff track failed: {proc.stderr[-2000:]}")
                    m = re.search(r"\(([\d.]+) frames/s\)", proc.stdout)
                    fps.append(float(m.group(1)) if m else float("nan"))
                    shutil.rmtree(dest, ignore_errors=True)
                key = f"cli_batch{batch}_{'measure' if measure else 'no_measure'}"
                out[key] = {
                    "batch": batch,
                    "measure": measure,
                    "wall_s_median": statistics.median(walls),
                    "wall_s": walls,
                    "wall_fps": stack.shape[0] / statistics.median(walls),
                    "inference_fps_printed_median": statistics.median(fps),
                }
                print(
                    f"  neuradiff track --batch {batch} {'--measure   ' if measure else '--no-measure'}: wall "
                    f"{statistics.median(walls):.1f} s ({stack.shape[0] / statistics.median(walls):.2f} frames/s), "
                    f"inference {statistics.median(fps):.2f} frames/s (printed by the CLI)",
                    flush=True,
                )
        # the Python inference path on the same stack
        fitted = load_model(tmp / "model")
        torch.set_num_threads(2)
        x = stack.astype(np.float32)
        for batch in cli_batches:
            recognise(fitted.net, x[:batch], batch=batch)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                recognise(fitted.net, x, batch=batch)
                ts.append(time.perf_counter() - t0)
            out[f"python_recognise_batch{batch}"] = {
                "threads": 2,
                "batch": batch,
                "median_s": statistics.median(ts),
                "fps": stack.shape[0] / statistics.median(ts),
            }
            print(
                f"  recognise() {stack.shape[0]} frames, batch {batch}, 2 threads: "
                f"{stack.shape[0] / statistics.median(ts):.2f} frames/s",
                flush=True,
            )
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nets", default="default,stride2,small")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--extra-batches", default="8", help="batch sizes of the variants other than eager")
    ap.add_argument("--extra-threads", default="2", help="thread counts of the variants other than eager")
    ap.add_argument("--cli-batches", default="1,4", help="--batch values of the end-to-end runs (1 = CLI default)")
    ap.add_argument("--cli-frames", type=int, default=300, help="frames of the end-to-end stack (creme frames tiled)")
    ap.add_argument("--cli-only", action="store_true", help="only the end-to-end timing")
    ap.add_argument("--out", default="track_speed.json", help="result file name in benchmarks/results")
    ap.add_argument("--cli-reps", type=int, default=1, help="runs of each end-to-end timing")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end neuradiff track timing")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    torch.set_num_threads(max(threads))
    env = environment()
    print_environment(env)
    t_start = time.perf_counter()
    all_frames = read_video(DATA).frames.astype(np.float32)
    assert all_frames.shape == (16, 512, 512), all_frames.shape
    n_max = max(batches + [int(b) for b in args.extra_batches.split(",")])
    frames = np.concatenate([all_frames] * (1 + n_max // 16))[:n_max]

    rows, info = [], {}
    try:
        for name in [] if args.cli_only else args.nets.split(","):
            cfg = NETS[name]
            info[name] = {"config": cfg.to_dict(), "parameters": count_parameters(RecognitionNet(cfg))}
            print(f"net {name}: {cfg.width=} {cfg.depth=} {cfg.embedding=}  {info[name]['parameters']} parameters")
            reference = {}
            for variant in args.variants.split(","):
                t0 = time.perf_counter()
                try:
                    if variant == "eager":
                        vb, vt = batches, threads
                    else:
                        vb = [int(b) for b in args.extra_batches.split(",")]
                        vt = [int(t) for t in args.extra_threads.split(",")]
                    vr = time_variant(cfg, variant, frames, vb, vt, args.reps, reference)
                except Exception as exc:  # e.g. no C++ compiler for inductor
                    print(f"  {variant}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
                    vr = [{"variant": variant, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}]
                for r in vr:
                    r["net"] = name
                rows.extend(vr)
                print(f"  ({variant}: {time.perf_counter() - t0:.0f} s)", flush=True)
        cli_batches = [int(b) for b in args.cli_batches.split(",")]
        e2e = None if args.no_cli else end_to_end(all_frames, args.cli_reps, cli_batches, args.cli_frames)
    finally:
        shutil.rmtree(_CACHE, ignore_errors=True)

    ok = [r for r in rows if "fps" in r]
    print(
        table(
            ok,
            [
                ("net", "net", ""),
                ("variant", "variant", ""),
                ("batch", "batch", "d"),
                ("threads", "thr", "d"),
                ("fps", "frames/s", ".2f"),
                ("median_s", "s/call", ".3f"),
                ("compile_s", "compile s", ".1f"),
                ("max_abs_diff_eta", "max|Δeta|", ".1e"),
                ("mask_flip_fraction", "flips", ".1e"),
            ],
        )
    )
    best = max(ok, key=lambda r: r["fps"]) if ok else None
    best2 = max((r for r in ok if r["threads"] == 2 and r["net"] == FIT_NET), key=lambda r: r["fps"], default=None)
    goal = {
        "goal_fps": GOAL_FPS,
        "frame": "512x512",
        "cores": 2,
        "net": FIT_NET,
        "met": bool(best2 and best2["fps"] >= GOAL_FPS),
        "best_2_threads": best2,
        "best_any": best,
        "factor_missing": (GOAL_FPS / best2["fps"]) if best2 else None,
    }
    if best2:
        print(
            f"goal >= {GOAL_FPS} frames/s on 512² with 2 cores, net {FIT_NET} (what neuradiff fit trains on 512² "
            f"frames): {'MET' if goal['met'] else 'NOT met'}; best 2-thread "
            f"{best2['fps']:.2f} frames/s ({best2['net']}, {best2['variant']}, batch {best2['batch']})"
        )
    accuracy = {}
    for name, fname in (("default", "creme_stride1.json"), ("stride2", "creme.json"), ("small", "creme_small.json")):
        path = HERE / "results" / fname
        if path.is_file():  # written by bench_creme.py (the nets there use embedding="none")
            import json

            r = json.loads(path.read_text())["results"]["net"]
            accuracy[name] = {k: r[k] for k in ("iou", "dice", "object_f1", "mean_eq_diameter_rel_error")}
            accuracy[name]["source"] = f"benchmarks/results/{fname}"
    if accuracy:
        print(
            "held-out creme accuracy (bench_creme.py): "
            + "; ".join(f"{k}: IoU {v['iou']:.3f}, object F1 {v['object_f1']:.3f}" for k, v in accuracy.items())
        )
    total = time.perf_counter() - t_start
    payload = {
        "benchmark": "tracking inference speed, 512x512",
        "environment": env,
        "settings": vars(args),
        "nets": info,
        "rows": rows,
        "goal": goal,
        "creme_accuracy": accuracy,
        "end_to_end": e2e,
        "total_seconds": total,
    }
    out = write_json(args.out, payload)
    print(f"total {total:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
