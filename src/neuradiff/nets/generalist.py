"""The generalist void recogniser shipped with the package: a small UNet trained on the domain-randomised
corpus (``python -m neuradiff.training.generalist``), applied to any frame with per-frame normalisation,
optional resampling to its training void size, and tiles with overlap.

The weights live in ``neuradiff/nets/weights/`` (``generalist.pt``, read with ``torch.load(weights_only=True)``;
``generalist.json``, how it was made; ``MODEL_CARD.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from skimage.measure import label

from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.blank import off_blank, specimen_frames
from neuradiff.nets.contrast import drop_faint
from neuradiff.nets.levels import normalise_frame
from neuradiff.nets.tiles import Tiling, back_to, eta_tiled, resample, resample_factor
from neuradiff.nets.unet import NetConfig, RecognitionNet, fuse_batch_norm, load_net

GENERALIST_FORMAT = "neuradiff-generalist"
#: Smallest void region kept in the masks, pixels.
MIN_AREA_PX = 4
#: Resampling factors :meth:`Generalist.estimate_scale` chooses from: frames as they are, or of voids and texture
#: drawn two, three or four times the size the net was trained on (high magnification). Upsampling (2) was tried on
#: development sets and not kept: chosen per recording it lowered the F1 of stills and clips alike.
SCALE_CANDIDATES = (1.0, 0.5, 1 / 3, 0.25)
#: Eta between these is the net unsure of a pixel (:meth:`Generalist.estimate_scale`).
UNSURE_ETA = (0.1, 0.9)
#: A factor at which the net is sure of fewer void pixels than this (at its scale) cannot be judged.
MIN_SURE_PX = 20
#: Smallest side (px) of a frame resampled for :meth:`Generalist.estimate_scale`.
MIN_SCALED_SIDE = 64


def weights_folder() -> Path:
    """The folder of the shipped weights (inside the installed package)."""
    return Path(str(resources.files("neuradiff.nets") / "weights"))


@dataclass
class Generalist:
    """A recogniser for frames of any size and brightness.

    Parameters
    ----------
    net : RecognitionNet (no time code, batch-norm statistics: tiles blend without seams).
    version : version string of the weights.
    train_diameter_px : (lo, hi) void diameters, px, that the net recognises without resampling.
    tiling : tiles and overlap used on large frames.
    meta : how the weights were made (seed, command, corpus, iterations).
    min_peak_eta : a void region (eta ≥ 0.5) is kept only if its largest eta reaches this (0.5: all are kept).
    min_contrast : the contrast filter's threshold (:func:`neuradiff.nets.contrast.drop_faint`): in a frame that
        shows voids (enough regions reach it) every region from a contrast-to-noise statistic of 3 is kept, in any
        other frame only the regions that reach it (0: all are kept) …
    confident_eta : … and, in such a frame, also a region from a statistic of 3 of at least
        :data:`~neuradiff.nets.contrast.CONFIDENT_AREA_PX` at the net's scale whose mean eta reaches this (0: none).
    blank : find each frame's blank regions (padding bands, burned-in scale bars and labels:
        :mod:`neuradiff.nets.blank`), fill them before the net and drop the void regions that touch them (False:
        frames as they are).
    """

    net: RecognitionNet
    version: str
    train_diameter_px: tuple[float, float]
    tiling: Tiling
    meta: dict
    min_peak_eta: float = 0.5
    min_contrast: float = 0.0
    confident_eta: float = 0.0
    blank: bool = True
    _inference: RecognitionNet | None = field(default=None, init=False, repr=False, compare=False)

    def _inference_net(self) -> RecognitionNet:
        """``net`` with its batch norms folded into the convolutions (built once; ``net`` stays trainable)."""
        if self._inference is None:
            self._inference = fuse_batch_norm(self.net)
        return self._inference

    def _checked(self, frames: np.ndarray, void_px: float | None) -> tuple[np.ndarray, float]:
        """Frames as ``[T, H, W]`` and the resampling factor, or one line of error: a frame with NaN or Inf, a
        frame of a single grey level, a scale that leaves the frames smaller than 8 px."""
        a = np.asarray(frames)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or min(a.shape) < 1:
            raise NeuradiffError(f"frames must be [T, H, W] or [H, W], got shape {a.shape}")
        flat = a.reshape(a.shape[0], -1)
        if a.dtype.kind == "f" and not np.isfinite(flat).all():
            raise NeuradiffError(f"frame {int(np.flatnonzero(~np.isfinite(flat).all(1))[0])} contains NaN or Inf")
        single = np.flatnonzero(flat.min(axis=1) == flat.max(axis=1))
        if single.size:  # refused before any frame is recognised
            k = int(single[0])
            raise NeuradiffError(f"frame {k} holds a single grey level ({flat[k, 0]:g}): there is nothing to recognise")
        factor = resample_factor(void_px, target=self.train_diameter_px, tile=self.tiling.tile)
        h, w = a.shape[1:]
        if min(h, w) * factor < 8:
            raise NeuradiffError(f"frames of {h}×{w} px resampled by {factor:.3g} would be smaller than 8 px")
        return a, factor

    def _frame(self, frame: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """One checked frame ``[1, H, W]``: its blank regions (None with :attr:`blank` off) and the frame with them
        filled; frame by frame, so that a filled copy never holds more than one frame."""
        return specimen_frames(frame) if self.blank else (None, frame)

    def _eta_of(self, filled: np.ndarray, factor: float) -> np.ndarray:
        """Eta ``[H, W]`` of one checked frame ``[1, H, W]`` whose blank regions are already filled."""
        x = resample(normalise_frame(filled[0], fill=False), factor)
        return back_to(eta_tiled(self._inference_net(), x, self.tiling), filled.shape[1:])

    def _masks(self, eta: np.ndarray, filled: np.ndarray, blank: np.ndarray | None, factor: float) -> np.ndarray:
        masks = void_masks(eta, min_peak_eta=self.min_peak_eta)
        if blank is not None:
            masks = off_blank(masks, blank)
        if self.min_contrast == 0:
            return masks
        return drop_faint(
            filled,
            masks,
            self.min_contrast,
            eta=eta,
            confident_eta=self.confident_eta,
            scale=factor,
            threads=torch.get_num_threads(),
        )

    def estimate_scale(self, frames: np.ndarray, *, candidates: tuple[float, ...] = SCALE_CANDIDATES) -> float:
        """The resampling factor at which the net reads ``frames`` ``[T, H, W]`` (or one ``[H, W]`` frame; a few
        frames of a recording) most surely: for each candidate factor, the pixels whose eta lies between
        :data:`UNSURE_ETA` per pixel of eta ≥ 0.5, summed over the frames at the net's scale; the factor with the
        fewest wins (1 when no candidate finds :data:`MIN_SURE_PX` void pixels, and only factors that leave a side of
        :data:`MIN_SCALED_SIDE` px or more). The net was trained on voids and texture of one scale: on frames drawn
        larger (high magnification) it is unsure of most of what it marks, and at its own scale it is sure. Costs
        about 1.4 passes of the net per frame.

        Examples
        --------
        >>> from neuradiff.synth.corpus import CorpusSettings, corpus_sample
        >>> frame = corpus_sample(1_000_003, CorpusSettings(size=128)).frames[0]
        >>> g = load_generalist()
        >>> g.estimate_scale(frame)
        1.0
        >>> big = np.kron(frame.astype(np.float32), np.ones((3, 3), np.float32))  # the same frame drawn 3× larger
        >>> g.estimate_scale(big) < 1
        True
        """
        a, _ = self._checked(frames, None)
        h, w = a.shape[1:]
        usable = [c for c in candidates if min(h, w) * c >= MIN_SCALED_SIDE] or [1.0]
        unsure, sure = np.zeros(len(usable)), np.zeros(len(usable))
        lo, hi = UNSURE_ETA
        for k in range(a.shape[0]):
            x = normalise_frame(self._frame(a[k : k + 1])[1][0], fill=False)
            for j, c in enumerate(usable):
                e = eta_tiled(self._inference_net(), resample(x, c), self.tiling)
                unsure[j] += np.count_nonzero((e > lo) & (e < hi))
                sure[j] += np.count_nonzero(e >= 0.5)
        ratio = np.where(sure >= MIN_SURE_PX, unsure / np.maximum(sure, 1), np.inf)
        return float(usable[int(np.argmin(ratio))]) if np.isfinite(ratio).any() else 1.0

    def void_px_for(self, factor: float) -> float | None:
        """The expected void diameter (px) for which the frames are resampled by ``factor`` (None for 1): the
        inverse of :func:`~neuradiff.nets.tiles.resample_factor` for this net's trained sizes.

        Examples
        --------
        >>> g = load_generalist()
        >>> g.void_px_for(0.5), g.void_px_for(2.0), g.void_px_for(1.0)
        (96.0, 2.0, None)
        """
        if not (np.isfinite(factor) and factor > 0):
            raise NeuradiffError(f"the resampling factor must be a positive number, got {factor}")
        lo, hi = self.train_diameter_px
        return None if factor == 1 else (hi / factor if factor < 1 else lo / factor)

    def eta(self, frames: np.ndarray, *, void_px: float | None = None, progress=None) -> np.ndarray:
        """Void probability eta ``[T, H, W]`` float32 of frames ``[T, H, W]`` (or one ``[H, W]`` frame).

        Parameters
        ----------
        frames : raw intensities (any dtype, any size, 8- or 16-bit).
        void_px : expected void diameter in the frames, pixels; frames are resampled so that such voids reach
            the net inside ``train_diameter_px`` (None: as they are).
        progress : optional ``progress(done, total)`` called after each frame.
        """
        return self.recognise(frames, void_px=void_px, progress=progress, masks=False)[0]

    def recognise(
        self, frames: np.ndarray, *, void_px: float | None = None, progress=None, masks: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Eta (float32), void masks (bool) and blank regions (bool), each ``[T, H, W]``, of frames ``[T, H, W]`` (or
        one ``[H, W]`` frame): :meth:`eta` and :meth:`masks_of` with each frame's blank regions
        (:func:`neuradiff.nets.blank.blank_regions`; all False with :attr:`blank` off) found once, frame by frame
        (``masks`` False: eta only, the masks all False).

        Examples
        --------
        >>> frame = np.random.default_rng(0).integers(0, 255, (48, 40), dtype=np.uint8)
        >>> eta, masks, blank = load_generalist().recognise(frame)
        >>> eta.shape, masks.dtype, bool(blank.any())
        ((1, 48, 40), dtype('bool'), False)
        """
        a, factor = self._checked(frames, void_px)
        eta = np.empty(a.shape, np.float32)
        found = np.zeros(a.shape, bool)
        blank = np.zeros(a.shape, bool)
        for k in range(a.shape[0]):
            b, filled = self._frame(a[k : k + 1])
            eta[k] = self._eta_of(filled, factor)
            if masks:
                found[k] = self._masks(eta[k : k + 1], filled, b, factor)[0]
            if b is not None:
                blank[k] = b[0]
            if progress is not None:
                progress(k + 1, a.shape[0])
        return eta, found, blank

    def masks(self, frames: np.ndarray, *, void_px: float | None = None) -> np.ndarray:
        """Void masks ``[T, H, W]`` bool of frames ``[T, H, W]``: :meth:`masks_of` their :meth:`eta`."""
        return self.recognise(frames, void_px=void_px)[1]

    def masks_of(self, eta: np.ndarray, frames: np.ndarray, *, void_px: float | None = None) -> np.ndarray:
        """Void masks ``[T, H, W]`` bool from this recogniser's ``eta`` of ``frames`` (both ``[T, H, W]``; eta
        computed with ``void_px``, see :meth:`eta`): eta ≥ 0.5 without regions under 4 px, whose eta never reaches
        :attr:`min_peak_eta` (see :func:`void_masks`), that touch a blank region of their frame (a padding band, a
        burned-in scale bar or label: :func:`neuradiff.nets.blank.off_blank`) or whose contrast in the frame (its
        blank regions filled) stays below :attr:`min_contrast` (see :func:`neuradiff.nets.contrast.drop_faint`,
        with :attr:`confident_eta`)."""
        factor = resample_factor(void_px, target=self.train_diameter_px, tile=self.tiling.tile)
        e, a = np.asarray(eta), np.asarray(frames)
        if e.ndim != 3 or e.shape != a.shape:
            raise NeuradiffError(f"eta {e.shape} and frames {a.shape} must both be [T, H, W] of one shape")
        out = np.empty(e.shape, bool)
        for k in range(e.shape[0]):
            blank, filled = self._frame(a[k : k + 1])
            out[k] = self._masks(e[k : k + 1], filled, blank, factor)[0]
        return out


def trainable_net(
    generalist: Generalist, *, input_mean: float, input_std: float, level: bool = False, c_v_min: float = 0.0
) -> RecognitionNet:
    """The generalist's net as a fit's starting point: its batch norms folded into the convolutions (``norm
    "none"``: no statistics that a batch of a few crops would disturb), normalising frames as ``(x − input_mean) /
    input_std`` inside the net, which is the generalist's per-frame mapping when the mean and half-range come from
    the frame's 1st and 99th grey-level percentiles (see :func:`percentile_normalisation`). With ``level`` the net
    maps each whole frame by its own percentiles (:attr:`NetConfig.level`), and ``input_mean`` 0 with ``input_std``
    1 give the generalist's own per-frame mapping. ``c_v_min`` raises the lower end of the ``c_v`` head's range
    (:attr:`NetConfig.c_v_range`) to that site fraction (the generalist reads voids from eta; its ``c_v`` is a start).

    Examples
    --------
    >>> net = trainable_net(load_generalist(), input_mean=100.0, input_std=20.0, c_v_min=1e-3)
    >>> net.config.norm, net.config.embedding, net.config.c_v_range
    ('none', 'none', (0.001, 1.5))
    """
    fused = fuse_batch_norm(generalist.net)
    lo, hi = generalist.net.config.c_v_range
    config = NetConfig.from_dict(
        {**generalist.net.config.to_dict(), "norm": "none", "level": level, "c_v_range": [max(lo, c_v_min), hi]}
    )
    net = RecognitionNet(config, input_mean=input_mean, input_std=input_std)
    state = {k: v for k, v in fused.state_dict().items() if k not in ("input_mean", "input_std")}
    net.load_state_dict(state, strict=False)
    missing = set(net.state_dict()) - set(state) - {"input_mean", "input_std"}
    if missing:
        raise NeuradiffError(f"the generalist's weights do not fill the trainable net ({sorted(missing)[:3]} ...)")
    return net


def percentile_normalisation(frames: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` for a net's input normalisation that maps the 1st and 99th grey-level percentiles of
    ``frames`` (``[T, H, W]``, up to 16 frames sampled evenly) to −1 and +1, as the generalist sees each frame.

    Examples
    --------
    >>> percentile_normalisation(np.linspace(0, 100, 1001).reshape(1, 7, 143))
    (50.0, 49.0)
    """
    a = np.asarray(frames, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    pick = a[np.unique(np.linspace(0, a.shape[0] - 1, min(16, a.shape[0])).round().astype(int))]
    lo, hi = (float(v) for v in np.percentile(pick, [1, 99]))
    return (lo + hi) / 2, max((hi - lo) / 2, 1e-6)


def void_masks(eta: np.ndarray, *, min_area_px: int = MIN_AREA_PX, min_peak_eta: float = 0.5) -> np.ndarray:
    """Void masks ``[T, H, W]`` bool from eta ``[T, H, W]``: eta ≥ 0.5, without regions (8-connected) smaller
    than ``min_area_px`` pixels (a region under 4 px is below the 2 px a void needs to be resolved; the same
    rule as :func:`neuradiff.measure.voids.label_voids`) and without regions whose largest eta stays below
    ``min_peak_eta`` (the net's doubtful specks; 0.5 keeps every region).

    Examples
    --------
    >>> eta = np.zeros((1, 8, 8)); eta[0, 1, 1] = 1; eta[0, 4:7, 4:7] = 1
    >>> int(void_masks(eta).sum())
    9
    >>> eta[0, 4:7, 4:7] = 0.8
    >>> int(void_masks(eta, min_peak_eta=0.95).sum())
    0
    """
    if not 0.5 <= min_peak_eta <= 1.0:
        raise NeuradiffError(f"min_peak_eta must be in [0.5, 1], got {min_peak_eta}")
    e = np.asarray(eta)
    out = e >= 0.5
    for k in range(out.shape[0]):
        lab = np.asarray(label(out[k], connectivity=2))
        n = int(lab.max())
        if n:
            drop = np.bincount(lab.ravel(), minlength=n + 1) < min_area_px
            if min_peak_eta > 0.5:  # a region peaks high enough where any of its pixels does
                drop |= np.bincount(lab[e[k] >= min_peak_eta], minlength=n + 1) == 0
            drop[0] = False
            out[k] &= ~drop[lab]
    return out


def load_generalist(folder: str | Path | None = None, *, min_contrast: float | None = None) -> Generalist:
    """Read the shipped generalist recogniser (or one written by the training command into ``folder``);
    ``min_contrast`` replaces the contrast threshold of its masks (``min_contrast`` in ``generalist.json``; 0 keeps
    every region the net finds).

    Examples
    --------
    >>> g = load_generalist()
    >>> g.eta(np.random.default_rng(0).integers(0, 255, (1, 48, 40), dtype=np.uint8)).shape
    (1, 48, 40)
    """
    folder = weights_folder() if folder is None else Path(folder)
    meta_path, net_path = folder / "generalist.json", folder / "generalist.pt"
    if not meta_path.is_file() or not net_path.is_file():
        raise NeuradiffError(f"{folder}: no generalist recogniser (generalist.json and generalist.pt)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise NeuradiffError(f"{meta_path}: not readable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != GENERALIST_FORMAT:
        raise NeuradiffError(f"{meta_path}: not a {GENERALIST_FORMAT} description")
    net = load_net(net_path)
    if net.config.embedding != "none" or net.config.norm != "batch":
        raise NeuradiffError(f"{net_path}: a generalist needs a net without time code and with batch norm")
    lo, hi = meta["train_diameter_px"]
    tiling = Tiling(**meta["tiling"])
    min_peak = float(meta.get("min_peak_eta", 0.5))
    if not 0.5 <= min_peak <= 1.0:
        raise NeuradiffError(f"{meta_path}: min_peak_eta must be in [0.5, 1], got {min_peak}")
    contrast = float(meta.get("min_contrast", 0.0)) if min_contrast is None else float(min_contrast)
    if not (np.isfinite(contrast) and contrast >= 0):
        where = f"{meta_path}: " if min_contrast is None else ""
        raise NeuradiffError(f"{where}the minimum void contrast must be a number >= 0, got {contrast:g}")
    confident = float(meta.get("confident_eta", 0.0))
    if not (np.isfinite(confident) and 0 <= confident <= 1):
        raise NeuradiffError(f"{meta_path}: confident_eta must be in [0, 1], got {confident:g}")
    return Generalist(
        net=net.eval(),
        version=str(meta["version"]),
        train_diameter_px=(float(lo), float(hi)),
        tiling=tiling,
        meta=meta,
        min_peak_eta=min_peak,
        min_contrast=contrast,
        confident_eta=confident,
    )


__all__ = [
    "GENERALIST_FORMAT",
    "MIN_AREA_PX",
    "Generalist",
    "load_generalist",
    "percentile_normalisation",
    "trainable_net",
    "void_masks",
    "weights_folder",
]
