"""Peak memory of backpropagation through a long explicit rollout of the void model, with and without checkpointing.

Configuration: conservative void model, single void on 256², float32, batch 1, dt = 0.02, 1000 explicit
Euler steps (guard off, deterministic), loss = final.sum(), gradients to the initial state and the 9
learned parameters (float32 leaf tensors). Each configuration runs in a fresh subprocess; reported:
peak RSS (``ru_maxrss``) minus the peak RSS after imports and input set-up, forward and backward time.

Configurations: ``checkpoint_every`` ∈ {10, 25, 50} at 1000 steps, each with these allocator settings:
``default`` glibc malloc; ``env``: ``MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0``; ``tcmalloc``:
``LD_PRELOAD`` of gperftools' tcmalloc (if ``libtcmalloc-minimal4`` is installed); and, for
checkpoint_every = 10 only, ``mallopt``: ``mallopt(M_MMAP_THRESHOLD, 65536)`` called in the subprocess
before torch is imported (the same setting as ``env``, applied from inside). Without
checkpointing the tape of 1000 steps needs ~15 GB (~30 GB of RSS with the default allocator), so by
default the plain run is measured at 100 and 250 steps and extrapolated linearly to 1000 (``--plain-full``
runs it at 1000 steps if memory allows). Gradients are compared between the plain run and each
checkpointed run at 100 steps, and among the checkpointed runs at 1000 steps. One more run repeats
checkpoint_every=10 with ``torch.set_flush_denormal(True)`` (time and gradients).

Run:  python benchmarks/bench_memory.py [--steps 1000] [--plain-full]
Writes benchmarks/results/bench_memory.json.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import single_thread, table, write_json

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"  # Debian: apt-get install libtcmalloc-minimal4
GRID = 256
DT = 0.02
TAPE_BYTES_PER_PIXEL_STEP = 236  # conservative step, measured with saved-tensor hooks


# ---- child: one configuration in a fresh process --------------------------------------------------------------
def child(cfg: dict) -> None:
    if cfg["malloc"] == "mallopt":
        import ctypes

        if ctypes.CDLL("libc.so.6").mallopt(-3, 65536) != 1:  # M_MMAP_THRESHOLD
            raise SystemExit("mallopt failed")
    single_thread(1)
    import resource

    import torch

    from neuradiff.physics import VoidModel, VoidParameters, rollout, single_void

    torch.set_num_threads(1)
    if cfg.get("flush_denormal"):
        torch.set_flush_denormal(True)
    learned = VoidParameters.default_learned()
    leaves = [torch.tensor(getattr(VoidParameters(), k), dtype=torch.float32, requires_grad=True) for k in learned]
    params = VoidParameters().replace(**dict(zip(learned, leaves)))
    state = single_void((GRID, GRID), dtype=torch.float32).requires_grad_(True)
    model = VoidModel("conservative", kernel=cfg.get("kernel", "torch"))
    if model.kernel == "fused":  # build (or load) the kernel before timing
        assert model._fused(state, params)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    t0 = time.perf_counter()
    traj = rollout(
        model, state, params, dt=DT, n_steps=cfg["steps"], checkpoint_every=cfg["ckpt"], guard="off", diagnostics=False
    )
    loss = traj.final.sum()
    t1 = time.perf_counter()
    grads = torch.autograd.grad(loss, [state, *leaves])
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.save({"state": grads[0], **dict(zip(learned, grads[1:]))}, cfg["grad_file"])
    final = traj.final.detach()
    print(
        json.dumps(
            {
                "base_MiB": base / 1024,
                "peak_MiB": peak / 1024,
                "delta_MiB": (peak - base) / 1024,
                "forward_s": t1 - t0,
                "backward_s": t2 - t1,
                "loss": float(loss.detach()),
                "grad_maxabs": {k: float(g.abs().max()) for k, g in zip(("state", *learned), grads)},
                "final_min": float(final.min()),
                "final_max": float(final.max()),
            }
        )
    )


# ---- parent -------------------------------------------------------------------------------------------------
def mem_available() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return float(line.split()[1]) * 1024
    return 0.0


def run(cfg: dict, tmp: str) -> dict:
    cfg = dict(cfg)
    cfg["grad_file"] = os.path.join(
        tmp, f"g_{cfg['steps']}_{cfg['ckpt']}_{cfg['malloc']}_{cfg.get('flush_denormal', 0)}_{cfg.get('kernel')}.pt"
    )
    env = dict(os.environ)
    for k in MALLOC_ENV:
        env.pop(k, None)
    # Every configuration but "package" measures glibc itself, without the package's allocator settings.
    env.pop("NEURADIFF_MALLOC", None)
    if cfg["malloc"] != "package":
        env["NEURADIFF_MALLOC"] = "default"
    if cfg["malloc"] == "env":
        env.update(MALLOC_ENV)
    if cfg["malloc"] == "tcmalloc":
        env["LD_PRELOAD"] = TCMALLOC
    env["OMP_NUM_THREADS"] = "1"
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(cfg)], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - t
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        return {**cfg, "error": f"exit {out.returncode}", "wall_s": wall}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(cfg, wall_s=wall, total_s=res["forward_s"] + res["backward_s"])
    print(
        f"  steps {cfg['steps']:5d}  checkpoint_every {cfg['ckpt']!s:>4s}  malloc {cfg['malloc']:8s}"
        f"{'  flush-denormal' if cfg.get('flush_denormal') else ''}: peak − base {res['delta_MiB']:8.0f} MiB, "
        f"forward {res['forward_s']:6.1f} s, backward {res['backward_s']:6.1f} s",
        flush=True,
    )
    return res


def grad_diff(file_a: str, file_b: str) -> float:
    import torch

    a, b = torch.load(file_a, weights_only=True), torch.load(file_b, weights_only=True)
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in a)


def package_only(n: int) -> None:
    """The default install (no LD_PRELOAD, no environment variables): absolute peak RSS of the whole process."""
    single_thread(1)
    import torch

    from _common import environment, print_environment

    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    tmp = tempfile.mkdtemp(prefix="bench_memory_")
    print(f"backprop through {n} steps, checkpoint_every=10, conservative void model, {GRID}² float32 batch 1")
    rows = [
        run({"steps": n, "ckpt": 10, "malloc": "package", "kernel": "torch"}, tmp),
        run({"steps": n, "ckpt": 10, "malloc": "package", "kernel": "fused"}, tmp),
        run({"steps": min(n, 300), "ckpt": 10, "malloc": "default", "kernel": "torch"}, tmp),
    ]
    for r in rows:
        r["peak_over_1GB"] = r.get("peak_MiB", float("nan")) * 2**20 / 1e9
    grads = grad_diff(rows[1]["grad_file"], rows[0]["grad_file"])
    print(
        table(
            rows,
            [
                ("steps", "steps", "d"),
                ("malloc", "allocator", ""),
                ("kernel", "kernel", ""),
                ("peak_MiB", "peak RSS (MiB)", ".0f"),
                ("delta_MiB", "peak − base (MiB)", ".0f"),
                ("forward_s", "forward s", ".1f"),
                ("backward_s", "backward s", ".1f"),
            ],
        )
    )
    print(f"gradients, fused vs plain kernel ({n} steps): max|Δg| / max|g| = {grads:.2e}")
    payload = {"environment": env, "rows": rows, "grad_rel_diff_fused_vs_plain": grads}
    print(f"wrote {write_json('bench_memory_package.json', payload)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--plain-full", action="store_true", help="run the un-checkpointed rollout at full length")
    ap.add_argument("--no-denormal-check", action="store_true")
    ap.add_argument(
        "--package",
        action="store_true",
        help="only the default install: peak RSS of checkpoint_every=10 with the package's allocator settings, "
        "plain and fused kernel, against glibc's defaults (300 steps) — writes bench_memory_package.json",
    )
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.package:
        package_only(args.steps)
        return

    single_thread(1)
    sys.path.insert(0, str(HERE))
    import torch

    from _common import environment, print_environment

    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    n = args.steps
    t_start = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="bench_memory_")
    rows = []
    print(f"backprop through {n} steps, conservative void model, {GRID}² float32 batch 1, dt = {DT}")
    allocators = ["default", "env"] + (["tcmalloc"] if os.path.exists(TCMALLOC) else [])
    if "tcmalloc" not in allocators:
        print(f"({TCMALLOC} not found: no tcmalloc runs)")
    for ckpt in (10, 25, 50):
        for malloc in allocators + (["mallopt"] if ckpt == 10 else []):
            rows.append(run({"steps": n, "ckpt": ckpt, "malloc": malloc}, tmp))

    estimate = n * GRID * GRID * TAPE_BYTES_PER_PIXEL_STEP
    plain_full = args.plain_full and estimate * 2.2 < 0.8 * mem_available()  # default malloc: RSS ≈ 2× tape
    plain_steps = [n] if plain_full else [100, 250]
    if not plain_full:
        print(
            f"no checkpointing: the {n}-step tape needs ~{estimate / 2**30:.1f} GiB; measuring "
            f"{plain_steps} steps and extrapolating"
        )
    plain = []
    for k in plain_steps:
        for malloc in allocators:
            r = run({"steps": k, "ckpt": None, "malloc": malloc}, tmp)
            plain.append(r)
            rows.append(r)
    extrapolated = {}
    if not plain_full:
        for malloc in allocators:
            pts = [
                (r["steps"], r["delta_MiB"], r["total_s"]) for r in plain if r["malloc"] == malloc and "error" not in r
            ]
            if len(pts) >= 2:
                (x0, y0, _), (x1, y1, t1) = pts[0], pts[-1]
                slope = (y1 - y0) / (x1 - x0)
                extrapolated[malloc] = {
                    "delta_MiB": y1 + slope * (n - x1),
                    "MiB_per_step": slope,
                    "total_s": t1 * n / x1,
                }
                rows.append(
                    {
                        "steps": n,
                        "ckpt": None,
                        "malloc": malloc,
                        "delta_MiB": extrapolated[malloc]["delta_MiB"],
                        "total_s": extrapolated[malloc]["total_s"],
                        "note": "extrapolated",
                    }
                )

    # gradients: plain vs checkpointed (200 steps), and checkpointed runs among themselves (n steps)
    checks = {}
    small = 100
    ref_plain = next((r for r in plain if r["steps"] == small and r["malloc"] == "default" and "error" not in r), None)
    if ref_plain is None:
        ref_plain = run({"steps": small, "ckpt": None, "malloc": "default"}, tmp)
    for ckpt in (10, 25, 50):
        r = run({"steps": small, "ckpt": ckpt, "malloc": "default"}, tmp)
        checks[f"{small} steps: plain vs checkpoint_every={ckpt}"] = grad_diff(r["grad_file"], ref_plain["grad_file"])
    base = next(r for r in rows if r.get("steps") == n and r.get("ckpt") == 10 and r.get("malloc") == "default")
    for r in rows:
        if r.get("steps") == n and r.get("ckpt") and r is not base and "grad_file" in r:
            checks[f"{n} steps: checkpoint_every=10 vs {r['ckpt']} ({r['malloc']})"] = grad_diff(
                r["grad_file"], base["grad_file"]
            )
    if plain_full:
        pr = next(r for r in plain if r["malloc"] == "default" and "error" not in r)
        checks[f"{n} steps: plain vs checkpoint_every=10"] = grad_diff(base["grad_file"], pr["grad_file"])

    denormal = None
    if not args.no_denormal_check:
        r = run({"steps": n, "ckpt": 10, "malloc": "default", "flush_denormal": True}, tmp)
        denormal = {"flush_denormal_total_s": r["total_s"], "default_total_s": base["total_s"]}
        checks[f"{n} steps: flush_denormal vs default (checkpoint_every=10)"] = grad_diff(
            r["grad_file"], base["grad_file"]
        )

    print()
    print(
        table(
            rows,
            [
                ("steps", "steps", "d"),
                ("ckpt", "checkpoint_every", ""),
                ("malloc", "malloc", ""),
                ("delta_MiB", "peak RSS − base (MiB)", ".0f"),
                ("forward_s", "forward s", ".1f"),
                ("backward_s", "backward s", ".1f"),
                ("total_s", "total s", ".1f"),
                ("note", "note", ""),
            ],
        )
    )
    print("\ngradient agreement (max over state and parameters of max|Δg| / max|g|):")
    for k, v in checks.items():
        print(f"  {k}: {v:.2e}")
    if denormal:
        print(f"\nflush-denormal: {denormal['flush_denormal_total_s']:.1f} s vs {denormal['default_total_s']:.1f} s")
    goal = {}
    print("\ngoal (< 2 GB with checkpointing), per allocator:")
    for malloc in allocators + ["mallopt"]:
        ck = [
            r for r in rows if r.get("steps") == n and r.get("ckpt") and r.get("malloc") == malloc and "delta_MiB" in r
        ]
        if ck:
            worst = max(r["delta_MiB"] for r in ck)
            goal[malloc] = {
                "met": worst < 2048,
                "worst_checkpointed_MiB": worst,
                "checkpoint_every": [r["ckpt"] for r in ck],
            }
            print(
                f"  {malloc:8s}: {'MET' if worst < 2048 else 'NOT met'} (largest {worst:.0f} MiB over "
                f"checkpoint_every {goal[malloc]['checkpoint_every']})"
            )
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s")
    for r in rows:
        r.pop("grad_file", None)
    path = write_json(
        "bench_memory.json",
        {
            "environment": env,
            "grid": GRID,
            "dt": DT,
            "steps": n,
            "rows": rows,
            "extrapolated_plain": extrapolated,
            "gradient_checks": checks,
            "denormal": denormal,
            "goal_under_2GB": goal,
            "total_s": total,
        },
    )
    print(f"wrote {path}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
