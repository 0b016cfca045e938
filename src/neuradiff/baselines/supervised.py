"""The paper's tracking baseline: the recognition net trained on the annotated pixels only."""

from __future__ import annotations

import dataclasses
from typing import Callable

from neuradiff.models import RecognitionNet
from neuradiff.training.fit import FitConfig, Trainer, TrainingData, restore_best


def supervised_config(config: FitConfig) -> FitConfig:
    """NeuraDiff's settings turned supervised: the same net, the same number of iterations
    (``pretrain_iters + joint_iters``), the annotation loss (and the latent-field priors) only, no physics."""
    return dataclasses.replace(config, pretrain_iters=config.pretrain_iters + config.joint_iters, joint_iters=0,
                               learn=[])


def fit_supervised(data: TrainingData, config: FitConfig, *,
                   progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> RecognitionNet:
    """Train a recognition net on the annotations of ``data`` (see :func:`supervised_config`); in eval mode."""
    trainer = Trainer(data, supervised_config(config), progress=progress)
    net, _ = restore_best(trainer.run())
    return net
