"""The demo over several seeds: largest forecast area error and forecast-band coverage of each, with their mean,
min and max, from finished ``neuradiff demo --seed S --out DIR`` folders.

Each folder's ``model/metrics.json`` gives the figures of the run. With ``--reanalyse`` the uncertainty analysis
of the calibration (identifiability, posterior, forecast band) is redone with the installed code at the saved
(already refined) parameters — ``methods.neuradiff.calibrate`` with ``refine_iters = 0`` and the run's other
settings — and scored against ``truth.npz`` in the same way: what a demo of the installed code reports when only
the analysis changed (training and refinement are the same code). The analysis is timed with and without the
draws of the undetermined parameters (``nuisance_samples``), their cost. In-run baseline: the same forecast with the
fit's initial guess (``forecast_initial_guess`` of the metrics), with the ratio.

Run:  python benchmarks/bench_demo_seeds.py DIR [DIR ...] [--metrics SEED=metrics.json] [--reanalyse]
      [--out demo_seeds.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread()

from neuradiff.core.config import settings_from
from neuradiff.evaluation.truth import load_truth
from neuradiff.methods import NeuraDiffModel
from neuradiff.methods.neuradiff import calibrate
from neuradiff.methods.registry import load_model
from neuradiff.training import FitConfig
from neuradiff.workflows.fit import load_training_data, uncertainty_scores


def reanalyse(folder: Path) -> dict:
    model = load_model(folder / "model")
    if not isinstance(model, NeuraDiffModel):
        raise SystemExit(f"{folder}: not a NeuraDiff model")
    saved = json.loads((folder / "model" / "config.json").read_text())
    known = set(FitConfig.__dataclass_fields__)
    config = settings_from(FitConfig, {k: v for k, v in saved.items() if k in known}, "fit", folder)
    config = replace(config, refine_iters=0)
    video = folder / "video"
    data, _ = load_training_data(video / "video.tif", video / "annotations.tif")
    t0 = time.perf_counter()
    calibrate(model, data, replace(config, nuisance_samples=0), bounds=model.info.get("bounds"))
    t1 = time.perf_counter()
    model = calibrate(model, data, config, bounds=model.info.get("bounds"))
    t2 = time.perf_counter()
    scores = uncertainty_scores(model, data, load_truth(video / "truth.npz"))
    return {
        "seconds_analysis_without_undetermined_draws": t1 - t0,
        "seconds_analysis": t2 - t1,
        "fraction_of_frames_in_band": scores.get("forecast_band", {}).get("fraction_of_frames_in_band"),
        "identifiable_combinations": scores.get("identifiable_combinations", []),
        "statement": model.identifiable.statement() if model.identifiable is not None else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("folders", nargs="*", type=Path)
    ap.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="SEED=FILE",
        help="the metrics.json of a finished demo whose folder is gone (not re-analysed)",
    )
    ap.add_argument("--reanalyse", action="store_true")
    ap.add_argument("--out", default="demo_seeds.json")
    args = ap.parse_args()
    env = environment()
    print_environment(env)
    runs: list[tuple[int, Path, Path | None]] = []
    for item in args.metrics:
        seed_text, _, file = item.partition("=")
        runs.append((int(seed_text), Path(file), None))
    for folder in args.folders:
        runs.append((json.loads((folder / "model" / "config.json").read_text())["seed"], folder / "model", folder))
    rows = []
    for seed, where, folder in sorted(runs, key=lambda r: r[0]):
        metrics = json.loads((where if where.suffix == ".json" else where / "metrics.json").read_text())
        row = {
            "source": str(where),
            "seed": seed,
            "max_relative_area_error": metrics["forecast"]["max_relative_area_error"],
            "max_relative_area_error_initial_guess": metrics["forecast_initial_guess"]["max_relative_area_error"],
            "last_frame_iou": metrics["forecast"]["last_frame_iou"],
            "fraction_of_frames_in_band": metrics.get("forecast_band", {}).get("fraction_of_frames_in_band"),
            "identifiable_combinations": metrics.get("identifiable_combinations", []),
        }
        if args.reanalyse and folder is not None:
            row["reanalysed"] = reanalyse(folder)
        rows.append(row)
        print(f"seed {seed}: {json.dumps({k: v for k, v in row.items() if not isinstance(v, (list, dict))})}")

    def spread(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}

    summary = {
        "seeds": [r["seed"] for r in rows],
        "max_relative_area_error": spread([r["max_relative_area_error"] for r in rows]),
        "max_relative_area_error_initial_guess": spread([r["max_relative_area_error_initial_guess"] for r in rows]),
        "fraction_of_frames_in_band": spread([r["fraction_of_frames_in_band"] for r in rows]),
    }
    summary["area_error_ratio_vs_initial_guess"] = (
        summary["max_relative_area_error"]["mean"] / summary["max_relative_area_error_initial_guess"]["mean"]
    )
    if args.reanalyse:
        again = [r["reanalysed"] for r in rows if "reanalysed" in r]
        summary["seeds_reanalysed"] = [r["seed"] for r in rows if "reanalysed" in r]
        summary["fraction_of_frames_in_band_reanalysed"] = spread([r["fraction_of_frames_in_band"] for r in again])
        summary["seconds_analysis_reanalysed"] = spread([r["seconds_analysis"] for r in again])
        summary["seconds_analysis_without_undetermined_draws"] = spread(
            [r["seconds_analysis_without_undetermined_draws"] for r in again]
        )
        best = [r["identifiable_combinations"][:1] for r in again]
        summary["best_combination_covered_reanalysed"] = sum(bool(b and b[0]["covered"]) for b in best)
    print()
    print(
        table(
            rows,
            [
                ("seed", "seed", "d"),
                ("max_relative_area_error", "largest area error", ".3f"),
                ("max_relative_area_error_initial_guess", "initial guess", ".3f"),
                ("fraction_of_frames_in_band", "frames in band", ".2f"),
            ],
        )
    )
    for k, v in summary.items():
        print(f"{k}: {v}")
    path = write_json(args.out, {"environment": env, "summary": summary, "runs": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
