"""Differentiable physics without a recognition net: the physical parameters are fitted by simulating from an
annotated frame to the next one and matching its annotation (the frames' pixels are never read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import has_annotation, known, overlay_annotation
from neuradiff.io.saved import SavedModel, parameter_table, write_model_folder
from neuradiff.methods.base import FitResult, Forecast, run_objective
from neuradiff.methods.forecast import simulate_forward
from neuradiff.physics import LearnableParameters, Simulator, VoidParameters, matrix_state
from neuradiff.training import FitConfig, Phase, Progress, TrainingData, annotated_pairs, batch_rng, split_frames


def state_from_annotation(annotation: np.ndarray | Tensor, *, c_v_matrix: float, c_i_matrix: float) -> Tensor:
    """A start state ``[B, 3, H, W]`` float32 from annotations ``[B, H, W]`` (0 solid, 1 void, 255 unknown):
    eta is the annotation (unknown pixels taken as solid), c_v is 1 in voids and ``c_v_matrix`` in the solid,
    c_i is ``c_i_matrix`` everywhere (the same priors the NeuraDiff fit puts on its latent fields)."""
    a = torch.as_tensor(np.asarray(annotation))
    eta = overlay_annotation(torch.zeros(a.shape, dtype=torch.float32), a)
    return matrix_state(eta, c_v=c_v_matrix, c_i=c_i_matrix)


@dataclass
class PhysicsOnlyModel:
    """Fitted physical parameters and their simulator; forecasts start from an annotation (no net: no tracking)."""

    method: ClassVar[str] = "physics_only"
    can_track: ClassVar[bool] = False
    can_forecast: ClassVar[bool] = True

    params: VoidParameters
    simulator: Simulator
    c_v_matrix: float = 0.122
    c_i_matrix: float = 6.9e-4
    info: dict[str, Any] = field(default_factory=dict)

    def recognise(
        self, frames: np.ndarray, *, first_index: int = 0, eta_only: bool = False, batch: int = 8
    ) -> np.ndarray:
        raise NeuradiffError(
            "the physics-only fit has no recognition net: it forecasts from an annotation but does not track"
        )

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
        if not has_annotation(annotation):
            raise NeuradiffError("the physics-only fit starts from an annotation of the start frame; give one")
        state = state_from_annotation(
            np.asarray(annotation)[None], c_v_matrix=self.c_v_matrix, c_i_matrix=self.c_i_matrix
        )
        return simulate_forward(
            self.simulator.for_frames(time_per_frame), state, self.params, n_frames, start=start, intervals=intervals
        )

    def parameters(self) -> VoidParameters:
        return self.params

    def save(self, folder: Path, *, history: list[dict] | None = None, config: dict | None = None) -> None:
        info = {
            **self.info,
            "method": self.method,
            "physics": self.simulator.to_dict(),
            "start_state": {"c_v_matrix": self.c_v_matrix, "c_i_matrix": self.c_i_matrix},
        }
        table = info.pop("param_table", None) or parameter_table(self.params, learned=info.get("learned", []))
        write_model_folder(folder, info=info, params=table, history=history, config=config)

    @classmethod
    def from_saved(cls, saved: SavedModel) -> PhysicsOnlyModel:
        if saved.params is None or saved.info.get("physics") is None:
            raise NeuradiffError("a physics-only model folder needs params.json and a physics section")
        start = saved.info.get("start_state", {})
        return cls(
            saved.params,
            Simulator.from_dict(saved.info["physics"]),
            float(start.get("c_v_matrix", 0.122)),
            float(start.get("c_i_matrix", 6.9e-4)),
            {**saved.info, "param_table": saved.param_table},
        )


class PhysicsOnlyObjective:
    """Each iteration simulates one pair of consecutive training annotations (a → b) and minimises the squared
    eta error at b's annotated pixels; validation: the rollout into the held-out annotation."""

    def __init__(self, data: TrainingData, config: FitConfig) -> None:
        config.validate()
        self.config, self.data = config, data
        train, val = split_frames(data)
        self.split = (train, val)
        self.pairs = annotated_pairs(train, config.max_gap)
        if not self.pairs:
            raise NeuradiffError(
                "differentiable physics alone needs two annotated training frames at most "
                f"{config.max_gap} frames apart"
            )
        self.simulator = config.simulator(data.sim_time_per_frame)
        self.params = LearnableParameters(config.initial_parameters(), learn=config.learned_names())
        self.annotations = torch.from_numpy(np.ascontiguousarray(data.annotations))
        # Validation: the rollout into the held-out annotation (else the mean over the training pairs).
        self.val_pairs = [(int(train[train < v][-1]), int(v)) for v in val if (train < v).any()] or self.pairs

    def modules(self) -> dict[str, nn.Module]:
        return {"params": self.params}

    def to(self, device: torch.device) -> PhysicsOnlyObjective:
        """Move the parameters and the annotations to ``device``."""
        self.params.to(device)
        self.annotations = self.annotations.to(device)
        return self

    def phases(self) -> list[Phase]:
        return [
            Phase(
                "physics-only",
                self.config.joint_iters,
                lambda: [torch.optim.Adam(self.params.parameters(), lr=self.config.lr_phys)],
                validate_every=self.config.eval_every,
            )
        ]

    def pair_loss(self, a: int, b: int) -> Tensor:
        """Squared eta error at b's annotated pixels after simulating from annotation a."""
        cfg, ann = self.config, self.annotations
        state = state_from_annotation(ann[a : a + 1], c_v_matrix=cfg.c_v_matrix, c_i_matrix=cfg.c_i_matrix)
        end = self.simulator.run(
            state,
            self.params(),
            float(self.data.intervals(a, b)),
            checkpoint_every=cfg.bptt_checkpoint,
            guard_every=self.simulator.steps(1),
        ).final
        mask = known(ann[b : b + 1])
        return ((end[:, 2] - ann[b : b + 1].to(end.dtype))[mask] ** 2).mean()

    def loss(self, phase: str, iteration: int) -> dict[str, Tensor]:
        rng = batch_rng(self.config.seed, "physics-only", iteration)
        a, b = self.pairs[int(rng.integers(len(self.pairs)))]
        loss = self.pair_loss(a, b)
        return {"loss": loss, "sim": loss}

    def backward(self, phase: str, terms: dict[str, Tensor]) -> None:
        terms["loss"].backward()

    @torch.no_grad()
    def validation_loss(self) -> float:
        return float(np.mean([float(self.pair_loss(a, b)) for a, b in self.val_pairs]))

    def columns(self) -> dict[str, float]:
        return {f"param_{k}": v for k, v in self.params().as_floats().items() if k in self.params.learned}

    def fitted(self) -> PhysicsOnlyModel:
        with torch.no_grad():
            values = VoidParameters.from_mapping(self.params().as_floats())
        table = parameter_table(
            values,
            initial=self.config.initial_parameters(),
            learned=list(self.params.learned),
            bounds=self.params.bounds,
        )
        return PhysicsOnlyModel(
            values,
            self.simulator,
            self.config.c_v_matrix,
            self.config.c_i_matrix,
            {"learned": list(self.params.learned), "param_table": table},
        )


def fit_physics_only(
    data: TrainingData,
    config: FitConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> FitResult[PhysicsOnlyModel]:
    """Fit the learned parameters of ``config`` for ``config.joint_iters`` iterations without a net;
    ``result.model`` is a :class:`PhysicsOnlyModel`."""
    return run_objective(
        PhysicsOnlyObjective(data, config),
        config,
        checkpoint_path=checkpoint_path,
        resume=resume,
        progress=progress,
        device=device,
    )
