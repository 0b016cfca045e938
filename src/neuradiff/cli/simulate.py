"""``neuradiff simulate``: make a synthetic in-situ TEM dataset whose physics is known."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors, set_threads


@app.command("simulate")
@friendly_errors
def simulate(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (created if needed)."),
    scenario: str = typer.Option("single-void", help="single-void (default), multi-void or nucleation."),
    seed: int = typer.Option(0, help="Seed of the simulation, the renderer and the annotations."),
    size: Optional[int] = typer.Option(None, help="Frame size in pixels (square); default depends on the scenario."),
    frames: Optional[int] = typer.Option(None, help="Number of video frames (default 60)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or TOML file overriding any setting."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
) -> None:
    """Simulate void kinetics, render a realistic TEM video and annotate part of it.

    Writes video.tif (ImageJ calibration: nm per pixel and frame interval in s), annotations.tif
    (0 solid, 1 void, 255 unknown), truth.npz, dataset.json and contact_sheet.png.
    """
    from neuradiff.cli.progress import progress_bar
    from neuradiff.data.files import staged_output
    from neuradiff.data.synthetic import dataset_config, make_dataset, read_config_file, write_dataset

    set_threads(threads)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    overrides = read_config_file(config) if config is not None else None
    cfg = dataset_config(scenario, overrides=overrides, seed=seed, size=size, frames=frames)
    with staged_output(out) as stage:
        with progress_bar(f"simulating {scenario}", cfg.simulation.steps) as update:
            ds = make_dataset(cfg, progress=update)
        write_dataset(ds, stage)
    area = ds.truth["void_area_px"]
    typer.echo(
        f"wrote {out}: {ds.video.shape[0]} frames of {ds.video.shape[2]}×{ds.video.shape[1]} px "
        f"({cfg.nm_per_px:g} nm/px, {cfg.frame_interval_s:g} s/frame), "
        f"{len(ds.annotated_frames)} annotated frames, CNR {ds.render_info['cnr']:.1f}, "
        f"void area {area[0]} → {area[-1]} px"
    )
