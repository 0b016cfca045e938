"""From files to a fitted model folder: read the video and annotations, fit, write, score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuradiff.errors import NeuradiffError
from neuradiff.training.fit import FitConfig, Trainer, TrainingData, restore_best
from neuradiff.training.outputs import FittedModel, write_fit


def read_fit_config(path: str | Path | None) -> FitConfig:
    """A :class:`FitConfig` from a JSON/TOML file (the fit section, or the whole file), or the defaults."""
    if path is None:
        return FitConfig()
    from neuradiff.data.synthetic import read_config_file, settings_from

    data = read_config_file(path)
    return settings_from(FitConfig, data.get("fit", data), "fit", path)


def _dataset_json(video_path: Path) -> dict[str, Any] | None:
    candidate = video_path.parent / "dataset.json"
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return None


def load_training_data(video_path: str | Path, annotations_path: str | Path, *,
                       sim_time_per_frame: float | None = None, nm_per_px: float | None = None,
                       frame_interval_s: float | None = None) -> tuple[TrainingData, dict[str, Any]]:
    """Read a video and its three-state annotations; the simulation time per frame comes from the argument,
    a ``dataset.json`` beside the video (synthetic data), or 1.0."""
    from neuradiff.data.annotations import read_annotations
    from neuradiff.data.io import read_video

    video = read_video(video_path, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    apath = Path(annotations_path)
    if apath.suffix.lower() in (".tif", ".tiff") and apath.is_file():
        import tifffile

        try:
            with tifffile.TiffFile(apath) as tif:
                n_ann = len(tif.series[0].shape) == 3 and tif.series[0].shape[0] or 1
        except Exception:  # noqa: BLE001 - reported by the reader below with its own message
            n_ann = None
        if n_ann is not None and n_ann != video.frames.shape[0]:
            raise NeuradiffError(f"{apath} holds {n_ann} annotation frames but the video has "
                                 f"{video.frames.shape[0]}; a three-state stack needs one frame per video frame")
    ann = read_annotations(annotations_path, video=video)
    meta = _dataset_json(Path(video_path))
    source = "argument"
    if sim_time_per_frame is None and meta is not None:
        sim_time_per_frame = float(meta["steps_per_frame"]) * float(meta["dt"])
        source = "dataset.json"
    if sim_time_per_frame is None:
        sim_time_per_frame, source = 1.0, "default"
    frames = video.frames.astype(np.float32)
    cal = video.calibration
    data = TrainingData(frames, np.asarray(ann, dtype=np.uint8), cal.nm_per_px, cal.frame_interval_s,
                        sim_time_per_frame)
    info = {"path": str(video_path), "shape": list(frames.shape), "dtype": str(video.frames.dtype),
            "nm_per_px": cal.nm_per_px, "frame_interval_s": cal.frame_interval_s,
            "calibration_source": cal.source, "sim_time_per_frame": sim_time_per_frame,
            "sim_time_per_frame_source": source, "annotated_frames": data.annotated_frames().tolist()}
    return data, info


def run_fit(video_path: str | Path, annotations_path: str | Path, out: Path, *, config: FitConfig,
            truth_path: str | Path | None = None, resume: bool = False,
            progress: Callable[[str, int, int, dict[str, float]], None] | None = None,
            sim_time_per_frame: float | None = None) -> dict[str, Any]:
    """Fit and write the model folder ``out``; returns a summary (and the metrics when truth is given)."""
    from neuradiff.analysis.evaluation import evaluate_model, load_truth
    from neuradiff.data.files import prepare_output_dir, write_json

    config.validate()
    data, video_info = load_training_data(video_path, annotations_path, sim_time_per_frame=sim_time_per_frame)
    truth = load_truth(truth_path) if truth_path is not None else None
    if truth is not None and truth["eta"].shape != data.frames.shape:
        raise NeuradiffError(f"truth {truth['eta'].shape} and video {data.frames.shape} differ in size or length")
    out = prepare_output_dir(out)
    trainer = Trainer(data, config, checkpoint_path=out / "checkpoint.pt", progress=progress)
    state = trainer.run(resume=resume)
    net, params = restore_best(state)
    physics = {"model": "void", "discretisation": config.discretisation, "integrator": config.integrator,
               "dt": config.dt, "sim_time_per_frame": data.sim_time_per_frame,
               "steps_per_frame": max(1, round(data.sim_time_per_frame / config.dt))}
    write_fit(out, net=net, params=params, initial=config.initial_parameters(), config=config.to_dict(),
              history=state.history, video_info=video_info, physics=physics)
    summary: dict[str, Any] = {"train_frames": trainer.train_frames.tolist(), "val_frames": trainer.val_frames.tolist(),
                               "best": {k: state.best[k] for k in ("val_loss", "phase", "iteration")}}
    if truth is not None:
        model = FittedModel(net, params(), {"physics": physics, "learned": list(params.learned)})
        metrics = evaluate_model(model, data.frames, data.annotations, truth, trainer.train_frames,
                                 initial_params=config.initial_parameters())
        metrics["validation"] = summary["best"]
        write_json(out / "metrics.json", metrics)
        summary["metrics"] = metrics
    return summary
