"""The generalist on frames drawn larger or smaller than it was trained on: as they are, with the resampling factor it
chooses itself (``neuradiff track --void-size auto``), and with the factor that undoes the magnification, in one run.

A recording at a higher magnification draws everything larger in pixels: the voids, their Fresnel fringes, the
loops and the texture; only the shot noise stays one pixel. The held-out sets of ``bench_voids.py`` (corpus seeds
from ``HELD_OUT_SEED``: 40 stills of 256², 24 clips of 4 frames of 128²) are redrawn that way: each frame resampled
by the magnification k (cubic spline; area-averaged when k < 1) with, when k > 1, fresh white noise of a tenth of
the frame's grey-level spread added at the new pixel size, and its true masks resampled to the nearest pixel. Each
still is a recording of its own, each clip one recording of four frames (``auto`` chooses one factor from them,
as ``track`` does from three frames of a recording). The factor that undoes the magnification is the candidate
nearest 1/k.

Scores as ``bench_voids.py``: object F1 at IoU ≥ 0.5 over the visible voids (contrast-to-noise statistic on their
true outline ≥ 3 in the magnified frame), precision, recall, median size error, pooled over each set. Also the
seconds the choice takes on one 1024² frame (one torch thread).

Run:  python benchmarks/bench_scale.py [--stills 40] [--clips 24] [--out bench_scale.json]
Writes benchmarks/results/bench_scale.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import numpy as np
import torch
from skimage.transform import rescale

from bench_voids import dense_1024, score, visible
from neuradiff.nets.generalist import SCALE_CANDIDATES, load_generalist
from neuradiff.nets.tiles import resample_factor
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED
from neuradiff.workflows.track import auto_void_px

#: (set, magnifications): stills drawn 1, 2 and 3 times larger, clips as they are and half as large.
PLAN = (("stills", (1.0, 2.0, 3.0)), ("clips", (1.0, 0.5)))
#: Fresh white noise added to a magnified frame, as a fraction of its grey-level spread.
NOISE = 0.1


def magnified(frames: np.ndarray, masks: np.ndarray, k: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T, H, W]`` and masks drawn ``k`` times larger (see the module docstring), float32 and bool."""
    if k == 1:
        return frames.astype(np.float32), masks.astype(bool)
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for f, m in zip(frames.astype(np.float32), masks):
        g = rescale(f, k, order=3, anti_aliasing=k < 1)
        if k > 1:
            g = g + rng.normal(0.0, NOISE * float(f.std()), g.shape)
        out.append(g.astype(np.float32))
        truth.append(rescale(m.astype(np.float32), k, order=0, anti_aliasing=False) > 0.5)
    return np.stack(out), np.stack(truth)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stills", type=int, default=40)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--out", default="bench_scale.json", help="file name under benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    g = load_generalist()
    t_all = time.perf_counter()
    recordings = {
        "stills": [corpus_sample(HELD_OUT_SEED + k, CorpusSettings(size=256)) for k in range(args.stills)],
        "clips": [
            corpus_sample(HELD_OUT_SEED + 100_000 + k, CorpusSettings(size=128, frames=4)) for k in range(args.clips)
        ],
    }
    rows, results = [], {}
    for name, ks in PLAN:
        for k in ks:
            undo = min(SCALE_CANDIDATES, key=lambda c: abs(math.log(c * k)))
            found: dict[str, list[np.ndarray]] = {"as they are": [], "auto": [], f"undone ({undo:.3g})": []}
            truths, hidden, chosen = [], [], []
            for j, rec in enumerate(recordings[name]):
                frames, masks = magnified(rec.frames, rec.masks, k, seed=j)
                void_px = auto_void_px(g, lambda a, b: frames[a:b], len(frames))
                chosen.append(resample_factor(void_px, target=g.train_diameter_px, tile=g.tiling.tile))
                factors = {"as they are": None, "auto": void_px, f"undone ({undo:.3g})": g.void_px_for(undo)}
                for method, px in factors.items():
                    found[method] += list(g.masks(frames, void_px=px))
                truths += list(masks)
                hidden += [~visible(f, m) for f, m in zip(frames, masks)]
            values, counts = np.unique(np.round(chosen, 3), return_counts=True)
            print(f"{name} ×{k:g}: auto chose " + ", ".join(f"{v:g} ({c})" for v, c in zip(values, counts)))
            for method, masks_found in found.items():
                s = score(masks_found, truths, hidden)
                key = f"{name} ×{k:g} / {method}"
                results[key] = s | {"chosen_factors": dict(zip(map(str, values), map(int, counts)))}
                rows.append({"set": f"{name} ×{k:g}", "method": method, **s})
            base, auto = results[f"{name} ×{k:g} / as they are"]["f1"], results[f"{name} ×{k:g} / auto"]["f1"]
            ratio = auto / max(base, 1e-9)
            print(f"{name} ×{k:g}: F1 auto / as they are = {auto:.3f} / {base:.3f} (ratio {ratio:.2f})")
    print(
        table(
            rows,
            [
                ("set", "set", ""),
                ("method", "factor", ""),
                ("f1", "object F1 (visible)", ".3f"),
                ("precision", "precision", ".3f"),
                ("recall", "recall", ".3f"),
                ("median_size_error", "median size err", ".3f"),
                ("n_true", "voids", "d"),
            ],
        )
    )
    frame = dense_1024()
    g.estimate_scale(frame[:64, :64])  # warm up
    t = time.perf_counter()
    g.estimate_scale(frame)
    choice_s = time.perf_counter() - t
    t = time.perf_counter()
    g.masks(frame)
    masks_s = time.perf_counter() - t
    print(f"choosing the factor on one 1024² frame: {choice_s:.2f} s (the frame to masks: {masks_s:.2f} s)")
    out = {
        "environment": env,
        "weights_version": g.version,
        "candidates": list(SCALE_CANDIDATES),
        "noise": NOISE,
        "scores": results,
        "choice_seconds_1024": choice_s,
        "masks_seconds_1024": masks_s,
        "settings": vars(args),
        "seconds": time.perf_counter() - t_all,
    }
    path = write_json(args.out, out)
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
