"""Zero-shot void recognition on frames as users hand them over: exported to 8 bits, clipped, JPEG, with a
burned-in scale bar and time stamp, a drift correction's padding band, a beam edge (``neuradiff.synth.capture``).

Sets (none of them seen in training or used for a choice):

- ``stills``: ``--stills`` held-out corpus stills of 256² (corpus seeds from ``HELD_OUT_SEED``, the void
  scorecard's stills);
- ``1024² frames``: ``--frames`` held-out corpus frames of 1024² with a void area fraction of 0.3–5 % (7–300 voids,
  as a real frame of a recording; corpus seeds from ``HELD_OUT_SEED + 800000``).

Each frame is handed over with each artefact of :data:`neuradiff.synth.capture.ARTEFACTS` and recognised by the
shipped generalist twice in the same run: with its blank-region handling (``neuradiff.nets.blank``: flat padding
and overlays found, filled before the net, void regions touching them dropped) and without it (the version
before). Scored as ``bench_voids.py`` scores its visible voids (object F1 at IoU ≥ 0.5, one to one; the mean of each
frame's F1; precision; recall), over the voids that stay visible in the handed-over frame: a void whose
contrast-to-noise statistic there is under 3, or that an overlay, band or the beam edge covers (changed by 32 grey
levels or more against the plain 8-bit frame), is left out of the score.

Also timed: the blank-region search on a 1024² frame (minimum of ``--repeats``), and a dense 1024² frame to masks
with and without the handling.

Run:  python benchmarks/bench_capture.py [--stills 40] [--frames 8] [--out bench_capture.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import numpy as np
import torch
from skimage.measure import label

from bench_voids import dense_1024, score, visible
from neuradiff.nets.blank import blank_regions
from neuradiff.nets.generalist import load_generalist
from neuradiff.synth.capture import ARTEFACTS, to_8bit
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED

#: First corpus seed of the held-out 1024² frames of moderate void density.
FRAMES_SEED = HELD_OUT_SEED + 800_000
#: Artefacts that cover part of the frame: a void under a change of this many grey levels is left out.
COVERING = ("padding band", "beam edge", "scale bar and time stamp", "scale bar, time stamp, padding band")
COVER_LEVELS = 32


def hidden_voids(handed: np.ndarray, plain: np.ndarray, truth: np.ndarray, covering: bool) -> np.ndarray:
    """Bool per true void (``label(truth, connectivity=2)`` order): not visible in ``handed`` over, or covered."""
    hide = ~visible(handed, truth)
    if covering:
        lab = np.asarray(label(truth, connectivity=2))
        changed = np.abs(handed.astype(np.int32) - plain.astype(np.int32)) >= COVER_LEVELS
        hide |= np.bincount(lab[changed], minlength=int(lab.max()) + 1)[1:] > 0
    return hide


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stills", type=int, default=40)
    ap.add_argument("--frames", type=int, default=8, help="held-out 1024² frames of moderate void density")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="bench_capture.json", help="file name under benchmarks/results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = environment()
    print_environment(env)
    t_all = time.perf_counter()
    g = load_generalist()
    recognisers = {"blank regions handled": g, "as before": dataclasses.replace(g, blank=False)}

    stills = [corpus_sample(HELD_OUT_SEED + k, CorpusSettings(size=256)) for k in range(args.stills)]
    frames = [corpus_sample(FRAMES_SEED + k, CorpusSettings(size=1024, fill=(0.003, 0.05))) for k in range(args.frames)]
    sets = {
        f"{args.stills} stills 256²": ([s.frames[0] for s in stills], [s.masks[0] for s in stills]),
        f"{args.frames} frames 1024²": ([s.frames[0] for s in frames], [s.masks[0] for s in frames]),
    }
    print(f"sets drawn in {time.perf_counter() - t_all:.0f} s", flush=True)

    scores: dict[str, dict] = {}
    rows = []
    for art, hand_over in ARTEFACTS.items():
        for set_name, (raw, truths) in sets.items():
            handed = [np.asarray(hand_over(f)) for f in raw]
            plain = [to_8bit(f) for f in raw]
            hidden = [hidden_voids(h, p, t, art in COVERING) for h, p, t in zip(handed, plain, truths)]
            blank_share = float(np.mean([blank_regions(h).mean() for h in handed]))
            for name, rec in recognisers.items():
                found = [rec.masks(h[None])[0] for h in handed]
                s = score(found, truths, hidden)
                key = f"{art} / {set_name} / {name}"
                scores[key] = s | {"blank_fraction": blank_share}
                rows.append({"artefact": art, "set": set_name, "recogniser": name, **s, "blank": 100 * blank_share})
                print(f"{art} | {set_name} | {name}: F1 {s['f1']:.3f}, mean per frame {s['mean_frame_f1']:.3f}, "
                      f"precision {s['precision']:.3f}, recall {s['recall']:.3f}", flush=True)  # fmt: skip
    print()
    columns = [("artefact", "artefact", "s"), ("set", "set", "s"), ("recogniser", "recogniser", "s"),
               ("f1", "F1", ".3f"), ("mean_frame_f1", "mean F1 per frame", ".3f"), ("precision", "precision", ".3f"),
               ("recall", "recall", ".3f"), ("n_true", "visible voids", "d"), ("blank", "blank %", ".1f")]  # fmt: skip
    print(table(rows, columns))
    ratios = {}
    for key, s in scores.items():
        art, set_name, name = key.split(" / ")
        if name == "blank regions handled":
            before = scores[f"{art} / {set_name} / as before"]["f1"]
            ratios[f"{art} / {set_name}"] = s["f1"] / before if before else float("nan")
    print("\nF1 with the handling / as before:")
    for k, v in ratios.items():
        print(f"  {k}: {v:.3f}")

    dense = dense_1024()
    search = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        blank_regions(dense)
        search.append(time.perf_counter() - t)
    speed = {}
    for name, rec in recognisers.items():
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            rec.masks(dense[None])
            times.append(time.perf_counter() - t)
        speed[name] = min(times)
    print(f"\nblank-region search, dense 1024² frame: {1e3 * min(search):.1f} ms (min of {args.repeats})")
    for name, sec in speed.items():
        print(f"dense 1024² frame to masks, {name}: {sec:.3f} s (min of {args.repeats}, one thread)")
    print(f"ratio with / without: {speed['blank regions handled'] / speed['as before']:.3f}")
    seconds = time.perf_counter() - t_all
    print(f"total {seconds:.0f} s")
    write_json(
        args.out,
        {
            "environment": env,
            "weights_version": g.version,
            "scores": scores,
            "f1_ratio_handled_over_before": ratios,
            "blank_search_1024_s": min(search),
            "masks_1024_s": speed,
            "settings": vars(args),
            "seconds": seconds,
        },
    )


if __name__ == "__main__":
    main()
