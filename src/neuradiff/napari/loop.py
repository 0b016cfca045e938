"""The annotate → correct → retrain loop behind the napari dock widget, without Qt.

1. :func:`track_layers` tracks a video with a model (or the shipped generalist) and returns the masks as napari
   Labels data (void 1, solid 2; 0 is napari's "no label" and means unknown) and the void tracks as a Tracks
   layer, both with the scale ``(s per frame, nm per px, nm per px)``.
2. The user paints on the Labels layer: label 1 marks void, 2 solid, 0 (the eraser) unknown.
3. :func:`retrain` takes the frames the user changed as annotations (every other frame is unknown), writes them
   as a three-state ``annotations.tif`` (0 solid, 1 void, 255 unknown: what ``neuradiff fit --annotations``
   reads), fits from the model (its net and learned parameters are the starting point; from scratch when the
   generalist tracked) into ``model/`` beside it, and tracks again with the new model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuradiff.api import FittedModel, TrackedVideo, fit, track
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import prepare_output_dir
from neuradiff.core.labels import SOLID, UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.io.stacks import write_stack
from neuradiff.io.video import Calibration, Video
from neuradiff.methods import FittedMethod, NeuraDiffModel, load_model
from neuradiff.napari.reader import LayerData, _kwargs, _track_layer

#: napari label values of the Labels layer: void and solid (0, napari's "no label", is unknown).
VOID_LABEL, SOLID_LABEL = 1, 2
#: Colours of the labels (RGBA): void bright, solid a faint tint so that the frame stays visible.
LABEL_COLOURS: dict[int | None, tuple[float, float, float, float]] = {
    None: (0.0, 0.0, 0.0, 0.0),
    0: (0.0, 0.0, 0.0, 0.0),
    VOID_LABEL: (1.0, 0.25, 0.1, 1.0),
    SOLID_LABEL: (0.2, 0.55, 1.0, 0.25),
}
#: Name of the Labels layer the widget adds and reads corrections from.
MASKS_LAYER = "neuradiff masks (paint: 1 void, 2 solid, 0 unknown)"
TRACKS_LAYER = "neuradiff void tracks"


def calibration_of_layer(scale: Any, metadata: dict[str, Any] | None) -> Calibration:
    """The calibration of a napari image layer: its scale when its units (``metadata["units"]``, as the neuradiff
    reader sets them) are s and nm, else unknown.

    Examples
    --------
    >>> cal = calibration_of_layer((2.0, 0.5, 0.5), {"units": ("s", "nm", "nm")})
    >>> cal.frame_interval_s, cal.nm_per_px
    (2.0, 0.5)
    >>> calibration_of_layer((1.0, 1.0, 1.0), {}).nm_per_px is None
    True
    """
    units = tuple((metadata or {}).get("units", ()))
    scale = [float(s) for s in scale]
    dt = scale[-3] if len(units) >= 3 and len(scale) >= 3 and units[-3] == "s" else None
    nm = scale[-1] if len(units) >= 1 and units[-1] == "nm" else None
    source = "napari layer" if dt or nm else "none"
    return Calibration(nm, dt, None, source)


def labels_of_masks(masks: np.ndarray) -> np.ndarray:
    """Void masks ``[T, H, W]`` (three-state: 1 void, 0 solid, 255 unknown; or bool) as napari labels: void 1,
    solid 2, unknown 0 (a blank region of the frame: padding, a burned-in overlay).

    Examples
    --------
    >>> labels_of_masks(np.array([[[0, 1, 255]]], np.uint8)).tolist()
    [[[2, 1, 0]]]
    """
    m = np.asarray(masks)
    return np.where(m == VOID, VOID_LABEL, np.where(m == UNKNOWN, 0, SOLID_LABEL)).astype(np.uint8)


def three_state_of_labels(labels: np.ndarray) -> np.ndarray:
    """napari labels (void 1, solid 2, unknown 0) as three-state annotations (0 solid, 1 void, 255 unknown).

    Examples
    --------
    >>> three_state_of_labels(np.array([[[0, 1, 2]]])).tolist()
    [[[255, 1, 0]]]
    """
    labels = np.asarray(labels)
    other = np.setdiff1d(np.unique(labels), [0, VOID_LABEL, SOLID_LABEL])
    if other.size:
        raise NeuradiffError(
            f"the masks layer holds label {int(other[0])}: paint with {VOID_LABEL} (void), {SOLID_LABEL} (solid) "
            "or 0 (unknown) only"
        )
    out = np.full(labels.shape, UNKNOWN, np.uint8)
    out[labels == VOID_LABEL] = VOID
    out[labels == SOLID_LABEL] = SOLID
    return out


def corrected_annotations(labels: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The annotations of a correction round: the frames whose labels differ from the predicted ones, three-state;
    every other frame unknown (255). Also the corrected frame numbers.

    Examples
    --------
    >>> predicted = np.full((3, 2, 2), 2, np.uint8)
    >>> labels = predicted.copy()
    >>> labels[1, 0, 0] = 1  # a void painted into frame 1
    >>> ann, frames = corrected_annotations(labels, predicted)
    >>> frames, ann[1].tolist(), int((ann[[0, 2]] == 255).all())
    ([1], [[1, 0], [0, 0]], 1)
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    if labels.shape != predicted.shape:
        raise NeuradiffError(f"the masks layer {labels.shape} no longer matches the tracked video {predicted.shape}")
    changed = np.flatnonzero((labels != predicted).reshape(len(labels), -1).any(axis=1))
    if changed.size == 0:
        raise NeuradiffError("no frame was corrected: paint void (1), solid (2) or unknown (0) on the masks first")
    ann = np.full(labels.shape, UNKNOWN, np.uint8)
    ann[changed] = three_state_of_labels(labels[changed])
    return ann, [int(k) for k in changed]


@dataclass
class Tracking:
    """A tracked video as napari layers: ``labels`` (void 1, solid 2) and ``tracks`` (``None`` without voids)."""

    result: TrackedVideo
    labels: LayerData
    tracks: LayerData | None

    @property
    def predicted(self) -> np.ndarray:
        """The labels as tracked (before any correction)."""
        return self.labels[0]


def track_layers(
    frames: np.ndarray,
    calibration: Calibration,
    model: FittedModel | FittedMethod | str | Path | None = None,
    *,
    device: str = "auto",
    progress: ProgressSink = no_progress,
) -> Tracking:
    """Track ``frames`` ``[T, H, W]`` with ``model`` (``None``: the shipped generalist) and return the layers.

    Examples
    --------
    >>> frames = np.zeros((2, 32, 32), np.float32)
    >>> frames[:, 10:20, 10:20] = 1.0  # a bright square on a dark frame
    >>> tracking = track_layers(frames, Calibration(0.5, 2.0, None, "argument"), device="cpu")
    >>> data, kwargs, kind = tracking.labels
    >>> kind, data.shape, kwargs["scale"], kwargs["metadata"]["units"]
    ('labels', (2, 32, 32), (2.0, 0.5, 0.5), ('s', 'nm', 'nm'))
    """
    video = Video(np.asarray(frames), calibration, [f"napari#{k}" for k in range(len(frames))], "")
    result = track(video, model, device=device, progress=progress)
    kwargs = _kwargs(MASKS_LAYER, calibration, opacity=0.6, colormap=dict(LABEL_COLOURS))
    labels: LayerData = (labels_of_masks(result.masks), kwargs, "labels")
    tracks = None
    if result.measurements is not None:
        tracks = _track_layer(result.measurements.voids, calibration, TRACKS_LAYER)
    return Tracking(result, labels, tracks)


@dataclass
class Retraining:
    """One round of the loop: where the annotations and the model went, the fit, and the new tracking."""

    folder: Path
    annotations_path: Path
    corrected_frames: list[int]
    fitted: FittedModel
    tracking: Tracking
    notes: list[str] = field(default_factory=list)

    @property
    def model_folder(self) -> Path:
        return self.folder / "model"


def _start(model: FittedModel | FittedMethod | str | Path | None) -> tuple[NeuraDiffModel | None, dict[str, Any]]:
    """The model a retraining starts from (``None``: from scratch) and the fit settings it was made with."""
    if model is None:
        return None, {}
    if isinstance(model, FittedModel):
        return model.summary.model, dict(model.summary.config)
    if isinstance(model, (str, Path)):
        folder = Path(model)
        loaded = load_model(folder)
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        config.pop("versions", None)  # the library versions config.json records beside the settings
        model = loaded
    else:
        config = {}
    if not isinstance(model, NeuraDiffModel):
        raise NeuradiffError(f"retraining starts from a neuradiff model, not a {model.method} model")
    return model, dict(config)


def next_round(out: str | Path) -> Path:
    """The next free ``round-N`` folder under ``out``.

    Examples
    --------
    >>> import tempfile
    >>> next_round(tempfile.mkdtemp()).name
    'round-1'
    """
    out = Path(out)
    k = 1
    while (out / f"round-{k}").exists():
        k += 1
    return out / f"round-{k}"


def retrain(
    frames: np.ndarray,
    calibration: Calibration,
    labels: np.ndarray,
    predicted: np.ndarray,
    model: FittedModel | FittedMethod | str | Path | None,
    out: str | Path,
    *,
    pretrain_iters: int = 150,
    joint_iters: int = 50,
    config: dict[str, Any] | None = None,
    device: str = "auto",
    progress: ProgressSink = no_progress,
) -> Retraining:
    """Retrain from ``model`` on the corrected frames and track again (module docstring).

    Parameters
    ----------
    frames : ndarray
        ``[T, H, W]`` the video.
    calibration : Calibration
    labels, predicted : ndarray
        ``[T, H, W]`` napari labels after and before the corrections (void 1, solid 2, unknown 0).
    model : FittedModel, fitted method, model folder or None
        The model that tracked (``None``: the generalist; the fit then starts from scratch).
    out : path
        Each round writes ``round-N/annotations.tif`` (three-state, calibrated) and ``round-N/model/`` there.
    pretrain_iters, joint_iters : int
        Iterations of the two fit phases.
    config : dict, optional
        Other fit settings (default: those the model was fitted with, from its ``config.json``).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    """
    ann, changed = corrected_annotations(labels, predicted)
    start, settings = _start(model)
    settings.update(config or {})
    settings.update(pretrain_iters=pretrain_iters, joint_iters=joint_iters)
    sim_time = None
    if start is not None:
        sim_time = start.info.get("video", {}).get("sim_time_per_frame")
    folder = prepare_output_dir(next_round(out))
    annotations_path = write_stack(folder / "annotations.tif", ann, calibration)
    video = Video(np.asarray(frames), calibration, [f"napari#{k}" for k in range(len(frames))], "")
    fitted = fit(
        video,
        annotations_path,
        config=settings,
        sim_time_per_frame=sim_time,
        init=start,
        out=folder / "model",
        device=device,
    )
    tracking = track_layers(frames, calibration, fitted, device=device, progress=progress)
    notes = [] if start is not None else ["the generalist cannot be retrained: a new model was fitted from scratch"]
    return Retraining(folder, annotations_path, changed, fitted, tracking, notes)


__all__ = [
    "LABEL_COLOURS",
    "MASKS_LAYER",
    "SOLID_LABEL",
    "TRACKS_LAYER",
    "VOID_LABEL",
    "Retraining",
    "Tracking",
    "calibration_of_layer",
    "corrected_annotations",
    "labels_of_masks",
    "next_round",
    "retrain",
    "three_state_of_labels",
    "track_layers",
]
