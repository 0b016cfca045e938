"""Training the generalist void recogniser on the domain-randomised corpus (reproducible from one seed).

``python -m neuradiff.training.generalist --out FOLDER [--seed 0] [--iters N] [--pool N]`` draws a pool of still
corpus samples (seeds ``0 … pool−1``; held-out scoring uses seeds from :data:`HELD_OUT_SEED`), trains a small
stride-2 UNet (batch norm, no time code) with binary cross-entropy plus Dice on per-frame normalised frames
(random quarter turns and flips), and writes ``generalist.pt`` and ``generalist.json`` into ``FOLDER``. The
package ships the result in ``neuradiff/nets/weights/``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.measure import label

from neuradiff._version import __version__
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import write_json
from neuradiff.nets import NetConfig, RecognitionNet, save_net
from neuradiff.nets.generalist import GENERALIST_FORMAT, load_generalist
from neuradiff.nets.levels import normalise_frame
from neuradiff.synth.capture import random_export
from neuradiff.synth.corpus import CorpusSettings, corpus_contact_sheet, corpus_sample

#: First corpus seed of the held-out samples (never drawn for training).
HELD_OUT_SEED = 1_000_000
#: First corpus seed of the validation samples (post-processing choices; neither trained on nor scored).
VALIDATION_SEED = 500_000
#: Weight of the one-pixel separation lines between touching voids in the loss.
GAP_WEIGHT = 5.0
#: First corpus seed of the training clips (between the validation and the held-out seeds).
CLIP_SEED = 600_000
#: Frames of a training clip.
CLIP_FRAMES = 4
#: Void area (px) from which on a void's pixels weigh 1 in the loss when small voids are weighted up.
SMALL_AREA_PX = 50.0
#: First corpus seed of the sparse training frames (between the training clips and the held-out seeds).
SPARSE_SEED = 700_000
#: Side (px) of a sparse training frame, cut into samples of the training size.
SPARSE_SIZE = 512
#: Void area fraction of a sparse training frame: 0.1–1 % (a 1024² frame with 7 voids of 20 px holds 0.2 %).
SPARSE_FILL = (0.001, 0.01)
#: Stream of a corpus seed's random numbers that decides and draws its export (apart from the corpus's own).
EXPORT_STREAM = 29


@dataclass(frozen=True)
class GeneralistConfig:
    """Settings of the generalist training (the defaults made the first of the shipped weights' two stages)."""

    seed: int = 0
    pool: int = 3000
    size: int = 128
    iters: int = 5000
    batch: int = 12
    lr: float = 2e-3
    width: int = 8
    depth: int = 3
    stride: int = 2
    first_seed: int = 0
    #: clips of :data:`CLIP_FRAMES` frames (voids evolved by the void model) added to the pool, every frame a sample
    clips: int = 0
    #: a void of area A < :data:`SMALL_AREA_PX` and the 2 px around it weigh (SMALL_AREA_PX / A) ** small_weight
    #: (at most 4) in the loss, so that small voids' outlines count as much as large ones' (0: off)
    small_weight: float = 0.0
    #: first clip, counted from :data:`CLIP_SEED` (a later stage draws clips an earlier one did not see)
    first_clip: int = 0
    #: channels of the net's full-resolution refinement (:attr:`NetConfig.refine`; 0: none)
    refine: int = 0
    #: sparse frames of :data:`SPARSE_SIZE` px (void area fraction :data:`SPARSE_FILL`) added to the pool, each
    #: normalised whole, as a frame is at inference, and cut into samples of ``size``: most of these hold no void,
    #: only the loops, lines, bend contours and grain around, as most of a sparse frame does
    sparse: int = 0
    #: first sparse frame, counted from :data:`SPARSE_SEED`
    first_sparse: int = 0
    #: share of the pool's corpus samples handed over as exported (8 bits, clipped, JPEG;
    #: :func:`neuradiff.synth.capture.random_export`, drawn from the sample's seed) before they are normalised
    export: float = 0.0
    version: str = "1.1"
    train_diameter_px: tuple[float, float] = (4.0, 48.0)
    tile: int = 1024
    overlap: int = 128
    #: masks keep a region only where eta peaks at or above this (chosen for object F1 on validation corpus seeds
    #: from :data:`VALIDATION_SEED`, see ``benchmarks/README.md``)
    min_peak_eta: float = 0.95
    #: masks keep a region only where its contrast-to-noise statistic in the frame reaches this (0: off; 5
    #: gives version 1.4 fewer than one false void per noisy loop frame, see the model card; the shipped
    #: ``generalist.json`` sets it after training)
    min_contrast: float = 0.0
    #: in a frame that does not show voids, masks also keep a large region that stands out from a contrast of 3
    #: where its mean eta reaches this (0: off; the shipped ``generalist.json`` sets it after training)
    confident_eta: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pool", "size", "iters", "batch", "width", "depth"):
            if getattr(self, name) < 1:
                raise NeuradiffError(f"generalist {name} must be >= 1, got {getattr(self, name)}")
        if min(self.clips, self.small_weight, self.first_clip, self.refine, self.sparse, self.first_sparse) < 0:
            raise NeuradiffError(
                "generalist clips, small_weight, first_clip, refine, sparse and first_sparse must be >= 0, got "
                f"{self.clips}, {self.small_weight}, {self.first_clip}, {self.refine}, {self.sparse}, "
                f"{self.first_sparse}"
            )
        if not 0.0 <= self.export <= 1.0:
            raise NeuradiffError(f"generalist export must be a share in [0, 1], got {self.export}")
        if self.sparse and SPARSE_SIZE % self.size:
            raise NeuradiffError(
                f"generalist sparse frames ({SPARSE_SIZE} px) need a size dividing them, got {self.size}"
            )


def loss_weights(mask: np.ndarray, eta: np.ndarray, small_weight: float = 0.0) -> np.ndarray:
    """Per-pixel loss weights ``[S, S]`` float32 of one sample: :data:`GAP_WEIGHT` on the separation lines between
    touching voids (``eta ≥ 0.5`` but not in ``mask``), and, with ``small_weight > 0``, small voids and the 2 px
    around them weighted up by ``(SMALL_AREA_PX / area) ** small_weight`` (at most 4)."""
    w = np.ones(mask.shape, np.float32)
    if small_weight > 0 and mask.any():
        lab = np.asarray(label(mask, connectivity=2))
        n = int(lab.max())
        area = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
        up = np.clip((SMALL_AREA_PX / np.maximum(area, 1.0)) ** small_weight, 1.0, 4.0)
        up[0] = 1.0
        grown = ndimage.grey_dilation(np.where(lab > 0, up[lab], 1.0), size=5)
        w = np.maximum(w, grown.astype(np.float32))
    gap = (eta >= 0.5) & ~mask
    return np.where(gap, np.float32(GAP_WEIGHT), w)


def sparse_settings() -> CorpusSettings:
    """Corpus settings of the sparse training frames (:data:`SPARSE_SIZE`, :data:`SPARSE_FILL`)."""
    return CorpusSettings(size=SPARSE_SIZE, fill=SPARSE_FILL)


def make_pool(config: GeneralistConfig, first_seed: int = 0, log=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised frames ``[N, S, S]`` float32, masks ``[N, S, S]`` bool and loss weights ``[N, S, S]`` float32
    of corpus seeds ``first_seed … first_seed + pool − 1`` (stills), followed by every frame of ``config.clips``
    clips of seeds from :data:`CLIP_SEED` + ``config.first_clip`` and by the ``S``-px pieces of
    ``config.sparse`` sparse frames of seeds from :data:`SPARSE_SEED` + ``config.first_sparse`` (each frame
    normalised whole, then cut); with ``config.export``, that share of the samples exported first."""
    size = config.size
    settings = CorpusSettings(size=size)
    clip_settings = CorpusSettings(size=size, frames=CLIP_FRAMES)
    pieces = (SPARSE_SIZE // size) ** 2
    n = config.pool + config.clips * CLIP_FRAMES + config.sparse * pieces
    x = np.empty((n, size, size), np.float32)
    y = np.empty((n, size, size), bool)
    wgt = np.empty((n, size, size), np.float32)
    t0 = time.perf_counter()
    k = 0
    jobs = [(first_seed + j, settings) for j in range(config.pool)]
    jobs += [(CLIP_SEED + config.first_clip + j, clip_settings) for j in range(config.clips)]
    jobs += [(SPARSE_SEED + config.first_sparse + j, sparse_settings()) for j in range(config.sparse)]
    for j, (seed, st) in enumerate(jobs):
        s = corpus_sample(seed, st)
        frames = s.frames
        if config.export:
            rng = np.random.default_rng([seed, EXPORT_STREAM])
            if rng.random() < config.export:
                frames = random_export(frames, rng)
        for t in range(frames.shape[0]):
            frame = normalise_frame(frames[t], index=k)
            for r0 in range(0, st.size, size):
                for c0 in range(0, st.size, size):
                    window = np.s_[r0 : r0 + size, c0 : c0 + size]
                    x[k], y[k] = frame[window], s.masks[t][window]
                    wgt[k] = loss_weights(s.masks[t][window], s.eta[t][window], config.small_weight)
                    k += 1
        if log is not None and (j + 1) % 200 == 0:
            log(f"pool {j + 1}/{len(jobs)} ({time.perf_counter() - t0:.0f} s)")
    return x, y, wgt


def train_generalist(
    config: GeneralistConfig = GeneralistConfig(), log=print, init: RecognitionNet | None = None
) -> tuple[RecognitionNet, dict]:
    """Train the generalist net (from scratch, or further from ``init``); returns it (eval mode) and a record."""
    torch.manual_seed(config.seed)
    x, y, wgt = make_pool(config, first_seed=config.first_seed, log=log)
    net = RecognitionNet(
        NetConfig(
            width=config.width,
            depth=config.depth,
            embedding="none",
            norm="batch",
            stride=config.stride,
            refine=config.refine,
        )
    )
    if init is not None:
        # a refinement the earlier stage did not have starts as it is built: adding nothing to the logits
        try:
            missing, unexpected = net.load_state_dict(init.state_dict(), strict=False)
        except RuntimeError:  # weights of other shapes
            missing, unexpected = ["(weights of other shapes)"], []
        if unexpected or any(not k.startswith("refine.") for k in missing):
            raise NeuradiffError(
                f"generalist --init: the earlier net does not fit this one (missing {missing}, unexpected {unexpected})"
            )
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.iters, pct_start=0.1)
    t0 = time.perf_counter()
    history = []
    net.train()
    for it in range(config.iters):
        rng = np.random.default_rng([config.seed, 1, it])
        idx = rng.integers(0, x.shape[0], config.batch)
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        xb, yb, wb = (torch.from_numpy(a[idx]) for a in (x, y, wgt))
        xb, yb, wb = (torch.rot90(a, k, dims=(-2, -1)) for a in (xb, yb, wb))
        if flip:
            xb, yb, wb = (torch.flip(a, dims=(-1,)) for a in (xb, yb, wb))
        z = net.eta_logits(xb.contiguous(), torch.zeros(config.batch))
        target = yb.float()
        bce = F.binary_cross_entropy_with_logits(z, target, weight=wb)
        p = torch.sigmoid(z)
        dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
        loss = bce + dice
        if not torch.isfinite(loss):
            raise NeuradiffError(f"generalist training: loss is not finite at iteration {it}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (it + 1) % 100 == 0 or it == 0:
            history.append({"iter": it + 1, "bce": bce.item(), "dice": dice.item()})
            if log is not None:
                log(
                    f"iter {it + 1}/{config.iters}  bce {bce.item():.4f}  dice {dice.item():.4f}  "
                    f"{time.perf_counter() - t0:.0f} s"
                )
    net.eval()
    record = {"seconds": time.perf_counter() - t0, "history": history}
    return net, record


def write_generalist(
    net: RecognitionNet, config: GeneralistConfig, record: dict, out: Path, stages: list[str] | None = None
) -> None:
    """``generalist.pt`` (the net) and ``generalist.json`` (version, settings, commands, training record)."""
    out.mkdir(parents=True, exist_ok=True)
    save_net(net, out / "generalist.pt")
    command = (
        f"python -m neuradiff.training.generalist --out OUT --seed {config.seed} --iters {config.iters} "
        f"--pool {config.pool} --first-seed {config.first_seed} --lr {config.lr:g} --version {config.version}"
    )
    if config.clips:
        command += f" --clips {config.clips}"
    if config.small_weight:
        command += f" --small-weight {config.small_weight:g}"
    if config.first_clip:
        command += f" --first-clip {config.first_clip}"
    if config.refine:
        command += f" --refine {config.refine}"
    if config.sparse:
        command += f" --sparse {config.sparse}"
    if config.first_sparse:
        command += f" --first-sparse {config.first_sparse}"
    if config.export:
        command += f" --export {config.export:g}"
    stages = list(stages or [])
    if stages:
        command += " --init OUT_OF_PREVIOUS_STAGE"
    meta = {
        "format": GENERALIST_FORMAT,
        "version": config.version,
        "neuradiff_version": __version__,
        "train_diameter_px": list(config.train_diameter_px),
        "tiling": {"tile": config.tile, "overlap": config.overlap},
        "min_peak_eta": config.min_peak_eta,
        "min_contrast": config.min_contrast,
        "confident_eta": config.confident_eta,
        "input": "each frame mapped so that its 1st and 99th grey-level percentiles are -1 and +1",
        "command": command,
        "stages": [*stages, command],
        "config": asdict(config),
        "corpus": {
            "settings": CorpusSettings(size=config.size).to_dict(),
            "seeds": [config.first_seed, config.first_seed + config.pool - 1],
            **(
                {
                    "clip_settings": CorpusSettings(size=config.size, frames=CLIP_FRAMES).to_dict(),
                    "clip_seeds": [CLIP_SEED + config.first_clip, CLIP_SEED + config.first_clip + config.clips - 1],
                }
                if config.clips
                else {}
            ),
            **(
                {
                    "sparse_settings": sparse_settings().to_dict(),
                    "sparse_seeds": [
                        SPARSE_SEED + config.first_sparse,
                        SPARSE_SEED + config.first_sparse + config.sparse - 1,
                    ],
                }
                if config.sparse
                else {}
            ),
        },
        "held_out_first_seed": HELD_OUT_SEED,
        "training_seconds": round(record["seconds"], 1),
        "final_loss": record["history"][-1] if record["history"] else None,
    }
    write_json(out / "generalist.json", meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m neuradiff.training.generalist", description=__doc__)
    parser.add_argument("--out", type=Path, help="folder for generalist.pt and generalist.json")
    parser.add_argument("--contact-sheet", type=Path, help="write a PNG of the first 12 training samples and stop")
    parser.add_argument("--seed", type=int, default=GeneralistConfig.seed)
    parser.add_argument("--iters", type=int, default=GeneralistConfig.iters)
    parser.add_argument("--pool", type=int, default=GeneralistConfig.pool)
    parser.add_argument("--first-seed", type=int, default=0, help="first corpus seed of the pool")
    parser.add_argument("--lr", type=float, default=GeneralistConfig.lr)
    parser.add_argument("--clips", type=int, default=0, help="clips added to the pool (every frame a sample)")
    parser.add_argument("--small-weight", type=float, default=0.0, help="exponent of the small-void loss weight")
    parser.add_argument("--first-clip", type=int, default=0, help=f"first clip, counted from seed {CLIP_SEED}")
    parser.add_argument("--refine", type=int, default=0, help="channels of a full-resolution refinement (0: none)")
    parser.add_argument("--sparse", type=int, default=0, help=f"sparse {SPARSE_SIZE}² frames added to the pool, cut")
    parser.add_argument("--first-sparse", type=int, default=0, help=f"first sparse frame, counted from {SPARSE_SEED}")
    parser.add_argument("--export", type=float, default=0.0, help="share of samples exported (8 bits, clipped, JPEG)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the shipped weights: 1)")
    parser.add_argument("--init", type=Path, help="continue from the generalist in this folder (a second stage)")
    parser.add_argument("--version", default=GeneralistConfig.version, help="version written to generalist.json")
    args = parser.parse_args(argv)
    if args.contact_sheet is not None:
        corpus_contact_sheet(args.contact_sheet, range(12), CorpusSettings(size=GeneralistConfig.size))
        print(f"wrote {args.contact_sheet}")
        return
    if args.out is None:
        parser.error("--out is required")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    config = GeneralistConfig(
        seed=args.seed,
        iters=args.iters,
        pool=args.pool,
        first_seed=args.first_seed,
        lr=args.lr,
        clips=args.clips,
        small_weight=args.small_weight,
        first_clip=args.first_clip,
        refine=args.refine,
        sparse=args.sparse,
        first_sparse=args.first_sparse,
        export=args.export,
        version=args.version,
    )
    if args.first_seed + args.pool > HELD_OUT_SEED:
        parser.error(f"training seeds must stay below the held-out seeds ({HELD_OUT_SEED})")
    if CLIP_SEED + args.first_clip + args.clips > SPARSE_SEED:
        parser.error(f"training clip seeds must stay below the sparse frames' seeds ({SPARSE_SEED})")
    if SPARSE_SEED + args.first_sparse + args.sparse > HELD_OUT_SEED:
        parser.error(f"sparse frame seeds must stay below the held-out seeds ({HELD_OUT_SEED})")
    init = load_generalist(args.init) if args.init is not None else None
    net, record = train_generalist(config, init=None if init is None else init.net)
    stages = list(init.meta.get("stages", [init.meta["command"]])) if init is not None else []
    write_generalist(net, config, record, args.out, stages=stages)
    print(f"wrote {args.out} ({math.ceil(record['seconds'])} s of training)")


if __name__ == "__main__":
    main()
