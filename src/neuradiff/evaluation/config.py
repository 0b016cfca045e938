"""Settings of an evaluation suite: the data, the training budgets, the seeds and the workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from neuradiff.core.config import merge_config, read_config_file, settings_from
from neuradiff.methods.neuradiff import FitConfig
from neuradiff.methods.surrogate import SurrogateConfig

SUITES = ("paper",)


@dataclass
class SuiteConfig:
    """One evaluation suite.

    Parameters
    ----------
    name : what the report calls this suite.
    seed : seed of the synthetic videos and of the first NeuraDiff fit.
    fit_seeds : NeuraDiff fits (seeds ``seed, seed + 1, ...``) on the same video, for the parameters' spread.
    surrogate_seeds : autoregressive surrogates trained (seeds ``seed, seed + 1, ...``): their rollouts are
        chaotic, so one seed can collapse where another holds; every seed's forecast is reported.
    data, transfer_data : overrides of the single-void (training) and multi-void (transfer) datasets, as in
        ``neuradiff simulate --config`` (e.g. ``{"simulation": {"size": 128}, "frames": 100}``).
    fit : :class:`~neuradiff.methods.neuradiff.FitConfig` overrides, shared by NeuraDiff and the baselines that
        have the same settings (supervised net, physics-only fit, residual fit).
    surrogate : :class:`~neuradiff.methods.surrogate.SurrogateConfig` overrides.
    sensitivity_step : relative change of each parameter in the identifiability check.
    workers : training processes run side by side (1: everything in this process).
    threads : torch threads per process.
    """

    name: str = "paper"
    seed: int = 0
    fit_seeds: int = 3
    surrogate_seeds: int = 3
    data: dict[str, Any] = field(default_factory=dict)
    transfer_data: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    surrogate: dict[str, Any] = field(default_factory=dict)
    sensitivity_step: float = 0.1
    workers: int = 2
    threads: int = 1

    def validate(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.fit_seeds < 1 or self.surrogate_seeds < 1:
            raise ValueError(
                f"fit_seeds and surrogate_seeds must be >= 1, got {self.fit_seeds} and {self.surrogate_seeds}"
            )
        if self.workers < 1 or self.threads < 1:
            raise ValueError("workers and threads must be >= 1")
        if not 0 < self.sensitivity_step < 1:
            raise ValueError(f"sensitivity_step must be in (0, 1), got {self.sensitivity_step}")
        self.fit_config()
        self.surrogate_config()

    def fit_config(self, seed: int | None = None) -> FitConfig:
        values = {**self.fit, "seed": self.seed if seed is None else seed}
        return settings_from(FitConfig, values, "fit", "the suite config")

    def surrogate_config(self) -> SurrogateConfig:
        return settings_from(SurrogateConfig, {"seed": self.seed, **self.surrogate}, "surrogate", "the suite config")

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
    return settings_from(SuiteConfig, values, "evaluation", path)
