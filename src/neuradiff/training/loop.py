"""The one training loop every method runs: phases of optimiser steps, validation that keeps the best model,
checkpoints that make an interrupted run resume to exactly the uninterrupted result.

A method describes what it trains as an :class:`Objective` (its modules, its phases and their optimisers, its
loss per iteration and its validation loss); :class:`TrainingLoop` does the rest. Checkpoints hold only
tensors and plain data, so they are read back with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from neuradiff.core.errors import NeuradiffError, SimulationError, StiffnessError
from neuradiff.core.files import atomic_path
from neuradiff.core.progress import ProgressSink
from neuradiff.training.distributed import active, any_process, sum_gradients, sum_terms

#: ``progress(phase, iterations done, iterations of the phase, history row)``.
Progress = ProgressSink

#: Share of a phase's iterations that may be skipped because their rollouts were too stiff to take
#: (:class:`~neuradiff.core.errors.StiffnessError`) before the run stops.
MAX_SKIPPED_SHARE = 0.25

CHECKPOINT_FORMAT = "neuradiff-fit-checkpoint"
CHECKPOINT_VERSION = 2


@dataclass
class Phase:
    """A stretch of training with its own optimisers.

    Attributes
    ----------
    name : str
        Shown in the progress bar and in the history (``"pretrain"``, ``"joint"``, ...).
    iterations : int
    optimisers : callable
        Builds the phase's optimisers (called when the phase begins, and when a run resumes inside it).
    validate_every : int or None
        Validate (and keep the model if it is the best so far) every this many iterations and at the last one.
    validate_at_start : bool
        Validate once when the phase begins (e.g. the pretrained model as a candidate).
    """

    name: str
    iterations: int
    optimisers: Callable[[], list[torch.optim.Optimizer]]
    validate_every: int | None = None
    validate_at_start: bool = False


class Objective(Protocol):
    """What a method trains (see :class:`TrainingLoop`)."""

    def modules(self) -> dict[str, nn.Module]:
        """The trained modules by name: checkpointed, and restored to their best state at the end."""
        ...

    def phases(self) -> list[Phase]:
        """The phases, in order."""
        ...

    def loss(self, phase: str, iteration: int) -> dict[str, Tensor]:
        """Loss terms of one iteration; ``"loss"`` is minimised (batches must depend only on the iteration)."""
        ...

    def backward(self, phase: str, terms: dict[str, Tensor]) -> None:
        """Fill the gradients of the trained parameters from ``terms``."""
        ...

    def validation_loss(self) -> float:
        """The number that picks the kept model (lower is better)."""
        ...

    def columns(self) -> dict[str, float]:
        """Extra history columns after an iteration (e.g. the current physical parameters)."""
        ...


@dataclass
class TrainState:
    """Where a run is: its phase and iteration, the history rows and the kept (best-validated) model."""

    phase: str
    iteration: int
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None

    @property
    def kept(self) -> dict[str, Any]:
        """Which iteration the validation kept: ``phase``, ``iteration``, ``val_loss`` (empty when no validation
        chose: before any, or when the last state was kept because nothing was validated)."""
        if not self.best or self.best.get("forced"):
            return {}
        return {k: self.best[k] for k in ("phase", "iteration", "val_loss")}


class TrainingLoop:
    """Run an :class:`Objective` to the end of its last phase.

    An iteration whose batch needs a rollout too stiff to take (:class:`~neuradiff.core.errors.StiffnessError`:
    more explicit sub-steps than allowed) is skipped without an optimiser step and recorded with ``skipped`` 1 in
    the history; more than :data:`MAX_SKIPPED_SHARE` of a phase skipped stops the run. A NaN or Inf stops it at once.

    Parameters
    ----------
    objective : Objective
    settings : dict
        The run's settings, stored in checkpoints: resuming with other settings is refused.
    checkpoint_path : Path, optional
        Where to write checkpoints (none when ``None``).
    checkpoint_every : int
        Iterations between checkpoints (and one at the end of every phase).
    progress : callable, optional
        ``progress(phase, done, total, row)`` after every iteration.
    """

    def __init__(
        self,
        objective: Objective,
        *,
        settings: dict[str, Any],
        checkpoint_path: Path | None = None,
        checkpoint_every: int = 25,
        progress: Progress | None = None,
    ) -> None:
        self.objective = objective
        self.settings = settings
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.checkpoint_every = checkpoint_every
        self.progress = progress

    # ---- the loop ------------------------------------------------------------------------------------
    def run(self, *, resume: bool = False) -> TrainState:
        """Train (from the checkpoint when ``resume``); returns the final :class:`TrainState`.

        Under a process group of several processes (:mod:`neuradiff.training.distributed`) the objective must
        share its batches (``data_parallel``); the loss terms and gradients are then summed over the processes
        and only the first process writes checkpoints and reports progress.
        """
        if active() is not None and not getattr(self.objective, "data_parallel", False):
            raise NeuradiffError(f"{type(self.objective).__name__} does not train on several processes")
        phases = self.objective.phases()
        names = [p.name for p in phases]
        state = TrainState(phases[0].name if phases else "", 0)
        blob = self.load_checkpoint() if resume else None
        if blob is not None:
            if blob["phase"] not in names:
                raise NeuradiffError(f"checkpoint {self.checkpoint_path} is in an unknown phase {blob['phase']!r}")
            for name, module in self.objective.modules().items():
                module.load_state_dict(blob["modules"][name])
            state = TrainState(blob["phase"], int(blob["iteration"]), list(blob["history"]), blob["best"])
        for module in self.objective.modules().values():
            module.train()
        index = names.index(state.phase) if phases else 0
        optimisers = phases[index].optimisers() if phases else []
        if blob is not None:
            for opt, opt_state in zip(optimisers, blob["optimisers"], strict=True):
                opt.load_state_dict(opt_state)
        while index < len(phases):
            phase = phases[index]
            for it in range(state.iteration, phase.iterations):
                terms = self._loss(state, phase, it)
                if terms is not None:
                    terms = self._step(phase.name, it, terms, optimisers)
                state.iteration = it + 1
                self._record(state, phase, it, terms)
                last = state.iteration == phase.iterations
                if phase.validate_every and (state.iteration % phase.validate_every == 0 or last):
                    self._keep_if_best(state)
                if state.iteration % self.checkpoint_every == 0 or last:
                    self.save_checkpoint(state, optimisers)
            index += 1
            if index < len(phases):
                state.phase, state.iteration = phases[index].name, 0
                optimisers = phases[index].optimisers()
                if phases[index].validate_at_start:
                    self._keep_if_best(state)
                self.save_checkpoint(state, optimisers)
        if state.best is None:
            self._keep_if_best(state, force=True)
        return state

    def restore_best(self, state: TrainState) -> None:
        """Load the kept model into the objective's modules and put them in eval mode."""
        modules = self.objective.modules()
        if state.best is not None:
            for name, module in modules.items():
                module.load_state_dict(state.best["state"][name])
        for module in modules.values():
            module.eval()

    def _loss(self, state: TrainState, phase: Phase, it: int) -> dict[str, Tensor] | None:
        """The iteration's loss terms, or ``None`` when a rollout of its batch (in any process) needed more
        explicit sub-steps than allowed: the iteration is then skipped, without an optimiser step, and recorded
        as such. Raises :class:`SimulationError` once more than :data:`MAX_SKIPPED_SHARE` of the phase's
        iterations have been skipped."""
        try:
            terms, reason = self.objective.loss(phase.name, it), None
        except StiffnessError as exc:
            terms, reason = None, str(exc)
        if active() is not None and any_process(terms is None, self._device()):
            terms = None
        if terms is not None:
            return terms
        skipped = 1 + sum(1 for row in state.history if row.get("phase") == phase.name and row.get("skipped"))
        if skipped > max(1, MAX_SKIPPED_SHARE * phase.iterations):
            where = f" (last good checkpoint: {self.checkpoint_path})" if self.checkpoint_path else ""
            raise SimulationError(
                f"the rollouts of {skipped} of {phase.iterations} {phase.name} iterations were too stiff to take "
                f"({reason or 'in another process'}); use a smaller dt or lr_phys{where}"
            )
        warnings.warn(
            f"{phase.name} iteration {it + 1} skipped: {reason or 'a rollout in another process was too stiff'}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None

    def _device(self) -> torch.device:
        """Where the trained modules live (a collective's tensor goes there: NCCL reduces only CUDA tensors)."""
        for module in self.objective.modules().values():
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    def _step(
        self, phase: str, it: int, terms: dict[str, Tensor], optimisers: list[torch.optim.Optimizer]
    ) -> dict[str, Tensor]:
        """One optimiser step; returns the iteration's loss terms (summed over the processes when shared)."""
        processes = active()
        shown = terms if processes is None else sum_terms(terms)
        loss = shown["loss"]
        if not bool(torch.isfinite(loss)):
            where = f" (last good checkpoint: {self.checkpoint_path})" if self.checkpoint_path else ""
            raise SimulationError(f"the {phase} loss became {float(loss.detach())} at iteration {it}{where}")
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        self.objective.backward(phase, terms)
        if processes is not None:
            sum_gradients([p for opt in optimisers for group in opt.param_groups for p in group["params"]])
        for opt in optimisers:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                        raise SimulationError(f"non-finite gradient in the {phase} phase at iteration {it}")
        for opt in optimisers:
            opt.step()
        return shown

    def _record(self, state: TrainState, phase: Phase, it: int, terms: dict[str, Tensor] | None) -> None:
        """Append the iteration's row to the history (``skipped`` 1 and no loss terms for a skipped one)."""
        row: dict[str, Any] = {"phase": phase.name, "iteration": it + 1}
        if terms is None:
            row["skipped"] = 1
        else:
            row.update({f"loss_{k}": float(v.detach()) for k, v in terms.items()})
        with torch.no_grad():
            row.update(self.objective.columns())
        state.history.append(row)
        processes = active()
        if self.progress is not None and (processes is None or processes.main):
            self.progress(phase.name, it + 1, phase.iterations, row)

    def _keep_if_best(self, state: TrainState, force: bool = False) -> None:
        try:
            val = float(self.objective.validation_loss())
        except StiffnessError:  # a validation rollout too stiff to take: this model is not the one to keep
            val = float("inf")
        if state.history:
            state.history[-1]["val_loss"] = val
        if force or state.best is None or val < state.best["val_loss"]:
            state.best = {
                "val_loss": val,
                "phase": state.phase,
                "iteration": state.iteration,
                "forced": force,
                "state": {
                    name: {k: v.detach().clone() for k, v in module.state_dict().items()}
                    for name, module in self.objective.modules().items()
                },
            }

    # ---- checkpoints ---------------------------------------------------------------------------------
    def save_checkpoint(self, state: TrainState, optimisers: list[torch.optim.Optimizer]) -> None:
        """Write the run's state atomically (nothing when there is no checkpoint path, or in any but the first of
        several training processes)."""
        processes = active()
        if self.checkpoint_path is None or (processes is not None and not processes.main):
            return
        blob = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "phase": state.phase,
            "iteration": state.iteration,
            "history": state.history,
            "best": state.best,
            "modules": {name: module.state_dict() for name, module in self.objective.modules().items()},
            "optimisers": [opt.state_dict() for opt in optimisers],
            "settings": self.settings,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(blob, tmp)

    def load_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's contents, read without executing code; one clear error if it cannot be used."""
        path = self.checkpoint_path
        if path is None or not path.is_file():
            raise NeuradiffError(f"no checkpoint to resume from at {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NeuradiffError(
                f"checkpoint {path} is corrupt, unreadable or not a plain-data checkpoint ({type(exc).__name__})"
            ) from None
        if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
            raise NeuradiffError(f"{path} is not a neuradiff fit checkpoint")
        if blob.get("version") != CHECKPOINT_VERSION:
            raise NeuradiffError(
                f"checkpoint {path} is of version {blob.get('version')}; this neuradiff resumes "
                f"version {CHECKPOINT_VERSION} only: start the fit again without --resume"
            )
        if blob.get("settings") != self.settings:
            raise NeuradiffError(f"checkpoint {path} was made with other settings; resume with the same config")
        return blob
