"""Real-data check of the recognition net: dislocation loops in in-situ BF-TEM frames of 316L steel.

Data: ``benchmarks/data/creme-316L`` (16 frames 512×512, 8-bit, human masks 0/255, MIT, see its SOURCE.md);
pixel size 200 nm / 512 px ≈ 0.39 nm/px (from the upstream folder name ``fov200nm``).

Protocol (fixed before looking at the hold-out figures):

- train ``RecognitionNet(NetConfig(width, depth, embedding="none"))`` supervised on frames 1–12 only with
  ``annotation_loss`` (masked BCE, ``pos_weight`` 3 for the loop class: plain BCE left every held-out
  validation pixel at eta < 0.5, see REAL_DATA.md) on the full human masks; no physics. Random ``--crop``²
  crops, random flips / rot90 and a mild grey-level gain/offset jitter, batch ``--batch``, Adam lr ``--lr``
  with a cosine decay to lr/20 over ``--iters`` iterations; input normalisation = mean/std of frames 1–12;
- predict the held-out frames 13–16 whole (512²), void = ``eta > 0.5``; regions < ``--min-area`` px removed;
- baselines, measured in the same run on the same frames with the same small-region removal:
  ``otsu``: Gaussian smoothing (σ = 2 px), one global Otsu threshold per frame, loops = the *dark* side;
  ``tuned-threshold``: per-frame standardised smoothed frame ``z < -k``, with σ and k grid-searched for the
  best IoU on the training frames 1–12 (a supervised 2-parameter baseline);
- metrics over the 4 held-out frames: pixel accuracy, IoU, Dice (pooled pixels), object-level F1 (one-to-one
  matching, IoU ≥ 0.5, per frame), and sizes from ``measure_masks`` (nm/px = 200/512): object count, mean and
  median equivalent diameter in nm, and their error against the human masks.

``--val`` trains on frames 1–10 and evaluates on 11–12 instead (for choosing settings without touching 13–16;
pos_weight 3 and depth 3 were chosen that way).

Run:  python benchmarks/bench_creme.py [--iters 500] [--width 16] [--depth 3] [--tag NAME] [--val]
Writes benchmarks/results/creme[_val][_TAG].json, benchmarks/results/creme_overlay.png (default run only) and the
trained net to /tmp/neuradiff-bench/creme_net[_TAG].pt (kept out of the repository).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, print_environment, single_thread, table, write_json

single_thread(1)

import numpy as np
import torch

from neuradiff.io.annotations import read_annotations
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.metrics import dice, iou, object_f1, pixel_accuracy
from neuradiff.measure.voids import measure_masks
from neuradiff.nets import (
    NetConfig,
    RecognitionNet,
    annotation_loss,
    count_parameters,
    default_stride,
    save_net,
)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "creme-316L" / "fov200nm"
NM_PER_PX = 200.0 / 512.0
MODEL_DIR = Path("/tmp/neuradiff-bench")


# --------------------------------------------------------------------------- data


def load():
    video = read_video(DATA / "imgs")
    masks = read_annotations(DATA / "masks1", video=video)  # 0/255 PNG -> 0 solid / 1 void
    names = [Path(n).stem for n in video.names]
    assert names == [str(k) for k in range(1, 17)], names
    assert set(np.unique(masks).tolist()) <= {0, 1}
    return video.frames.astype(np.float32), masks.astype(np.uint8)


def remove_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    from skimage.morphology import remove_small_objects

    return np.stack([remove_small_objects(m.astype(bool), max_size=min_area - 1, connectivity=2) for m in mask])


# --------------------------------------------------------------------------- baselines


def smooth(frames: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(f, sigma) for f in frames])


def otsu_baseline(frames: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    from skimage.filters import threshold_otsu

    s = smooth(frames, sigma)
    return np.stack([f < threshold_otsu(f) for f in s])  # loops are dark


def standardised(s: np.ndarray) -> np.ndarray:
    med = np.median(s, axis=(1, 2), keepdims=True)
    return (s - med) / s.std(axis=(1, 2), keepdims=True)


def tune_threshold(frames, truth, min_area):
    best = None
    for sigma in (1.0, 2.0, 3.0, 4.0):
        z = standardised(smooth(frames, sigma))
        for k in np.arange(0.8, 3.01, 0.1):
            pred = remove_small(z < -k, min_area)
            score = iou(pred, truth)
            if best is None or score > best[0]:
                best = (score, sigma, float(round(k, 2)))
    return {"train_iou": best[0], "sigma": best[1], "k": best[2]}


def threshold_baseline(frames, sigma, k):
    return standardised(smooth(frames, sigma)) < -k


# --------------------------------------------------------------------------- net


def batches(frames, masks, crop, batch, rng):
    n, h, w = frames.shape
    while True:
        xs, ys = [], []
        for _ in range(batch):
            i = rng.integers(n)
            r, c = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
            x, y = frames[i, r : r + crop, c : c + crop], masks[i, r : r + crop, c : c + crop]
            k = int(rng.integers(4))
            x, y = np.rot90(x, k), np.rot90(y, k)
            if rng.random() < 0.5:
                x, y = x[:, ::-1], y[:, ::-1]
            x = x * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)  # mild gain / offset jitter (grey levels)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        yield torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


def train(frames, masks, args):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    stride = default_stride(*frames.shape[-2:]) if args.stride is None else args.stride
    cfg = NetConfig(width=args.width, depth=args.depth, embedding="none", stride=stride)
    net = RecognitionNet(cfg, input_mean=float(frames.mean()), input_std=float(frames.std()))
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, args.iters) / args.iters))
    )
    gen = batches(frames, masks, args.crop, args.batch, rng)
    times = torch.zeros(args.batch)
    losses, t0 = [], time.perf_counter()
    net.train()
    for it in range(args.iters):
        x, y = next(gen)
        loss = annotation_loss(net.eta_logits(x, times), y, pos_weight=args.pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (it + 1) % 50 == 0:
            print(
                f"  iter {it + 1:4d}  loss {np.mean(losses[-50:]):.4f}  {time.perf_counter() - t0:6.1f} s", flush=True
            )
    return net, cfg, time.perf_counter() - t0, losses


@torch.inference_mode()
def predict(net, frames) -> np.ndarray:
    net.eval()
    x = torch.from_numpy(frames)
    eta = torch.cat([net(x[i : i + 2], torch.zeros(len(x[i : i + 2])))[:, 2] for i in range(0, len(x), 2)])
    return eta.numpy()


# --------------------------------------------------------------------------- evaluation


def sizes(mask: np.ndarray) -> dict:
    m = measure_masks(mask.astype(bool), calibration=Calibration(nm_per_px=NM_PER_PX, source="folder name"))
    d = m.voids["eq_diameter_nm"].to_numpy(float)
    return {
        "count": int(len(d)),
        "mean_eq_diameter_nm": float(d.mean()) if len(d) else float("nan"),
        "median_eq_diameter_nm": float(np.median(d)) if len(d) else float("nan"),
    }


def evaluate(pred: np.ndarray, truth: np.ndarray, truth_sizes: dict) -> dict:
    of = object_f1(pred, truth, iou_threshold=0.5)
    s = sizes(pred)
    out = {
        "pixel_accuracy": pixel_accuracy(pred, truth),
        "iou": iou(pred, truth),
        "dice": dice(pred, truth),
        "object_f1": of["f1"],
        "object_precision": of["precision"],
        "object_recall": of["recall"],
        "n_pred_objects": of["n_pred"],
        "n_true_objects": of["n_true"],
        **s,
    }
    for key in ("mean_eq_diameter_nm", "median_eq_diameter_nm"):
        err = s[key] - truth_sizes[key]
        out[key.replace("_nm", "_error_nm")] = err
        out[key.replace("_nm", "_rel_error")] = err / truth_sizes[key]
    out["count_error"] = s["count"] - truth_sizes["count"]
    out["per_frame_iou"] = [iou(p, t) for p, t in zip(pred, truth)]
    return out


def overlay_png(frame, truth, pred, path: Path) -> int:
    """Grey frame with the human outline in green and the predicted outline in red (2 px), as a palette PNG."""
    from PIL import Image
    from scipy.ndimage import binary_dilation
    from skimage.segmentation import find_boundaries

    lo, hi = np.percentile(frame, [0.5, 99.5])
    idx = np.clip((frame - lo) / (hi - lo) * 253, 0, 253).astype(np.uint8)  # 0..253 grey
    idx[binary_dilation(find_boundaries(truth, mode="inner"))] = 254
    idx[binary_dilation(find_boundaries(pred, mode="inner"))] = 255
    palette = [v for g in range(254) for v in (g * 255 // 253,) * 3] + [0, 230, 0] + [255, 30, 30]
    img = Image.frombytes("P", (idx.shape[1], idx.shape[0]), np.ascontiguousarray(idx).tobytes())
    img.putpalette(palette)
    img.save(path, optimize=True)
    return path.stat().st_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument(
        "--stride",
        type=int,
        default=None,
        help="NetConfig.stride (default: what neuradiff fit picks for these frames, default_stride)",
    )
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--pos-weight", type=float, default=3.0, help="weight of the loop (void) class in the BCE")
    ap.add_argument("--min-area", type=int, default=12, help="regions below this many px are removed (all methods)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--val", action="store_true", help="train on frames 1-10, evaluate on 11-12 (model selection)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    env = environment()
    print_environment(env)
    t_start = time.perf_counter()

    frames, masks = load()
    n_train = 10 if args.val else 12
    test_idx = [10, 11] if args.val else [12, 13, 14, 15]
    tr_x, tr_y = frames[:n_train], masks[:n_train]
    te_x, te_y = frames[test_idx], masks[test_idx].astype(bool)
    print(f"train frames 1-{n_train}, evaluate frames {[i + 1 for i in test_idx]}")

    net, cfg, train_s, losses = train(tr_x, tr_y, args)
    tag = f"_{args.tag}" if args.tag else ""
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    model_path = save_net(net, MODEL_DIR / f"creme_net{tag}.pt")

    t0 = time.perf_counter()
    eta = predict(net, te_x)
    predict_s = time.perf_counter() - t0
    preds = {"net": remove_small(eta > 0.5, args.min_area)}
    preds["otsu"] = remove_small(otsu_baseline(te_x), args.min_area)
    tuned = tune_threshold(tr_x, tr_y.astype(bool), args.min_area)
    preds["tuned-threshold"] = remove_small(threshold_baseline(te_x, tuned["sigma"], tuned["k"]), args.min_area)

    truth_sizes = sizes(te_y)
    results = {name: evaluate(p, te_y, truth_sizes) for name, p in preds.items()}
    rows = [{"method": "human", **truth_sizes}] + [{"method": k, **v} for k, v in results.items()]
    print(
        table(
            rows,
            [
                ("method", "method", ""),
                ("pixel_accuracy", "pix acc", ".4f"),
                ("iou", "IoU", ".3f"),
                ("dice", "Dice", ".3f"),
                ("object_f1", "obj F1", ".3f"),
                ("count", "count", "d"),
                ("mean_eq_diameter_nm", "mean d nm", ".2f"),
                ("median_eq_diameter_nm", "median d nm", ".2f"),
                ("mean_eq_diameter_rel_error", "mean d err", "+.1%"),
            ],
        )
    )
    ratios = {}
    for base in ("otsu", "tuned-threshold"):
        b = results[base]
        ratios[f"net_over_{base}"] = {
            "iou": results["net"]["iou"] / b["iou"] if b["iou"] else None,
            "dice": results["net"]["dice"] / b["dice"] if b["dice"] else None,
            "object_f1": results["net"]["object_f1"] / b["object_f1"] if b["object_f1"] else None,
            "abs_mean_diameter_error": (
                abs(results["net"]["mean_eq_diameter_error_nm"]) / abs(b["mean_eq_diameter_error_nm"])
                if b["mean_eq_diameter_error_nm"]
                else None
            ),
        }
        print(
            f"net / {base}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios[f"net_over_{base}"].items() if v is not None)
        )

    overlay = None
    if not args.val and not args.tag:
        path = HERE / "results" / "creme_overlay.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = overlay_png(te_x[0], te_y[0], preds["net"][0], path)
        overlay = {
            "path": str(path.relative_to(HERE.parent)),
            "frame": test_idx[0] + 1,
            "bytes": size,
            "legend": "green = human outline, red = net outline (eta > 0.5)",
        }
        print(f"overlay {path} ({size / 1024:.0f} KB)")

    total_s = time.perf_counter() - t_start
    payload = {
        "benchmark": "creme-316L real-data check",
        "environment": env,
        "data": {
            "path": str(DATA.relative_to(HERE.parent)),
            "nm_per_px": NM_PER_PX,
            "train_frames": list(range(1, n_train + 1)),
            "test_frames": [i + 1 for i in test_idx],
        },
        "settings": {
            **vars(args),
            "net_config": cfg.to_dict(),
            "parameters": count_parameters(net),
            "loss": f"annotation_loss (masked BCE, pos_weight {args.pos_weight}), no physics",
            "threshold": 0.5,
            "augmentation": "random crop, rot90, horizontal flip, gain U(0.9,1.1), offset U(-10,10)",
            "lr_schedule": "cosine to lr/20",
        },
        "train_seconds": train_s,
        "final_loss_last50": float(np.mean(losses[-50:])),
        "predict_seconds_full_frames": predict_s,
        "tuned_threshold": tuned,
        "human": truth_sizes,
        "results": results,
        "ratios": ratios,
        "overlay": overlay,
        "model_path": str(model_path),
        "total_seconds": total_s,
    }
    out = write_json(f"creme{'_val' if args.val else ''}{tag}.json", payload)
    print(f"train {train_s:.0f} s, total {total_s:.0f} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
