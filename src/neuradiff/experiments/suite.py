"""The paper suite: make the data, train every method, score tracking, forecasts, transfer and parameters.

Methods (same video, same annotations; the same iteration budget where it applies):

========================  =====================================================================================
``neuradiff``             recognition net and physics trained jointly (the fit of ``neuradiff fit``)
``supervised``            the recognition net trained on the annotations alone (tracking only)
``surrogate``             autoregressive UNet, next eta map from the current one, rolled out from frame 0
``physics_only``          differentiable physics without a net: simulate annotation → next annotation
``residual``              physics-informed residual fit: net + parameters, equations satisfied frame to frame
========================  =====================================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from neuradiff._version import __version__
from neuradiff.experiments import methods
from neuradiff.experiments.config import SuiteConfig
from neuradiff.experiments.jobs import JobRunner, Report
from neuradiff.experiments.scores import score_suite
from neuradiff.training.fit import TrainingData

#: Display names, in the order of the report.
METHODS = {
    "neuradiff": "NeuraDiff",
    "supervised": "supervised UNet",
    "surrogate": "autoregressive UNet surrogate",
    "physics_only": "differentiable physics, no net",
    "residual": "physics-informed residual fit",
}


def training_data(ds) -> TrainingData:
    """A synthetic dataset as training input (frames float32, three-state annotations)."""
    meta = ds.metadata
    return TrainingData(ds.video.astype(np.float32), np.asarray(ds.annotations, dtype=np.uint8),
                        meta["calibration"]["nm_per_px"], meta["calibration"]["frame_interval_s"],
                        float(meta["steps_per_frame"]) * float(meta["dt"]))


def surrogate_targets(net_blob: dict[str, Any], data: TrainingData, train_frames: np.ndarray) -> np.ndarray:
    """eta of every frame for the surrogate: the supervised net's tracking, the annotation where one exists."""
    from neuradiff.analysis.forecast import recognise

    eta = recognise(methods.unpack_net(net_blob), data.frames, eta_only=True)
    for k in train_frames:
        known = data.annotations[k] != 255
        eta[k][known] = data.annotations[k][known]
    return eta


class JobCache:
    """Finished jobs saved under ``folder`` (one file per job, named by its key and a hash of the suite config),
    so that an interrupted suite resumes where it stopped; ``None``: no caching."""

    def __init__(self, folder: Path | None, config: SuiteConfig, *, reuse: bool = True) -> None:
        self.folder, self.reuse = folder, reuse
        settings = {k: v for k, v in config.to_dict().items() if k not in ("workers", "threads")}
        blob = json.dumps({"version": __version__, "config": settings}, sort_keys=True, default=str).encode()
        self.tag = hashlib.sha256(blob).hexdigest()[:12]

    def path(self, key: str) -> Path | None:
        if self.folder is None:
            return None
        slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
        return self.folder / f"{slug}-{self.tag}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not self.reuse or path is None or not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - a damaged checkpoint is recomputed
            return None

    def save(self, key: str, result: dict[str, Any]) -> None:
        path = self.path(key)
        if path is not None:
            from neuradiff.data.files import atomic_path

            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(result, tmp)


def run_suite(config: SuiteConfig, *, report: Report | None = None, stage: Callable[[str], None] | None = None,
              checkpoints: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Train and score everything; returns the datasets, the trained models and the scores. With
    ``checkpoints``, every finished job is saved there, and with ``resume`` the saved jobs of the same config and
    version are reused instead of retrained."""
    from neuradiff.data.synthetic import dataset_config
    from neuradiff.training.fit import split_frames

    config.validate()
    stage = stage or (lambda _msg: None)
    t0 = time.perf_counter()
    cfg_train = dataset_config("single-void", overrides=config.data, seed=config.seed)
    cfg_transfer = dataset_config("multi-void", overrides=config.transfer_data, seed=config.seed + 1)
    fit_cfg = config.fit_config()
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    cache = JobCache(checkpoints, config, reuse=resume)
    with JobRunner(config.workers, config.threads, report) as pool:
        runner = _CachedRunner(pool, cache)
        stage("making the training video (single void)")
        runner.submit("data: single void", "dataset", cfg_train)
        key, res = runner.next()
        seconds[key] = res["seconds"]
        train_ds = res["dataset"]
        data = training_data(train_ds)
        train_frames, _ = split_frames(data)
        stage("training the methods")
        seeds = [config.seed + k for k in range(config.fit_seeds)]
        surrogate_seeds = [config.seed + k for k in range(config.surrogate_seeds)]
        runner.submit(f"NeuraDiff (seed {seeds[0]})", "neuradiff", data, fit_cfg)
        for s in seeds[1:2]:
            runner.submit(f"NeuraDiff (seed {s})", "neuradiff", data, dataclasses.replace(fit_cfg, seed=s))
        runner.submit("supervised UNet", "supervised", data, fit_cfg)
        runner.submit("data: multi-void (transfer)", "dataset", cfg_transfer)
        runner.submit("differentiable physics, no net", "physics_only", data, fit_cfg)
        runner.submit("physics-informed residual fit", "residual", data, fit_cfg)
        for s in seeds[2:]:
            runner.submit(f"NeuraDiff (seed {s})", "neuradiff", data, dataclasses.replace(fit_cfg, seed=s))
        while (item := runner.next()) is not None:
            key, res = item
            seconds[key] = res["seconds"]
            results[key] = res
            if key == "supervised UNet":
                eta = surrogate_targets(res["net"], data, train_frames)
                for s in surrogate_seeds:
                    runner.submit(f"autoregressive UNet surrogate (seed {s})", "surrogate", eta,
                                  dataclasses.replace(config.surrogate_config(), seed=s))
    transfer_ds = results.pop("data: multi-void (transfer)")["dataset"]
    fits = {
        "neuradiff": [results[f"NeuraDiff (seed {s})"] for s in seeds],
        "supervised": results["supervised UNet"],
        "surrogate": [results[f"autoregressive UNet surrogate (seed {s})"] for s in surrogate_seeds],
        "physics_only": results["differentiable physics, no net"],
        "residual": results["physics-informed residual fit"],
    }
    stage("scoring: tracking, forecasts, transfer, parameters")
    t_score = time.perf_counter()
    scores = score_suite(fits, train_ds, transfer_ds, fit_cfg, seeds=seeds, train_frames=train_frames,
                         sensitivity_step=config.sensitivity_step)
    seconds["scoring"] = time.perf_counter() - t_score
    seconds["total"] = time.perf_counter() - t0
    return {"config": config.to_dict(), "fit_config": fit_cfg.to_dict(), "datasets": (train_ds, transfer_ds),
            "fits": fits, "scores": scores, "seconds": seconds,
            "kept": {k: r.get("kept") for k, r in results.items() if r.get("kept")}, "reused": sorted(k for k, v in runner.reused.items() if v)}


class _CachedRunner:
    """A :class:`JobRunner` that takes finished jobs from a :class:`JobCache` and saves new ones there."""

    def __init__(self, pool: JobRunner, cache: JobCache) -> None:
        self.pool, self.cache = pool, cache
        self.ready: list[tuple[str, dict[str, Any]]] = []
        self.reused: dict[str, bool] = {}

    def submit(self, key: str, name: str, *args) -> None:
        cached = self.cache.load(key)
        self.reused[key] = cached is not None
        if cached is not None:
            self.pool.report(key, 1, 1)
            self.ready.append((key, cached))
        else:
            self.pool.submit(key, name, *args)

    def next(self) -> tuple[str, dict[str, Any]] | None:
        if self.ready:
            return self.ready.pop(0)
        item = self.pool.next()
        if item is not None:
            self.cache.save(*item)
        return item
