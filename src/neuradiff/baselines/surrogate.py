"""A pure neural surrogate of the dynamics: a UNet that maps the eta map of one frame to the next one, trained on
consecutive frames and rolled out from a start frame (the paper's failing baseline, its Figure 4 row 4).

Its training targets are eta maps of every frame (in the evaluation suite: the supervised net's tracking, with the
annotations where they exist), since a next-frame predictor needs consecutive frames and the annotations alone
have none. The net predicts a correction to the logit of the current map (a residual step).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neuradiff.errors import NeuradiffError, SimulationError
from neuradiff.models import NetConfig, RecognitionNet

_EPS = 1e-3


@dataclass
class SurrogateConfig:
    """Settings of the surrogate: net overrides, iterations, batch of frame pairs, learning rate, seed."""

    net: dict[str, Any] = field(default_factory=lambda: {"embedding": "none"})
    iters: int = 200
    batch: int = 4
    lr: float = 2e-3
    seed: int = 0

    def validate(self) -> None:
        if self.iters < 1 or self.batch < 1 or not self.lr > 0:
            raise ValueError("the surrogate needs iters >= 1, batch >= 1 and lr > 0")
        NetConfig.from_dict(self.net)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _logit(eta: Tensor) -> Tensor:
    return torch.logit(eta.clamp(_EPS, 1 - _EPS))


def surrogate_step_logits(net: RecognitionNet, eta: Tensor) -> Tensor:
    """Logits ``[B, H, W]`` of the next eta map from the current one ``[B, H, W]`` (values in [0, 1])."""
    return _logit(eta) + net.eta_logits(eta, torch.zeros(eta.shape[0], dtype=eta.dtype))


def train_surrogate(eta: np.ndarray, config: SurrogateConfig, *,
                    progress: Callable[[str, int, int, dict[str, float]], None] | None = None) -> RecognitionNet:
    """Train on the consecutive pairs of ``eta`` ``[T, H, W]`` (values in [0, 1]); returns the net in eval mode."""
    config.validate()
    if eta.ndim != 3 or eta.shape[0] < 2:
        raise NeuradiffError(f"the surrogate needs eta maps [T >= 2, H, W], got shape {eta.shape}")
    targets = torch.from_numpy(np.clip(np.ascontiguousarray(eta, dtype=np.float32), 0.0, 1.0))
    torch.manual_seed(config.seed)
    net = RecognitionNet(NetConfig.from_dict(config.net), input_mean=0.5, input_std=0.5)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    net.train()
    for it in range(config.iters):
        rng = np.random.default_rng([config.seed, 3, it])
        t = torch.from_numpy(rng.integers(0, targets.shape[0] - 1, size=config.batch))
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        x, y = (torch.rot90(targets[i], k, dims=(-2, -1)) for i in (t, t + 1))
        if flip:
            x, y = x.flip(-1), y.flip(-1)
        loss = F.binary_cross_entropy_with_logits(surrogate_step_logits(net, x), y)
        if not bool(torch.isfinite(loss)):
            raise SimulationError(f"the surrogate loss became {float(loss.detach())} at iteration {it}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress("surrogate", it + 1, config.iters, {"loss_bce": float(loss.detach())})
    return net.eval()


@torch.no_grad()
def surrogate_rollout(net: RecognitionNet, eta0: np.ndarray, n_frames: int) -> np.ndarray:
    """Roll the surrogate out from ``eta0`` ``[H, W]``: eta ``[n_frames + 1, H, W]`` (the start map first)."""
    net.eval()
    out = [torch.from_numpy(np.clip(np.asarray(eta0, dtype=np.float32), 0.0, 1.0))[None]]
    for _ in range(n_frames):
        out.append(torch.sigmoid(surrogate_step_logits(net, out[-1])))
    return torch.cat(out).numpy()
