"""``neuradiff evaluate``: the paper's experiments on synthetic data, written up as a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors, set_threads


def _stage_progress():
    """A rich display with one bar per stage (data, each method's training)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=Console(stderr=True))
    tasks: dict[str, int] = {}

    def report(key: str, done: int, total: int) -> None:
        if key not in tasks:
            tasks[key] = progress.add_task(key, total=total)
        progress.update(tasks[key], completed=done, total=total)

    return progress, report


@app.command("evaluate")
@friendly_errors
def evaluate(
    out: Path = typer.Option(..., "--out", help="Output folder (report.html, figures/, tables/, results.json, data/)."),
    suite: str = typer.Option("paper", "--suite", help="Which experiments: 'paper' (Table 1, Figures 4 and 6, "
                                                       "parameters)."),
    quick: bool = typer.Option(False, "--quick", help="Tiny videos and budgets (about a minute): a smoke test."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML suite settings (see SuiteConfig)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the videos and of the first fit."),
    workers: Optional[int] = typer.Option(None, help="Training processes side by side (default 2; --quick: 1)."),
    threads: int = typer.Option(1, help="torch threads per process."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the training jobs an earlier run with the same "
                                                        "settings saved in OUT/checkpoints."),
) -> None:
    """Train NeuraDiff and four baselines on synthetic videos and write a self-contained report."""
    from rich.console import Console

    from neuradiff.data.files import prepare_output_dir
    from neuradiff.experiments.config import suite_config
    from neuradiff.experiments.report import write_report
    from neuradiff.experiments.suite import run_suite

    set_threads(threads)
    overrides = {"threads": threads, **({"seed": seed} if seed is not None else {}),
                 **({"workers": workers} if workers is not None else {})}
    cfg = suite_config(suite, quick=quick, path=config, overrides=overrides)
    prepare_output_dir(out)
    t0 = time.perf_counter()
    progress, report = _stage_progress()
    console = Console(stderr=True)
    with progress:
        result = run_suite(cfg, report=report, stage=lambda msg: progress.console.print(f"[dim]{msg}[/dim]"),
                           checkpoints=Path(out) / "checkpoints", resume=resume)
    console.print("[dim]writing the report[/dim]")
    path = write_report(result, out)
    tracking = result["scores"]["tracking"]
    fc = result["scores"]["forecast"]["methods"]
    typer.echo(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    typer.echo(f"  held-out IoU: NeuraDiff {tracking['neuradiff']['iou']:.3f}, "
               f"supervised UNet {tracking['supervised']['iou']:.3f}")
    typer.echo("  forecast max |area error|: " + ", ".join(
        f"{k} {100 * v['max_relative_area_error']:.1f} %" for k, v in fc.items()))
