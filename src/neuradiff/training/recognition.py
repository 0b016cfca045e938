"""What every method with a recognition net shares: the frames and training annotations as tensors, the
seeded net, augmentation, the latent-field priors, the pretraining loss and the validation BCE.

Pretraining: the net learns eta from the annotated pixels (binary cross-entropy), with weak priors on the
latent fields where a pixel is annotated (c_v = 1 in voids and ``c_v_matrix`` in the solid, c_i =
``c_i_matrix``); no simulator fields are used. Batches come from a generator seeded by (seed, phase,
iteration), so a resumed run reaches exactly the result of an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import UNKNOWN, VOID, known
from neuradiff.nets import NetConfig, RecognitionNet, annotation_loss, default_stride
from neuradiff.nets.contrast import annotated_threshold
from neuradiff.nets.generalist import load_generalist, percentile_normalisation, trainable_net
from neuradiff.nets.levels import normalise_frames
from neuradiff.training.config import FitConfig
from neuradiff.training.crops import Window, anchored_window, cut_batch, resolve_crop
from neuradiff.training.data import TrainingData, split_frames
from neuradiff.training.distributed import Processes, fraction, share

#: Seed stream of each phase's batches.
PHASE_STREAMS = {"pretrain": 0, "joint": 1, "physics-only": 2, "surrogate": 3, "validation": 4}


def augment(x: Tensor, k: int, flip: bool) -> Tensor:
    """Rotate the last two axes by ``k`` quarter turns, then mirror them left-right when ``flip``."""
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def batch_rng(seed: int, phase: str, iteration: int) -> np.random.Generator:
    """The generator of one iteration's batch: a function of (seed, phase, iteration) alone."""
    return np.random.default_rng([seed, PHASE_STREAMS[phase], iteration])


def augmentation(rng: np.random.Generator, enabled: bool) -> tuple[int, bool]:
    """(quarter turns, flip) drawn from ``rng`` (``(0, False)`` without augmentation)."""
    return (int(rng.integers(4)), bool(rng.integers(2))) if enabled else (0, False)


class RecognitionTraining:
    """A video and its annotations ready for training a recognition net (see the module docstring); ``level``
    (default: the config's ``levels``) says whether each frame is mapped by its own grey levels, as a net that
    training continues reads them (:attr:`NetConfig.level`).

    Attributes
    ----------
    frames : Tensor, float32, shape (T, H, W)
        The video's frames as the net reads them: each normalised by its own grey levels (``levels``
        "per-frame", :func:`~neuradiff.nets.levels.normalise_frames`) or as they are.
    annotations : Tensor, uint8, shape (T, H, W)
        All annotations (validation frames included).
    train_annotations : Tensor, uint8, shape (T, H, W)
        The annotations training may see: validation frames are unknown.
    train_frames, val_frames : ndarray
        Annotated frames used for training and held out for validation.
    crop : int or None
        Side of the square training windows (``None``: whole frames); see :mod:`neuradiff.training.crops`.
    c_v_min : float
        Lower end of the net's ``c_v`` range (:attr:`NetConfig.c_v_range`, unless ``config.net`` sets it): the
        simulator's log floor.
    """

    def __init__(self, data: TrainingData, config: FitConfig, *, level: bool | None = None) -> None:
        self.data, self.config = data, config
        self.train_frames, self.val_frames = split_frames(data)
        if not self.train_frames.size:
            raise NeuradiffError("no annotated frame is left for training")
        t = data.frames.shape[0]
        self.level = config.levels == "per-frame" if level is None else level
        frames = normalise_frames(data.frames) if self.level else data.frames
        self.frames = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
        self.annotations = torch.from_numpy(np.ascontiguousarray(data.annotations))
        train_mask = torch.zeros(t, dtype=torch.bool)
        train_mask[torch.from_numpy(self.train_frames)] = True
        self.train_annotations = torch.where(
            train_mask.view(-1, 1, 1), self.annotations, torch.full_like(self.annotations, UNKNOWN)
        )
        self.crop = resolve_crop(config.crop, *data.frames.shape[-2:])
        # The net's c_v starts the simulator's rollouts: below the model's log floor its free energy is a quadratic
        # continuation, and a pixel emptied of vacancies beside a void needs thousands of explicit sub-steps.
        self.c_v_min = config.simulator(1.0).model.log_floor
        self._contrast: float | None = None

    def contrast_threshold(self) -> float:
        """The contrast threshold of the fitted net's masks: that of the faintest void annotated in a training
        frame that stands out of it (the faintest of all when none does), at most the generalist's
        (:func:`~neuradiff.nets.contrast.annotated_threshold`)."""
        if self._contrast is None:
            frames = self.train_frames
            self._contrast = annotated_threshold(self.data.frames[frames], self.data.annotations[frames])
        return self._contrast

    def to(self, device: torch.device) -> RecognitionTraining:
        """Move the frames and annotations to ``device`` (batch indices stay on the CPU: torch indexes any device
        with them)."""
        self.frames = self.frames.to(device)
        self.annotations = self.annotations.to(device)
        self.train_annotations = self.train_annotations.to(device)
        return self

    def windows(self, rng: np.random.Generator, idx: Tensor, annotations: Tensor) -> list[Window] | None:
        """One training window per frame of ``idx``, anchored on ``annotations[idx]`` (``None`` without crops)."""
        if self.crop is None:
            return None
        return [anchored_window(rng, annotations[i], self.crop) for i in idx.tolist()]

    def new_net(self) -> RecognitionNet:
        """A fresh net (seeded by ``config.seed``), normalised to the (levelled) frames' intensities; starting from
        the generalist (``init``), its net, reading frames as the generalist does: each frame mapped by its own
        grey-level percentiles (``levels`` "per-frame"), or all by the video's (``levels`` "recording")."""
        torch.manual_seed(self.config.seed)
        if self.config.starts_from_generalist():
            mean, std = (0.0, 1.0) if self.level else percentile_normalisation(self.frames.cpu().numpy())
            return trainable_net(
                load_generalist(), input_mean=mean, input_std=std, level=self.level, c_v_min=self.c_v_min
            )
        c_v_range = [self.c_v_min, NetConfig.c_v_range[1]]
        net_cfg = NetConfig.from_dict(
            {
                "stride": default_stride(*self.frames.shape[-2:]),
                "c_v_range": c_v_range,
                **self.config.net,
                "level": self.level,
            }
        )
        mean, std = float(self.frames.mean()), float(self.frames.std())
        return RecognitionNet(net_cfg, input_mean=mean, input_std=max(std, 1e-6))

    def recognise(
        self, net: RecognitionNet, idx: Tensor, k: int = 0, flip: bool = False, windows: list[Window] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(fields ``[B, 3, h, w]``, eta logits ``[B, h, w]``) of frames ``idx`` cut to ``windows`` (whole frames
        without), augmented by (k, flip)."""
        x = augment(cut_batch(self.frames[idx], windows), k, flip)
        z = net.logits(x, idx.to(torch.float32))
        return net.fields(z), z[:, 2]

    def prior_loss(self, fields: Tensor, ann: Tensor) -> Tensor:
        """The latent-field priors at annotated pixels: c_v near 1 in voids and ``c_v_matrix`` in the solid,
        log10 c_i near log10 ``c_i_matrix`` (weight 0.01)."""
        mask = known(ann)
        if not bool(mask.any()):
            return fields.sum() * 0.0
        void = (ann == VOID).to(fields.dtype)
        target_cv = void + (1.0 - void) * self.config.c_v_matrix
        err_cv = (fields[:, 0] - target_cv)[mask]
        err_ci = (torch.log10(fields[:, 1]) - math.log10(self.config.c_i_matrix))[mask]
        return (err_cv**2).mean() + 0.01 * (err_ci**2).mean()

    def pretrain_loss(self, net: RecognitionNet, it: int, processes: Processes | None = None) -> dict[str, Tensor]:
        """BCE on the annotated pixels of a batch of training frames plus the priors; with ``processes``, this
        process's share of them (:mod:`neuradiff.training.distributed`: summed over the processes, the terms of
        the whole batch)."""
        rng = batch_rng(self.config.seed, "pretrain", it)
        idx = torch.from_numpy(rng.choice(self.train_frames, size=self.config.batch))
        k, flip = augmentation(rng, self.config.augment)
        windows = self.windows(rng, idx, self.train_annotations)
        weight = None
        if processes is not None:
            mine = share([1.0] * len(idx), processes.world_size)[processes.rank]
            weight = fraction(known(cut_batch(self.train_annotations[idx], windows)).sum(dim=(1, 2)), mine)
            idx, windows = idx[mine], None if windows is None else [windows[i] for i in mine]
        fields, logits = self.recognise(net, idx, k, flip, windows)
        ann = augment(cut_batch(self.train_annotations[idx], windows), k, flip)
        rec = annotation_loss(logits, ann, pos_weight=self.config.void_weight)
        prior = self.prior_loss(fields, ann)
        if weight is not None:
            rec, prior = rec * weight, prior * weight
        return {"loss": rec + self.config.prior_weight * prior, "rec": rec, "prior": prior}

    @torch.no_grad()
    def validation_bce(self, net: RecognitionNet) -> float:
        """Recognition BCE on the held-out frames (without any: the pretraining loss of two fixed batches)."""
        if not self.val_frames.size:
            return float(sum(self.pretrain_loss(net, 10_000 + i)["loss"] for i in range(2)))
        idx = torch.from_numpy(self.val_frames)
        _, logits = self.recognise(net, idx)
        return float(annotation_loss(logits, self.annotations[idx], pos_weight=self.config.void_weight))
