"""The fused void-model kernel against the plain PyTorch step and the published code's step, in one run.

Float32, CPU, one thread (``--threads N``: N for all three implementations and the copy floor), deterministic
explicit Euler (dt = 0.02, guard off), the paper's single void.
For each configuration (grid, batch):

- ``fb``: forward through N steps with autograd + backward of ``final.sum()`` to the initial state and
  the nine learned parameters (float32 leaves), seconds per step;
- ``fwd``: one step under ``no_grad`` (N_fwd steps timed), seconds per step;

for ``published`` (the published code's step emulated operation by operation, ``_naive.py``; reference
discretisation), ``torch`` (``explicit_euler`` of ``VoidModel("conservative")``, the plain PyTorch path) and
``fused`` (the same with ``kernel="fused"``). The implementations are timed in turn within each repeat and
the minimum over the repeats is kept, so the ratios come from the same run under the same machine load.
Also: the raw kernel call (no projection or bookkeeping) at 256² against the bandwidth floor (read and
write the three float32 fields once at the measured DRAM copy bandwidth), and the projected step as a split step's
sub-steps run without a tape (50 in one kernel call, no Python between them).

``--stochastic``: every step with its random terms, as the published code always steps (it draws cascades and
noise fresh inside every call, training included): ``published`` draws them per pixel as the published code does
(``_naive.naive_forcing``), ``torch`` and ``fused`` take the engine's seeded keyed stream
(``RandomForcing``: cascades and conservative Langevin noise, replayable in the backward pass), and a fourth,
``fused_philox``, is the fused step with the counter-based generator (``RandomForcing(seed, generator="philox")``:
the same distribution, another realisation; the reference kernel makes the numbers from their key while it writes the
increment, the conservative one takes them as fields). ``draws_*_ms``: a step's numbers alone, made into fields.

Freed memory stays in the process for every implementation (``_common.hold_freed_memory``: glibc's trim threshold at
its largest, no allocation by ``mmap``; ``trim_threshold`` and ``mmap_max`` in the environment record): before, the
published step at 32 × 128² ran at two speeds from one repeat to the next, with and without page faults, and the
minimum over the repeats took whichever the repeats hit.

``--discretisation reference``: ``torch`` and ``fused`` step ``VoidModel("reference")`` (with
``kernel="fused"`` its compiled kernel), the discretisation of the published code (M∇²μ, floored logarithms, every
field clamped to [0, 1]), so all three compute the same step; each row records the largest difference of one fused
step from the published one (``published_max_abs_diff``), and the raw kernel row times the reference kernel.

Run:  python benchmarks/bench_fused.py [--repeats 3] [--quick] [--stochastic] [--threads 2]
      [--discretisation reference] [--out NAME.json]
Writes benchmarks/results/bench_fused[_reference][_stochastic][_threadsN].json, or ``--out NAME``.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, hold_freed_memory, print_environment, single_thread, table, write_json


def _threads_argument() -> int:
    """``--threads N`` read before torch is imported (OpenMP takes its thread count at start-up)."""
    argv = sys.argv[1:]
    for k, a in enumerate(argv):
        if a == "--threads" and k + 1 < len(argv):
            return int(argv[k + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


THREADS = _threads_argument()
single_thread(THREADS)

import torch

from _naive import copy_bandwidth, naive_forcing, naive_step
from neuradiff.physics import VoidModel, VoidParameters, single_void
from neuradiff.physics.forcing import NoForcing, RandomForcing
from neuradiff.physics.fused import fused_step, fused_substeps, fused_unavailable
from neuradiff.physics.fused_reference import fused_reference_step, fused_reference_unavailable
from neuradiff.physics.integrators import explicit_euler

torch.set_num_threads(THREADS)
DT = 0.02
LEARNED = VoidParameters.default_learned()
#: (grid, batch, fb steps): the issue's 8 × 128² and 30 steps, one 256² field, the paper's training batch.
CONFIGS = [(128, 8, 30), (256, 1, 30), (128, 32, 10)]


def leaves_and_params():
    leaves = [torch.tensor(getattr(VoidParameters(), k), dtype=torch.float32, requires_grad=True) for k in LEARNED]
    return leaves, VoidParameters().replace(**dict(zip(LEARNED, leaves)))


def state(n: int, b: int) -> torch.Tensor:
    return single_void((n, n), dtype=torch.float32).repeat(b, 1, 1, 1).contiguous()


def engine(kernel: str, stochastic: bool = False, discretisation: str = "conservative", generator: str = "torch"):
    model = VoidModel(discretisation, kernel=kernel)
    source = RandomForcing(7, generator=generator) if stochastic else NoForcing()

    def fb(s0: torch.Tensor, n: int) -> None:
        leaves, p = leaves_and_params()
        s = s0.clone().requires_grad_(True)
        x = s
        for k in range(n):
            x = explicit_euler(model, x, p, DT, guard="off", draws=source.draws(model, k, x))[0]
        torch.autograd.grad(x.sum(), [s, *leaves])

    def fwd(s0: torch.Tensor, n: int) -> None:
        p = VoidParameters()
        with torch.no_grad():
            x = s0
            for k in range(n):
                x = explicit_euler(model, x, p, DT, guard="off", draws=source.draws(model, k, x))[0]

    return fb, fwd


def published(stochastic: bool = False):
    gen = torch.Generator().manual_seed(7)

    def forcing(eta, p):
        return naive_forcing(eta.detach(), p, gen) if stochastic else None

    def fb(s0: torch.Tensor, n: int) -> None:
        leaves, p = leaves_and_params()
        fields = [s0[:, k].clone().contiguous().requires_grad_(True) for k in range(3)]
        c_v, c_i, eta = fields
        for _ in range(n):
            c_v, c_i, eta = naive_step(c_v, c_i, eta, p, DT, forcing=forcing(eta, p))
        torch.autograd.grad(c_v.sum() + c_i.sum() + eta.sum(), [*fields, *leaves])

    def fwd(s0: torch.Tensor, n: int) -> None:
        p = VoidParameters()
        with torch.no_grad():
            c_v, c_i, eta = (s0[:, k].contiguous() for k in range(3))
            for _ in range(n):
                c_v, c_i, eta = naive_step(c_v, c_i, eta, p, DT, forcing=forcing(eta, p))

    return fb, fwd


def best_per_step(fn, s0, n: int, repeats: int) -> float:
    return min(_timed(fn, s0, n) for _ in range(repeats)) / n


def _timed(fn, s0, n) -> float:
    gc.collect()
    t = time.perf_counter()
    fn(s0, n)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one configuration (8 × 128²), 2 repeats")
    ap.add_argument("--stochastic", action="store_true", help="steps with cascades and noise (the published code's)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads for all three implementations (and the copy floor)"
    )
    ap.add_argument(
        "--discretisation",
        choices=("conservative", "reference"),
        default="conservative",
        help="the engine's discretisation (torch and fused); reference: the published code's",
    )
    ap.add_argument(
        "--out", default=None, help="results file (default bench_fused[_reference][_stochastic][_threadsN].json)"
    )
    args = ap.parse_args()
    ref = args.discretisation == "reference"
    probe = torch.zeros(1, 3, 8, 8)
    if ref:
        reason = fused_reference_unavailable(probe, VoidParameters(), boundary="periodic")
    else:
        reason = fused_unavailable(probe, VoidParameters(), boundary="periodic", face="upwind")
    if reason is not None:
        raise SystemExit(f"the fused kernel is not available here: {reason}")
    env = environment()
    # after the package set its allocator (the probe built the kernel): freed memory stays in the process for every
    # implementation, so the published step is timed at its faster speed in every repeat
    env.update(hold_freed_memory())
    print_environment(env)
    configs = CONFIGS[:1] if args.quick else CONFIGS
    repeats = 2 if args.quick else args.repeats
    st = args.stochastic
    disc = args.discretisation
    impls = {"published": published(st), "torch": engine("torch", st, disc), "fused": engine("fused", st, disc)}
    if st:
        impls["fused_philox"] = engine("fused", st, disc, generator="philox")
    rows = []
    for n, b, n_fb in configs:
        s0 = state(n, b)
        n_fwd = max(5, round(50 * 65536 / (n * n * b)))
        for fb, fwd in impls.values():  # warm-up (kernel build, first-call costs)
            fb(s0, 2)
            fwd(s0, 2)
        fb_t = dict.fromkeys(impls, math.inf)
        fwd_t = dict.fromkeys(impls, math.inf)
        for _ in range(repeats):
            for name, (fb, fwd) in impls.items():
                fb_t[name] = min(fb_t[name], _timed(fb, s0, n_fb) / n_fb)
                fwd_t[name] = min(fwd_t[name], _timed(fwd, s0, n_fwd) / n_fwd)
        row: dict[str, float] = {"grid": n, "batch": b, "fb_steps": n_fb, "fwd_steps": n_fwd}
        for name in impls:
            row[f"fb_{name}_ms"] = fb_t[name] * 1e3
            row[f"fwd_{name}_ms"] = fwd_t[name] * 1e3
        row["fb_speedup_vs_published"] = fb_t["published"] / fb_t["fused"]
        row["fb_speedup_vs_torch"] = fb_t["torch"] / fb_t["fused"]
        row["fwd_speedup_vs_published"] = fwd_t["published"] / fwd_t["fused"]
        row["fwd_speedup_vs_torch"] = fwd_t["torch"] / fwd_t["fused"]
        if "fused_philox" in impls:
            model = VoidModel(disc)
            for gen in ("torch", "philox"):  # drawing one step's numbers alone, as fields (Philox: from the key)
                source = RandomForcing(7, generator=gen)
                row[f"draws_{gen}_ms"] = 1e3 * best_per_step(
                    lambda x, k, source=source: [model.realise(source.draws(model, j, x), x) for j in range(k)],
                    s0,
                    20,
                    repeats,
                )
            row["draws_philox_speedup"] = row["draws_torch_ms"] / row["draws_philox_ms"]
            row["fb_philox_speedup_vs_published"] = fb_t["published"] / fb_t["fused_philox"]
            row["fwd_philox_speedup_vs_published"] = fwd_t["published"] / fwd_t["fused_philox"]
        if ref:  # the same step: how far one fused step is from the published one
            c_v, c_i, eta = naive_step(s0[:, 0], s0[:, 1], s0[:, 2], VoidParameters(), DT)
            mine = fused_reference_step(s0, VoidParameters(), DT, 1.0, log_floor=1e-6, project=True)[0]
            row["published_max_abs_diff"] = float((torch.stack((c_v, c_i, eta), dim=1) - mine).abs().max())
        rows.append(row)
        print(
            f"{b} × {n}²: fb per step published {row['fb_published_ms']:.2f} ms, torch {row['fb_torch_ms']:.2f}, "
            f"fused {row['fb_fused_ms']:.2f} → {row['fb_speedup_vs_published']:.1f}× / "
            f"{row['fb_speedup_vs_torch']:.1f}×; fwd {row['fwd_published_ms']:.2f} / {row['fwd_torch_ms']:.2f} / "
            f"{row['fwd_fused_ms']:.2f} ms → {row['fwd_speedup_vs_published']:.1f}× / "
            f"{row['fwd_speedup_vs_torch']:.1f}×",
            flush=True,
        )
        if "fused_philox" in impls:
            print(
                f"  fused with the Philox generator: fb {row['fb_fused_philox_ms']:.2f} ms → "
                f"{row['fb_philox_speedup_vs_published']:.1f}× the published step; fwd "
                f"{row['fwd_fused_philox_ms']:.2f} ms → {row['fwd_philox_speedup_vs_published']:.1f}×; a step's "
                f"numbers {row['draws_torch_ms']:.2f} ms from torch's generator, {row['draws_philox_ms']:.2f} ms from "
                f"Philox ({row['draws_philox_speedup']:.1f}×)",
                flush=True,
            )

    # The raw kernel at 256² against the bandwidth floor (3 fields read + 3 written once).
    s = state(256, 1)
    p = VoidParameters()
    if ref:
        kernel_s = best_per_step(
            lambda x, k: [fused_reference_step(x, p, DT, 1.0, log_floor=1e-6) for _ in range(k)], s, 50, 5
        )
        many_s = None
    else:
        kw = {"imex": False, "log_floor": 1e-3, "saturation_floor": 1e-2}
        kernel_s = best_per_step(lambda x, k: [fused_step(x, p, DT, 1.0, **kw) for _ in range(k)], s, 50, 5)
        # the projected step as a rollout's split steps run it: 50 sub-steps in one kernel call, no Python between
        many_s = best_per_step(lambda x, k: fused_substeps(x, p, DT, 1.0, k, **kw), s, 50, 5)
    bw = copy_bandwidth(256 * 2**20, 5)
    floor = 6 * 4 * 256 * 256 / bw
    floor_row = {
        "kernel_256_us": kernel_s * 1e6,
        "substep_in_one_call_256_us": None if many_s is None else many_s * 1e6,
        "substep_in_one_call_over_floor": None if many_s is None else many_s / floor,
        "dram_copy_GBps": bw / 1e9,
        "floor_256_us": floor * 1e6,
        "kernel_over_floor": kernel_s / floor,
        "step_over_floor": next(r["fwd_fused_ms"] for r in rows if r["grid"] == 256) * 1e-3 / floor
        if any(r["grid"] == 256 for r in rows)
        else None,
    }
    print(
        f"256² raw kernel {floor_row['kernel_256_us']:.0f} µs per step; floor {floor_row['floor_256_us']:.0f} µs "
        f"(copy {floor_row['dram_copy_GBps']:.1f} GB/s) → {floor_row['kernel_over_floor']:.1f}× the floor"
    )
    if many_s is not None:
        print(
            f"256² projected step, 50 in one call: {many_s * 1e6:.0f} µs per step → "
            f"{floor_row['substep_in_one_call_over_floor']:.1f}× the floor"
        )
    cols = [
        ("grid", "grid", "d"),
        ("batch", "batch", "d"),
        ("fb_published_ms", "fb published ms", ".2f"),
        ("fb_torch_ms", "fb torch ms", ".2f"),
        ("fb_fused_ms", "fb fused ms", ".2f"),
        ("fb_speedup_vs_published", "fb × published", ".1f"),
        ("fb_speedup_vs_torch", "fb × torch", ".1f"),
        ("fwd_published_ms", "fwd published ms", ".2f"),
        ("fwd_torch_ms", "fwd torch ms", ".2f"),
        ("fwd_fused_ms", "fwd fused ms", ".2f"),
        ("fwd_speedup_vs_published", "fwd × published", ".1f"),
    ]
    if st:
        cols += [
            ("fb_fused_philox_ms", "fb fused+Philox ms", ".2f"),
            ("fb_philox_speedup_vs_published", "fb × published", ".1f"),
            ("fwd_fused_philox_ms", "fwd fused+Philox ms", ".2f"),
            ("fwd_philox_speedup_vs_published", "fwd × published", ".1f"),
        ]
    print(table(rows, cols))
    name = "bench_fused" + ("_reference" if ref else "") + ("_stochastic" if st else "")
    name += (f"_threads{THREADS}" if THREADS != 1 else "") + ".json"
    payload = {"environment": env, "discretisation": disc, "stochastic": st, "rows": rows, "floor": floor_row, "dt": DT}
    path = write_json(args.out or name, payload)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
