"""Training jobs of the suite, one per method: plain functions of picklable inputs that return picklable
results (state dicts, parameter values, histories), so that they run in this process or in worker processes."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from neuradiff.models import NetConfig, RecognitionNet
from neuradiff.physics import LearnableParameters, VoidParameters
from neuradiff.training.fit import FitConfig, Trainer, TrainingData, restore_best

Progress = Callable[[str, int, int, dict[str, float]], None]


def pack_net(net: RecognitionNet) -> dict[str, Any]:
    """A recognition net as plain data (config, input normalisation, weights)."""
    return {"config": net.config.to_dict(), "mean": float(net.input_mean), "std": float(net.input_std),
            "state": {k: v.detach().clone() for k, v in net.state_dict().items()}}


def unpack_net(blob: dict[str, Any]) -> RecognitionNet:
    net = RecognitionNet(NetConfig.from_dict(blob["config"]), input_mean=blob["mean"], input_std=blob["std"])
    net.load_state_dict(blob["state"])
    return net.eval()


def _params(learned: LearnableParameters) -> dict[str, Any]:
    with torch.no_grad():
        return {"values": learned().as_floats(), "learned": list(learned.learned)}


def _kept(state) -> dict[str, Any]:
    """Which iteration the validation kept."""
    return {k: state.best[k] for k in ("phase", "iteration", "val_loss")} if state.best else {}


def params_from(result: dict[str, Any]) -> VoidParameters:
    """The learned parameter set of a job's result."""
    return VoidParameters.from_mapping(result["params"]["values"])


def neuradiff(data: TrainingData, config: FitConfig, progress: Progress | None = None) -> dict[str, Any]:
    """NeuraDiff: the recognition net and the physics trained jointly."""
    t0 = time.perf_counter()
    trainer = Trainer(data, config, progress=progress)
    state = trainer.run()
    net, params = restore_best(state)
    return {"net": pack_net(net), "params": _params(params), "history": state.history, "kept": _kept(state),
            "train_frames": trainer.train_frames.tolist(), "seconds": time.perf_counter() - t0}


def supervised(data: TrainingData, config: FitConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The recognition net trained on the annotations alone."""
    from neuradiff.baselines.supervised import fit_supervised

    t0 = time.perf_counter()
    net = fit_supervised(data, config, progress=progress)
    return {"net": pack_net(net), "seconds": time.perf_counter() - t0}


def residual(data: TrainingData, config: FitConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The physics-informed residual fit (a net and parameters, no rollout)."""
    from neuradiff.baselines.residual import ResidualTrainer

    t0 = time.perf_counter()
    state = ResidualTrainer(data, config, progress=progress).run()
    net, params = restore_best(state)
    return {"net": pack_net(net), "params": _params(params), "history": state.history, "kept": _kept(state),
            "seconds": time.perf_counter() - t0}


def physics_only(data: TrainingData, config: FitConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Differentiable physics without a recognition net."""
    from neuradiff.baselines.physics_only import fit_physics_only

    t0 = time.perf_counter()
    fit = fit_physics_only(data, config, progress=progress)
    evaluated = [r for r in fit.history if "val_loss" in r]
    kept = min(evaluated, key=lambda r: r["val_loss"]) if evaluated else {}
    return {"params": _params(fit.params), "history": fit.history, "seconds": time.perf_counter() - t0,
            "kept": {k: kept[k] for k in ("phase", "iteration", "val_loss")} if kept else {}}


def surrogate(eta: np.ndarray, config, progress: Progress | None = None) -> dict[str, Any]:
    """The autoregressive UNet surrogate, trained on the eta maps of consecutive frames."""
    from neuradiff.baselines.surrogate import train_surrogate

    t0 = time.perf_counter()
    net = train_surrogate(eta, config, progress=progress)
    return {"net": pack_net(net), "seed": config.seed, "seconds": time.perf_counter() - t0}


def dataset(config, progress: Progress | None = None) -> dict[str, Any]:
    """A synthetic dataset (simulated, rendered, annotated)."""
    from neuradiff.data.synthetic import make_dataset

    t0 = time.perf_counter()
    total = config.simulation.steps
    ds = make_dataset(config, progress=None if progress is None else (lambda done: progress("data", done, total, {})))
    return {"dataset": ds, "seconds": time.perf_counter() - t0}


JOBS: dict[str, Callable[..., dict[str, Any]]] = {
    "neuradiff": neuradiff, "supervised": supervised, "residual": residual, "physics_only": physics_only,
    "surrogate": surrogate, "dataset": dataset,
}
