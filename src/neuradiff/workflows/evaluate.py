"""``neuradiff evaluate``: the paper's experiments on synthetic data, written up as a self-contained report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuradiff.core.files import output_dir
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.evaluation.config import suite_config
from neuradiff.evaluation.suite import run_suite
from neuradiff.report.evaluation import write_report


def run_evaluate(
    out: str | Path,
    *,
    suite: str = "paper",
    quick: bool = False,
    config: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    progress: ProgressSink = no_progress,
    stage=lambda _msg: None,
) -> tuple[Path, dict[str, Any]]:
    """Run the suite and write ``report.html`` with its figures, tables and data into ``out``; returns the
    report's path and the suite's results. Every finished job is saved in ``out/checkpoints`` (``resume``
    reuses them)."""
    cfg = suite_config(suite, quick=quick, path=config, overrides=overrides)
    with output_dir(out):
        result = run_suite(
            cfg,
            report=lambda key, done, total: progress(key, done, total),
            stage=stage,
            checkpoints=Path(out) / "checkpoints",
            resume=resume,
        )
        stage("writing the report")
        return write_report(result, out), result
