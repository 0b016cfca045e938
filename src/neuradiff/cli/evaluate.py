"""``neuradiff evaluate``: the paper's experiments on synthetic data, written up as a report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors, set_threads
from neuradiff.cli.options import device_option
from neuradiff.cli.progress import progress_bars, stage_printer
from neuradiff.workflows import run_evaluate


@app.command("evaluate")
@friendly_errors
def evaluate(
    out: Path = typer.Option(..., "--out", help="Output folder (report.html, figures/, tables/, results.json, data/)."),
    suite: str = typer.Option(
        "paper", "--suite", help="Which experiments: 'paper' (Table 1, Figures 4 and 6, parameters)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Tiny videos and budgets (about a minute): a smoke test."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML suite settings (see SuiteConfig)."),
    seed: Optional[int] = typer.Option(None, help="Seed of the videos and of the first fit."),
    workers: Optional[int] = typer.Option(None, help="Training processes side by side (default 2; --quick: 1)."),
    threads: int = typer.Option(1, help="torch threads per process."),
    device: str = device_option(),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Reuse the training jobs an earlier run with the same settings saved in OUT/checkpoints.",
    ),
) -> None:
    """Train NeuraDiff and four baselines on synthetic videos and write a self-contained report."""
    set_threads(threads)
    overrides = {
        "threads": threads,
        **({"device": device} if device != "auto" else {}),  # else the settings file's, default auto
        **({"seed": seed} if seed is not None else {}),
        **({"workers": workers} if workers is not None else {}),
    }
    t0 = time.perf_counter()
    with progress_bars() as progress:
        path, result = run_evaluate(
            out,
            suite=suite,
            quick=quick,
            config=config,
            overrides=overrides,
            resume=resume,
            progress=progress,
            stage=stage_printer(),
        )
    tracking = result["scores"]["tracking"]
    fc = result["scores"]["forecast"]["methods"]
    typer.echo(f"wrote {path} in {time.perf_counter() - t0:.0f} s")
    typer.echo(
        f"  held-out IoU: NeuraDiff {tracking['neuradiff']['iou']:.3f}, "
        f"supervised UNet {tracking['supervised']['iou']:.3f}"
    )
    typer.echo(
        "  forecast max |area error|: "
        + ", ".join(f"{k} {100 * v['max_relative_area_error']:.1f} %" for k, v in fc.items())
    )
