"""Scores of a fitted method against a synthetic dataset's truth: tracking, parameters and forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import has_annotation
from neuradiff.measure.drift import estimate_drift
from neuradiff.measure.metrics import dice, iou, pixel_accuracy, segmentation_report
from neuradiff.methods import FittedMethod, Forecast, fitted_masks
from neuradiff.synth.render import shift_like


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """A dataset's ``truth.npz`` (or the dataset folder holding it) as a dict of arrays."""
    path = Path(path)
    if path.is_dir():
        path = path / "truth.npz"
    if not path.is_file():
        raise NeuradiffError(f"truth file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            truth = {k: z[k] for k in z.files}
    except Exception:
        raise NeuradiffError(f"truth file {path} is corrupt or not an NPZ file") from None
    if "eta" not in truth:
        raise NeuradiffError(f"truth file {path} has no 'eta' array")
    return truth


def tracking_scores(eta: np.ndarray, truth_eta: np.ndarray, frames: np.ndarray) -> dict[str, Any]:
    """Overall and per-frame pixel accuracy, IoU and Dice of eta ≥ 0.5 on ``frames``."""
    pred, true = eta[frames] >= 0.5, truth_eta[frames] >= 0.5
    per_frame = [
        {"frame": int(k), "pixel_accuracy": pixel_accuracy(p, t), "iou": iou(p, t), "dice": dice(p, t)}
        for k, p, t in zip(frames, pred, true)
    ]
    return {**segmentation_report(pred, true), "frames": [int(k) for k in frames], "per_frame": per_frame}


def forecast_scores(
    model: FittedMethod,
    frames: np.ndarray,
    truth_eta: np.ndarray,
    *,
    start: int = 0,
    annotation: np.ndarray | None = None,
    drift_px: np.ndarray | None = None,
    truth_drift_px: np.ndarray | None = None,
) -> tuple[dict[str, Any], Forecast]:
    """Forecast from ``start`` to the last frame and score it with :func:`score_forecast` (``drift_px`` and
    ``truth_drift_px`` ``[T, 2]`` for the whole video)."""
    n = frames.shape[0] - 1 - start
    fc = model.forecast(frames, start, n, annotation=annotation)
    return score_forecast(
        fc.eta,
        truth_eta[start:],
        drift_px=None if drift_px is None else drift_px[start:],
        truth_drift_px=None if truth_drift_px is None else truth_drift_px[start:],
        start=start,
    ), fc


def recording_drift(frames: np.ndarray) -> np.ndarray:
    """The stage drift ``[T, 2]`` (y, x px, frame 0 at zero) of a recording as ``neuradiff track --register``
    estimates it (:func:`~neuradiff.measure.drift.estimate_drift`): what scoring a forecast may use, since a real
    recording does not come with its drift."""
    return estimate_drift(np.asarray(frames, dtype=np.float32))


def score_forecast(
    eta: np.ndarray,
    truth_eta: np.ndarray,
    *,
    drift_px: np.ndarray | None = None,
    truth_drift_px: np.ndarray | None = None,
    start: int = 0,
) -> dict[str, Any]:
    """Void area of a forecast ``eta`` ``[n, H, W]`` against the truth ``[n, H, W]`` at every frame, and the IoU
    at the last frame.

    With the stage drift ``drift_px`` ``[n, 2]`` (y, x px; estimated from the recording,
    :func:`recording_drift`) the forecast, which lives in the coordinates of its first frame, is moved with the
    specimen first (physics cannot predict the stage); ``last_frame_iou_without_drift`` is the comparison without
    that shift. With the simulator's known drift ``truth_drift_px`` (a reference a real recording does not have)
    also ``last_frame_iou_truth_drift`` (the forecast moved by it) and ``drift_error_rms_px`` (how far the
    estimate is from it)."""
    if eta.shape != truth_eta.shape:
        raise ValueError(f"forecast {eta.shape} and truth {truth_eta.shape} differ in shape")
    unshifted_iou = iou(eta[-1] >= 0.5, truth_eta[-1] >= 0.5)
    reference: dict[str, Any] = {}
    if truth_drift_px is not None:
        d = np.asarray(truth_drift_px, dtype=np.float64)
        moved = shift_like(eta[-1:].astype(np.float32), (d - d[0])[-1:])
        reference["last_frame_iou_truth_drift"] = iou(moved[0] >= 0.5, truth_eta[-1] >= 0.5)
        if drift_px is not None:
            e = np.asarray(drift_px, dtype=np.float64)
            err = (e - e[0]) - (d - d[0])
            reference["drift_error_rms_px"] = float(np.sqrt((err**2).sum(axis=1).mean()))
    if drift_px is not None:
        d = np.asarray(drift_px, dtype=np.float64)
        eta = shift_like(eta.astype(np.float32), d - d[0])
    area_f = (eta >= 0.5).sum(axis=(1, 2)).astype(float)
    area_t = (truth_eta >= 0.5).sum(axis=(1, 2)).astype(float)
    rel = np.abs(area_f - area_t) / np.maximum(area_t, 1.0)
    return {
        "start_frame": start,
        "max_relative_area_error": float(rel.max()),
        "mean_relative_area_error": float(rel.mean()),
        "last_frame_iou": iou(eta[-1] >= 0.5, truth_eta[-1] >= 0.5),
        "last_frame_iou_without_drift": unshifted_iou,
        "drift_corrected": drift_px is not None,
        **reference,
        "area_forecast_px": area_f.tolist(),
        "area_truth_px": area_t.tolist(),
    }


def parameter_errors(learned: dict[str, float], truth: dict[str, np.ndarray], names: list[str]) -> dict[str, Any]:
    """Learned vs true values and relative errors of the learned parameters."""
    if "param_names" not in truth:
        return {}
    true = dict(zip([str(n) for n in truth["param_names"]], truth["param_values"].tolist()))
    return {
        n: {"learned": learned[n], "true": true[n], "relative_error": abs(learned[n] - true[n]) / abs(true[n])}
        for n in names
        if n in true and true[n] != 0
    }


def evaluate_model(
    model: FittedMethod,
    frames: np.ndarray,
    annotations: np.ndarray,
    truth: dict[str, np.ndarray],
    train_frames: np.ndarray,
    *,
    learned: list[str] | None = None,
    baseline: FittedMethod | None = None,
) -> dict[str, Any]:
    """``metrics.json``: tracking on frames not used for training (eta ≥ 0.5, and under ``"masks"`` the masks
    ``track`` writes, :func:`~neuradiff.methods.fitted_masks`), parameter errors and the forecast from frame 0
    (moved with the stage drift estimated from the video, :func:`recording_drift`; the truth's drift is only a
    reference figure) and, with ``baseline`` — e.g. the same model with the starting guess of the parameters — the
    same forecast by it: what learning the physics bought."""
    if truth["eta"].shape != frames.shape:
        raise NeuradiffError(f"truth {truth['eta'].shape} and video {frames.shape} differ in size or length")
    eta = model.recognise(frames)[:, 2]
    held = np.setdiff1d(np.arange(frames.shape[0]), train_frames)
    kwargs = {
        "start": 0,
        "annotation": annotations[0] if has_annotation(annotations[0]) else None,
        "drift_px": recording_drift(frames),
        "truth_drift_px": truth.get("drift_px"),
    }
    fc, _ = forecast_scores(model, frames, truth["eta"], **kwargs)
    extra = {}
    if baseline is not None:
        guess, _ = forecast_scores(baseline, frames, truth["eta"], **kwargs)
        extra["forecast_initial_guess"] = {k: v for k, v in guess.items() if not k.startswith("area_")}
    params = model.parameters()
    held_out = tracking_scores(eta, truth["eta"], held)
    # what ``track`` writes: eta ≥ 0.5 without the regions fainter than the fit's annotated voids
    held_out["masks"] = segmentation_report(fitted_masks(model, eta[held], frames[held]), truth["eta"][held] >= 0.5)
    return {
        "held_out_tracking": held_out,
        "all_frames_tracking": {
            k: v for k, v in tracking_scores(eta, truth["eta"], np.arange(frames.shape[0])).items() if k != "per_frame"
        },
        "parameters": {} if params is None else parameter_errors(params.as_floats(), truth, list(learned or [])),
        "forecast": fc,
        **extra,
    }
