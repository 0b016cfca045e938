"""The paper's tracking baseline: the recognition net trained on the annotated pixels only (no physics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.saved import SavedModel, write_model_folder
from neuradiff.methods.base import FitResult, Forecast, run_objective
from neuradiff.nets import RecognitionNet, recognise
from neuradiff.training import FitConfig, Phase, Progress, RecognitionTraining, TrainingData


@dataclass
class SupervisedModel:
    """A recognition net alone: it tracks, it does not forecast."""

    method: ClassVar[str] = "supervised"
    can_track: ClassVar[bool] = True
    can_forecast: ClassVar[bool] = False

    net: RecognitionNet
    info: dict[str, Any] = field(default_factory=dict)

    def recognise(
        self, frames: np.ndarray, *, first_index: int = 0, eta_only: bool = False, batch: int = 8
    ) -> np.ndarray:
        return recognise(self.net, frames, first_index=first_index, eta_only=eta_only, batch=batch)

    def forecast(
        self,
        frames: np.ndarray,
        start: int,
        n_frames: int,
        *,
        annotation: np.ndarray | None = None,
        time_per_frame: float | None = None,
        intervals: np.ndarray | None = None,
    ) -> Forecast:
        raise NeuradiffError("the supervised net has no physics: it tracks but does not forecast")

    def parameters(self) -> None:
        return None

    def save(self, folder: Path, *, history: list[dict] | None = None, config: dict | None = None) -> None:
        write_model_folder(
            folder, info={**self.info, "method": self.method}, nets={"net": self.net}, history=history, config=config
        )

    @classmethod
    def from_saved(cls, saved: SavedModel) -> SupervisedModel:
        if "net" not in saved.nets:
            raise NeuradiffError("a supervised model folder needs its net (model.pt)")
        return cls(saved.nets["net"], dict(saved.info))


def supervised_iterations(config: FitConfig) -> int:
    """The same budget as NeuraDiff: its pretraining and joint iterations, of the annotation loss."""
    return config.pretraining_iterations() + config.joint_iters


class SupervisedObjective:
    """NeuraDiff's pretraining (annotation loss and latent-field priors) run for the whole budget."""

    def __init__(self, data: TrainingData, config: FitConfig) -> None:
        config.validate()
        self.config = config = config.for_annotated_frames(data.annotated_frames().size)
        self.rec = RecognitionTraining(data, config)
        self.split = (self.rec.train_frames, self.rec.val_frames)
        self.net = self.rec.new_net()

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def to(self, device: torch.device) -> SupervisedObjective:
        """Move the net, the video and the annotations to ``device``."""
        self.net.to(device)
        self.rec.to(device)
        return self

    def phases(self) -> list[Phase]:
        return [
            Phase(
                "pretrain",
                supervised_iterations(self.config),
                lambda: [torch.optim.Adam(self.net.parameters(), lr=self.config.net_learning_rate())],
            )
        ]

    def loss(self, phase: str, iteration: int) -> dict[str, Tensor]:
        return self.rec.pretrain_loss(self.net, iteration)

    def backward(self, phase: str, terms: dict[str, Tensor]) -> None:
        terms["loss"].backward()

    @torch.no_grad()
    def validation_loss(self) -> float:
        self.net.eval()
        try:
            return self.rec.validation_bce(self.net)
        finally:
            self.net.train()

    def columns(self) -> dict[str, float]:
        return {}

    def fitted(self) -> SupervisedModel:
        self.net.eval()
        return SupervisedModel(self.net, {"min_contrast": self.rec.contrast_threshold()})


def fit_supervised(
    data: TrainingData,
    config: FitConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> FitResult[SupervisedModel]:
    """Train a recognition net on the annotations of ``data``; ``result.model`` is a :class:`SupervisedModel`."""
    config = config.for_annotated_frames(data.annotated_frames().size)
    return run_objective(
        SupervisedObjective(data, config),
        config,
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
        device=device,
    )
