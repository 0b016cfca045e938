"""Scorecard of generalist void recognisers, zero-shot, side by side with a Laplacian-of-Gaussian blob baseline.

Sets (none of them seen in training):

- ``synthetic stills``: ``--stills`` frames of 256² from the full corpus randomisation (both contrasts, every
  distractor), corpus seeds from ``HELD_OUT_SEED`` on (training used seeds 0 … pool − 1);
- ``synthetic clips``: ``--clips`` clips of ``--clip-frames`` frames of 128² whose voids evolve under the void
  model (corpus seeds from ``HELD_OUT_SEED + 100000``);
- ``synthetic sparse 1024²``: ``--sparse`` frames of 1024² with 2–10 voids each (``max_voids`` 10) among the
  full randomisation's distractors, as a real frame of a handful of voids (corpus seeds from
  ``HELD_OUT_SEED + 600000``);
- ``CREME loops``: the 16 real 512² in-situ frames of dislocation loops in 316L (``benchmarks/data/creme-316L``,
  MIT): there are no voids in them, so every object found is a false void. Frames 1–4 (:data:`CREME_LOOKED_AT`)
  were looked at to find out what version 1 mistakes for voids; frames 5–16 (:data:`CREME_SCORED`) were never
  looked at while the corpus and the training were changed and give the headline figure. Neither is used for
  training or for any threshold.

Scores: object precision/recall/F1 (one-to-one matching per frame at IoU ≥ 0.5, pooled over the frames; also the
mean over frames with at least one counted void of each frame's own F1, which weighs a frame of seven voids as much
as one of three hundred), pixel IoU (pooled), count
error (mean over frames of |found − true| / true), median size error (median over matched voids of
|d_found − d_true| / d_true, d the equivalent diameter; also signed, and by the true void's diameter, under 6, 6–10,
10–20 and from 20 px), false voids per CREME frame. Each synthetic set is scored
three times: over every true void, over the visible ones only (``…, visible voids``): a void whose
contrast-to-noise statistic on its true outline in its own frame is under :data:`VISIBLE_T` (3, the lower end of
the Rose criterion) is left out as PASCAL VOC leaves out "difficult" objects (neither a miss nor, when a found
region goes to it, a find). A person marking a real frame marks what stands out of its noise; the corpus's truth
marks every void, down to the shot noise of 3 counts per pixel. The third (``…, visible voids from 3 px``) also
leaves out the true voids under :data:`MIN_DIAMETER_PX` across, below the 3–60 px of the recordings the recogniser
is for, through which the clips' shrinking voids pass on their way out.

Baseline, in the same run: ``skimage.feature.blob_log`` on the per-frame normalised frame, bright blobs, dark
blobs or both, each blob drawn as a disk of radius √2σ; polarity and threshold are chosen for the best object
F1 on ``--tune`` training-corpus stills (seeds 0 …), sigma covering the corpus's 3–60 px voids.

Speed: the generalist from one dense 1024² frame (4 × 4 held-out stills, about 1 600 voids) to void masks, filters
included (minimum of ``--repeats``), with 1 and 2 torch threads; in the same
run the same net without its batch norms folded into the convolutions, and the inference path of the version
before (that, and the library's pixel shuffle), as baselines.
``--speed-only`` measures only that.

Recognisers: the shipped one, and any number of ``--compare LABEL=FOLDER`` (e.g. an earlier version's weights,
``git show REV:src/neuradiff/nets/weights/generalist.pt`` and ``.json`` into FOLDER), all scored in the same run.

Run:  python benchmarks/bench_voids.py [--weights FOLDER] [--compare v1=FOLDER] [--stills 40] [--clips 24] [--sparse 16]
      [--tune 40]
      python benchmarks/bench_voids.py --speed-only --repeats 10 --out bench_voids_speed.json
Writes benchmarks/results/bench_voids.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import imageio.v3 as iio
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from skimage.draw import disk
from skimage.feature import blob_log
from skimage.measure import label

from neuradiff.nets import unet
from neuradiff.nets.contrast import VISIBLE_CONTRAST, contrast_significance
from neuradiff.nets.generalist import load_generalist
from neuradiff.nets.levels import normalise_frame
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED

HERE = Path(__file__).resolve().parent
CREME = HERE / "data" / "creme-316L" / "fov200nm" / "imgs"
#: CREME frames looked at while diagnosing false voids (not used for the headline figure).
CREME_LOOKED_AT = (1, 2, 3, 4)
#: CREME frames kept out of every decision; the headline false-void figure.
CREME_SCORED = tuple(range(5, 17))
#: A true void is scored as visible when its contrast-to-noise statistic in its own frame reaches this: the lower end
#: of the 3–5 a feature needs to be told from noise (the Rose criterion).
VISIBLE_T = VISIBLE_CONTRAST
#: Classes of the true void's equivalent diameter (px) over which the size error is also reported: one pixel of
#: outline is a larger fraction of a small void.
SIZE_CLASSES = ((0, 6), (6, 10), (10, 20), (20, math.inf))
#: Smallest void diameter (px) of the real recordings the recogniser is for (3–60 px): the third subset leaves out
#: smaller true voids as well (the clips' voids shrink through it on their way out).
MIN_DIAMETER_PX = 3.0
#: First corpus seed of the held-out sparse 1024² frames (development frames, for choices, come from
#: ``HELD_OUT_SEED + 500000``; the few-shot benchmark draws from ``HELD_OUT_SEED + 200000``).
SPARSE_SET_SEED = HELD_OUT_SEED + 600_000
THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
POLARITIES = ("bright", "dark", "both")


def match(
    pred: np.ndarray, truth: np.ndarray, thr: float = 0.5, hidden: np.ndarray | None = None
) -> tuple[int, int, list[tuple[float, float]]]:
    """(objects found, true objects, [(true area, found area) of matched pairs]) of one frame.

    ``hidden``: bool per true void (in ``label(truth, connectivity=2)`` order) of voids that do not stand out of
    the frame's noise; they are left out of the score as PASCAL VOC leaves out its "difficult" objects: not
    counted as true objects, and a found region matched to one, or unmatched and overlapping one most, is not
    counted as found.
    """
    lp, lt = label(pred, connectivity=2), label(truth, connectivity=2)
    n_p, n_t = int(lp.max()), int(lt.max())
    hidden = np.zeros(n_t, bool) if hidden is None else np.asarray(hidden, bool)
    if n_p == 0 or n_t == 0:
        return n_p, n_t - int(hidden.sum()), []
    inter = np.zeros((n_t + 1, n_p + 1), np.int64)
    np.add.at(inter, (lt.ravel(), lp.ravel()), 1)
    inter = inter[1:, 1:]
    at = np.bincount(lt.ravel(), minlength=n_t + 1)[1:]
    ap = np.bincount(lp.ravel(), minlength=n_p + 1)[1:]
    ious = inter / (at[:, None] + ap[None, :] - inter)
    rows, cols = linear_sum_assignment(-ious)
    ok = ious[rows, cols] >= thr
    rows, cols = rows[ok], cols[ok]
    matched_to = np.full(n_p, -1)
    matched_to[cols] = rows
    nearest = np.where(inter.max(axis=0) > 0, inter.argmax(axis=0), -1)
    left_out = np.where(matched_to >= 0, hidden[np.maximum(matched_to, 0)], (nearest >= 0) & hidden[nearest])
    pairs = [(float(at[r]), float(ap[c])) for r, c in zip(rows, cols) if not hidden[r]]
    return n_p - int(left_out.sum()), n_t - int(hidden.sum()), pairs


def small(truth: np.ndarray) -> np.ndarray:
    """Bool per true void (``label(truth, connectivity=2)`` order): its equivalent diameter is under
    :data:`MIN_DIAMETER_PX`."""
    area = np.bincount(label(truth, connectivity=2).ravel())[1:]
    return 2 * np.sqrt(area / np.pi) < MIN_DIAMETER_PX


def visible(frame: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Bool per true void (``label(truth, connectivity=2)`` order): its contrast-to-noise statistic in ``frame``,
    on its true outline (:func:`neuradiff.nets.contrast.contrast_significance`), reaches :data:`VISIBLE_T`."""
    _, t = contrast_significance(frame, truth)
    return t >= VISIBLE_T


def score(preds: list[np.ndarray], truths: list[np.ndarray], hidden: list[np.ndarray] | None = None) -> dict:
    """Object, pixel, count and size scores of found masks against true ones; with ``hidden`` (per frame, the true
    voids that do not stand out of its noise: ``~visible(frame, truth)``), over the visible voids only (the pixel
    IoU stays over every pixel)."""
    n_p = n_t = 0
    pairs: list[tuple[float, float]] = []
    count_err, frame_f1 = [], []
    inter = union = 0
    for k, (p, t) in enumerate(zip(preds, truths)):
        a, b, pr = match(p, t, hidden=None if hidden is None else hidden[k])
        n_p, n_t = n_p + a, n_t + b
        pairs += pr
        if b:
            count_err.append(abs(a - b) / b)
            frame_f1.append(2 * len(pr) / (a + b))
        inter += int(np.logical_and(p, t).sum())
        union += int(np.logical_or(p, t).sum())
    tp = len(pairs)
    precision = tp / n_p if n_p else 1.0
    recall = tp / n_t if n_t else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    size_err = [abs(math.sqrt(ap) - math.sqrt(at)) / math.sqrt(at) for at, ap in pairs]
    signed = [math.sqrt(ap / at) - 1 for at, ap in pairs]
    diameter = [2 * math.sqrt(at / math.pi) for at, _ in pairs]
    by_size = {}
    for lo, hi in SIZE_CLASSES:
        errs = [e for e, d in zip(size_err, diameter) if lo <= d < hi]
        by_size[f"{lo}-{hi} px" if hi < math.inf else f">={lo} px"] = {
            "matched": len(errs),
            "median_size_error": float(np.median(errs)) if errs else None,
        }
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "pixel_iou": inter / union if union else 1.0,
        "count_error": float(np.mean(count_err)) if count_err else 0.0,
        "mean_frame_f1": float(np.mean(frame_f1)) if frame_f1 else float("nan"),
        "frames_with_voids": len(frame_f1),
        "median_size_error": float(np.median(size_err)) if size_err else float("nan"),
        "median_signed_size_error": float(np.median(signed)) if signed else float("nan"),
        "median_size_error_by_true_diameter": by_size,
        "n_true": n_t,
        "n_found": n_p,
        "frames": len(preds),
    }


def log_mask(frame: np.ndarray, threshold: float, polarity: str) -> np.ndarray:
    x = normalise_frame(frame)
    mask = np.zeros(x.shape, bool)
    signs = {"bright": (1,), "dark": (-1,), "both": (1, -1)}[polarity]
    for s in signs:
        blobs = blob_log(s * x, min_sigma=1.0, max_sigma=22.0, num_sigma=12, threshold=threshold, overlap=0.5)
        for y, xx, sigma in blobs:
            rr, cc = disk((y, xx), math.sqrt(2) * sigma, shape=x.shape)
            mask[rr, cc] = True
    return mask


def tune_log(n: int) -> tuple[float, str, dict]:
    samples = [corpus_sample(k, CorpusSettings(size=128)) for k in range(n)]
    return tune_log_on([s.frames[0] for s in samples], [s.masks[0] for s in samples])


def tune_log_on(
    frames: list[np.ndarray], truths: list[np.ndarray], *, stop_early: bool = False
) -> tuple[float, str, dict]:
    """The LoG threshold and polarity (bright, dark or both) of the best object F1 on these frames: (threshold,
    polarity, every setting's F1).

    ``stop_early``: each polarity's thresholds are tried from the highest down, and the lower ones skipped once the
    blobs found already bound the F1 below the best so far (F1 ≤ 2·n_true / (n_true + n_found), and a lower threshold
    finds more blobs); on noisy frames the lowest thresholds find thousands of blobs and take minutes.
    """
    grid: dict[tuple[str, float], list[np.ndarray]] = {}
    scores: dict[str, float] = {}
    best = (-1.0, 0.0, "")

    def consider(pol: str, thr: float, preds: list[np.ndarray]) -> dict:
        nonlocal best
        grid[(pol, thr)] = preds
        s = score(preds, truths)
        scores[f"{pol}@{thr}"] = s["f1"]
        if s["f1"] > best[0]:
            best = (s["f1"], thr, pol)
        return s

    order = sorted(THRESHOLDS, reverse=stop_early)  # ascending without early stopping: ties go as they always went
    for pol in ("bright", "dark"):
        for thr in order:
            s = consider(pol, thr, [log_mask(f, thr, pol) for f in frames])
            if stop_early and s["n_found"] > s["n_true"] and 2 * s["n_true"] / (s["n_true"] + s["n_found"]) < best[0]:
                break
    for thr in order:
        if ("bright", thr) in grid and ("dark", thr) in grid:
            consider("both", thr, [a | b for a, b in zip(grid[("bright", thr)], grid[("dark", thr)])])
    return best[1], best[2], scores


def dense_1024() -> np.ndarray:
    """A 1024² frame of 4 × 4 held-out 256² stills (about 1 600 voids): recognition's slowest case."""
    tiles = [corpus_sample(HELD_OUT_SEED + k, CorpusSettings(size=256)).frames[0] for k in range(16)]
    return np.block([[normalise_frame(tiles[4 * r + c]) for c in range(4)] for r in range(4)]).astype(np.float32)


def speed_1024(gens: dict, repeats: int, frame: np.ndarray) -> dict[str, dict]:
    """Seconds per 1024² ``frame`` recognised into void masks (eta, peak and contrast filters; minimum and median
    of ``repeats``) of each recogniser, with 1 and 2 threads."""
    speed: dict[str, dict] = {}
    for method, gen in gens.items():
        speed[method] = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            masks = gen.masks(frame)[0]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                gen.masks(frame)
                times.append(time.perf_counter() - t0)
            speed[method][threads] = {"min_s": min(times), "median_s": float(np.median(times))}
            print(
                f"{method}, 1024² frame ({int(label(masks, connectivity=2).max())} voids found), {threads} thread(s): "
                f"{min(times):.3f} s (min of {repeats}), median {np.median(times):.3f} s"
            )
    torch.set_num_threads(1)
    return speed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=None, help="generalist folder (default: the shipped one)")
    ap.add_argument("--stills", type=int, default=40)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--clip-frames", type=int, default=4)
    ap.add_argument("--sparse", type=int, default=16, help="sparse 1024² frames (2–10 voids each)")
    ap.add_argument("--tune", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=FOLDER", help="another recogniser")
    ap.add_argument("--tag", default="")
    ap.add_argument("--speed-only", action="store_true", help="only the 1024² speed, against the unfolded net")
    ap.add_argument("--out", default="bench_voids.json", help="file name under benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    shipped = load_generalist(args.weights)
    gens = {f"generalist v{shipped.version}": shipped}
    for item in args.compare:
        label_, _, folder = item.partition("=")
        if not folder:
            ap.error(f"--compare needs LABEL=FOLDER, got {item!r}")
        other = load_generalist(folder)
        gens[f"generalist {label_} (v{other.version})"] = other
    t_all = time.perf_counter()
    if args.speed_only:
        unfolded = dataclasses.replace(shipped)
        unfolded._inference = shipped.net  # the net as stored: batch norm after every convolution
        frame = dense_1024()
        speed = speed_1024({"this version": shipped, "batch norm not folded": unfolded}, args.repeats, frame)
        # the inference path of the version before: batch norms not folded and the library's pixel shuffle
        shuffle = unet._pixel_shuffle
        unet._pixel_shuffle = torch.nn.functional.pixel_shuffle
        try:
            speed |= speed_1024(
                {"before (library pixel shuffle, batch norm not folded)": unfolded}, args.repeats, frame
            )
        finally:
            unet._pixel_shuffle = shuffle
        for threads in (1, 2):
            a = speed["this version"][threads]["min_s"]
            for name in list(speed)[1:]:
                print(f"{threads} thread(s): this version / {name} = {a / speed[name][threads]['min_s']:.2f}")
        write_json(
            args.out,
            {"environment": env, "weights_version": shipped.version, "speed_1024": speed, "settings": vars(args)},
        )
        return

    thr, pol, tuning = tune_log(args.tune)
    print(f"LoG baseline tuned on {args.tune} training stills: {pol} blobs, threshold {thr}")

    sets: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    stills = [corpus_sample(HELD_OUT_SEED + k, CorpusSettings(size=256)) for k in range(args.stills)]
    sets["synthetic stills"] = ([s.frames[0] for s in stills], [s.masks[0] for s in stills])
    clip_settings = CorpusSettings(size=128, frames=args.clip_frames)
    clips = [corpus_sample(HELD_OUT_SEED + 100_000 + k, clip_settings) for k in range(args.clips)]
    sets["synthetic clips"] = ([f for c in clips for f in c.frames], [m for c in clips for m in c.masks])
    sparse = [corpus_sample(SPARSE_SET_SEED + k, CorpusSettings(size=1024, max_voids=10)) for k in range(args.sparse)]
    if sparse:
        sets["synthetic sparse 1024²"] = ([s.frames[0] for s in sparse], [s.masks[0] for s in sparse])
    creme = {}
    for k in CREME_LOOKED_AT + CREME_SCORED:
        c = iio.imread(CREME / f"{k}.png")
        creme[k] = c if c.ndim == 2 else c[..., 0]

    def methods():
        yield from ((name, lambda f, g=g: g.masks(f)[0]) for name, g in gens.items())
        yield "LoG blobs", lambda f: log_mask(f, thr, pol)

    rows, results = [], {}
    for name, (frames, truths) in sets.items():
        hidden = [~visible(f, t) for f, t in zip(frames, truths)]
        hidden_small = [h | small(t) for h, t in zip(hidden, truths)]
        n_hidden = int(sum(h.sum() for h in hidden))
        n_all = sum(h.size for h in hidden)
        n_small = int(sum(h.sum() for h in hidden_small)) - n_hidden
        print(
            f"{name}: {n_hidden} of {n_all} true voids do not stand out of their frame (t < {VISIBLE_T:g}); "
            f"{n_small} more are under {MIN_DIAMETER_PX:g} px"
        )
        for method, recognise in methods():
            found = [recognise(f) for f in frames]
            for subset, s in (
                (name, score(found, truths)),
                (f"{name}, visible voids", score(found, truths, hidden)),
                (f"{name}, visible voids from {MIN_DIAMETER_PX:g} px", score(found, truths, hidden_small)),
            ):
                results[f"{subset} / {method}"] = s
                rows.append({"set": subset, "method": method, **s})
    fv = {}
    for method, recognise in methods():
        per = {k: int(label(recognise(f), connectivity=2).max()) for k, f in creme.items()}
        scored = [per[k] for k in CREME_SCORED]
        fv[method] = {
            "per_frame": {str(k): v for k, v in per.items()},
            "mean_scored": float(np.mean(scored)),
            "max_scored": int(max(scored)),
            "mean_looked_at": float(np.mean([per[k] for k in CREME_LOOKED_AT])),
            "mean": float(np.mean(list(per.values()))),
        }
        rows.append(
            {"set": "CREME loops, frames 5–16 (512²)", "method": method, "false_voids": fv[method]["mean_scored"]}
        )
        rows.append({"set": "CREME loops, all 16", "method": method, "false_voids": fv[method]["mean"]})
    print(
        table(
            rows,
            [
                ("set", "set", ""),
                ("method", "method", ""),
                ("f1", "object F1", ".3f"),
                ("mean_frame_f1", "mean F1 / frame", ".3f"),
                ("precision", "precision", ".3f"),
                ("recall", "recall", ".3f"),
                ("pixel_iou", "pixel IoU", ".3f"),
                ("count_error", "count err", ".3f"),
                ("median_size_error", "median size err", ".3f"),
                ("n_true", "voids", "d"),
                ("false_voids", "false voids / frame", ".2f"),
            ],
        )
    )
    for key, r in results.items():
        parts = ", ".join(
            f"{c} {100 * v['median_size_error']:.1f} % ({v['matched']})"
            for c, v in r["median_size_error_by_true_diameter"].items()
            if v["matched"]
        )
        print(f"{key}: median size error by true diameter: {parts}; signed median {r['median_signed_size_error']:+.3f}")
    subsets = ("", ", visible voids", f", visible voids from {MIN_DIAMETER_PX:g} px")
    for name in [f"{n}{x}" for x in subsets for n in sets]:
        b = results[f"{name} / LoG blobs"]
        for method in gens:
            g = results[f"{name} / {method}"]
            print(
                f"{name}: F1 {method} / LoG = {g['f1']:.3f} / {b['f1']:.3f} (ratio {g['f1'] / max(b['f1'], 1e-9):.2f})"
            )

    speed = speed_1024(gens, args.repeats, dense_1024())
    torch.set_num_threads(1)
    out = {
        "environment": env,
        "weights": str(args.weights or "shipped"),
        "weights_version": shipped.version,
        "compared": {name: g.meta.get("command", "") for name, g in gens.items()},
        "creme_split": {"looked_at": list(CREME_LOOKED_AT), "scored": list(CREME_SCORED)},
        "log_baseline": {"threshold": thr, "polarity": pol, "tuning_f1": tuning, "tuning_stills": args.tune},
        "scores": results,
        "creme_false_voids": fv,
        "speed_1024": speed,
        "settings": vars(args) | {"weights": str(args.weights)},
        "seconds": time.perf_counter() - t_all,
    }
    path = write_json(f"bench_voids{args.tag}.json" if args.tag else args.out, out)
    print(f"wrote {path} ({out['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
