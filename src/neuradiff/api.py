"""The Python API: simulate → fit → track → measure → forecast on NumPy arrays or files, in a notebook or a script.

Every function takes arrays (``[T, H, W]`` frames, three-state masks: 0 solid, 1 void, 255 unknown) or paths, and
returns a result object that holds the outputs in memory (arrays and pandas DataFrames, calibrated in nm and s
when the data give a calibration) and writes exactly what the matching command writes with ``.save(folder)``.
The commands and these functions share the same workflow functions (:mod:`neuradiff.workflows`).

Void tables are trackpy-compatible: :attr:`TrackedVideo.trajectories` has ``frame``, ``particle``, ``x`` and ``y``
(px) first, so ``trackpy.compute_drift`` and ``trackpy.emsd`` run on it as it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd
import tifffile
import torch

from neuradiff.core.config import settings_from
from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import prepare_output_dir, staged_output
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.core.provenance import provenance, write_provenance
from neuradiff.evaluation.truth import load_truth
from neuradiff.io.annotations import LabelScheme, read_annotations
from neuradiff.io.video import Calibration, Video, read_video
from neuradiff.measure.voids import Measurements, measure_masks
from neuradiff.methods import FittedMethod, Forecast, NeuraDiffModel, load_model
from neuradiff.methods.posterior import ForecastBand
from neuradiff.nets.generalist import Generalist, load_generalist
from neuradiff.report.measurements import write_measurements
from neuradiff.synth.datasets import Dataset, DatasetConfig, read_dataset, time_per_frame
from neuradiff.training import FitConfig
from neuradiff.workflows.fit import (
    FitSummary,
    fit_training_data,
    prepare_training_data,
    read_fit_config,
    sim_time_beside,
    write_fit,
)
from neuradiff.workflows.forecast import forecast_frames, forecast_intervals, forecast_table, write_forecast
from neuradiff.workflows.measure import check_measure_options
from neuradiff.workflows.simulate import simulate_dataset, write_dataset_folder
from neuradiff.workflows.track import auto_void_px, recognise_masks, with_min_contrast, write_track

PathLike = Union[str, Path]
Device = Union[str, torch.device, None]


# --------------------------------------------------------------------------- inputs


def _frames(array: Any, what: str) -> np.ndarray:
    """``[T, H, W]`` frames of a NumPy array (``[H, W]`` is one frame); one clear error for anything else."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise NeuradiffError(f"{what} must be [frames, H, W] (or one [H, W] frame), got shape {a.shape}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "uif":
        raise NeuradiffError(f"{what} has unsupported pixel type {a.dtype}")
    if a.dtype.kind == "f" and not bool(np.isfinite(a).all()):
        raise NeuradiffError(f"{what} holds NaN or infinite values")
    return a


def _calibration(nm_per_px: float | None, frame_interval_s: float | None) -> Calibration:
    for name, value in (("nm_per_px", nm_per_px), ("frame_interval_s", frame_interval_s)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise NeuradiffError(f"{name} must be a positive number, got {value}")
    given = nm_per_px is not None or frame_interval_s is not None
    return Calibration(nm_per_px, frame_interval_s, None, "argument" if given else "none")


def _video(
    video: Any, nm_per_px: float | None = None, frame_interval_s: float | None = None, what: str = "the video"
) -> Video:
    """A :class:`Video` from a path, an array, a :class:`Video` or a :class:`SimulatedVideo`; the calibration
    arguments win over the recording's."""
    if isinstance(video, SimulatedVideo):
        video = video.video
    if isinstance(video, (str, os.PathLike)):
        return read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s)
    if isinstance(video, Video):
        if nm_per_px is None and frame_interval_s is None:
            return video
        cal = video.calibration
        given = _calibration(nm_per_px, frame_interval_s)
        merged = Calibration(
            given.nm_per_px if nm_per_px is not None else cal.nm_per_px,
            given.frame_interval_s if frame_interval_s is not None else cal.frame_interval_s,
            None if frame_interval_s is not None else cal.frame_times_s,
            "argument" if cal.source == "none" else f"{cal.source} + argument",
        )
        return replace(video, calibration=merged)
    frames = _frames(video, what)
    return Video(frames, _calibration(nm_per_px, frame_interval_s), [f"array#{k}" for k in range(len(frames))], "")


def _model(model: Any) -> FittedMethod:
    """A fitted method from a model folder, a :class:`FittedModel` or a fitted method."""
    if isinstance(model, FittedModel):
        return model.model
    if isinstance(model, (str, os.PathLike)):
        return load_model(Path(model))
    if hasattr(model, "recognise") and hasattr(model, "forecast"):
        return model
    raise NeuradiffError(f"model must be a model folder or a fitted model, got {type(model).__name__}")


def _masks(masks: Any, video: Video | None) -> np.ndarray:
    """Three-state masks ``[T, H, W]`` from a path (any annotation format), an array or a :class:`TrackedVideo`."""
    if isinstance(masks, TrackedVideo):
        return masks.masks
    if isinstance(masks, (str, os.PathLike)):
        return read_annotations(masks, video=video)
    m = np.asarray(masks)
    if m.dtype == bool:
        return _frames(m, "the masks").astype(np.uint8)
    return _frames(m, "the masks")


def _fit_config(config: FitConfig | Mapping[str, Any] | PathLike | None) -> FitConfig:
    if config is None or isinstance(config, (str, os.PathLike)):
        return read_fit_config(config)
    if isinstance(config, FitConfig):
        config.validate()
        return config
    return settings_from(FitConfig, dict(config), "fit")


# --------------------------------------------------------------------------- results


class _VoidTables:
    """The void tables of a :class:`~neuradiff.measure.voids.Measurements` as properties."""

    measurements: Measurements | None

    def _meas(self) -> Measurements:
        if self.measurements is None:
            raise NeuradiffError("no measurements: the voids were not measured (measure=False)")
        return self.measurements

    @property
    def voids(self) -> pd.DataFrame:
        """One row per void per frame, as in ``voids.csv`` (``*_nm``, ``time_s`` columns when calibrated)."""
        return self._meas().voids

    @property
    def frames(self) -> pd.DataFrame:
        """One row per frame: count, number density, mean diameter, area fraction (``frames.csv``)."""
        return self._meas().frames

    @property
    def tracks(self) -> pd.DataFrame:
        """One row per track: lifetime, growth rate, drift (``tracks.csv``)."""
        return self._meas().tracks

    @property
    def units(self) -> dict[str, str]:
        """Column name → unit."""
        return self._meas().units

    @property
    def trajectories(self) -> pd.DataFrame:
        """The void table in trackpy's layout: ``frame``, ``particle`` (the track id), ``x``, ``y`` (centroid in
        px), then every column of :attr:`voids` (``x_nm``, ``y_nm``, ``area_nm2``, ``eq_diameter_nm``, ``time_s``,
        ...). ``trackpy.compute_drift`` and ``trackpy.emsd`` take it as it is (``mpp`` = nm per px / 1000)."""
        v = self.voids
        lead = pd.DataFrame(
            {
                "frame": v["frame"].to_numpy(int),
                "particle": v["track_id"].to_numpy(int),
                "x": v["x_px"].to_numpy(float),
                "y": v["y_px"].to_numpy(float),
            },
            index=v.index,
        )
        return pd.concat([lead, v.drop(columns=["frame"])], axis=1)


@dataclass
class SimulatedVideo:
    """A synthetic in-situ TEM video whose physics is known (:func:`simulate`).

    Attributes
    ----------
    dataset : Dataset
        Frames, annotations, truth and metadata (:class:`neuradiff.synth.datasets.Dataset`).
    """

    dataset: Dataset

    @property
    def config(self) -> DatasetConfig:
        return self.dataset.config

    @property
    def calibration(self) -> Calibration:
        """nm per px and s per frame of the video."""
        c = self.dataset.config
        return Calibration(c.nm_per_px, c.frame_interval_s, None, "synthetic")

    @property
    def video(self) -> Video:
        """The rendered frames ``[T, H, W]`` (uint8) with their calibration."""
        n = len(self.dataset.video)
        return Video(self.dataset.video, self.calibration, [f"synthetic#{k}" for k in range(n)], "")

    @property
    def annotations(self) -> np.ndarray:
        """Three-state annotations ``[T, H, W]``: 0 solid, 1 void, 255 unknown (most frames)."""
        return self.dataset.annotations

    @property
    def truth(self) -> dict[str, np.ndarray]:
        """The true fields (``c_v``, ``c_i``, ``eta`` ``[T, H, W]``), drift and parameters."""
        return self.dataset.truth

    @property
    def sim_time_per_frame(self) -> float:
        """Simulation time units between two frames."""
        return time_per_frame(self.dataset.metadata)

    @property
    def table(self) -> pd.DataFrame:
        """The true void area of every frame: ``frame``, ``time_s``, ``void_area_px``, ``void_area_nm2``."""
        c = self.dataset.config
        area = np.asarray(self.truth["void_area_px"], dtype=np.int64)
        return pd.DataFrame(
            {
                "frame": np.arange(len(area)),
                "time_s": np.arange(len(area)) * c.frame_interval_s,
                "void_area_px": area,
                "void_area_nm2": area * c.nm_per_px**2,
            }
        )

    def save(self, folder: PathLike) -> Path:
        """Write what ``neuradiff simulate`` writes: ``video.tif``, ``annotations.tif``, ``truth.npz``,
        ``dataset.json``, ``contact_sheet.png``. Returns the folder."""
        return write_dataset_folder(folder, self.dataset, record=_api_provenance("simulate"))


@dataclass
class FittedModel:
    """A NeuraDiff fit (:func:`fit`): the model (recognition net + learned physics) and how it was trained.

    Attributes
    ----------
    summary : FitSummary
        The model, the training and validation frames, the kept iteration, the history, the settings and, when
        scored against a synthetic truth, the metrics.
    """

    summary: FitSummary

    @property
    def model(self) -> FittedMethod:
        """The fitted model (pass it to :func:`track` or :func:`forecast`)."""
        return self.summary.model

    @property
    def parameters(self) -> pd.DataFrame:
        """One row per physical parameter (index: name): ``value``, ``initial``, ``unit``, ``learned``,
        ``bounds``, ``description`` (as in ``params.json``)."""
        table = self.summary.model.info.get("param_table") or {}
        return pd.DataFrame.from_dict(table, orient="index")

    @property
    def history(self) -> pd.DataFrame:
        """One row per training iteration: phase, loss terms, learned parameters (``history.csv``)."""
        return pd.DataFrame(self.summary.history)

    @property
    def metrics(self) -> dict[str, Any] | None:
        """Scores against a synthetic truth (``metrics.json``), when ``truth`` was given."""
        return self.summary.metrics

    def save(self, folder: PathLike) -> Path:
        """Write the model folder ``neuradiff fit`` writes: ``model.pt``, ``model.json``, ``params.json``,
        ``history.csv``, ``config.json`` and, when scored, ``metrics.json``. Returns the folder."""
        if self.summary.provenance is None:
            self.summary.provenance = _api_provenance("fit", settings={"config": self.summary.config})
        return write_fit(folder, self.summary)


@dataclass
class TrackedVideo(_VoidTables):
    """Recognised eta, void masks and void measurements of every frame of a video (:func:`track`).

    Attributes
    ----------
    eta : ndarray
        ``[T, H, W]`` float32 recognised void order parameter.
    masks : ndarray
        ``[T, H, W]`` uint8, three-state: 1 void, 0 solid, 255 unknown where a frame is blank (a padding band, a
        burned-in scale bar or label: not specimen, left out of number densities and area fractions).
    measurements : Measurements or None
        The void tables (``None`` with ``measure=False``).
    video : Video or None
        The tracked recording and its calibration.
    seconds : float
        Time recognition took.
    """

    eta: np.ndarray
    masks: np.ndarray
    measurements: Measurements | None
    video: Video | None = None
    seconds: float = 0.0

    def save(self, folder: PathLike) -> Path:
        """Write what ``neuradiff track`` writes: ``eta.tif``, ``masks.tif``, the masks as COCO
        (``masks_coco.json``) and as an ImageJ ROI set (``masks_rois.zip``), and the void tables, plots and overlay
        (``voids.csv``, ``frames.csv``, ``tracks.csv``, ``units.json``, ``*.png``, ``overlay.mp4``)."""
        frames = None if self.video is None else self.video.frames
        cal = None if self.video is None else self.video.calibration
        names = None if self.video is None else [Path(str(name)).name for name in self.video.names]
        return write_track(
            folder,
            self.eta,
            self.masks,
            self.measurements,
            frames,
            calibration=cal,
            record=_api_provenance("track"),
            frame_names=names,
        )


@dataclass
class MeasuredVoids(_VoidTables):
    """Void sizes, densities and tracks of a mask stack (:func:`measure`).

    Attributes
    ----------
    measurements : Measurements
    masks : ndarray
        ``[T, H, W]`` three-state masks measured.
    video_frames : ndarray or None
        The frames behind the masks, for the overlay.
    """

    measurements: Measurements
    masks: np.ndarray
    video_frames: np.ndarray | None = None
    overlay: bool = field(default=True, repr=False)

    def save(self, folder: PathLike) -> Path:
        """Write what ``neuradiff measure`` writes: ``voids.csv``, ``frames.csv``, ``tracks.csv``, ``units.json``,
        the plots and (unless ``overlay=False`` was given) ``overlay.mp4``. Returns the folder."""
        with staged_output(folder) as stage:
            write_measurements(
                self.measurements, stage, video_frames=self.video_frames, masks=self.masks, overlay=self.overlay
            )
            write_provenance(stage, _api_provenance("measure"))
        return Path(folder)


@dataclass
class VoidForecast:
    """A forecast with a model's learned physics (:func:`forecast`).

    Attributes
    ----------
    forecast : Forecast
        eta ``[n + 1, H, W]`` at ``frames`` and, for physics-based models, the fields ``[n + 1, 3, H, W]``
        (c_v, c_i, eta).
    calibration : Calibration
    """

    forecast: Forecast
    calibration: Calibration
    band: ForecastBand | None = None

    @property
    def eta(self) -> np.ndarray:
        return self.forecast.eta

    @property
    def fields(self) -> np.ndarray | None:
        return self.forecast.fields

    @property
    def table(self) -> pd.DataFrame:
        """Void area of every forecast frame: ``frame``, ``time_s``, ``void_area_px``, ``void_area_nm2``
        (``forecast_area.csv``)."""
        return forecast_table(self.forecast, self.calibration)

    def save(self, folder: PathLike) -> Path:
        """Write what ``neuradiff forecast`` writes: ``forecast.npz``, ``forecast.tif``, ``forecast_area.csv``."""
        return write_forecast(
            folder, self.forecast, self.calibration, band=self.band, record=_api_provenance("forecast")
        )


def _api_provenance(command: str, *, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``provenance.json`` of an output written from the Python API (its inputs were arrays in memory)."""
    return provenance(command, settings={"written_by": "neuradiff Python API", **(settings or {})})


# --------------------------------------------------------------------------- functions


def simulate(
    scenario: str = "single-void",
    *,
    seed: int | None = None,
    size: int | None = None,
    frames: int | None = None,
    config: Mapping[str, Any] | PathLike | None = None,
    device: Device = "auto",
    progress: ProgressSink = no_progress,
) -> SimulatedVideo:
    """Simulate void kinetics, render a realistic TEM video and annotate part of it (``neuradiff simulate``).

    Parameters
    ----------
    scenario : {"single-void", "multi-void", "nucleation"}
    seed : int, optional
        Seed of the simulation, the renderer and the annotations (the result is a function of it); default: the
        config's ``seed``, else 0.
    size : int, optional
        Frame size in px (square); default depends on the scenario (96 for ``single-void``).
    frames : int, optional
        Number of frames (default 60).
    config : dict or path, optional
        Any setting of a dataset (as in ``neuradiff simulate --config``), e.g.
        ``{"steps_per_frame": 20, "nm_per_px": 0.5, "annotations": {"fraction": 0.2}}``.
    device : str
        Where the phase-field simulation runs: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    progress : callable, optional
        ``progress(task, done, total)``.

    Returns
    -------
    SimulatedVideo
        ``.video`` (frames ``[T, H, W]`` uint8 with 1 nm/px, 1 s/frame by default), ``.annotations``,
        ``.truth``, ``.table`` (true void area per frame) and ``.save(folder)``.

    Examples
    --------
    >>> import neuradiff as nd
    >>> sim = nd.simulate(size=24, frames=6, config={"steps_per_frame": 5}, device="cpu")
    >>> sim.video.frames.shape, sim.video.calibration.nm_per_px
    ((6, 24, 24), 1.0)
    >>> list(sim.table.columns)
    ['frame', 'time_s', 'void_area_px', 'void_area_nm2']
    """
    ds, _ = simulate_dataset(
        scenario=scenario,
        seed=seed,
        size=size,
        frames=frames,
        config=dict(config) if isinstance(config, Mapping) else config,
        device=device,
        progress=progress,
    )
    return SimulatedVideo(ds)


def fit(
    video: SimulatedVideo | Video | np.ndarray | PathLike,
    annotations: np.ndarray | PathLike | None = None,
    *,
    config: FitConfig | Mapping[str, Any] | PathLike | None = None,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    sim_time_per_frame: float | None = None,
    truth: SimulatedVideo | Mapping[str, np.ndarray] | PathLike | None = None,
    out: PathLike | None = None,
    resume: bool = False,
    init: FittedModel | FittedMethod | PathLike | None = None,
    device: Device = "auto",
    progress: ProgressSink | None = None,
    labels: LabelScheme | None = None,
) -> FittedModel:
    """Learn the recognition net and the void physics jointly from a partially annotated video (``neuradiff fit``).

    Parameters
    ----------
    video : SimulatedVideo, Video, ndarray or path
        ``[T, H, W]`` frames or any readable recording. A :class:`SimulatedVideo` brings its annotations and its
        simulation time per frame.
    annotations : ndarray or path, optional
        Three-state ``[T, H, W]`` (0 solid, 1 void, 255 unknown) or any annotation file (mask stack, binary
        masks, COCO, YOLO). Needed unless ``video`` is a :class:`SimulatedVideo`.
    config : FitConfig, dict or path, optional
        Fit settings (every field of :class:`neuradiff.training.FitConfig`), e.g. ``{"pretrain_iters": 300}``.
    nm_per_px, frame_interval_s : float, optional
        Calibration of an array (or override of a recording's).
    sim_time_per_frame : float, optional
        Simulation time units between frames (default: the config's, the simulated video's, the one in a
        ``dataset.json`` beside a video file, else 1).
    truth : SimulatedVideo, dict or path, optional
        A synthetic truth to score the fit against (``.metrics``, ``metrics.json``).
    out : path, optional
        Write the model folder there as ``neuradiff fit --out`` does, with ``checkpoint.pt`` written as the fit
        goes; ``resume=True`` continues from it.
    init : FittedModel or path, optional
        Retrain: start from this NeuraDiff model's net and learned parameters instead of a fresh net and the
        initial guess (e.g. on corrected annotations: the annotate → correct → retrain loop). The ``config``'s
        ``net`` settings do not apply then.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``: where to train.
    progress : callable, optional
        ``progress(phase, done, total, row)`` after every iteration.
    labels : LabelScheme, optional
        How an annotation file of label images is read: instance labels (``LabelScheme("instances")``) or a
        class image naming its void class (``LabelScheme.from_options(void_class=2)``).

    Returns
    -------
    FittedModel
        ``.model``, ``.parameters`` and ``.history`` (DataFrames), ``.metrics`` and ``.save(folder)``.

    Examples
    --------
    >>> import neuradiff as nd
    >>> sim = nd.simulate(size=24, frames=6, config={"steps_per_frame": 5, "annotations": {"fraction": 0.5}})
    >>> fitted = nd.fit(sim, config={"pretrain_iters": 2, "joint_iters": 1, "gap": 2, "batch": 1,
    ...                              "net": {"width": 4, "depth": 1}}, device="cpu")
    >>> fitted.parameters.loc["E_v", "unit"], len(fitted.history)
    ('energy/site', 3)
    """
    cfg = _fit_config(config)
    resolve_device(device)
    sim = video if isinstance(video, SimulatedVideo) else None
    vid = _video(video, nm_per_px, frame_interval_s)
    if annotations is None:
        if sim is None:
            raise NeuradiffError("annotations are needed (three-state masks or an annotation file)")
        ann = sim.annotations
    elif isinstance(annotations, (str, os.PathLike)):
        ann = read_annotations(annotations, video=vid, full_stack=True, labels=labels)
    else:
        ann = _frames(annotations, "the annotations")
    source = "argument"
    if sim_time_per_frame is None:
        sim_time_per_frame = cfg.sim_time_per_frame
    if sim_time_per_frame is None and sim is not None:
        sim_time_per_frame, source = sim.sim_time_per_frame, "simulation"
    if sim_time_per_frame is None and isinstance(video, (str, os.PathLike)):
        sim_time_per_frame, source = sim_time_beside(Path(video)), "dataset.json"
    data, info = prepare_training_data(vid, ann, sim_time_per_frame=sim_time_per_frame, sim_time_source=source)
    if isinstance(truth, SimulatedVideo):
        truth_arrays: dict[str, np.ndarray] | None = truth.truth
    elif isinstance(truth, (str, os.PathLike)):
        truth_arrays = load_truth(truth)
    else:
        truth_arrays = None if truth is None else dict(truth)
    if resume and out is None:
        raise NeuradiffError("resume=True continues the fit checkpointed in out: give out")
    start = None
    if init is not None:
        start = _model(init)
        if not isinstance(start, NeuraDiffModel):
            raise NeuradiffError(f"init must be a neuradiff model (method neuradiff), not a {start.method} model")
    folder = None if out is None else prepare_output_dir(out)
    summary = fit_training_data(
        data,
        cfg,
        video_info=info,
        truth=truth_arrays,
        checkpoint_path=None if folder is None else folder / "checkpoint.pt",
        resume=resume,
        progress=progress,
        device=device,
        init=start,
    )
    result = FittedModel(summary)
    if folder is not None:
        result.save(folder)
    return result


def track(
    video: SimulatedVideo | Video | np.ndarray | PathLike,
    model: FittedModel | FittedMethod | PathLike | None = None,
    *,
    void_size_px: float | str | None = None,
    min_contrast: float | None = None,
    batch: int = 1,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    measure: bool = True,
    device: Device = "auto",
    progress: ProgressSink = no_progress,
) -> TrackedVideo:
    """Recognise eta in every frame, threshold it into void masks and measure the voids (``neuradiff track``).

    Parameters
    ----------
    video : SimulatedVideo, Video, ndarray or path
        ``[T, H, W]`` frames or any readable recording.
    model : FittedModel, fitted method or path, optional
        The result of :func:`fit`, or a model folder written by ``neuradiff fit``; ``None``: the generalist
        recogniser shipped with the package (trained on synthetic frames only: fit a model for trustworthy counts).
    void_size_px : float or "auto", optional
        Expected void diameter in px (generalist only): frames are resampled to the net's scale; ``"auto"``: the
        generalist chooses the factor from three frames
        (:func:`~neuradiff.workflows.track.auto_void_px`: for frames drawn 2–4× larger than it was trained on).
    min_contrast : float, optional
        The contrast filter's threshold (:func:`neuradiff.nets.contrast.drop_faint`; None: the recogniser's own —
        the shipped generalist's, or a fitted model's from the faintest annotated void that stands out; 0: every
        void).
    batch : int
        Frames per inference batch.
    nm_per_px, frame_interval_s : float, optional
        Calibration of an array (or override of a recording's): the tables are in nm and s when known.
    measure : bool
        Also measure and track the voids.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Returns
    -------
    TrackedVideo
        ``.eta``, ``.masks``, ``.voids``, ``.frames``, ``.tracks``, ``.trajectories`` (trackpy layout) and
        ``.save(folder)``.

    Examples
    --------
    >>> import neuradiff as nd
    >>> sim = nd.simulate(size=24, frames=6, config={"steps_per_frame": 5, "annotations": {"fraction": 0.5}})
    >>> fitted = nd.fit(sim, config={"pretrain_iters": 2, "joint_iters": 1, "gap": 2, "batch": 1,
    ...                              "net": {"width": 4, "depth": 1}})
    >>> tracked = nd.track(sim, fitted, device="cpu")
    >>> tracked.eta.shape, list(tracked.trajectories.columns[:4])
    ((6, 24, 24), ['frame', 'particle', 'x', 'y'])
    """
    vid = _video(video, nm_per_px, frame_interval_s)
    if min_contrast is not None and not (math.isfinite(min_contrast) and min_contrast >= 0):
        raise NeuradiffError(f"min_contrast must be a number >= 0, got {min_contrast:g}")
    recogniser: FittedMethod | Generalist = (
        load_generalist(min_contrast=min_contrast) if model is None else with_min_contrast(_model(model), min_contrast)
    )
    if void_size_px == "auto":
        if not isinstance(recogniser, Generalist):
            raise NeuradiffError("void_size_px='auto' applies to the generalist recogniser only")
        frames = vid.frames
        void_size_px = auto_void_px(recogniser, lambda a, b: frames[a:b], len(frames))
    if isinstance(void_size_px, str):
        raise NeuradiffError(f"void_size_px must be a number of px or 'auto', got {void_size_px!r}")
    eta, masks, seconds = recognise_masks(
        recogniser, vid.frames, void_px=void_size_px, batch=batch, device=device, progress=progress
    )
    meas = measure_masks(masks, calibration=vid.calibration) if measure else None
    return TrackedVideo(eta, masks, meas, vid, seconds)


def measure(
    masks: TrackedVideo | np.ndarray | PathLike,
    *,
    video: SimulatedVideo | Video | np.ndarray | PathLike | None = None,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    dose_rate: float | None = None,
    foil_thickness: float | None = None,
    min_area: int = 4,
    search_range: float | None = None,
    overlay: bool = True,
) -> MeasuredVoids:
    """Measure every void of a mask stack: position, area and diameter in nm, tracks across frames
    (``neuradiff measure``).

    Parameters
    ----------
    masks : TrackedVideo, ndarray or path
        Three-state ``[T, H, W]`` (0 solid, 1 void, 255 unknown) or bool masks, any annotation file, or the
        result of :func:`track`.
    video : SimulatedVideo, Video, ndarray or path, optional
        The frames behind the masks: calibration and the overlay's background.
    nm_per_px, frame_interval_s : float, optional
        Calibration (win over the video's).
    dose_rate : float, optional
        dpa/s: adds ``dose_dpa``.
    foil_thickness : float, optional
        nm: adds swelling (spherical voids).
    min_area : int
        Smaller regions (px) are ignored.
    search_range : float, optional
        Track linking range in px (default: from the void sizes).
    overlay : bool
        ``.save`` writes ``overlay.mp4``.

    Returns
    -------
    MeasuredVoids
        ``.voids``, ``.frames``, ``.tracks``, ``.trajectories`` (trackpy layout), ``.units`` and ``.save(folder)``.

    Examples
    --------
    >>> import numpy as np, neuradiff as nd
    >>> masks = np.zeros((3, 40, 40), np.uint8)
    >>> for k in range(3):
    ...     masks[k, 10:20, 10 + k:20 + k] = 1  # one 10 × 10 px void moving right by 1 px per frame
    >>> voids = nd.measure(masks, nm_per_px=0.5, frame_interval_s=2.0)
    >>> voids.trajectories[["frame", "particle", "x", "x_nm", "area_nm2", "time_s"]].values.tolist()
    [[0.0, 0.0, 14.5, 7.25, 25.0, 0.0], [1.0, 0.0, 15.5, 7.75, 25.0, 2.0], [2.0, 0.0, 16.5, 8.25, 25.0, 4.0]]
    """
    check_measure_options(nm_per_px, frame_interval_s, dose_rate, foil_thickness, search_range, min_area)
    if isinstance(masks, TrackedVideo) and video is None:
        video = masks.video
    vid = None if video is None else _video(video, nm_per_px, frame_interval_s)
    three_state = _masks(masks, vid)
    if vid is not None and three_state.shape[1:] != vid.frames.shape[1:]:
        raise NeuradiffError(f"masks {three_state.shape} and video {vid.frames.shape} differ in frame size")
    calibration = vid.calibration if vid is not None else _calibration(nm_per_px, frame_interval_s)
    meas = measure_masks(
        three_state,
        calibration=calibration,
        dose_rate_dpa_per_s=dose_rate,
        foil_thickness_nm=foil_thickness,
        min_area_px=min_area,
        search_range_px=search_range,
    )
    return MeasuredVoids(meas, three_state, None if vid is None else vid.frames, overlay)


def forecast(
    model: FittedModel | FittedMethod | PathLike,
    video: SimulatedVideo | Video | np.ndarray | PathLike,
    *,
    frame: int = 0,
    steps: int,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    device: Device = "auto",
) -> VoidForecast:
    """Recognise frame ``frame`` and simulate ``steps`` frame intervals forward with the learned physics
    (``neuradiff forecast``).

    Parameters
    ----------
    model : FittedModel, fitted method or path
        A model that forecasts (NeuraDiff, the physics-only and residual fits, the surrogate).
    video : SimulatedVideo, Video, ndarray or path
        The recording holding the start frame.
    frame : int
        Start frame K (0-based).
    steps : int
        Frame intervals to forecast.
    nm_per_px, frame_interval_s : float, optional
        Calibration of an array (or override of a recording's).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Returns
    -------
    VoidForecast
        ``.eta`` ``[steps + 1, H, W]``, ``.fields``, ``.table`` (void area per frame in px and nm²) and
        ``.save(folder)``.

    Examples
    --------
    >>> import neuradiff as nd
    >>> sim = nd.simulate(size=24, frames=6, config={"steps_per_frame": 5, "annotations": {"fraction": 0.5}})
    >>> fitted = nd.fit(sim, config={"pretrain_iters": 2, "joint_iters": 1, "gap": 2, "batch": 1,
    ...                              "net": {"width": 4, "depth": 1}})
    >>> fc = nd.forecast(fitted, sim, frame=0, steps=3, device="cpu")
    >>> fc.eta.shape, fc.table["frame"].tolist()
    ((4, 24, 24), [0, 1, 2, 3])
    """
    vid = _video(video, nm_per_px, frame_interval_s)
    fitted = _model(model)
    intervals = forecast_intervals(vid.calibration, frame, steps, vid.frames.shape[0])
    fc = forecast_frames(fitted, vid.frames, frame=frame, steps=steps, device=device, intervals=intervals)
    band = None
    if isinstance(fitted, NeuraDiffModel) and fitted.posterior is not None:
        band = fitted.forecast_band(vid.frames, frame, steps, nm_per_px=vid.calibration.nm_per_px, intervals=intervals)
    return VoidForecast(fc, vid.calibration, band)


def _read_measurements(folder: Path) -> Measurements:
    """The tables ``write_measurements`` wrote into ``folder``."""
    try:
        info = json.loads((folder / "units.json").read_text())
        tables = {name: pd.read_csv(folder / f"{name}.csv") for name in ("voids", "frames", "tracks")}
        cal = info.get("calibration", {})
        calibration = Calibration(cal.get("nm_per_px"), cal.get("frame_interval_s"), None, cal.get("source", "none"))
        return Measurements(
            tables["voids"],
            tables["frames"],
            tables["tracks"],
            dict(info["units"]),
            list(info.get("notes", [])),
            calibration,
            dict(info.get("params", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeuradiffError(f"{folder} holds unreadable void tables ({type(exc).__name__}: {exc})") from None


def load(path: PathLike) -> FittedMethod | SimulatedVideo | TrackedVideo | MeasuredVoids | VoidForecast:
    """Read back any folder neuradiff writes.

    Parameters
    ----------
    path : path
        A model folder (``model.json``: ``neuradiff fit``), a synthetic dataset (``dataset.json``:
        ``neuradiff simulate``), a tracking folder (``eta.tif``: ``neuradiff track``), a measurement folder
        (``voids.csv``: ``neuradiff measure``) or a forecast folder (``forecast.npz``: ``neuradiff forecast``).

    Returns
    -------
    FittedMethod, SimulatedVideo, TrackedVideo, MeasuredVoids or VoidForecast
        The fitted model (pass it to :func:`track` or :func:`forecast`) or the result object of the command.

    Examples
    --------
    >>> import tempfile, numpy as np, neuradiff as nd
    >>> eta = np.zeros((2, 32, 32), np.float32)
    >>> eta[:, 8:16, 8:16] = 1.0
    >>> folder = nd.TrackedVideo(eta, (eta >= 0.5).astype(np.uint8), None).save(tempfile.mkdtemp())
    >>> tracked = nd.load(folder)
    >>> type(tracked).__name__, tracked.masks.shape, int(tracked.masks.sum())
    ('TrackedVideo', (2, 32, 32), 128)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NeuradiffError(f"{folder} is not a folder written by neuradiff")
    if (folder / "model.json").is_file():
        return load_model(folder)
    if (folder / "dataset.json").is_file():
        return SimulatedVideo(read_dataset(folder))
    if (folder / "eta.tif").is_file() and (folder / "masks.tif").is_file():
        try:
            eta = np.asarray(tifffile.imread(folder / "eta.tif"), dtype=np.float32)
            masks = np.asarray(tifffile.imread(folder / "masks.tif"), dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise NeuradiffError(f"{folder}: eta.tif or masks.tif is unreadable ({exc})") from None
        eta, masks = eta.reshape((-1, *eta.shape[-2:])), masks.reshape((-1, *masks.shape[-2:]))
        meas = _read_measurements(folder) if (folder / "voids.csv").is_file() else None
        return TrackedVideo(eta, masks, meas)
    if (folder / "voids.csv").is_file():
        meas = _read_measurements(folder)
        return MeasuredVoids(meas, np.zeros((0, 0, 0), np.uint8), None, overlay=False)
    if (folder / "forecast.npz").is_file():
        try:
            with np.load(folder / "forecast.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            table = pd.read_csv(folder / "forecast_area.csv")
        except (OSError, ValueError) as exc:
            raise NeuradiffError(f"{folder}: the forecast files are unreadable ({exc})") from None
        fields = np.stack([arrays["c_v"], arrays["c_i"], arrays["eta"]], axis=1) if "c_v" in arrays else None
        fc = Forecast(eta=arrays["eta"], frames=arrays["frame"], fields=fields)
        return VoidForecast(fc, _forecast_calibration(table))
    raise NeuradiffError(
        f"{folder} holds none of model.json, dataset.json, eta.tif, voids.csv or forecast.npz: "
        "not a folder written by neuradiff"
    )


def _forecast_calibration(table: pd.DataFrame) -> Calibration:
    """The calibration a ``forecast_area.csv`` was written with (from its ``time_s`` and ``void_area_nm2``)."""
    dt = nm = None
    moved = table["frame"].to_numpy(float) > 0
    if "time_s" in table and moved.any() and table["time_s"].notna().all():
        dt = float(np.median(table["time_s"].to_numpy(float)[moved] / table["frame"].to_numpy(float)[moved]))
    if "void_area_nm2" in table and (table["void_area_px"] > 0).any():
        px = table["void_area_px"].to_numpy(float)
        nm = float(np.sqrt(np.median(table["void_area_nm2"].to_numpy(float)[px > 0] / px[px > 0])))
    return Calibration(nm, dt, None, "forecast_area.csv" if (nm or dt) else "none")


__all__ = [
    "FittedModel",
    "LabelScheme",
    "MeasuredVoids",
    "SimulatedVideo",
    "TrackedVideo",
    "VoidForecast",
    "fit",
    "forecast",
    "load",
    "measure",
    "read_video",
    "simulate",
    "track",
]
