"""Step throughput of the void model (float32, CPU, one thread).

Measures, in µs per step per megapixel (µs / step / (batch·H·W/1e6)), on grids 128², 256², 512² with
batch 1 and 8:

- ``fwd``: one deterministic explicit Euler step under ``torch.no_grad`` (plain float parameters);
- ``fb``:  forward through N steps with autograd + backward of ``loss = final.sum()`` to the initial
  state and to the 9 learned parameters (float32 leaf tensors); N = 100 unless the tape would not fit
  the memory budget (``--fb-budget-gb``), see the ``steps`` column;

for

- ``ours``:     ``neuradiff.physics.integrators.explicit_euler(..., guard="off")``, conservative and reference;
- ``compiled``: the same step under ``torch.compile`` (opt-in: ``--compile``; one compilation per shape and
  mode, with a fresh inductor cache so the reported compile times are cold; compile time excluded
  from the step times and reported separately);
- ``naive``:    a per-operation implementation of the reference update written the way the published
  reference code is written (three ``[B, H, W]`` fields, ``F.conv2d`` Laplacian after periodic padding by
  concatenation, clamped logs, masked f_s, M∇²μ, recombination, clamp to [0, 1]).

Before timing, the naive step is checked against our reference step (states and gradients).
Also measured: copy bandwidth (large ``Tensor.copy_``) and the bandwidth floor of a step
(read 3 fields + write 3 fields, float32).

The minor page faults per forward step are recorded too: with glibc's default malloc, PyTorch's
temporaries are returned to the kernel and faulted in again every step, which is expensive in a VM.
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=17179869184`` (or jemalloc/tcmalloc) avoids it;
run with ``--tag _malloc`` to keep both result files.

Run:  python benchmarks/bench_step.py [--compile] [--grids 128,256,512] [--batches 1,8] [--tag SUFFIX]
Writes benchmarks/results/bench_step{SUFFIX}.json.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, summary, table, write_json

DT = 0.02  # the time step of the engine's tests and examples (stable for the paper's parameters)
BYTES_PER_PIXEL_STEP = 260  # autograd tape of one conservative step, measured: ~236 B/pixel (59 float32 fields)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    ap.add_argument(
        "--warm-cache",
        action="store_true",
        help="use the default inductor cache (compile times then depend on earlier runs)",
    )
    ap.add_argument("--grids", default="128,256,512")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--fb-steps", type=int, default=100, help="steps of the forward+backward runs")
    ap.add_argument(
        "--fb-budget-gb", type=float, default=2.5, help="cap on the autograd tape (fewer steps on big grids/batches)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats of the forward runs (fewer on big grids)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="", help="suffix of the result file (bench_step{tag}.json)")
    return ap.parse_args()


ARGS = parse_args()
single_thread(ARGS.threads)
if ARGS.compile and not ARGS.warm_cache:
    _CACHE = tempfile.mkdtemp(prefix="inductor_bench_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE
else:
    _CACHE = None

import torch

from _naive import copy_bandwidth, naive_step
from neuradiff.physics import VoidModel, VoidParameters, single_void
from neuradiff.physics.integrators import explicit_euler

torch.set_num_threads(ARGS.threads)
LEARNED = VoidParameters.default_learned()


# ---- helpers -------------------------------------------------------------------------------------------------
def initial_state(n: int, batch: int) -> torch.Tensor:
    """The paper's single void (radius n/6.5) on an n×n grid, float32, repeated ``batch`` times."""
    return single_void((n, n), dtype=torch.float32).repeat(batch, 1, 1, 1).contiguous()


def tensor_params():
    leaves = [torch.tensor(getattr(VoidParameters(), k), dtype=torch.float32, requires_grad=True) for k in LEARNED]
    return VoidParameters().replace(**dict(zip(LEARNED, leaves))), leaves


def engine_step(model):
    def step(x, p):
        return explicit_euler(model, x, p, DT, guard="off")[0]

    return step


def run_naive(fields, p, n):
    c_v, c_i, eta = fields
    for _ in range(n):
        c_v, c_i, eta = naive_step(c_v, c_i, eta, p, DT)
    return c_v, c_i, eta


def check_naive_agrees(n: int = 96, batch: int = 2, steps: int = 5) -> dict:
    """Naive vs our reference step: max |Δstate| after ``steps`` steps and relative gradient differences."""
    model = VoidModel("reference")
    step = engine_step(model)
    s0 = initial_state(n, batch)
    s0[1] = initial_state(n, 1)[0].roll((7, 11), dims=(-2, -1))  # a second, shifted sample
    p, leaves = tensor_params()
    s = s0.clone().requires_grad_(True)
    x = s
    for _ in range(steps):
        x = step(x, p)
    g_ours = torch.autograd.grad(x.sum(), [s, *leaves])
    fields = [s0[:, k].clone().contiguous().requires_grad_(True) for k in range(3)]
    y = run_naive(fields, p, steps)
    g_naive = torch.autograd.grad(sum(f.sum() for f in y), [*fields, *leaves])
    state_diff = float((x.detach() - torch.stack([f.detach() for f in y], dim=1)).abs().max())
    g_state_naive = torch.stack(g_naive[:3], dim=1)
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))  # noqa: E731
    out = {
        "grid": n,
        "batch": batch,
        "steps": steps,
        "max_abs_state_diff": state_diff,
        "grad_state_rel_diff": rel(g_ours[0], g_state_naive),
        "grad_param_rel_diff": {k: rel(a, b) for k, a, b in zip(LEARNED, g_ours[1:], g_naive[3:])},
    }
    out["max_grad_param_rel_diff"] = max(out["grad_param_rel_diff"].values())
    return out


FAULTS: dict = {}


def time_forward(fn, s0, n_steps, repeats) -> list[float]:
    """Seconds per step of ``n_steps`` steps under no_grad, ``repeats`` times (after one warm-up step).

    Also leaves the minor page faults per step in ``FAULTS["last"]`` (fresh pages the allocator faulted in).
    """
    times = []
    with torch.no_grad():
        fn(s0, 1)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(repeats):
            t = time.perf_counter()
            fn(s0, n_steps)
            times.append((time.perf_counter() - t) / n_steps)
        FAULTS["last"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / (repeats * n_steps)
    return times


def time_fb(fn, n_steps, repeats) -> list[float]:
    """Seconds per step of forward(n_steps)+backward, ``repeats`` times (after a 2-step warm-up)."""
    fn(2)
    times = []
    for _ in range(repeats):
        gc.collect()
        t = time.perf_counter()
        fn(n_steps)
        times.append((time.perf_counter() - t) / n_steps)
    return times


def fb_steps_for(pixels: int) -> int:
    """100 steps unless the tape would exceed the budget; then the largest of 50, 25, 10, 5 that fits (≥ 5)."""
    fit = ARGS.fb_budget_gb * 1e9 / (pixels * BYTES_PER_PIXEL_STEP)
    for n in (ARGS.fb_steps, 50, 25, 10, 5):
        if n <= ARGS.fb_steps and n <= fit:
            return n
    return 5


def pass_costs(n: int = 256, repeats: int = 20) -> dict:
    """Seconds of one elementwise pass (z = x + y) and of one log over 3 fields of an n² grid (outputs preallocated).

    A step that reads and writes every field a few dozen times, or evaluates three logs per pixel, cannot
    be faster than these multiples: a compute reference next to the bandwidth floor.
    """
    x = torch.rand(3, n, n) + 0.1
    y = torch.rand(3, n, n)
    z = torch.empty(3, n, n)
    out = {}
    for name, op in (("add", lambda: torch.add(x, y, out=z)), ("log", lambda: torch.log(x, out=z))):
        op()
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            for _ in range(20):
                op()
            best = min(best, (time.perf_counter() - t) / 20)
        out[name] = best
    return out


# ---- main ----------------------------------------------------------------------------------------------------
def main() -> None:
    env = environment()
    env["flush_denormal"] = False
    env["dt"] = DT
    env["malloc_env"] = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print_environment(env)
    grids = [int(g) for g in ARGS.grids.split(",")]
    batches = [int(b) for b in ARGS.batches.split(",")]
    t_start = time.perf_counter()

    check = check_naive_agrees()
    print(
        f"naive vs ours (reference), {check['steps']} steps on {check['grid']}² batch {check['batch']}: "
        f"max |Δstate| = {check['max_abs_state_diff']:.2e}, gradient rel. diff: state "
        f"{check['grad_state_rel_diff']:.2e}, parameters ≤ {check['max_grad_param_rel_diff']:.2e}"
    )
    if not check["max_abs_state_diff"] <= 1e-5:
        raise SystemExit("the naive implementation does not reproduce our reference step; not timing")

    bw_dram = copy_bandwidth(256 * 2**20, 5)
    bw_cache = copy_bandwidth(3 * 256 * 256 * 4, 20)
    print(
        f"copy bandwidth (read+write): {bw_dram / 1e9:.1f} GB/s (256 MiB buffers), "
        f"{bw_cache / 1e9:.1f} GB/s (768 KiB = one 256² state, cache-resident)"
    )
    passes = pass_costs()
    print(
        f"one elementwise pass over 3 fields at 256² (z = x + y): {passes['add'] * 1e6:.0f} µs; "
        f"torch.log over 3 fields: {passes['log'] * 1e6:.0f} µs"
    )

    models = {d: VoidModel(d) for d in ("conservative", "reference")}
    rows = []
    for n in grids:
        for b in batches:
            pixels = b * n * n
            mp = pixels / 1e6
            big = pixels >= 512 * 512
            rep_f = 3 if big else ARGS.repeats
            rep_b = 2 if big else 3
            n_fwd = max(3, min(50, round(20 * 65536 / pixels)))
            n_fb = fb_steps_for(pixels)
            s0 = initial_state(n, b)
            fields0 = [s0[:, k].contiguous() for k in range(3)]
            p_float = VoidParameters()
            p_t, leaves = tensor_params()

            def record(impl, disc, mode, times, steps, **extra):
                r = {
                    "impl": impl,
                    "disc": disc,
                    "mode": mode,
                    "grid": n,
                    "batch": b,
                    "steps": steps,
                    **summary(times),
                    "us_per_step_per_MP": summary(times)["min"] * 1e6 / mp,
                    "us_per_step_per_MP_median": summary(times)["median"] * 1e6 / mp,
                    "ms_per_step": min(times) * 1e3,
                    **extra,
                }
                if mode == "fwd":
                    r["faults_per_step"] = FAULTS["last"]
                rows.append(r)
                print(
                    f"  {impl:9s} {disc:12s} {mode:3s} {n:4d}² b{b}: {r['us_per_step_per_MP']:9.0f} µs/step/MP "
                    f"({r['ms_per_step']:.3f} ms/step, {steps} steps, median {r['us_per_step_per_MP_median']:.0f})"
                    + (f", {r['faults_per_step']:.0f} page faults/step" if mode == "fwd" else "")
                    + (f", compile {extra['compile_s']:.1f} s" if "compile_s" in extra else ""),
                    flush=True,
                )

            # (a) ours, eager
            for disc, model in models.items():
                step = engine_step(model)

                def fwd(s, k, step=step):
                    for _ in range(k):
                        s = step(s, p_float)
                    return s

                record("ours", disc, "fwd", time_forward(fwd, s0, n_fwd, rep_f), n_fwd)

                def fb(k, step=step):
                    s = s0.clone().requires_grad_(True)
                    x = s
                    for _ in range(k):
                        x = step(x, p_t)
                    return torch.autograd.grad(x.sum(), [s, *leaves])

                record("ours", disc, "fb", time_fb(fb, n_fb, rep_b), n_fb)

            # (c) naive per-operation reference
            def naive_fwd(s, k):
                return run_naive(fields0, p_float, k)

            record("naive", "reference", "fwd", time_forward(naive_fwd, s0, n_fwd, rep_f), n_fwd)

            def naive_fb(k):
                f = [x.clone().requires_grad_(True) for x in fields0]
                y = run_naive(f, p_t, k)
                return torch.autograd.grad(y[0].sum() + y[1].sum() + y[2].sum(), [*f, *leaves])

            record("naive", "reference", "fb", time_fb(naive_fb, n_fb, rep_b), n_fb)

            # (b) ours under torch.compile
            if ARGS.compile:
                for disc, model in models.items():
                    torch._dynamo.reset()
                    cstep = torch.compile(engine_step(model), dynamic=False)
                    t = time.perf_counter()
                    with torch.no_grad():
                        cstep(s0, p_float)
                    ct = time.perf_counter() - t

                    def cfwd(s, k, cstep=cstep):
                        for _ in range(k):
                            s = cstep(s, p_float)
                        return s

                    record("compiled", disc, "fwd", time_forward(cfwd, s0, n_fwd, rep_f), n_fwd, compile_s=ct)

                    def cfb(k, cstep=cstep):
                        s = s0.clone().requires_grad_(True)
                        x = s
                        for _ in range(k):
                            x = cstep(x, p_t)
                        return torch.autograd.grad(x.sum(), [s, *leaves])

                    t = time.perf_counter()
                    cfb(2)  # compiles the training forward and, at the first backward, the backward graph
                    ct = time.perf_counter() - t
                    record("compiled", disc, "fb", time_fb(cfb, n_fb, rep_b), n_fb, compile_s=ct)
            del s0, fields0
            gc.collect()

    # ---- derived figures ---------------------------------------------------------------------------------------
    def get(impl, disc, mode, n, b):
        for r in rows:
            if (r["impl"], r["disc"], r["mode"], r["grid"], r["batch"]) == (impl, disc, mode, n, b):
                return r
        return None

    floors = {}
    for n in grids:
        for b in batches:
            nbytes = 6 * 4 * b * n * n
            floors[f"{n}x{b}"] = {
                "bytes": nbytes,
                "floor_us_dram": nbytes / bw_dram * 1e6,
                "floor_us_cache": nbytes / bw_cache * 1e6,
            }
    for r in rows:
        f = floors[f"{r['grid']}x{r['batch']}"]
        r["x_floor_dram"] = r["min"] * 1e6 / f["floor_us_dram"]
        r["x_floor_cache"] = r["min"] * 1e6 / f["floor_us_cache"]
        if r["mode"] == "fb":
            naive = get("naive", "reference", "fb", r["grid"], r["batch"])
            r["speedup_vs_naive"] = naive["min"] / r["min"] if naive else None
        else:
            naive = get("naive", "reference", "fwd", r["grid"], r["batch"])
            r["speedup_vs_naive"] = naive["min"] / r["min"] if naive else None

    print()
    print(
        table(
            rows,
            [
                ("impl", "impl", ""),
                ("disc", "discretisation", ""),
                ("mode", "mode", ""),
                ("grid", "grid", "d"),
                ("batch", "batch", "d"),
                ("steps", "steps", "d"),
                ("us_per_step_per_MP", "µs/step/MP (min)", ".0f"),
                ("us_per_step_per_MP_median", "median", ".0f"),
                ("ms_per_step", "ms/step", ".3f"),
                ("x_floor_dram", "× floor", ".1f"),
                ("speedup_vs_naive", "× naive", ".2f"),
                ("faults_per_step", "faults/step", ".0f"),
                ("compile_s", "compile s", ".1f"),
            ],
        )
    )

    goals = {}
    if 256 in grids:
        goal_rows = [r for r in rows if r["grid"] == 256 and r["mode"] == "fwd" and r["impl"] != "naive"]
        f256 = floors["256x1"]
        print(
            f"\nbandwidth floor of a step at 256² batch 1: {f256['bytes'] / 1e6:.2f} MB moved -> "
            f"{f256['floor_us_dram']:.0f} µs at {bw_dram / 1e9:.1f} GB/s (DRAM copy), "
            f"{f256['floor_us_cache']:.0f} µs at {bw_cache / 1e9:.1f} GB/s (cache-resident copy)"
        )
        for r in goal_rows:
            r["x_add_pass"] = r["min"] / passes["add"] / r["batch"]
            r["x_log3"] = r["min"] / passes["log"] / r["batch"]
            print(
                f"  forward {r['impl']:8s} {r['disc']:12s} 256² b{r['batch']}: "
                f"{r['x_floor_dram']:.1f}× the DRAM floor, "
                f"{r['x_floor_cache']:.1f}× the cache floor, = {r['x_add_pass']:.0f} elementwise passes "
                f"= {r['x_log3']:.1f}× the cost of its 3 logs"
            )
        best = min((r for r in goal_rows if r["batch"] == 1), key=lambda r: r["x_floor_dram"])
        goals["forward_within_3x_floor_256"] = {
            "met": best["x_floor_dram"] <= 3.0,
            "best": f"{best['impl']} {best['disc']}",
            "best_x_floor_dram": best["x_floor_dram"],
            "best_x_floor_cache": best["x_floor_cache"],
            "x_floor_dram": {f"{r['impl']}/{r['disc']}/b{r['batch']}": r["x_floor_dram"] for r in goal_rows},
        }
    fb_rows = [r for r in rows if r["mode"] == "fb" and r["impl"] != "naive"]
    speed = {}
    for impl in ("ours", "compiled"):
        for disc in ("conservative", "reference"):
            s = [r["speedup_vs_naive"] for r in fb_rows if r["impl"] == impl and r["disc"] == disc]
            if s:
                speed[f"{impl}/{disc}"] = {
                    "min": min(s),
                    "max": max(s),
                    "geomean": math.exp(sum(math.log(x) for x in s) / len(s)),
                }
    print("\nforward+backward speed-up over the naive per-operation version (min / geometric mean / max over shapes):")
    for k, v in speed.items():
        print(f"  {k:22s} {v['min']:.2f} / {v['geomean']:.2f} / {v['max']:.2f}")
    at256 = {f"{r['impl']}/{r['disc']}/b{r['batch']}": r["speedup_vs_naive"] for r in fb_rows if r["grid"] == 256}
    goals["fb_10x_faster_than_naive"] = {
        "met": any(v["min"] >= 10.0 for v in speed.values()),
        "speedups_over_shapes": speed,
        "speedups_256": at256,
    }
    print("\ngoals:")
    for k, v in goals.items():
        print(f"  {k}: {'MET' if v['met'] else 'NOT met'}")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    path = write_json(
        f"bench_step{ARGS.tag}.json",
        {
            "environment": env,
            "args": vars(ARGS),
            "check_naive_vs_reference": check,
            "copy_bandwidth_Bps": {"dram_256MiB": bw_dram, "cache_768KiB": bw_cache},
            "floors": floors,
            "pass_costs_256_s": passes,
            "rows": rows,
            "goals": goals,
            "total_s": total,
        },
    )
    print(f"wrote {path}")
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


if __name__ == "__main__":
    main()
