"""Does ``neuradiff track --denoise`` help recognition on a noisy recording?

Synthetic multi-void videos (``--frames`` frames of 128² px, no stage drift, several seeds) are rendered at a low
electron dose (``--doses``: electrons per pixel per frame; the default render uses 100) and recognised by the
shipped generalist recogniser after each denoise setting of :class:`neuradiff.measure.denoise.Denoise`. Printed:
the pooled void IoU of the masks against the simulator's true voids (eta ≥ 0.5) per dose and setting, as the
mean and spread over the seeds, and the ratio to no denoising in the same run (the baseline).

Run:  python benchmarks/bench_denoise.py [--seeds 0 1 2] [--doses 3 10] [--frames 10]
Writes benchmarks/results/bench_denoise.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import numpy as np
import torch

from neuradiff.measure.denoise import Denoise
from neuradiff.measure.metrics import iou
from neuradiff.nets.generalist import load_generalist
from neuradiff.synth.datasets import dataset_config, make_dataset
from neuradiff.workflows.track import recognise_masks

SETTINGS = {
    "none": Denoise(),
    "gaussian σ=1": Denoise("gaussian", sigma=1.0),
    "gaussian σ=2": Denoise("gaussian", sigma=2.0),
    "nlmeans": Denoise("nlmeans"),
    "temporal 3": Denoise("temporal", window=3),
    "temporal 5": Denoise("temporal", window=5),
}


def noisy_video(seed: int, dose: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(video [T, H, W], true void masks [T, H, W]) of a multi-void recording rendered at ``dose``."""
    cfg = dataset_config(
        "multi-void",
        overrides={"frames": frames, "steps_per_frame": 20, "render": {"dose": dose, "drift": 0.0}},
        seed=seed,
    )
    ds = make_dataset(cfg)
    return ds.video, ds.truth["eta"] >= 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--doses", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    generalist = load_generalist()
    scores: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = dict.fromkeys(SETTINGS, 0.0)
    for dose in args.doses:
        per = scores.setdefault(f"{dose:g}", {name: [] for name in SETTINGS})
        for seed in args.seeds:
            video, truth = noisy_video(seed, dose, args.frames)
            for name, denoise in SETTINGS.items():
                t0 = time.perf_counter()
                frames = denoise.apply(video) if denoise.active else video
                _, masks, _ = recognise_masks(generalist, frames)
                seconds[name] += time.perf_counter() - t0
                per[name].append(iou(masks.astype(bool), truth))
    rows = []
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for dose, per in scores.items():
        base = statistics.mean(per["none"])
        summary[dose] = {}
        for name, values in per.items():
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[dose][name] = {"mean_iou": mean, "std_iou": spread, "ratio_to_none": mean / max(base, 1e-12)}
            rows.append(
                {
                    "dose": dose,
                    "denoise": name,
                    "mean": mean,
                    "std": spread,
                    "min": min(values),
                    "max": max(values),
                    "ratio": mean / max(base, 1e-12),
                }
            )
    columns = [
        ("dose", "dose e/px", ""),
        ("denoise", "denoise", ""),
        ("mean", "void IoU (mean)", ".3f"),
        ("std", "± std", ".3f"),
        ("min", "min", ".3f"),
        ("max", "max", ".3f"),
        ("ratio", "÷ none", ".3f"),
    ]
    print(table(rows, columns))
    print("seconds (denoise + recognition, all videos):", {k: round(v, 1) for k, v in seconds.items()})
    write_json(
        "bench_denoise.json",
        {
            "environment": env,
            "settings": {name: d.describe() for name, d in SETTINGS.items()},
            "seeds": args.seeds,
            "frames": args.frames,
            "per_seed_iou": scores,
            "summary": summary,
            "seconds": seconds,
        },
    )


if __name__ == "__main__":
    main()
