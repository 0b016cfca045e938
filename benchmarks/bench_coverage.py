"""Coverage study of the physics calibration: are the determined combinations right, and do the 90 % intervals
and forecast bands hold the truth as often as they claim?

For each of ``--videos`` synthetic videos (single-void, multi-void and nucleation in turn; seed k; true
parameters = the scenario's times exp(U(−0.3, 0.3)) for each of the nine learned parameters, inside their
bounds), the calibration stage of ``neuradiff fit`` runs as it does after joint training
(``methods.neuradiff.calibrate``): Levenberg-Marquardt in log-parameter space on the video's void-area curve
from the fit's starting guess, then the identifiability analysis and the Laplace posterior (with the fit's
undetermined draws, calibration factor and model discrepancy), then the 90 % forecast band from the first frame.
Reduced configuration (stated in the output): the recognition net is replaced by the truth (observed area = the
simulated void area of each frame, ``void_area_px`` of truth.npz, counted on the simulation's grid; start state =
the true c_v, c_i, eta of frame 0), so the study measures the physics calibration and its error bars, not the
recognition. Videos are ``--size`` px and ``--frames`` frames; the learner's simulator (IMEX, dt 0.3,
deterministic; ``--integrator``, ``--dt`` to change) differs from the generator (explicit Euler at dt 0.02, with
cascades and noise; ``--deterministic`` leaves those out), as in a real fit. Each video also reports the
learner's residual sum of squares at the true parameters next to the fitted one.

Figures: median relative error of every determined combination (90 % interval within ±25 %) against its true
value, and of the bounded ones (within a factor 2); the empirical coverage of their 90 % intervals (goal
80–95 %); the fraction of frames whose true void area lies in the 90 % band (goal
≥ 90 %). In-run baseline: the same forecast with the starting guess (its largest area error), with the ratio.

Run:  python benchmarks/bench_coverage.py [--videos 24] [--size 48] [--frames 24] [--refine 10]
Writes benchmarks/results/coverage.json (``--out`` to change); ``--merge A.json B.json`` summarises finished runs
together (e.g. the two halves of a split).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread()

import numpy as np
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.methods.forecast import simulate_forward
from neuradiff.methods.neuradiff import AREA_RESOLUTION_PX2, AreaCurve, NeuraDiffModel, analyse_curve
from neuradiff.methods.posterior import DETERMINED_HALFWIDTH, analyse, forecast_band, refine
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.physics import VoidParameters
from neuradiff.synth.datasets import SCENARIOS, dataset_config, make_dataset, time_per_frame
from neuradiff.training import FitConfig

SIZES = {"single-void": 1.0, "multi-void": 4 / 3, "nucleation": 1.0}


def true_parameters(scenario: str, seed: int) -> dict[str, float]:
    base = VoidParameters.from_mapping(SCENARIOS[scenario]["simulation"].get("params", {}), base=VoidParameters.paper())
    rng = np.random.default_rng(1000 + seed)
    out = {}
    for name in VoidParameters.default_learned():
        lo, hi = VoidParameters.specs()[name].bounds
        out[name] = float(np.clip(base.as_floats()[name] * math.exp(rng.uniform(-0.3, 0.3)), lo * 1.01, hi * 0.99))
    return out


def one_video(k: int, args: argparse.Namespace) -> dict:
    scenario = ("single-void", "multi-void", "nucleation")[k % 3]
    size = max(int(round(args.size * SIZES[scenario])), int(SCENARIOS[scenario]["min_size"]))
    true = true_parameters(scenario, k)
    cfg = dataset_config(
        scenario,
        seed=k,
        overrides={
            "frames": args.frames,
            "simulation": {"size": size, "stochastic": not args.deterministic},
            "parameters": true,
        },
    )
    ds = make_dataset(cfg)
    fit_cfg = FitConfig(
        refine_iters=args.refine,
        prior_spread=args.spread,
        nuisance_samples=args.samples,
        nuisance_steps=args.steps,
        interval_scale=args.scale,
        integrator=args.integrator,
        dt=args.dt,
        model_discrepancy=args.discrepancy,
        weak_interval_scale=args.weak_scale,
    )
    sim = fit_cfg.simulator(time_per_frame(ds.metadata))
    t = ds.truth
    state = torch.from_numpy(np.stack([t["c_v"][0], t["c_i"][0], t["eta"][0]])[None].astype(np.float32))
    true_area = t["void_area_px"].astype(float)
    start = fit_cfg.initial_parameters()
    model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), start, sim)
    curve = AreaCurve(0, state, true_area[1:])
    names = list(VoidParameters.default_learned())
    bounds = {n: VoidParameters.specs()[n].bounds for n in names}
    t0 = time.perf_counter()
    residuals = curve.residuals(model)
    out = refine(residuals, start.as_floats(), names, iterations=args.refine, bounds=bounds)
    t1 = time.perf_counter()
    try:  # the learner's own misfit at the true parameters (NaN where its simulator cannot run them)
        at_truth = residuals({**start.as_floats(), **true})
    except NeuradiffError:
        at_truth = np.array([math.nan])
    kw = {"unit": "px²", "floor": AREA_RESOLUTION_PX2, "observed": curve.observed}
    stat_ident, _ = analyse(out.residuals, out.jacobian, names, out.values, **kw)
    ident, post = analyse_curve(
        residuals, out.residuals, out.jacobian, names, out.values, curve.observed, fit_cfg, bounds=bounds
    )
    t_nuisance = time.perf_counter() - t1

    def run(values) -> np.ndarray:
        return simulate_forward(sim, state, VoidParameters.from_mapping(values), args.frames - 1).eta

    band = forecast_band(run, post, np.arange(args.frames))
    guess_area = (run(start.as_floats()) >= 0.5).sum(axis=(1, 2))
    rel = lambda a: float(np.max(np.abs(a - true_area) / np.maximum(true_area, 1.0)))  # noqa: E731

    def scored(combinations) -> list[dict]:
        rows = []
        for c in combinations:
            value = math.exp(sum(e * math.log(true[n]) for n, e in c.exponents.items()))
            rows.append(
                {
                    "combination": c.label,
                    "exponents": c.exponents,
                    "fitted": c.value,
                    "true": value,
                    "relative_error": abs(c.value - value) / value,
                    "error_in_sigmas": math.log(c.value / value) / c.log_std if c.log_std > 0 else float("inf"),
                    "halfwidth_90": c.relative_halfwidth,
                    "tier": "determined" if c.is_determined else "bounded",
                    "covered": bool(c.interval90[0] <= value <= c.interval90[1]),
                }
            )
        return rows

    combos = scored(ident.determined + ident.bounded)
    stat_combos = scored(stat_ident.determined + stat_ident.bounded)
    row = {
        "video": k,
        "scenario": scenario,
        "size": size,
        "true": true,
        "fitted": {n: out.values[n] for n in names},
        "statement": ident.statement(),
        "combinations": combos,
        "combinations_statistical_only": stat_combos,
        "seconds_undetermined_draws": t_nuisance,
        "n_determined": len(combos),
        "frames_in_band": float(band.contains(true_area).mean()),
        "max_area_error": rel(band.area),
        "max_area_error_initial_guess": rel(guess_area),
        "rss": out.rss,
        "rss_at_truth": float(at_truth @ at_truth),
        "residuals_px2": out.residuals.tolist(),
        "jacobian_px2": out.jacobian.tolist(),
        "true_area_px2": true_area.tolist(),
        "seconds": time.perf_counter() - t0,
    }
    first = combos[0] if combos else {}
    print(
        f"video {k:2d} {scenario:11s} {len(ident.determined)} determined, {len(ident.bounded)} bounded; "
        f"best {first.get('combination', '-')} "
        f"error {100 * first.get('relative_error', float('nan')):.1f} % covered {first.get('covered', '-')}; "
        f"band holds {100 * row['frames_in_band']:.0f} % of frames; area error {100 * row['max_area_error']:.1f} % "
        f"(guess {100 * row['max_area_error_initial_guess']:.1f} %); RSS {out.rss[-1]:.3g} (truth "
        f"{row['rss_at_truth']:.3g}); {row['seconds']:.0f} s; error/σ "
        + " ".join(f"{c['error_in_sigmas']:+.1f}" for c in combos),
        flush=True,
    )
    return row


def tier(c: dict) -> str:
    """ "determined" (90 % interval within ±25 %) or "bounded" (within a factor 2); rows written before the tiers
    were recorded carry the half-width the criterion reads."""
    return c.get("tier") or ("determined" if c["halfwidth_90"] <= DETERMINED_HALFWIDTH else "bounded")


def summarise(rows: list[dict]) -> dict:
    """Print and return the study's figures over ``rows`` (one per video)."""
    combos = [c for r in rows for c in r["combinations"]]
    tiers = {t: [c for c in combos if tier(c) == t] for t in ("determined", "bounded")}
    stat_rows = [r for r in rows if r["combinations_statistical_only"]]
    best = [r["combinations"][0] for r in rows if r["combinations"]]
    by_label: dict[str, list[dict]] = {}
    for c in combos:
        by_label.setdefault(c["combination"], []).append(c)
    summary = {
        "videos": len(rows),
        "videos_with_a_determined_combination": len(best),
        "median_relative_error_best_combination": statistics.median(c["relative_error"] for c in best)
        if best
        else None,
        "median_relative_error_all_combinations": statistics.median(c["relative_error"] for c in combos)
        if combos
        else None,
        "coverage_90_all_combinations": float(np.mean([c["covered"] for c in combos])) if combos else None,
        "coverage_90_best_combination": float(np.mean([c["covered"] for c in best])) if best else None,
        "coverage_90_best_combination_statistical_only": float(
            np.mean([r["combinations_statistical_only"][0]["covered"] for r in stat_rows])
        )
        if stat_rows
        else None,
        "coverage_90_all_combinations_statistical_only": float(
            np.mean([c["covered"] for r in stat_rows for c in r["combinations_statistical_only"]])
        )
        if stat_rows
        else None,
        **{
            f"{t}_{k}": v
            for t, group in tiers.items()
            for k, v in {
                "combinations": len(group),
                "videos_with_one": sum(any(tier(c) == t for c in r["combinations"]) for r in rows),
                "median_relative_error": statistics.median(c["relative_error"] for c in group) if group else None,
                "coverage_90": float(np.mean([c["covered"] for c in group])) if group else None,
            }.items()
        },
        "median_abs_error_in_sigmas_best_combination": statistics.median(
            abs(c["error_in_sigmas"]) for c in best if "error_in_sigmas" in c
        )
        if any("error_in_sigmas" in c for c in best)
        else None,
        "fraction_of_frames_in_band": float(np.mean([r["frames_in_band"] for r in rows])),
        "median_max_area_error": statistics.median(r["max_area_error"] for r in rows),
        "median_max_area_error_initial_guess": statistics.median(r["max_area_error_initial_guess"] for r in rows),
    }
    summary["area_error_ratio_vs_initial_guess"] = (
        summary["median_max_area_error"] / summary["median_max_area_error_initial_guess"]
    )
    print()
    print(
        table(
            [
                {
                    "label": k,
                    "n": len(v),
                    "err": statistics.median(c["relative_error"] for c in v),
                    "cov": float(np.mean([c["covered"] for c in v])),
                }
                for k, v in by_label.items()
            ],
            [
                ("label", "combination", ""),
                ("n", "videos", "d"),
                ("err", "median rel. error", ".3f"),
                ("cov", "90 % coverage", ".2f"),
            ],
        )
    )
    print()
    for k, v in summary.items():
        print(f"{k}: {v}")
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--refine", type=int, default=10)
    ap.add_argument("--scale", type=float, default=FitConfig().interval_scale, help="interval_scale of the fit")
    ap.add_argument(
        "--discrepancy", type=float, default=FitConfig().model_discrepancy, help="model_discrepancy of the fit"
    )
    ap.add_argument(
        "--weak-scale", type=float, default=FitConfig().weak_interval_scale, help="weak_interval_scale of the fit"
    )
    ap.add_argument("--spread", type=float, default=FitConfig().prior_spread, help="prior_spread of the fit")
    ap.add_argument("--samples", type=int, default=FitConfig().nuisance_samples, help="nuisance_samples")
    ap.add_argument("--steps", type=int, default=FitConfig().nuisance_steps, help="nuisance_steps")
    ap.add_argument("--integrator", default=FitConfig().integrator, help="the learner's integrator")
    ap.add_argument("--dt", type=float, default=FitConfig().dt, help="the learner's time step")
    ap.add_argument(
        "--deterministic", action="store_true", help="generator without cascades and noise (as the learner)"
    )
    ap.add_argument("--first", type=int, default=0, help="seed of the first video (videos are first, first + 1, ...)")
    ap.add_argument("--out", default="coverage.json")
    ap.add_argument(
        "--merge", nargs="+", metavar="JSON", help="only summarise these finished results together (e.g. two halves)"
    )
    args = ap.parse_args()
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        for f, run in zip(args.merge, runs):
            print(f"{f}: {run['config']}")
        per_file = {}
        if len(runs) > 1:
            for f, run in zip(args.merge, runs):
                print(f"\n{f}:")
                per_file[Path(f).name] = summarise(run["videos"])
            print("\nall together:")
        summary = summarise([row for run in runs for row in run["videos"]])
        if args.out != "coverage.json":
            write_json(args.out, {"merged": args.merge, "summary": summary, "per_file": per_file})
        return
    env = environment()
    print_environment(env)
    torch.manual_seed(0)
    config = {
        "videos": args.videos,
        "size": args.size,
        "frames": args.frames,
        "refine_iters": args.refine,
        "first_seed": args.first,
        "prior_spread": args.spread,
        "nuisance_samples": args.samples,
        "nuisance_steps": args.steps,
        "interval_scale": args.scale,
        "model_discrepancy": args.discrepancy,
        "weak_interval_scale": args.weak_scale,
        "deterministic_generator": args.deterministic,
        "learner": {"integrator": args.integrator, "dt": args.dt},
        "reduced": "recognition replaced by the truth (observed area: void_area_px, start state: frame 0 of truth.npz)",
    }
    rows = []
    for k in range(args.first, args.first + args.videos):
        rows.append(one_video(k, args))
        write_json(args.out, {"environment": env, "config": config, "finished": False, "videos": rows})
    summary = summarise(rows)
    path = write_json(
        args.out, {"environment": env, "config": config, "finished": True, "summary": summary, "videos": rows}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
