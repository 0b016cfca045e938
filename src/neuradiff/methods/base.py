"""What every fitted method offers: recognise frames, forecast from a frame, report its physical parameters,
save and load itself; and the table of methods by name.

A method that cannot do something says so with a capability flag (``can_track``, ``can_forecast``) and raises
:class:`~neuradiff.core.errors.NeuradiffError` if asked anyway, so callers never branch on method names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np
import torch
from torch import nn

from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.methods.posterior import Identifiability, Posterior
from neuradiff.nets.blank import off_blank, specimen_frames
from neuradiff.nets.contrast import drop_faint
from neuradiff.physics import VoidParameters
from neuradiff.training import FitConfig, Objective, Progress, TrainingLoop


@dataclass
class Forecast:
    """A forecast: eta ``[n + 1, H, W]`` at frames ``start, start + 1, ...``, and the full fields
    ``[n + 1, 3, H, W]`` (c_v, c_i, eta) when the method simulates them (else ``None``)."""

    eta: np.ndarray
    frames: np.ndarray
    fields: np.ndarray | None = None


class FittedMethod(Protocol):
    """A trained method (see the module docstring)."""

    #: The method's name in :data:`neuradiff.methods.METHODS`.
    method: ClassVar[str]
    #: It recognises frames (tracking).
    can_track: ClassVar[bool]
    #: It forecasts from a frame.
    can_forecast: ClassVar[bool]
    #: What the model was trained on and how (written to ``model.json``).
    info: dict[str, Any]

    def recognise(
        self, frames: np.ndarray, *, first_index: int = 0, eta_only: bool = False, batch: int = 8
    ) -> np.ndarray:
        """Fields ``[T, 3, H, W]`` (or eta ``[T, H, W]`` with ``eta_only``) of ``frames`` ``[T, H, W]``."""
        ...

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
        """Start from ``frames[start]`` (eta replaced by ``annotation`` where known) and forecast ``n_frames``
        frame intervals; ``time_per_frame`` is the simulation time between this video's frames (default: the
        training video's); ``intervals`` (``[n_frames]``, in frame intervals) the real duration of each step when
        the frame times are uneven (:func:`~neuradiff.methods.forecast.simulate_forward`). Methods without a
        simulator step from frame to frame and ignore both."""
        ...

    def parameters(self) -> VoidParameters | None:
        """The physical parameters the method uses (``None`` without physics)."""
        ...

    def save(self, folder: Path, *, history: list[dict] | None = None, config: dict | None = None) -> None:
        """Write the method into ``folder`` (created if needed; files written atomically), with the fit's
        ``history`` (``history.csv``) and settings (``config.json``) when given."""
        ...


M = TypeVar("M", covariant=True)


@dataclass
class FitResult(Generic[M]):
    """What a fit returns: the fitted method, the loss history, which iteration the validation kept, the
    annotated frames used for training and held out for validation and, for fits that analyse their physics,
    what the video determines about the parameters (``identifiable``) and their posterior (``posterior``; see
    :mod:`neuradiff.methods.posterior`)."""

    model: M
    history: list[dict]
    kept: dict
    train_frames: np.ndarray
    val_frames: np.ndarray
    identifiable: Identifiability | None = None
    posterior: Posterior | None = None


class FitObjective(Objective, Protocol[M]):
    """An :class:`~neuradiff.training.Objective` that also knows its frame split and its fitted method."""

    #: (annotated training frames, held-out validation frames)
    split: tuple[np.ndarray, np.ndarray]

    def fitted(self) -> M:
        """The trained modules as a fitted method (in eval mode)."""
        ...

    def to(self, device: torch.device) -> object:
        """Move every tensor and module the objective trains with to ``device``."""
        ...


def run_objective(
    objective: FitObjective[M],
    config: FitConfig,
    *,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> FitResult[M]:
    """Train ``objective`` with the shared :class:`~neuradiff.training.TrainingLoop` (on ``device``, default the
    CPU) and return the kept model."""
    if device is not None:
        objective.to(device)
    loop = TrainingLoop(
        objective,
        settings=config.to_dict(),
        checkpoint_path=checkpoint_path,
        checkpoint_every=config.checkpoint_every,
        progress=progress,
    )
    state = loop.run(resume=resume)
    loop.restore_best(state)
    return FitResult(objective.fitted(), state.history, state.kept, *objective.split)


def fitted_masks(fitted: FittedMethod, eta: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Void masks ``[T, H, W]`` bool of a fitted method's eta ``[T, H, W]`` of ``frames`` ``[T, H, W]``: eta ≥ 0.5,
    without the regions that touch a blank region of their frame (a padding band, a burned-in scale bar or label:
    :func:`~neuradiff.nets.blank.off_blank`) and without the regions that stand out of their frame less than the
    fit's annotated voids did (the contrast filter :func:`~neuradiff.nets.contrast.drop_faint`, on the frame with its
    blank regions filled, at ``fitted.info["min_contrast"]``, region by region, set by the fit from its annotations
    with :func:`~neuradiff.nets.contrast.annotated_threshold`; absent or 0: every region).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> eta = np.zeros((1, 8, 8)); eta[0, 2:5, 2:5] = 1.0
    >>> int(fitted_masks(SimpleNamespace(info={}), eta, np.zeros((1, 8, 8))).sum())
    9
    """
    threshold = float(fitted.info.get("min_contrast") or 0.0)
    e, a = np.asarray(eta), np.asarray(frames)
    if e.ndim != 3 or e.shape != a.shape:
        raise NeuradiffError(f"eta {e.shape} and frames {a.shape} must both be [T, H, W] of one shape")
    out = np.empty(e.shape, bool)
    for k in range(e.shape[0]):  # frame by frame: a filled copy never holds more than one frame
        blank, filled = specimen_frames(a[k : k + 1])
        masks = off_blank(e[k : k + 1] >= 0.5, blank)
        out[k] = (drop_faint(filled, masks, threshold, relaxed=False) if threshold > 0 else masks)[0]
    return out


def place_model(fitted: FittedMethod, device: str | torch.device | None) -> torch.device:
    """Move every net of ``fitted`` to ``device`` (resolved by :func:`~neuradiff.core.devices.resolve_device`); the
    methods recognise and forecast on the device their nets are on. Returns the device.

    Examples
    --------
    >>> from neuradiff.methods import SupervisedModel
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> model = SupervisedModel(RecognitionNet(NetConfig(width=4, depth=1)))
    >>> place_model(model, "cpu"), model.net.input_mean.device
    (device(type='cpu'), device(type='cpu'))
    """
    dev = resolve_device(device)
    if dataclasses.is_dataclass(fitted):
        for f in dataclasses.fields(fitted):
            value = getattr(fitted, f.name)
            if isinstance(value, nn.Module):
                value.to(dev)
    return dev
