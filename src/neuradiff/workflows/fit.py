"""``neuradiff fit``: read a video and its annotations, fit NeuraDiff, write the model folder, score it against a
synthetic dataset's truth when one is given."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff.core.checks import positive
from neuradiff.core.config import read_config_file, settings_from
from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import check_output_dir, output_dir, prepare_output_dir, write_json
from neuradiff.core.labels import UNKNOWN, VOID, has_annotation
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.evaluation.truth import evaluate_model, load_truth
from neuradiff.io.annotations import LabelScheme, read_annotations
from neuradiff.io.video import Video, read_video
from neuradiff.measure.metrics import object_f1
from neuradiff.methods import NeuraDiffModel, fit_neuradiff
from neuradiff.nets.contrast import VISIBLE_CONTRAST, contrast_significance
from neuradiff.synth.datasets import time_per_frame
from neuradiff.training import FitConfig, Progress, TrainingData
from neuradiff.training.distributed import check_batch, launched, process_group


def read_fit_config(path: str | Path | None) -> FitConfig:
    """A :class:`FitConfig` from a JSON/TOML file (its ``fit`` table, or the whole file), or the defaults."""
    if path is None:
        return FitConfig()
    return settings_from(FitConfig, read_config_file(path, section="fit"), "fit", path)


def sim_time_beside(video_path: str | Path) -> float | None:
    """The simulation time per frame of a synthetic video, from the ``dataset.json`` beside it (else ``None``)."""
    meta = _dataset_json(Path(video_path))
    return None if meta is None else time_per_frame(meta)


def _dataset_json(video_path: Path) -> dict[str, Any] | None:
    candidate = video_path.parent / "dataset.json"
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return None


def prepare_training_data(
    video: Video,
    annotations: np.ndarray,
    *,
    sim_time_per_frame: float | None = None,
    sim_time_source: str = "argument",
) -> tuple[TrainingData, dict[str, Any]]:
    """A video in memory and its three-state annotations ``[T, H, W]`` as :class:`TrainingData` (simulation
    time per frame: the argument, else 1.0), and the description of the video written to ``model.json``."""
    source = sim_time_source
    if sim_time_per_frame is None:
        sim_time_per_frame, source = 1.0, "default"
    frames = video.frames.astype(np.float32)
    cal = video.calibration
    times = cal.times_s(frames.shape[0]) if cal.frame_times_s is not None else None
    uneven = times is not None and len(times) > 2 and not np.allclose(np.diff(times), np.diff(times)[0], rtol=1e-6)
    data = TrainingData(
        frames,
        np.asarray(annotations, dtype=np.uint8),
        cal.nm_per_px,
        cal.frame_interval_s,
        sim_time_per_frame,
        frame_times_s=times if uneven else None,
    )
    info = {
        "path": video.path,
        "shape": list(frames.shape),
        "dtype": str(video.frames.dtype),
        "nm_per_px": cal.nm_per_px,
        "frame_interval_s": cal.frame_interval_s,
        "calibration_source": cal.source,
        "sim_time_per_frame": sim_time_per_frame,
        "sim_time_per_frame_source": source,
        "frame_times_s": None if data.frame_times_s is None else data.frame_times_s.tolist(),
        "annotated_frames": data.annotated_frames().tolist(),
    }
    return data, info


def load_training_data(
    video_path: str | Path,
    annotations_path: str | Path,
    *,
    sim_time_per_frame: float | None = None,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    labels: LabelScheme | None = None,
    frame_times: str | Path | None = None,
) -> tuple[TrainingData, dict[str, Any]]:
    """Read a video and its three-state annotations (``labels``: how label images are read).

    The simulation time per frame comes from the argument, a ``dataset.json`` beside the video (synthetic
    data), or 1.0; the second value returned describes the video for ``model.json``.
    """
    video = read_video(video_path, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times)
    ann = read_annotations(annotations_path, video=video, full_stack=True, labels=labels)
    everything_void = np.flatnonzero((np.asarray(ann) == 1).all(axis=(-2, -1)))
    if everything_void.size:
        raise NeuradiffError(
            f"{annotations_path}: the annotation of frame {int(everything_void[0])} marks every pixel as void; "
            "mark the solid (0) or leave it unknown (255)"
        )
    meta = _dataset_json(Path(video_path))
    source = "argument"
    if sim_time_per_frame is None and meta is not None:
        sim_time_per_frame = time_per_frame(meta)
        source = "dataset.json"
    return prepare_training_data(video, ann, sim_time_per_frame=sim_time_per_frame, sim_time_source=source)


@dataclass
class FitSummary:
    """What a fit did: the model, the frames it trained and validated on, the kept iteration, the history, the
    settings and, with a truth, the metrics written to ``metrics.json``."""

    model: NeuraDiffModel
    train_frames: list[int]
    val_frames: list[int]
    kept: dict[str, Any]
    metrics: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    #: what ``provenance.json`` records (inputs with their hashes, settings, calibration); set by :func:`run_fit`
    provenance: dict[str, Any] | None = None


def fit_training_data(
    data: TrainingData,
    config: FitConfig,
    *,
    video_info: dict[str, Any] | None = None,
    truth: dict[str, np.ndarray] | None = None,
    checkpoint_path: Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    device: str | torch.device | None = "cpu",
    init: NeuraDiffModel | None = None,
) -> FitSummary:
    """Fit NeuraDiff to a video in memory and, with a synthetic ``truth``, score it (nothing is written but the
    checkpoint). The model comes back on the CPU. ``init``: retrain, starting from this model's net and
    parameters."""
    config.validate()
    config = config.for_annotated_frames(data.annotated_frames().size)
    dev = resolve_device(device)
    if truth is not None and truth["eta"].shape != data.frames.shape:
        raise NeuradiffError(f"truth {truth['eta'].shape} and video {data.frames.shape} differ in size or length")
    fit = fit_neuradiff(
        data, config, checkpoint_path=checkpoint_path, resume=resume, progress=progress, device=dev, init=init
    )
    model = fit.model
    model.net.to("cpu")
    model.info["video"] = dict(video_info or {})
    model.info["annotated_voids"] = annotated_voids_found(model, data.frames, data.annotations)
    files = ["model.pt", "model.json", "params.json", "history.csv", "config.json"]
    summary = FitSummary(
        model,
        fit.train_frames.tolist(),
        fit.val_frames.tolist(),
        fit.kept,
        files=files,
        history=fit.history,
        config=config.to_dict(),
    )
    if truth is not None:
        metrics = evaluate_model(
            model,
            data.frames,
            data.annotations,
            truth,
            fit.train_frames,
            learned=model.info["learned"],
            baseline=model.with_parameters(config.initial_parameters()),
        )
        metrics["validation"] = fit.kept
        metrics.update(uncertainty_scores(model, data, truth))
        summary.metrics = metrics
        summary.files.append("metrics.json")
    return summary


def write_fit(out: str | Path, summary: FitSummary) -> Path:
    """Write the model folder of a fit: ``model.pt``, ``model.json``, ``params.json``, ``history.csv``,
    ``config.json``, when the fit was scored ``metrics.json``, and with a provenance record ``provenance.json``."""
    out = prepare_output_dir(out)
    summary.model.save(out, history=summary.history, config=summary.config)
    if summary.metrics is not None:
        write_json(out / "metrics.json", summary.metrics)
    if summary.provenance is not None:
        write_provenance(out, summary.provenance)
        if "provenance.json" not in summary.files:
            summary.files.append("provenance.json")
    return out


def annotated_voids_found(model: NeuraDiffModel, frames: np.ndarray, annotations: Any) -> dict[str, int]:
    """How many of the annotated voids the fitted net reproduces on their own frames: ``{"found", "annotated",
    "clear_found", "clear"}``, the voids (8-connected regions marked 1) matched one-to-one at IoU ≥ 0.5 by the net's
    eta ≥ 0.5 within the annotated (known) pixels; ``clear`` counts the annotated voids that stand out of their
    frame's noise (contrast-to-noise statistic on their annotated outline ≥
    :data:`~neuradiff.nets.contrast.VISIBLE_CONTRAST`, :func:`~neuradiff.nets.contrast.contrast_significance`),
    ``clear_found`` those of them reproduced. A check that needs no truth: a net that misses its own clear training
    voids (too few iterations, voids among clutter) says so here; a void fainter than the noise is one no net can be
    sure of.

    Examples
    --------
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> from neuradiff.physics import Simulator, VoidParameters
    >>> model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), VoidParameters(), Simulator())
    >>> frames = np.random.default_rng(0).normal(0.0, 1.0, (2, 16, 16)).astype(np.float32)
    >>> frames[0, 4:9, 4:9] += 20.0
    >>> ann = np.full((2, 16, 16), 255, np.uint8); ann[0] = 0; ann[0, 4:9, 4:9] = 1
    >>> seen = annotated_voids_found(model, frames, ann)
    >>> seen["annotated"], seen["clear"]
    (1, 1)
    """
    counts = {"found": 0, "annotated": 0, "clear_found": 0, "clear": 0}
    for k, ann in enumerate(annotations):
        if not has_annotation(ann):
            continue
        a = np.asarray(ann)
        void = a == VOID
        eta = model.recognise(np.asarray(frames[k : k + 1]), first_index=k, eta_only=True)[0]
        found = (eta >= 0.5) & (a != UNKNOWN)
        regions, t = contrast_significance(np.asarray(frames[k], np.float64), void)
        clear = np.isin(regions, 1 + np.flatnonzero(t >= VISIBLE_CONTRAST))
        for name, truth in (("", void), ("clear", clear)):
            r = object_f1(found, truth)
            counts[f"{name}_found" if name else "found"] += round(r["recall"] * r["n_true"])
            counts[name or "annotated"] += int(r["n_true"])
    return counts


def uncertainty_scores(model: NeuraDiffModel, data: TrainingData, truth: dict[str, np.ndarray]) -> dict[str, Any]:
    """Against a synthetic truth: each determined (and each bounded) combination's true value and whether its 90 %
    interval holds it,
    and the fraction of frames whose true void area lies in the forecast's 90 % band (from frame 0)."""
    out: dict[str, Any] = {}
    ident = model.identifiable
    if ident is None or "param_names" not in truth:
        return out
    true = dict(zip([str(n) for n in truth["param_names"]], truth["param_values"].tolist()))

    def scored(combos: list) -> list[dict[str, Any]]:
        rows = []
        for c in combos:
            value = float(np.exp(sum(e * np.log(true[n]) for n, e in c.exponents.items())))
            rows.append(
                {
                    "combination": c.label,
                    "fitted": c.value,
                    "true": value,
                    "relative_error": abs(c.value - value) / value,
                    "interval_90": list(c.interval90),
                    "covered": bool(c.interval90[0] <= value <= c.interval90[1]),
                }
            )
        return rows

    out["identifiable_combinations"] = scored(ident.determined)
    out["bounded_combinations"] = scored(ident.bounded)
    if model.posterior is not None:
        ann = data.annotations[0] if has_annotation(data.annotations[0]) else None
        band = model.forecast_band(data.frames, 0, data.frames.shape[0] - 1, annotation=ann)
        true_area = np.asarray(truth.get("void_area_px", (truth["eta"] >= 0.5).sum(axis=(1, 2))), dtype=float)
        out["forecast_band"] = {
            "fraction_of_frames_in_band": float(band.contains(true_area).mean()),
            "area_px2": band.area.tolist(),
            "area_lo_px2": band.area_lo.tolist(),
            "area_hi_px2": band.area_hi.tolist(),
            "true_area_px2": true_area.tolist(),
        }
    return out


def run_fit(
    video_path: str | Path,
    annotations_path: str | Path,
    out: str | Path,
    *,
    config: FitConfig,
    truth_path: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    sim_time_per_frame: float | None = None,
    device: str | torch.device | None = "cpu",
    labels: LabelScheme | None = None,
    frame_times: str | Path | None = None,
) -> FitSummary:
    """Fit NeuraDiff and write the model folder ``out`` (``model.pt``, ``model.json``, ``params.json``,
    ``history.csv``, ``config.json`` and, with ``truth_path``, ``metrics.json``); ``checkpoint.pt`` is written
    there as the fit goes (``resume`` continues from it). ``device``: where to train; ``labels``: how label
    images among the annotations are read (instances, or classes naming the void class).

    Started by ``torchrun`` (``WORLD_SIZE`` > 1), the processes train the fit together
    (:mod:`neuradiff.training.distributed`; each on GPU ``LOCAL_RANK`` when training on CUDA); only the first
    writes ``out``, the others return their (identical) summary without metrics.
    """
    config.validate()
    positive("--sim-time-per-frame", sim_time_per_frame)
    dev = resolve_device(device)
    processes = launched()
    if processes is not None:
        check_batch(config.batch, processes)
    if sim_time_per_frame is None:
        sim_time_per_frame = config.sim_time_per_frame
    check_output_dir(out)
    data, video_info = load_training_data(
        video_path, annotations_path, sim_time_per_frame=sim_time_per_frame, labels=labels, frame_times=frame_times
    )
    n_frames, height, width = data.frames.shape
    config.check_resources(n_frames, height, width, data.sim_time_per_frame)
    truth = load_truth(truth_path) if truth_path is not None else None
    if truth is not None and truth["eta"].shape != data.frames.shape:
        raise NeuradiffError(f"truth {truth['eta'].shape} and video {data.frames.shape} differ in size or length")
    # a run killed before its first checkpoint resumes from the start: the same result as an uninterrupted run
    resume = resume and (Path(out) / "checkpoint.pt").is_file()
    with contextlib.ExitStack() as stack:
        processes, dev = stack.enter_context(process_group(dev))
        if not processes.main:
            checkpoint = Path(out) / "checkpoint.pt"
            return fit_training_data(
                data, config, video_info=video_info, checkpoint_path=checkpoint, resume=resume, device=dev
            )
        out = stack.enter_context(output_dir(out))
        summary = fit_training_data(
            data,
            config,
            video_info=video_info,
            truth=truth,
            checkpoint_path=out / "checkpoint.pt",
            resume=resume,
            progress=progress,
            device=dev,
        )
        params = summary.model.parameters()
        summary.provenance = provenance(
            "fit",
            inputs={
                "video": video_path,
                "annotations": annotations_path,
                "truth": truth_path,
                "frame_times": frame_times,
            },
            model={"method": summary.model.method, "parameters": None if params is None else params.as_floats()},
            settings={
                "config": config.to_dict(),
                "resume": resume,
                "sim_time_per_frame": data.sim_time_per_frame,
                "labels": None if labels is None else asdict(labels),
            },
            calibration={k: video_info[k] for k in ("nm_per_px", "frame_interval_s")}
            | {"source": video_info["calibration_source"]},
        )
        write_fit(out, summary)
    return summary
