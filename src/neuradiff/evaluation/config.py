"""Settings of an evaluation suite: the data, the training budgets, the seeds and the workers."""

from __future__ import annotations

from dataclasses import asdict, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from neuradiff.core.config import merge_config, read_config_file, settings_class, settings_from
from neuradiff.core.devices import resolve_device
from neuradiff.methods.neuradiff import FitConfig
from neuradiff.methods.surrogate import SurrogateConfig
from neuradiff.synth.datasets import dataset_config

SUITES = ("paper",)


@settings_class("evaluation")
class SuiteConfig:
    """One evaluation suite.

    Parameters
    ----------
    name : what the report calls this suite.
    seed : seed of the synthetic videos and of the first NeuraDiff fit.
    fit_seeds : NeuraDiff fits (seeds ``seed, seed + 1, ...``) on the same video, for the parameters' spread.
    surrogate_seeds : autoregressive surrogates trained (seeds ``seed, seed + 1, ...``): their rollouts are
        chaotic, so one seed can collapse where another holds; every seed's forecast is reported.
    train_scenario : the training video: ``"single-void"`` (the paper's Figure 4, default) or ``"multi-void"``
        (several voids of different sizes, seed ``seed``; the transfer video is another multi-void video, seed
        ``seed + 1``, in both cases).
    data, transfer_data : overrides of the training and the multi-void (transfer) datasets, as in
        ``neuradiff simulate --config`` (e.g. ``{"simulation": {"size": 128}, "frames": 100}``).
    fit : :class:`~neuradiff.methods.neuradiff.FitConfig` overrides, shared by NeuraDiff and the baselines that
        have the same settings (supervised net, physics-only fit, residual fit).
    surrogate : :class:`~neuradiff.methods.surrogate.SurrogateConfig` overrides.
    sensitivity_step : relative change of each parameter in the identifiability check.
    workers : training processes run side by side (1: everything in this process).
    threads : torch threads per process.
    device : where the methods train: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``; the trained models are
        moved to the CPU to be scored and saved.
    """

    name: str = "paper"
    seed: Annotated[int, Field(ge=0)] = 0
    train_scenario: Literal["single-void", "multi-void"] = "single-void"
    fit_seeds: Annotated[int, Field(ge=1)] = 3
    surrogate_seeds: Annotated[int, Field(ge=1)] = 3
    data: dict[str, Any] = field(default_factory=dict)
    transfer_data: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    surrogate: dict[str, Any] = field(default_factory=dict)
    sensitivity_step: Annotated[float, Field(gt=0, lt=1)] = 0.1
    workers: Annotated[int, Field(ge=1)] = 2
    threads: Annotated[int, Field(ge=1)] = 1
    device: str = "auto"

    def validate(self) -> None:
        """Check the nested settings (fit, surrogate, both datasets); each problem is one line naming its key."""
        resolve_device(self.device)
        self.fit_config()
        self.surrogate_config()
        for key, scenario in (("data", self.train_scenario), ("transfer_data", "multi-void")):
            try:
                dataset_config(scenario, overrides=getattr(self, key))
            except ValueError as exc:
                msg = str(exc).splitlines()[0]
                rest = msg.removeprefix("bad dataset settings: ")
                raise ValueError(f"{key}.{rest}" if rest != msg else f"{key}: {msg}") from None

    def fit_config(self, seed: int | None = None) -> FitConfig:
        values = {**self.fit, "seed": self.seed if seed is None else seed}
        return settings_from(FitConfig, values, "evaluation", section="fit")

    def surrogate_config(self) -> SurrogateConfig:
        values = {"seed": self.seed, **self.surrogate}
        return settings_from(SurrogateConfig, values, "evaluation", section="surrogate")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The ``--quick`` variant: tiny videos and budgets, for tests and a first look (about a minute).
QUICK = {
    "name": "paper, --quick (tiny videos and budgets: a smoke test, its numbers say nothing about the methods)",
    "fit_seeds": 2,
    "surrogate_seeds": 2,
    "workers": 1,
    "data": {"simulation": {"size": 32}, "frames": 12, "steps_per_frame": 20, "annotations": {"fraction": 0.34}},
    "transfer_data": {"simulation": {"size": 48, "n_voids": 3}, "frames": 12, "steps_per_frame": 20},
    "fit": {
        "pretrain_iters": 30,
        "joint_iters": 4,
        "gap": 2,
        "batch": 1,
        "eval_every": 2,
        "net": {"width": 8, "depth": 2},
    },
    "surrogate": {"iters": 10, "batch": 2, "net": {"embedding": "none", "width": 8, "depth": 2}},
}


def suite_config(
    suite: str = "paper",
    *,
    quick: bool = False,
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> SuiteConfig:
    """A validated :class:`SuiteConfig`: the suite's defaults, the ``--quick`` variant, a config file
    (JSON/TOML, its ``evaluate`` section or the whole file) and explicit overrides, in that order."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {', '.join(SUITES)}")
    values: dict[str, Any] = dict(QUICK) if quick else {}
    if path is not None:
        data = read_config_file(path)
        values = merge_config(values, data.get("evaluate", data))  # a section updates the preset key by key
    values = merge_config(values, overrides or {})
    config = settings_from(SuiteConfig, values, "evaluation", path)
    config.validate()
    return config
