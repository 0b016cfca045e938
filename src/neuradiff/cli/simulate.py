"""``neuradiff simulate`` and ``simulate-fields``: synthetic datasets whose physics is known, and raw runs of the
phase-field model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors, set_threads
from neuradiff.cli.options import device_option
from neuradiff.cli.progress import progress_bars
from neuradiff.core.devices import resolve_device
from neuradiff.workflows import run_simulate, run_simulate_fields, simulation_config


@app.command("simulate")
@friendly_errors
def simulate(
    out: Path = typer.Option(..., "--out", help="Dataset folder to write (created if needed)."),
    scenario: str = typer.Option("single-void", help="single-void (default), multi-void or nucleation."),
    seed: Optional[int] = typer.Option(
        None, help="Seed of the simulation, the renderer and the annotations (default: the config's seed, else 0)."
    ),
    size: Optional[int] = typer.Option(None, help="Frame size in pixels (square); default depends on the scenario."),
    frames: Optional[int] = typer.Option(None, help="Number of video frames (default 60)."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON or TOML file overriding any setting."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    device: str = device_option(),
) -> None:
    """Simulate void kinetics, render a realistic TEM video and annotate part of it.

    Writes video.tif (ImageJ calibration: nm per pixel and frame interval in s), annotations.tif
    (0 solid, 1 void, 255 unknown), truth.npz, dataset.json and contact_sheet.png.
    """
    set_threads(threads)
    dev = resolve_device(device)
    with progress_bars() as progress:
        ds, cfg = run_simulate(
            out,
            scenario=scenario,
            seed=seed,
            size=size,
            frames=frames,
            config=config,
            device=dev,
            progress=progress,
        )
    area = ds.truth["void_area_px"]
    typer.echo(
        f"wrote {out}: {ds.video.shape[0]} frames of {ds.video.shape[2]}×{ds.video.shape[1]} px "
        f"({cfg.nm_per_px:g} nm/px, {cfg.frame_interval_s:g} s/frame), "
        f"{len(ds.annotated_frames)} annotated frames, CNR {ds.render_info['cnr']:.1f}, "
        f"void area {area[0]} → {area[-1]} px"
    )


@app.command("simulate-fields")
@friendly_errors
def simulate_fields(
    out: Path = typer.Option(..., "--out", help="Output folder (created if needed)."),
    initial: str = typer.Option("single-disk", help="Initial condition: single-disk, several-disks or uniform."),
    size: int = typer.Option(128, help="Grid size in pixels (square)."),
    radius: Optional[float] = typer.Option(None, help="single-disk: void radius in pixels (default size/6.5)."),
    n_voids: int = typer.Option(4, "--voids", help="several-disks: number of voids."),
    c_v: float = typer.Option(0.36, "--cv", help="uniform: mean vacancy site fraction of the supersaturated matrix."),
    steps: int = typer.Option(2000, help="Number of time steps."),
    dt: float = typer.Option(0.02, help="Time step (simulation time units)."),
    dx: float = typer.Option(1.0, help="Grid spacing (simulation length units)."),
    save_every: int = typer.Option(100, help="Save the fields every this many steps."),
    discretisation: str = typer.Option("conservative", help="conservative (flux form) or reference (published code)."),
    integrator: str = typer.Option(
        "euler",
        help="euler (explicit, guarded), imex (pointwise stiffness implicit, "
        "guarded) or spectral (semi-implicit, periodic).",
    ),
    stochastic: bool = typer.Option(True, "--stochastic/--deterministic", help="Cascades and noise on or off."),
    seed: int = typer.Option(0, help="Seed of the initial condition and of the cascades and noise."),
    generator: str = typer.Option(
        "torch",
        help="Random numbers of the cascades and noise: torch (the default, the realisations of earlier versions) "
        "or philox (counter-based, drawn 2-3 times faster; another realisation).",
    ),
    params: Optional[Path] = typer.Option(None, "--params", help='JSON file of parameter overrides, e.g. {"L": 2}.'),
    dtype: str = typer.Option("float32", help="float32 or float64."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)."),
    device: str = device_option(),
) -> None:
    """Run the void-kinetics phase-field model and write fields.npz, simulation.json and diagnostics.csv."""
    set_threads(threads)
    dev = resolve_device(device)
    config = simulation_config(
        params=params,
        initial=initial,
        size=size,
        radius=radius,
        n_voids=n_voids,
        c_v=c_v,
        steps=steps,
        dt=dt,
        dx=dx,
        save_every=save_every,
        discretisation=discretisation,
        integrator=integrator,
        stochastic=stochastic,
        seed=seed,
        generator=generator,
        dtype=dtype,
        device=str(dev),
    )
    with progress_bars() as progress:
        result = run_simulate_fields(out, config, progress=progress)
    area = result.diagnostics["void_area"]
    typer.echo(
        f"wrote {out}: {result.fields.shape[0]} saved states of {size}×{size}; "
        f"void area {area[0]:.0f} → {area[-1]:.0f} px; free energy {result.diagnostics['free_energy'][0]:.4g} → "
        f"{result.diagnostics['free_energy'][-1]:.4g}"
    )
