"""PFHub benchmark 1a (spinodal decomposition, periodic) with the engine's spectral integrators.

200×200 periodic grid, dx = 1, the benchmark's cosine initial condition (mean 0.5025227), f = ρ(c − c_α)²(c_β − c)²
with ρ = 5, c_α = 0.3, c_β = 0.7, κ = 2, M = 5, run to t = 1000 in float64.
Free energy F = Σ [f + κ/2 (|D⁺_x c|² + |D⁺_y c|²)] dx² (forward differences, the engine's ``free_energy``)
is saved every time unit up to t = 100 and every 10 time units after.

Fixed-step runs (``integrator="spectral"``), each to t = 1000: dt = 1.0, dt = 0.5, dt = 0.1 up to t = 100
then 0.5, dt = 0.1, and a reference dt = 0.02 up to t = 100 then 0.1. The step is first order in time and its stabiliser
a(k) = M k²(κ k² + 2ρ(c_β − c_α)²) slows the growing modes by 1/(1 + dt·a) (≈ 1/2 at dt = 0.5 for the
fastest-growing wavelength ~14), so the early collapse of F needs a small dt.

``--investigate`` adds three runs to find where differences from other codes come from: 400×400 with
dx = 0.5 (same domain; interfaces are only ~2 grid points wide at dx = 1), the initial condition
sampled at the grid nodes i·dx instead of the engine's cell centres (i + ½)·dx (grid means 0.5025476
and 0.5025229; the benchmark's is the continuum mean 0.5025227), and PRISMS-PF's mesh (128 × 128 on the same
domain, dx = 1.5625, the initial condition at the nodes).

Adaptive runs (``adaptive_spectral``: ETDRK2 steps with an embedded ETD1 error estimate, ``norm="relative"``,
the model's stabiliser at ``--stabilisation`` of the wells' curvature): a tight reference (tol 1e-4) and
tolerances ``--tolerances``; the chosen one is the loosest whose F stays within ``--tolerance`` of the tight
reference at t = 10, 20, 100 and 1000. It is timed ``--repeats`` times with two torch threads and with one
(alternating), and its free energy is written to ``results/pfhub1a_free_energy.csv``. ``--ensemble N`` runs
it from the initial condition plus N seeded perturbations (amplitudes 1e-6 and 1e-4, zero mean) and with
the spectral Laplacian symbol k² instead of the 5-point one, to see how sensitive F(1000) is.

Community values for comparison: the series of PFHub's 1a free-energy chart that the chart file holds inline
(usnistgov/pfhub ``_data/charts/1a1_free_energy.json``: PRISMS-PF, FiPy and MMSP (Travis); its five other
series, MMSP (raspi, wrksttn) and three MOOSE runs, are links to external CSV files, not data in the file).

An independent discretisation as a second opinion: a pseudo-spectral semi-implicit Euler step (f′ explicit,
κ∇⁴ implicit, every derivative spectral with the Nyquist wavenumber set to 0, the initial condition at the nodes
i·dx, F with spectral gradients), written here in NumPy from that description. ORNL's CabanaPF publishes, as the
reference values of its PFHub 1a unit test (``unit_test/CabanaPF_Test_PFHub.cpp``, from ORNL's own Python
pseudo-spectral code), F(0) = 319.1097966931092 and F(250) = 112.93083808600322 on 96² with dt = 0.5 (500
steps). The benchmark first reproduces those two numbers with this step (the run stops if it does not, to
1e-9 relative), then runs the same step on the benchmark's 200² grid with dt = 0.5 and 0.1 to t = 1000.

Run:  python benchmarks/bench_pfhub1a.py [--adaptive-only] [--ensemble N] [--investigate] [--quick]
Writes benchmarks/results/pfhub1a_free_energy.csv (time,free_energy) and benchmarks/results/bench_pfhub1a.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, print_environment, single_thread, table, write_json

single_thread(1)
import torch

from neuradiff.physics import SpinodalModel, SpinodalParameters, adaptive_spectral, pfhub1_initial_condition, rollout

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

#: The series of PFHub's benchmark 1a free-energy chart held inline in usnistgov/pfhub
#: ``_data/charts/1a1_free_energy.json`` (commit 3c6e7558): time → F. PRISMS_PF and FIPY above are two of them.
MMSP_TRAVIS = {
    0.0: 319.094,
    7.61719: 318.053,
    15.2344: 314.632,
    22.8516: 303.393,
    30.4688: 277.709,
    38.0859: 240.619,
    45.7031: 215.533,
    53.3203: 206.567,
    60.9375: 201.415,
    68.5547: 196.916,
    76.1719: 192.545,
}
PFHUB_SERIES = {
    "PRISMS-PF (prismspf_1a)": PRISMS_PF,
    "FiPy (fipy_1a_travis)": FIPY,
    "MMSP (mmsp_1a_travis)": MMSP_TRAVIS,
}
#: The reference values of CabanaPF's PFHub 1a unit test (ORNL's pseudo-spectral code): 96² on the 200 × 200
#: domain, dt = 0.5, F at t = 0 and after 500 steps.
PSEUDOSPECTRAL_REFERENCE = {"grid": 96, "dt": 0.5, "F0": 319.1097966931092, "F250": 112.93083808600322}

#: Adaptive runs: the error norm, the tight reference's tolerance and the default tolerances tried.
NORM = "relative"
TIGHT_TOL = 1e-4
TOLERANCES = (1e-2, 5e-3, 2e-3)


def series_at(series: dict[float, float], t: float) -> float:
    """A chart series at time t (linear interpolation; NaN outside its range)."""
    return at({"times": list(series), "free_energy": list(series.values())}, t)


def saved_times() -> list[float]:
    """Every time unit to t = 100, every 10 after (the benchmark's output times)."""
    return [float(t) for t in range(1, 101)] + [float(t) for t in range(110, int(T_END) + 1, 10)]


def run_adaptive(
    tol: float, stabilisation: float, *, initial=None, laplacian: str = "five-point", threads: int | None = None
) -> dict:
    """One adaptive run to T_END; F at every saved time, step counts, wall time."""
    if threads is not None:
        torch.set_num_threads(threads)
    model, params = SpinodalModel(stabilisation=stabilisation), SpinodalParameters()
    state = pfhub1_initial_condition() if initial is None else initial
    with torch.no_grad():
        tr = adaptive_spectral(
            model,
            state,
            params,
            t_end=T_END,
            tol=tol,
            norm=NORM,
            save_times=saved_times(),
            laplacian=laplacian,
            keep_states=False,
        )
    energy = tr.diagnostics["free_energy"][:, 0].tolist()
    mean = (tr.diagnostics["total_c"][:, 0] / (200 * 200)).tolist()
    phases = [0, 0, 0]
    t = 0.0
    for h in tr.step_sizes:
        t += h
        phases[0 if t <= 20.0 + 1e-9 else 1 if t <= 100.0 + 1e-9 else 2] += 1
    return {
        "times": tr.times,
        "free_energy": energy,
        "mean": mean,
        "steps": tr.accepted,
        "rejected": tr.rejected,
        "steps_by_phase": {"0-20": phases[0], "20-100": phases[1], "100-1000": phases[2]},
        "max_step": max(tr.step_sizes),
        "wall_s": tr.wall_s,
        "threads": torch.get_num_threads(),
        "energy_increases": sum(1 for a, b in itertools.pairwise(energy) if b > a + 1e-9 * abs(a)),
        "mean0": mean[0],
        "max_mass_drift": max(abs(m - mean[0]) for m in mean),
        "final_min": float(tr.final.min()),
        "final_max": float(tr.final.max()),
    }


def perturbed_initial(seed: int, amplitude: float) -> torch.Tensor:
    """The initial condition plus zero-mean Gaussian noise of the given amplitude (seeded)."""
    c = pfhub1_initial_condition()
    noise = torch.randn(c.shape, generator=torch.Generator().manual_seed(seed), dtype=c.dtype)
    return c + amplitude * (noise - noise.mean())


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


def adaptive_study(args) -> dict:
    """The adaptive runs: tight reference, tolerances, the chosen one timed with 2 and 1 threads, investigations."""
    stab = args.stabilisation
    print(f"\nadaptive runs (ETDRK2 + ETD1 estimate, norm {NORM!r}, stabilisation {stab:g}):", flush=True)
    runs = {}

    def show(name: str, r: dict) -> None:
        print(
            f"  {name:28s} {r['steps']:5d} steps ({r['rejected']} rejected)  {r['wall_s']:6.2f} s "
            f"({r['threads']} thr)  F(10) {at(r, 10.0):.2f}  F(20) {at(r, 20.0):.2f}  F(100) {at(r, 100.0):.2f}  "
            f"F(1000) {at(r, 1000.0):.2f}",
            flush=True,
        )

    ref_name = f"adaptive tol={TIGHT_TOL:g}"
    runs[ref_name] = run_adaptive(TIGHT_TOL, stab, threads=1)
    show(ref_name, runs[ref_name])
    ref = runs[ref_name]
    for tol in args.tolerances:
        runs[f"adaptive tol={tol:g}"] = run_adaptive(tol, stab, threads=1)
        show(f"adaptive tol={tol:g}", runs[f"adaptive tol={tol:g}"])

    def dev(r: dict) -> float:
        return max(abs(at(r, t) / at(ref, t) - 1.0) for t in (10.0, 20.0, 100.0, 1000.0))

    ok = [tol for tol in args.tolerances if dev(runs[f"adaptive tol={tol:g}"]) <= args.tolerance]
    chosen_tol = max(ok) if ok else TIGHT_TOL
    chosen = f"adaptive tol={chosen_tol:g}"
    print(f"  chosen: {chosen} (loosest within {args.tolerance:.0%} of '{ref_name}' at t = 10, 20, 100, 1000)")

    # timing of the chosen run: two threads and one, alternating (after a short two-thread warm-up: the first
    # parallel FFTs of a process set up the thread pool and plans)
    torch.set_num_threads(2)
    with torch.no_grad():
        adaptive_spectral(
            SpinodalModel(stabilisation=stab),
            pfhub1_initial_condition(),
            SpinodalParameters(),
            t_end=20.0,
            tol=chosen_tol,
            norm=NORM,
            keep_states=False,
        )
    timing = {2: [], 1: []}
    for _ in range(args.repeats):
        for threads in (2, 1):
            r = run_adaptive(chosen_tol, stab, threads=threads)
            timing[threads].append(r["wall_s"])
    torch.set_num_threads(1)
    for threads, walls in timing.items():
        print(
            f"  {chosen} with {threads} thread(s): min {min(walls):.3f} s, median {statistics.median(walls):.3f} s "
            f"of {len(walls)} ({min(walls) / T_END * 1e3:.2f} ms per time unit)"
        )

    extra = {}
    if args.ensemble:
        extra[f"{chosen}, stabilisation 1"] = run_adaptive(chosen_tol, 1.0, threads=1)
        extra[f"{chosen}, spectral k²"] = run_adaptive(chosen_tol, stab, laplacian="spectral", threads=1)
        extra[f"adaptive tol={TIGHT_TOL:g}, spectral k²"] = run_adaptive(
            TIGHT_TOL, stab, laplacian="spectral", threads=1
        )
        for name, r in extra.items():
            show(name, r)
    ensemble = {}
    for amp in (1e-6, 1e-4) if args.ensemble else ():
        f100, f1000 = [], []
        for seed in range(args.ensemble):
            r = run_adaptive(chosen_tol, stab, initial=perturbed_initial(seed, amp), threads=1)
            f100.append(at(r, 100.0))
            f1000.append(at(r, 1000.0))
        ensemble[f"{amp:g}"] = {"seeds": list(range(args.ensemble)), "F100": f100, "F1000": f1000}
        print(
            f"  ensemble amplitude {amp:g}, {args.ensemble} seeds: F(100) {min(f100):.2f}–{max(f100):.2f} "
            f"(mean {statistics.mean(f100):.2f}), F(1000) {min(f1000):.2f}–{max(f1000):.2f} "
            f"(mean {statistics.mean(f1000):.2f}, sd {statistics.stdev(f1000) if len(f1000) > 1 else 0.0:.2f})",
            flush=True,
        )
    return {
        "runs": runs,
        "extra": extra,
        "reference": ref_name,
        "chosen": chosen,
        "chosen_tol": chosen_tol,
        "timing": {f"{k}_threads": v for k, v in timing.items()},
        "ensemble": ensemble,
        "dev": dev,
    }


def pseudospectral(n: int, dt: float, times: tuple[float, ...]) -> dict[float, float]:
    """F at ``times`` of the pseudo-spectral semi-implicit Euler run on ``n``² over the benchmark's domain (module
    docstring): an independent discretisation of the same problem, in NumPy float64."""
    import numpy as np

    p = SpinodalParameters()
    side = 200.0
    d = side / n
    x = d * np.arange(n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    c = 0.5 + 0.01 * (
        np.cos(0.105 * xx) * np.cos(0.11 * yy)
        + (np.cos(0.13 * xx) * np.cos(0.087 * yy)) ** 2
        + np.cos(0.025 * xx - 0.15 * yy) * np.cos(0.07 * xx - 0.02 * yy)
    )
    k = 2.0 * np.pi * np.fft.fftfreq(n, d=d)
    k[n // 2] = 0.0
    kx, ky = np.meshgrid(k, k, indexing="ij")
    k2 = kx**2 + ky**2
    a, b = p.c_alpha, p.c_beta

    def energy(c: np.ndarray) -> float:
        ch = np.fft.fft2(c)
        gx, gy = np.real(np.fft.ifft2(1j * kx * ch)), np.real(np.fft.ifft2(1j * ky * ch))
        return float(d * d * np.sum(p.rho * (c - a) ** 2 * (c - b) ** 2 + p.kappa * (gx**2 + gy**2) / 2))

    out = {0.0: energy(c)} if 0.0 in times else {}
    steps = {round(t / dt): t for t in times if t > 0}
    for step in range(1, max(steps, default=0) + 1):
        dfdc = 2.0 * p.rho * (c - a) * (b - c) * (a + b - 2.0 * c)
        c_hat = (np.fft.fft2(c) - dt * p.M * k2 * np.fft.fft2(dfdc)) / (1.0 + dt * p.M * p.kappa * k2**2)
        c = np.real(np.fft.ifft2(c_hat))
        if step in steps:
            out[steps[step]] = energy(c)
    return out


def pseudospectral_check() -> dict:
    """Reproduce the published pseudo-spectral reference values, then run the same step on 200² to t = 1000."""
    ref = PSEUDOSPECTRAL_REFERENCE
    t0 = time.perf_counter()
    got = pseudospectral(ref["grid"], ref["dt"], (0.0, 250.0))
    for t, key in ((0.0, "F0"), (250.0, "F250")):
        if abs(got[t] / ref[key] - 1.0) > 1e-9:
            raise SystemExit(f"the pseudo-spectral step gives F({t:g}) = {got[t]:.15g}, published: {ref[key]}")
    print(
        f"pseudo-spectral step: published F(0) = {ref['F0']}, F(250) = {ref['F250']} on {ref['grid']}², dt "
        f"{ref['dt']:g}; reproduced {got[0.0]:.13f}, {got[250.0]:.14f}"
    )
    runs = {"published check (96², dt 0.5)": got}
    for dt in (0.5, 0.1):
        runs[f"200², dt {dt:g}"] = pseudospectral(200, dt, (10.0, 20.0, 100.0, 250.0, 1000.0))
    for name, r in runs.items():
        print(f"  pseudo-spectral {name}: " + ", ".join(f"F({t:g}) = {f:.2f}" for t, f in r.items()))
    return {
        "reference": ref,
        "runs": {name: {f"{t:g}": f for t, f in r.items()} for name, r in runs.items()},
        "wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--investigate",
        action="store_true",
        help="also run 400×400 at dx = 0.5 and the initial condition sampled at i·dx",
    )
    ap.add_argument("--quick", action="store_true", help="only the dt = 1.0 and dt = 0.5 runs")
    ap.add_argument("--adaptive-only", action="store_true", help="only the adaptive runs (no fixed-step runs)")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--tolerances", type=float, nargs="+", default=list(TOLERANCES))
    ap.add_argument("--stabilisation", type=float, default=0.25, help="S of the adaptive runs, × 2ρ(c_β − c_α)²")
    ap.add_argument("--repeats", type=int, default=3, help="timings of the chosen adaptive run per thread count")
    ap.add_argument("--ensemble", type=int, default=0, help="seeds of the perturbed-start ensembles (0: none)")
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    if args.adaptive_only:
        names = []
    elif args.quick:
        names = ["dt=1.0", "dt=0.5"]
    else:
        names = ["dt=1.0", "dt=0.5", "dt=0.1→0.5", "dt=0.1", "ref dt=0.02→0.1"]
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
            # PRISMS-PF's upload: 128 × 128 linear quads on the 200 × 200 domain (nodes at i·dx)
            "128² dx=1.5625 IC at i·dx": dict(
                stages=schedule("dt=0.1→0.5"),
                shape=(128, 128),
                dx=200 / 128,
                initial=sampled_initial_condition(0.0, shape=(128, 128), dx=200 / 128),
            ),
        }
        for name, kw in extra.items():
            results[name] = run(**kw)
            r = results[name]
            print(
                f"  {name:16s} {r['steps']:6d} steps  {r['wall_s']:6.1f} s  F(1000) = {r['free_energy'][-1]:.2f}  "
                f"mean {r['mean0']:.7f}",
                flush=True,
            )
    second_opinion = pseudospectral_check()
    study = adaptive_study(args)
    adaptive = {**study["runs"], **study["extra"]}
    aref = study["runs"][study["reference"]]
    fixed_ref_name = "ref dt=0.02→0.1" if "ref dt=0.02→0.1" in results else (names[-1] if names else None)
    fixed_ref = results.get(fixed_ref_name) if fixed_ref_name else None

    rows = []
    for name, r in {**results, **adaptive}.items():
        row = {
            "run": name,
            "steps": r["steps"],
            "rejected": r.get("rejected"),
            "wall_s": r["wall_s"],
            "mean0": r["mean0"],
            "mass_drift": r["max_mass_drift"],
            "energy_increases": r["energy_increases"],
            "t_F250": crossing(r, 250.0),
        }
        if "steps_by_phase" in r:
            row["steps_by_phase"] = r["steps_by_phase"]
            row["max_step"] = r["max_step"]
        for t in (0.0, 10.0, 20.0, 100.0, 1000.0):
            row[f"F{t:g}"] = at(r, t)
        row["max_rel_dev_vs_adaptive_ref"] = study["dev"](r)
        if fixed_ref is not None:
            row["max_rel_dev_vs_ref"] = max(abs(at(r, t) / at(fixed_ref, t) - 1.0) for t in (10.0, 20.0, 100.0, 1000.0))
        rows.append(row)
    community = [
        {"run": f"{name} (PFHub chart)", **{f"F{t:g}": series_at(ser, t) for t in (0.0, 10.0, 20.0, 100.0, 1000.0)}}
        for name, ser in PFHUB_SERIES.items()
    ]
    print()
    print(
        table(
            rows + community,
            [
                ("run", "run", ""),
                ("steps", "steps", "d"),
                ("rejected", "rej", "d"),
                ("wall_s", "wall s", ".2f"),
                ("F0", "F(0)", ".2f"),
                ("F10", "F(10)", ".2f"),
                ("F20", "F(20)", ".2f"),
                ("F100", "F(100)", ".2f"),
                ("F1000", "F(1000)", ".2f"),
                ("t_F250", "t(F=250)", ".1f"),
                ("max_rel_dev_vs_adaptive_ref", "dev vs tight", ".3f"),
                ("max_rel_dev_vs_ref", "dev vs fixed ref", ".3f"),
                ("mass_drift", "mass drift", ".1e"),
                ("energy_increases", "F increases", "d"),
            ],
        )
    )
    mean_ref = (fixed_ref or aref)["mean0"]
    print(
        f"\nmean composition at t = 0: {mean_ref:.7f} (benchmark: {MEAN0}; sampled at cell centres "
        f"{float(sampled_initial_condition(0.5).mean()):.7f}, "
        f"at i·dx {float(sampled_initial_condition(0.0).mean()):.7f}); largest drift of the mean over any run: "
        f"{max(r['max_mass_drift'] for r in {**results, **adaptive}.values()):.1e}"
    )
    print("FiPy (PFHub chart) for the collapse: " + ", ".join(f"F({t:g}) = {f:.1f}" for t, f in FIPY.items()))

    chosen = study["chosen"]
    ours = adaptive[chosen]
    print(f"\nPFHub chart series at t = 10, 100, 1000 (interpolated) against {chosen}:")
    pfhub_table = {}
    for name, ser in PFHUB_SERIES.items():
        vals = {f"{t:g}": series_at(ser, t) for t in (10.0, 100.0, 1000.0)}
        pfhub_table[name] = vals
        cells = ", ".join(
            f"F({t}) {v:.2f} (ours {at(ours, float(t)):.2f}, {at(ours, float(t)) / v - 1:+.1%})"
            if v == v
            else f"F({t}) not in the series (ends at t = {max(ser):g})"
            for t, v in vals.items()
        )
        print(f"  {name}: {cells}")
    spectral = second_opinion["runs"]["200², dt 0.1"]
    print(
        "  pseudo-spectral semi-implicit (200², dt 0.1): "
        + ", ".join(
            f"F({t}) {spectral[t]:.2f} (ours {at(ours, float(t)):.2f}, {at(ours, float(t)) / spectral[t] - 1:+.1%})"
            for t in ("10", "100", "250", "1000")
        )
    )

    # production CSV: the chosen adaptive run
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "pfhub1a_free_energy.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "free_energy"])
        for t, f in zip(ours["times"], ours["free_energy"]):
            w.writerow([f"{t:g}", f"{f:.6f}"])
    print(f"wrote {path} ({chosen})")
    compare = {name: {f"{t:g}": at(r, t) for t in COMPARE_AT} for name, r in {**results, **adaptive}.items()}
    for name, ser in PFHUB_SERIES.items():
        compare[f"{name} (PFHub)"] = {f"{t:g}": f for t, f in ser.items()}
    path = write_json(
        "bench_pfhub1a.json",
        {
            "environment": env,
            "loadavg_at_end": list(os.getloadavg()),
            "grid": [200, 200],
            "dx": 1.0,
            "t_end": T_END,
            "fixed_reference_run": fixed_ref_name,
            "adaptive_reference_run": study["reference"],
            "chosen_run": chosen,
            "tolerance": args.tolerance,
            "adaptive": {
                "norm": NORM,
                "stabilisation": args.stabilisation,
                "tolerances": args.tolerances,
                "chosen_tol": study["chosen_tol"],
                "timing_wall_s": study["timing"],
                "s_per_time_unit_min": {k: min(v) / T_END for k, v in study["timing"].items()},
                "ensemble": study["ensemble"],
            },
            "benchmark_mean": MEAN0,
            "engine_initial_mean": mean_ref,
            "cell_centre_mean": float(sampled_initial_condition(0.5).mean()),
            "node_mean": float(sampled_initial_condition(0.0).mean()),
            "summary": rows,
            "free_energy_at": compare,
            "pfhub_chart_at": pfhub_table,
            "fipy_pfhub": {f"{t:g}": f for t, f in FIPY.items()},
            "pseudospectral": second_opinion,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
