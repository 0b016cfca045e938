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
import pickle
import re
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuradiff._version import __version__
from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import write_json
from neuradiff.evaluation.config import SuiteConfig
from neuradiff.evaluation.jobs import JobResult, JobRunner, Report, surrogate_targets, training_data
from neuradiff.evaluation.scores import score_suite
from neuradiff.methods import FitResult, load_model
from neuradiff.synth.datasets import dataset_config, read_dataset, write_dataset
from neuradiff.training import split_frames

#: Display names, in the order of the report.
METHODS = {
    "neuradiff": "NeuraDiff",
    "supervised": "supervised UNet",
    "surrogate": "autoregressive UNet surrogate",
    "physics_only": "differentiable physics, no net",
    "residual": "physics-informed residual fit",
}


class JobCache:
    """Finished jobs saved under ``folder`` (one folder per job, named by its key and a hash of the suite
    config), so that an interrupted suite resumes where it stopped; ``None``: no caching. A job folder holds a
    dataset folder or a model folder plus ``job.json``; nothing in it is unpickled when it is read back."""

    def __init__(self, folder: Path | None, config: SuiteConfig, *, reuse: bool = True) -> None:
        self.folder, self.reuse = folder, reuse
        settings = {k: v for k, v in config.to_dict().items() if k not in ("workers", "threads")}
        blob = json.dumps({"version": __version__, "config": settings}, sort_keys=True, default=str).encode()
        self.tag = hashlib.sha256(blob).hexdigest()[:12]

    def path(self, key: str) -> Path | None:
        if self.folder is None:
            return None
        slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")
        return self.folder / f"{slug}-{self.tag}"

    def load(self, key: str) -> JobResult | None:
        """The saved result of job ``key``, or ``None`` (not saved, or damaged: it is then recomputed)."""
        path = self.path(key)
        if not self.reuse or path is None or not (path / "job.json").is_file():
            return None
        try:
            job = json.loads((path / "job.json").read_text())
            if job["kind"] == "dataset":
                return JobResult(job["seconds"], dataset=read_dataset(path))
            fit = FitResult(
                load_model(path),
                job["history"],
                job["kept"],
                np.asarray(job["train_frames"], int),
                np.asarray(job["val_frames"], int),
            )
            return JobResult(job["seconds"], fit=fit)
        except (NeuradiffError, OSError, ValueError, KeyError, TypeError):
            return None

    def check_saved(self) -> None:
        """Refuse to resume from saved jobs holding a file that is not plain data (a pickle that would run code
        when read): one :class:`NeuradiffError` naming the file. Damaged but harmless jobs are recomputed by
        :meth:`load`; only the jobs of this config and version are looked at."""
        if self.folder is None or not self.reuse or not self.folder.is_dir():
            return
        for job in sorted(self.folder.glob(f"*-{self.tag}")):
            for path in sorted(job.rglob("*.pt")):
                try:
                    with warnings.catch_warnings():  # the weights-only unpickler warns about foreign pickles
                        warnings.simplefilter("ignore")
                        torch.load(path, map_location="cpu", weights_only=True)
                except pickle.UnpicklingError:
                    raise NeuradiffError(
                        f"saved checkpoint {path} is not plain data (reading it could run code); "
                        f"delete {job} or run without --resume"
                    ) from None
                except Exception:  # truncated or corrupt: load() recomputes the job
                    continue

    def save(self, key: str, result: JobResult) -> None:
        path = self.path(key)
        if path is None:
            return
        stage = path.with_name(path.name + ".partial")
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        if result.dataset is not None:
            write_dataset(result.dataset, stage)
            job: dict[str, Any] = {"kind": "dataset"}
        else:
            fit = result.fit
            assert fit is not None
            fit.model.save(stage)
            job = {
                "kind": "fit",
                "history": fit.history,
                "kept": fit.kept,
                "train_frames": fit.train_frames.tolist(),
                "val_frames": fit.val_frames.tolist(),
            }
        write_json(stage / "job.json", {**job, "seconds": result.seconds})
        shutil.rmtree(path, ignore_errors=True)
        stage.replace(path)


def run_suite(
    config: SuiteConfig,
    *,
    report: Report | None = None,
    stage: Callable[[str], None] | None = None,
    checkpoints: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train and score everything; returns the datasets, the trained models and the scores. With
    ``checkpoints``, every finished job is saved there, and with ``resume`` the saved jobs of the same config and
    version are reused instead of retrained."""
    config.validate()
    device = str(resolve_device(config.device))  # an unavailable device is refused before anything runs
    stage = stage or (lambda _msg: None)
    t0 = time.perf_counter()
    cfg_train = dataset_config(config.train_scenario, overrides=config.data, seed=config.seed)
    train_key = "data: single void" if config.train_scenario == "single-void" else f"data: {config.train_scenario}"
    cfg_transfer = dataset_config("multi-void", overrides=config.transfer_data, seed=config.seed + 1)
    fit_cfg = config.fit_config()
    results: dict[str, JobResult] = {}
    seconds: dict[str, float] = {}
    cache = JobCache(checkpoints, config, reuse=resume)
    cache.check_saved()
    with JobRunner(config.workers, config.threads, report) as pool:
        runner = _CachedRunner(pool, cache)
        stage(f"making the training video ({config.train_scenario})")
        runner.submit(train_key, "dataset", cfg_train)
        first = runner.next()
        assert first is not None and first[1].dataset is not None
        key, res = first
        seconds[key] = res.seconds
        train_ds = res.dataset
        assert train_ds is not None
        data = training_data(train_ds)
        train_frames, _ = split_frames(data)
        stage("training the methods")
        seeds = [config.seed + k for k in range(config.fit_seeds)]
        surrogate_seeds = [config.seed + k for k in range(config.surrogate_seeds)]
        runner.submit(f"NeuraDiff (seed {seeds[0]})", "neuradiff", data, fit_cfg, device)
        for s in seeds[1:2]:
            runner.submit(f"NeuraDiff (seed {s})", "neuradiff", data, dataclasses.replace(fit_cfg, seed=s), device)
        runner.submit("supervised UNet", "supervised", data, fit_cfg, device)
        runner.submit("data: multi-void (transfer)", "dataset", cfg_transfer)
        runner.submit("differentiable physics, no net", "physics_only", data, fit_cfg, device)
        runner.submit("physics-informed residual fit", "residual", data, fit_cfg, device)
        for s in seeds[2:]:
            runner.submit(f"NeuraDiff (seed {s})", "neuradiff", data, dataclasses.replace(fit_cfg, seed=s), device)
        while (item := runner.next()) is not None:
            key, res = item
            seconds[key] = res.seconds
            results[key] = res
            if key == "supervised UNet":
                assert res.fit is not None
                eta = surrogate_targets(res.fit, data, train_frames)
                for s in surrogate_seeds:
                    runner.submit(
                        f"autoregressive UNet surrogate (seed {s})",
                        "surrogate",
                        eta,
                        res.fit,
                        dataclasses.replace(config.surrogate_config(), seed=s),
                        device,
                    )
    transfer_ds = results.pop("data: multi-void (transfer)").dataset
    assert transfer_ds is not None
    fit_of = {k: r.fit for k, r in results.items()}
    fits = {
        "neuradiff": [fit_of[f"NeuraDiff (seed {s})"] for s in seeds],
        "supervised": fit_of["supervised UNet"],
        "surrogate": [fit_of[f"autoregressive UNet surrogate (seed {s})"] for s in surrogate_seeds],
        "physics_only": fit_of["differentiable physics, no net"],
        "residual": fit_of["physics-informed residual fit"],
    }
    stage("scoring: tracking, forecasts, transfer, parameters")
    t_score = time.perf_counter()
    scores = score_suite(
        fits,
        train_ds,
        transfer_ds,
        fit_cfg,
        seeds=seeds,
        train_frames=train_frames,
        sensitivity_step=config.sensitivity_step,
    )
    seconds["scoring"] = time.perf_counter() - t_score
    seconds["total"] = time.perf_counter() - t0
    return {
        "config": config.to_dict(),
        "fit_config": fit_cfg.to_dict(),
        "datasets": (train_ds, transfer_ds),
        "fits": fits,
        "scores": scores,
        "seconds": seconds,
        "kept": {k: f.kept for k, f in fit_of.items() if f is not None and f.kept},
        "reused": sorted(k for k, v in runner.reused.items() if v),
    }


class _CachedRunner:
    """A :class:`JobRunner` that takes finished jobs from a :class:`JobCache` and saves new ones there."""

    def __init__(self, pool: JobRunner, cache: JobCache) -> None:
        self.pool, self.cache = pool, cache
        self.ready: list[tuple[str, JobResult]] = []
        self.reused: dict[str, bool] = {}

    def submit(self, key: str, name: str, *args) -> None:
        cached = self.cache.load(key)
        self.reused[key] = cached is not None
        if cached is not None:
            self.pool.report(key, 1, 1)
            self.ready.append((key, cached))
        else:
            self.pool.submit(key, name, *args)

    def next(self) -> tuple[str, JobResult] | None:
        if self.ready:
            return self.ready.pop(0)
        item = self.pool.next()
        if item is not None:
            self.cache.save(*item)
        return item
