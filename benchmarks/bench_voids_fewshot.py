"""Few-shot void recognition on the corpus's variety: the shipped generalist zero-shot against ``neuradiff fit``
with 1 and with 3 annotated frames, on held-out synthetic recordings, in one run.

For each of ``--clips`` recordings (``--frames`` frames of ``--size``² px, drawn from the full corpus randomisation:
both contrast signs, facets, distractors, gradients, noise, 8/16 bit, voids evolved by the void model between frames;
corpus seeds ``HELD_OUT_SEED + 200000 + k``, used by no training, threshold or other score):

- ``zero-shot``: the shipped generalist's masks (``neuradiff track VIDEO`` without ``--model``);
- ``1 frame``: ``neuradiff fit VIDEO --annotations A`` with frame 0 annotated whole (255 elsewhere), then
  ``neuradiff track VIDEO --model M``; default fit settings (the net starts from the generalist), or those of
  ``--fit-config``;
- ``3 frames``: the same with frames 0, F/2 − 1 and F − 2 annotated;
- ``LoG, 1 frame`` and ``LoG, 3 frames``: the classical baseline given the same annotations, Laplacian-of-Gaussian
  blobs (``bench_voids.log_mask``) with the threshold and polarity of the best object F1 on the annotated frames
  (``bench_voids.tune_log_on``, skipping the thresholds whose blobs could not beat the best F1 so far; frames larger
  than 512² are tuned on their central 512² window).

Every setting is scored on the same frames, those annotated in neither few-shot setting, with the zero-shot
scorecard's measures (``bench_voids.score``: object F1 one-to-one at IoU ≥ 0.5, pixel IoU, count error, median size
error; over every void and over the visible ones, t ≥ 3). Each fit and track is a subprocess on one torch thread.

Run:  python benchmarks/bench_voids_fewshot.py [--clips 6] [--first 0] [--size 256] [--frames 8] [--fit-config F]
      [--corpus-kernel fused] (the recordings' phase-field steps with the compiled kernel: 1024² × 8 frames in 40 s
      instead of 6 min) [--settings "3 frames"] [--skip-log] (only these fits; without the LoG baseline, whose tuning
      takes up to 10 minutes a 1024² recording)
Writes benchmarks/results/voids_fewshot.json (``--out`` to change); ``--merge A.json B.json`` scores finished runs
together (e.g. two halves run side by side, each with its own ``--work`` folder kept for the merge).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import numpy as np
import tifffile

from bench_voids import log_mask, score, tune_log_on, visible
from neuradiff.nets.generalist import load_generalist
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED

FIRST_SEED = HELD_OUT_SEED + 200_000
SETTINGS = ("zero-shot", "1 frame", "3 frames")
#: The classical baseline tuned on each few-shot setting's annotated frames.
BASELINES = ("LoG, 1 frame", "LoG, 3 frames")
#: Annotated frames larger than this a side tune the LoG baseline on their central window of this side (the
#: threshold and polarity then mark whole frames): on a 1024² frame of many distractors, ``blob_log`` at each low
#: threshold finds tens of thousands of blobs and prunes them for tens of minutes.
LOG_TUNING_SIDE = 512


def tuning_window(a: np.ndarray) -> np.ndarray:
    """The central ``LOG_TUNING_SIDE``² window of a frame or mask ``[H, W]`` (the whole of a smaller one)."""
    h, w = a.shape
    y, x = max(0, (h - LOG_TUNING_SIDE) // 2), max(0, (w - LOG_TUNING_SIDE) // 2)
    return a[y : y + LOG_TUNING_SIDE, x : x + LOG_TUNING_SIDE]


def key(setting: str) -> str:
    """A setting's name as an array name in ``scored.npz``."""
    return setting.replace(", ", "_").replace(" ", "_")


def annotated_frames(setting: str, frames: int) -> list[int]:
    """The frames a few-shot setting annotates (none for zero-shot)."""
    return {"zero-shot": [], "1 frame": [0], "3 frames": [0, frames // 2 - 1, frames - 2]}[setting]


def run(cmd: list[str]) -> float:
    """Run ``cmd`` on one torch thread (raising with its error output if it fails); its wall time in s."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def one_clip(k: int, args: argparse.Namespace, work: Path) -> dict:
    """The three settings' masks of clip ``k`` on its scored frames, written to ``work``; their scores' inputs."""
    clip = corpus_sample(FIRST_SEED + k, CorpusSettings(size=args.size, frames=args.frames, kernel=args.corpus_kernel))
    frames, truth = np.asarray(clip.frames), np.asarray(clip.masks)
    folder = work / f"clip-{k}"
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / "video.tif"
    tifffile.imwrite(video, frames)
    used = {f for s in SETTINGS for f in annotated_frames(s, args.frames)}
    scored = [f for f in range(args.frames) if f not in used]
    found: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    found["zero-shot"] = load_generalist().masks(frames)
    seconds["zero-shot"] = time.perf_counter() - t0
    exe = [sys.executable, "-m", "neuradiff"]
    for setting in args.settings:
        ann = np.full(frames.shape, 255, np.uint8)
        for f in annotated_frames(setting, args.frames):
            ann[f] = truth[f].astype(np.uint8)
        tag = setting.split()[0]
        tifffile.imwrite(folder / f"annotations-{tag}.tif", ann)
        model, track = folder / f"model-{tag}", folder / f"track-{tag}"
        settings = [] if args.fit_config is None else ["--config", str(args.fit_config)]
        fit_s = run(exe + ["fit", str(video), "--annotations", str(folder / f"annotations-{tag}.tif")]
                    + ["--out", str(model), "--threads", "1"] + settings)  # fmt: skip
        track_s = run(exe + ["track", str(video), "--model", str(model), "--out", str(track), "--threads", "1"])
        found[setting] = tifffile.imread(track / "masks.tif").astype(bool)
        seconds[setting] = fit_s + track_s
    baselines = [] if args.skip_log else [f"LoG, {s}" for s in args.settings]
    for setting in baselines:
        t0 = time.perf_counter()
        taught = annotated_frames(setting.split(", ")[1], args.frames)
        thr, pol, _ = tune_log_on(
            [tuning_window(frames[f]) for f in taught], [tuning_window(truth[f]) for f in taught], stop_early=True
        )
        found[setting] = np.zeros(frames.shape, bool)
        for f in scored:
            found[setting][f] = log_mask(frames[f], thr, pol)
        seconds[setting] = time.perf_counter() - t0
    hidden = [~visible(frames[f], truth[f]) for f in scored]
    row = {
        "clip": k,
        "seed": FIRST_SEED + k,
        "render": clip.info.get("render", {}),
        "n_voids_first_frame": int(clip.info.get("n_voids", 0)),
        "scored_frames": scored,
        "folder": str(folder),
        "seconds": seconds,
        "scores": {
            s: {
                "every void": score([found[s][f] for f in scored], [truth[f] for f in scored]),
                "visible voids": score([found[s][f] for f in scored], [truth[f] for f in scored], hidden),
            }
            for s in found
        },
    }
    arrays: dict[str, np.ndarray] = {key(s): found[s][scored] for s in found}
    arrays |= {
        "truth": truth[scored],
        "hidden": np.concatenate(hidden),
        "hidden_counts": np.array([h.size for h in hidden]),
    }
    np.savez_compressed(folder / "scored.npz", **arrays)  # pyright: ignore[reportArgumentType]
    line = ", ".join(f"{s} {row['scores'][s]['visible voids']['f1']:.3f}" for s in found)
    print(f"clip {k} ({row['render'].get('contrast', '?')}): visible-void F1 {line}", flush=True)
    return row


def settings_of(rows: list[dict]) -> list[str]:
    """The settings every clip was scored with (runs before the baseline have none of it)."""
    return [s for s in (*SETTINGS, *BASELINES) if all(s in r["scores"] for r in rows)]


def pooled(rows: list[dict]) -> dict:
    """Each setting's scores over the scored frames of every clip together (from the masks each clip saved)."""
    out = {}
    for s in settings_of(rows):
        found, truth, hidden = [], [], []
        for r in rows:
            z = np.load(Path(r["folder"]) / "scored.npz")
            found += list(z[key(s)])
            truth += list(z["truth"])
            hidden += np.split(z["hidden"], np.cumsum(z["hidden_counts"])[:-1])
        out[s] = {"every void": score(found, truth), "visible voids": score(found, truth, hidden)}
    return out


def summarise(rows: list[dict]) -> dict:
    """Print and return the pooled scores and the spread of the per-clip F1."""
    pool = pooled(rows)
    table_rows = []
    for s in settings_of(rows):
        for subset in ("every void", "visible voids"):
            per_clip = [r["scores"][s][subset]["f1"] for r in rows]
            table_rows.append(
                {
                    "setting": s,
                    "subset": subset,
                    **pool[s][subset],
                    "f1_min": min(per_clip),
                    "f1_max": max(per_clip),
                    "seconds": float(np.median([r["seconds"][s] for r in rows])),
                }
            )
    print(
        table(
            table_rows,
            [
                ("setting", "setting", ""),
                ("subset", "voids", ""),
                ("f1", "object F1", ".3f"),
                ("f1_min", "clip min", ".3f"),
                ("f1_max", "clip max", ".3f"),
                ("pixel_iou", "pixel IoU", ".3f"),
                ("count_error", "count err", ".3f"),
                ("median_size_error", "median size err", ".3f"),
                ("n_true", "voids", "d"),
                ("seconds", "median s", ".0f"),
            ],
        )
    )
    zero = pool["zero-shot"]["visible voids"]["f1"]
    for s in [s for s in SETTINGS[1:] if s in pool]:
        f1 = pool[s]["visible voids"]["f1"]
        ratio = f"ratio {f1 / zero:.2f}" if zero > 0 else "the generalist found none"
        print(f"visible-void F1, {s} / zero-shot: {f1:.3f} / {zero:.3f} ({ratio})")
        if f"LoG, {s}" in pool:
            log = pool[f"LoG, {s}"]["visible voids"]["f1"]
            versus = f"ratio {f1 / log:.2f}" if log > 0 else "LoG found none"
            print(f"visible-void F1, {s}: fit / LoG tuned on the same annotations {f1:.3f} / {log:.3f} ({versus})")
    return {"pooled": pool, "rows": table_rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--first", type=int, default=0, help="first clip (corpus seed HELD_OUT_SEED + 200000 + first)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument(
        "--corpus-kernel", choices=("torch", "fused"), default="torch",
        help="how the recordings' voids are evolved (CorpusSettings.kernel): fused for 1024² recordings",
    )  # fmt: skip
    ap.add_argument("--fit-config", type=Path, default=None, help="a fit settings file for the few-shot fits")
    ap.add_argument(
        "--settings", type=lambda v: [s.strip() for s in v.split(",")], default=list(SETTINGS[1:]),
        help='the few-shot settings to fit, comma-separated (default "1 frame,3 frames"); zero-shot always runs',
    )  # fmt: skip
    ap.add_argument("--skip-log", action="store_true", help="leave out the LoG baseline (slow on 1024² frames)")
    ap.add_argument("--work", type=Path, default=None, help="keep recordings, models and masks in this folder")
    ap.add_argument("--out", default="voids_fewshot.json", help="file name under benchmarks/results")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only score these finished runs together")
    args = ap.parse_args()
    if not set(args.settings) <= set(SETTINGS[1:]):
        ap.error(f"--settings takes {', '.join(map(repr, SETTINGS[1:]))}, comma-separated")
    if args.frames < 6:
        ap.error("--frames must be at least 6 (three annotated frames and scored frames between them)")
    if args.merge:
        runs = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for run_ in runs for r in run_["clips"]]
        environments = [run_.get("environment") for run_ in runs]
        write_json(
            args.out, {"merged": args.merge, "environments": environments, "clips": rows, "summary": summarise(rows)}
        )
        return
    env = environment()
    print_environment(env)
    work = args.work or Path(tempfile.mkdtemp(prefix="neuradiff-voids-fewshot-"))
    rows = [one_clip(k, args, work) for k in range(args.first, args.first + args.clips)]
    summary = summarise(rows)
    fit_settings = None if args.fit_config is None else args.fit_config.read_text()
    record = vars(args) | {"work": str(args.work), "fit_config": fit_settings, "log_tuning_side": LOG_TUNING_SIDE}
    write_json(args.out, {"environment": env, "settings": record, "clips": rows, "summary": summary})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
