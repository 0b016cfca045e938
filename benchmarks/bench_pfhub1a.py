"""PFHub benchmark 1a (spinodal decomposition, periodic) with the engine's semi-implicit spectral integrator.

200×200 periodic grid, dx = 1, the benchmark's cosine initial condition (mean 0.5025227), f = ρ(c − c_α)²(c_β − c)²
with ρ = 5, c_α = 0.3, c_β = 0.7, κ = 2, M = 5, run to t = 1000 in float64 with ``integrator="spectral"``.
Free energy F = Σ [f + κ/2 (|D⁺_x c|² + |D⁺_y c|²)] dx² (forward differences, the engine's ``free_energy``)
is saved every time unit up to t = 100 and every 10 time units after.

Runs, each to t = 1000: dt = 1.0, dt = 0.5, dt = 0.1 up to t = 100 then 0.5, dt = 0.1, and a reference
dt = 0.02 up to t = 100 then 0.1. The step is first order in time and its stabiliser
a(k) = M k²(κ k² + 2ρ(c_β − c_α)²) slows the growing modes by 1/(1 + dt·a) (≈ 1/2 at dt = 0.5 for the
fastest-growing wavelength ~14), so the early collapse of F needs a small dt. The production run
written to ``results/pfhub1a_free_energy.csv`` is the cheapest run whose F stays within 2 % of the
reference run at t = 10, 20, 100 and 1000 (``--tolerance``).

``--investigate`` adds two runs to find where differences from other codes come from: 400×400 with
dx = 0.5 (same domain; interfaces are only ~2 grid points wide at dx = 1) and the initial condition
sampled at the grid nodes i·dx instead of the engine's cell centres (i + ½)·dx (grid means 0.5025476
and 0.5025229; the benchmark's is the continuum mean 0.5025227).

Community values for comparison (PRISMS-PF and FiPy series of PFHub's 1a free-energy chart,
usnistgov/pfhub ``_data/charts/1a1_free_energy.json``).

Run:  python benchmarks/bench_pfhub1a.py [--investigate] [--quick]
Writes benchmarks/results/pfhub1a_free_energy.csv (time,free_energy) and benchmarks/results/bench_pfhub1a.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, print_environment, single_thread, table, write_json

single_thread(1)
import torch

from neuradiff.physics import SpinodalModel, SpinodalParameters, pfhub1_initial_condition, rollout

torch.set_num_threads(1)
MEAN0 = 0.5025227
T_END = 1000.0
COMPARE_AT = (0.0, 1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
PRISMS_PF = {
    0.0: 319.0337102,
    1.0: 318.8273928,
    5.0: 316.9902126,
    10.0: 304.1771795,
    20.0: 203.3234468,
    100.0: 115.6166174,
    200.0: 102.5245412,
    500.0: 84.678672,
    1000.0: 70.35382018,
}
FIPY = {
    0.0: 319.09096487896744,
    0.98: 318.83057833279986,
    10.43: 283.6148043822506,
    20.81: 207.903541306264,
    27.57: 197.39411290020013,
    33.79: 188.64120084392533,
    40.24: 178.87382145157355,
    46.75: 169.26132300018622,
    52.75: 162.25546973386005,
}


def schedule(name: str) -> list[tuple[float, float, float]]:
    """(t_start, t_end, dt) stages of a named run."""
    table_ = {
        "dt=1.0": [(0.0, 100.0, 1.0), (100.0, T_END, 1.0)],
        "dt=0.5": [(0.0, 100.0, 0.5), (100.0, T_END, 0.5)],
        "dt=0.1→0.5": [(0.0, 100.0, 0.1), (100.0, T_END, 0.5)],
        "dt=0.1": [(0.0, 100.0, 0.1), (100.0, T_END, 0.1)],
        "ref dt=0.02→0.1": [(0.0, 100.0, 0.02), (100.0, T_END, 0.1)],
    }
    return table_[name]


def sampled_initial_condition(offset: float, shape=(200, 200), dx=1.0) -> torch.Tensor:
    """The benchmark's cosine initial condition sampled at (i + offset)·dx, ``[1, 1, H, W]``."""
    h, w = shape
    y = (torch.arange(h, dtype=torch.float64).view(h, 1) + offset) * dx
    x = (torch.arange(w, dtype=torch.float64).view(1, w) + offset) * dx
    c = 0.5 + 0.01 * (
        torch.cos(0.105 * x) * torch.cos(0.11 * y)
        + (torch.cos(0.13 * x) * torch.cos(0.087 * y)) ** 2
        + torch.cos(0.025 * x - 0.15 * y) * torch.cos(0.07 * x - 0.02 * y)
    )
    return c.view(1, 1, h, w)


def run(stages, shape=(200, 200), dx=1.0, initial=None) -> dict:
    model, params = SpinodalModel(), SpinodalParameters()
    state = pfhub1_initial_condition(shape, dx) if initial is None else initial
    times, energy, mean = [], [], []
    steps = 0
    t_wall = time.perf_counter()
    with torch.no_grad():
        for k, (t0, t1, dt) in enumerate(stages):
            n = round((t1 - t0) / dt)
            every = max(1, round((1.0 if t1 <= 100.0 else 10.0) / dt))
            tr = rollout(model, state, params, dt=dt, dx=dx, n_steps=n, integrator="spectral", save_every=every)
            first = 0 if k == 0 else 1  # the stage's initial state is the previous stage's final one
            times += [t0 + s * dt for s in tr.steps[first:]]
            energy += tr.diagnostics["free_energy"][first:, 0].tolist()
            mean += (tr.diagnostics["total_c"][first:, 0] / (shape[0] * shape[1] * dx * dx)).tolist()
            state = tr.final
            steps += n
    wall = time.perf_counter() - t_wall
    increases = sum(1 for a, b in itertools.pairwise(energy) if b > a + 1e-9 * abs(a))
    return {
        "times": times,
        "free_energy": energy,
        "mean": mean,
        "steps": steps,
        "wall_s": wall,
        "energy_increases": increases,
        "mean0": mean[0],
        "max_mass_drift": max(abs(m - mean[0]) for m in mean),
        "final_min": float(state.min()),
        "final_max": float(state.max()),
    }


def at(res: dict, t: float) -> float:
    """F at time t (linear interpolation between saved times)."""
    ts, fs = res["times"], res["free_energy"]
    for (ta, fa), (tb, fb) in zip(zip(ts, fs), zip(ts[1:], fs[1:])):
        if ta <= t <= tb:
            return fa if tb == ta else fa + (fb - fa) * (t - ta) / (tb - ta)
    return math.nan


def crossing(res: dict, level: float) -> float:
    """First time F falls below ``level`` (interpolated)."""
    ts, fs = res["times"], res["free_energy"]
    for (ta, fa), (tb, fb) in zip(zip(ts, fs), zip(ts[1:], fs[1:])):
        if fa >= level > fb:
            return ta + (tb - ta) * (fa - level) / (fa - fb)
    return math.nan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--investigate",
        action="store_true",
        help="also run 400×400 at dx = 0.5 and the initial condition sampled at i·dx",
    )
    ap.add_argument("--quick", action="store_true", help="only the dt = 1.0 and dt = 0.5 runs")
    ap.add_argument("--tolerance", type=float, default=0.02)
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    names = ["dt=1.0", "dt=0.5"] if args.quick else ["dt=1.0", "dt=0.5", "dt=0.1→0.5", "dt=0.1", "ref dt=0.02→0.1"]
    results = {}
    for name in names:
        results[name] = run(schedule(name))
        r = results[name]
        print(
            f"  {name:16s} {r['steps']:6d} steps  {r['wall_s']:6.1f} s  F(1000) = {r['free_energy'][-1]:.2f}  "
            f"mass drift {r['max_mass_drift']:.1e}",
            flush=True,
        )
    if args.investigate:
        extra = {
            "dx=0.5 400² dt=0.05→0.25": dict(
                stages=[(0.0, 100.0, 0.05), (100.0, T_END, 0.25)], shape=(400, 400), dx=0.5
            ),
            "IC at i·dx dt=0.1→0.5": dict(stages=schedule("dt=0.1→0.5"), initial=sampled_initial_condition(0.0)),
        }
        for name, kw in extra.items():
            results[name] = run(**kw)
            r = results[name]
            print(
                f"  {name:16s} {r['steps']:6d} steps  {r['wall_s']:6.1f} s  F(1000) = {r['free_energy'][-1]:.2f}  "
                f"mean {r['mean0']:.7f}",
                flush=True,
            )

    ref_name = "ref dt=0.02→0.1" if "ref dt=0.02→0.1" in results else names[-1]
    ref = results[ref_name]
    rows = []
    for name, r in results.items():
        row = {
            "run": name,
            "steps": r["steps"],
            "wall_s": r["wall_s"],
            "mean0": r["mean0"],
            "mass_drift": r["max_mass_drift"],
            "energy_increases": r["energy_increases"],
            "t_F250": crossing(r, 250.0),
        }
        for t in (0.0, 10.0, 20.0, 100.0, 1000.0):
            row[f"F{t:g}"] = at(r, t)
        row["max_rel_dev_vs_ref"] = max(abs(at(r, t) / at(ref, t) - 1.0) for t in (10.0, 20.0, 100.0, 1000.0))
        rows.append(row)
    community = {"run": "PRISMS-PF (PFHub)", **{f"F{t:g}": PRISMS_PF[t] for t in (0.0, 10.0, 20.0, 100.0, 1000.0)}}
    print()
    print(
        table(
            rows + [community],
            [
                ("run", "run", ""),
                ("steps", "steps", "d"),
                ("wall_s", "wall s", ".1f"),
                ("F0", "F(0)", ".2f"),
                ("F10", "F(10)", ".2f"),
                ("F20", "F(20)", ".2f"),
                ("F100", "F(100)", ".2f"),
                ("F1000", "F(1000)", ".2f"),
                ("t_F250", "t(F=250)", ".1f"),
                ("max_rel_dev_vs_ref", "max dev vs ref", ".3f"),
                ("mass_drift", "mass drift", ".1e"),
                ("energy_increases", "F increases", "d"),
            ],
        )
    )
    print(
        f"\nmean composition at t = 0: {ref['mean0']:.7f} (benchmark: {MEAN0}; sampled at cell centres "
        f"{float(sampled_initial_condition(0.5).mean()):.7f}, "
        f"at i·dx {float(sampled_initial_condition(0.0).mean()):.7f}); "
        f"largest drift of the mean over any run: {max(r['max_mass_drift'] for r in results.values()):.1e}"
    )
    print("FiPy (PFHub chart) for the collapse: " + ", ".join(f"F({t:g}) = {f:.1f}" for t, f in FIPY.items()))

    # production choice: cheapest run within tolerance of the reference (the reference itself otherwise)
    candidates = [
        r for r in rows if r["run"] in names and r["run"] != ref_name and r["max_rel_dev_vs_ref"] <= args.tolerance
    ]
    chosen = min(candidates, key=lambda r: r["steps"])["run"] if candidates else ref_name
    print(
        f"\nchosen for the CSV: {chosen} (cheapest run within {args.tolerance:.0%} of '{ref_name}' "
        f"at t = 10, 20, 100, 1000)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "pfhub1a_free_energy.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "free_energy"])
        for t, f in zip(results[chosen]["times"], results[chosen]["free_energy"]):
            w.writerow([f"{t:g}", f"{f:.6f}"])
    print(f"wrote {path}")
    compare = {name: {f"{t:g}": at(r, t) for t in COMPARE_AT} for name, r in results.items()}
    compare["PRISMS-PF (PFHub)"] = {f"{t:g}": f for t, f in PRISMS_PF.items()}
    path = write_json(
        "bench_pfhub1a.json",
        {
            "environment": env,
            "grid": [200, 200],
            "dx": 1.0,
            "t_end": T_END,
            "reference_run": ref_name,
            "chosen_run": chosen,
            "tolerance": args.tolerance,
            "benchmark_mean": MEAN0,
            "engine_initial_mean": ref["mean0"],
            "cell_centre_mean": float(sampled_initial_condition(0.5).mean()),
            "node_mean": float(sampled_initial_condition(0.0).mean()),
            "summary": rows,
            "free_energy_at": compare,
            "fipy_pfhub": {f"{t:g}": f for t, f in FIPY.items()},
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
