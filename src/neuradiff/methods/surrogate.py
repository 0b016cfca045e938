"""A pure neural surrogate of the dynamics: a UNet that maps the eta map of one frame to the next one, trained on
consecutive frames and rolled out from a start frame (the paper's failing baseline, its Figure 4 row 4).

Its training targets are eta maps of every frame (in the evaluation suite: the supervised net's tracking, with the
annotations where they exist), since a next-frame predictor needs consecutive frames and the annotations alone
have none. The net predicts a correction to the logit of the current map (a residual step). Its start map comes
from a recognition net (the supervised one in the suite), eta replaced by the annotation where known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuradiff.core.config import settings_class
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import overlay_annotation
from neuradiff.io.saved import SavedModel, write_model_folder
from neuradiff.methods.base import FitResult, Forecast
from neuradiff.nets import NetConfig, RecognitionNet, recognise
from neuradiff.training import Phase, Progress, TrainingLoop, batch_rng

_EPS = 1e-3


@settings_class("surrogate")
class SurrogateConfig:
    """Settings of the surrogate: net overrides, iterations, batch of frame pairs, learning rate, seed (types and
    ranges checked on construction)."""

    net: dict[str, Any] = field(default_factory=lambda: {"embedding": "none"})
    iters: Annotated[int, pydantic.Field(ge=1)] = 200
    batch: Annotated[int, pydantic.Field(ge=1)] = 4
    lr: Annotated[float, pydantic.Field(gt=0)] = 2e-3
    seed: Annotated[int, pydantic.Field(ge=0)] = 0

    def validate(self) -> None:
        NetConfig.from_dict(self.net)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _logit(eta: Tensor) -> Tensor:
    return torch.logit(eta.clamp(_EPS, 1 - _EPS))


def surrogate_step_logits(net: RecognitionNet, eta: Tensor) -> Tensor:
    """Logits ``[B, H, W]`` of the next eta map from the current one ``[B, H, W]`` (values in [0, 1])."""
    return _logit(eta) + net.eta_logits(eta, torch.zeros(eta.shape[0], dtype=eta.dtype))


@torch.no_grad()
def surrogate_rollout(net: RecognitionNet, eta0: np.ndarray, n_frames: int) -> np.ndarray:
    """Roll the surrogate out from ``eta0`` ``[H, W]``: eta ``[n_frames + 1, H, W]`` (the start map first)."""
    net.eval()
    out = [torch.from_numpy(np.clip(np.asarray(eta0, dtype=np.float32), 0.0, 1.0))[None]]
    for _ in range(n_frames):
        out.append(torch.sigmoid(surrogate_step_logits(net, out[-1])))
    return torch.cat(out).numpy()


@dataclass
class SurrogateModel:
    """The surrogate net and the recognition net that gives its start map."""

    method: ClassVar[str] = "surrogate"
    can_track: ClassVar[bool] = False
    can_forecast: ClassVar[bool] = True

    surrogate: RecognitionNet
    recogniser: RecognitionNet
    seed: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def recognise(
        self, frames: np.ndarray, *, first_index: int = 0, eta_only: bool = False, batch: int = 8
    ) -> np.ndarray:
        raise NeuradiffError("the surrogate predicts frames from frames; it does not track")

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
        eta0 = recognise(self.recogniser, frames[start : start + 1], first_index=start)[0, 2]
        eta0 = overlay_annotation(eta0, annotation)
        eta = surrogate_rollout(self.surrogate, eta0, n_frames)
        return Forecast(eta=eta, frames=np.arange(start, start + n_frames + 1))

    def parameters(self) -> None:
        return None

    def save(self, folder: Path, *, history: list[dict] | None = None, config: dict | None = None) -> None:
        write_model_folder(
            folder,
            info={**self.info, "method": self.method, "seed": self.seed},
            nets={"net": self.recogniser, "surrogate": self.surrogate},
            history=history,
            config=config,
        )

    @classmethod
    def from_saved(cls, saved: SavedModel) -> SurrogateModel:
        if not {"net", "surrogate"} <= set(saved.nets):
            raise NeuradiffError("a surrogate model folder needs model.pt and surrogate.pt")
        return cls(saved.nets["surrogate"], saved.nets["net"], int(saved.info.get("seed", 0)), dict(saved.info))


class SurrogateObjective:
    """Binary cross-entropy of the predicted next map against the next target map, on random consecutive pairs."""

    def __init__(self, eta: np.ndarray, config: SurrogateConfig) -> None:
        config.validate()
        if eta.ndim != 3 or eta.shape[0] < 2:
            raise NeuradiffError(f"the surrogate needs eta maps [T >= 2, H, W], got shape {eta.shape}")
        self.config = config
        self.targets = torch.from_numpy(np.clip(np.ascontiguousarray(eta, dtype=np.float32), 0.0, 1.0))
        torch.manual_seed(config.seed)
        self.net = RecognitionNet(NetConfig.from_dict(config.net), input_mean=0.5, input_std=0.5)

    def modules(self) -> dict[str, nn.Module]:
        return {"surrogate": self.net}

    def to(self, device: torch.device) -> SurrogateObjective:
        """Move the net and the target maps to ``device``."""
        self.net.to(device)
        self.targets = self.targets.to(device)
        return self

    def phases(self) -> list[Phase]:
        return [
            Phase("surrogate", self.config.iters, lambda: [torch.optim.Adam(self.net.parameters(), lr=self.config.lr)])
        ]

    def loss(self, phase: str, iteration: int) -> dict[str, Tensor]:
        rng = batch_rng(self.config.seed, "surrogate", iteration)
        t = torch.from_numpy(rng.integers(0, self.targets.shape[0] - 1, size=self.config.batch))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        x, y = (torch.rot90(self.targets[i], k, dims=(-2, -1)) for i in (t, t + 1))
        if flip:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.binary_cross_entropy_with_logits(surrogate_step_logits(self.net, x), y)
        return {"loss": loss, "bce": loss}

    def backward(self, phase: str, terms: dict[str, Tensor]) -> None:
        terms["loss"].backward()

    def validation_loss(self) -> float:
        return 0.0  # no held-out pairs: the last iteration is kept

    def columns(self) -> dict[str, float]:
        return {}


def fit_surrogate(
    eta: np.ndarray,
    recogniser: RecognitionNet,
    config: SurrogateConfig,
    *,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> FitResult[SurrogateModel]:
    """Train the surrogate on the consecutive pairs of ``eta`` ``[T, H, W]`` (values in [0, 1]) on ``device``
    (default the CPU); ``result.model`` is a :class:`SurrogateModel` that starts its forecasts from
    ``recogniser``."""
    objective = SurrogateObjective(eta, config)
    if device is not None:
        objective.to(device)
    loop = TrainingLoop(objective, settings=config.to_dict(), progress=progress)
    state = loop.run()
    loop.restore_best(state)
    none = np.zeros(0, dtype=np.int64)
    return FitResult(
        SurrogateModel(objective.net, recogniser.eval(), config.seed), state.history, state.kept, none, none
    )
