"""``neuradiff fit``, ``track``, ``forecast`` and ``demo``: learn, apply and show the NeuraDiff model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from neuradiff.cli._app import app, friendly_errors, set_threads


def _fit_progress():
    """A rich progress bar showing phase, iteration, loss terms and a few physical parameters."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=Console(stderr=True))
    tasks: dict[str, int] = {}

    def update(phase: str, it: int, total: int, row: dict[str, float]) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task(phase, total=total, info="")
        losses = " ".join(f"{k[5:]}={v:.3g}" for k, v in row.items() if k.startswith("loss_"))
        params = " ".join(f"{k[6:]}={v:.3g}" for k, v in row.items() if k.startswith("param_"))
        progress.update(tasks[phase], completed=it, info=f"{losses}  {params}" if phase == "joint" else losses)

    return progress, update


@app.command("fit")
@friendly_errors
def fit(
    video: Path = typer.Argument(..., help="The video (TIFF stack, image folder, mp4, ...)."),
    annotations: Path = typer.Option(..., "--annotations", help="Annotations: 0 solid, 1 void, 255 unknown."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML file of fit settings."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="A synthetic dataset's truth.npz (or its folder): "
                                                              "also write metrics.json."),
    resume: bool = typer.Option(False, "--resume", help="Continue from DIR/checkpoint.pt."),
    sim_time_per_frame: Optional[float] = typer.Option(None, help="Simulation time between frames (default: "
                                                                  "dataset.json beside the video, else 1)."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Learn the void physics and a recognition net jointly from a partially annotated video."""
    from neuradiff.training.run import read_fit_config, run_fit

    set_threads(threads)
    cfg = read_fit_config(config)
    progress, update = _fit_progress()
    with progress:
        summary = run_fit(video, annotations, out, config=cfg, truth_path=truth, resume=resume, progress=update,
                          sim_time_per_frame=sim_time_per_frame)
    typer.echo(f"wrote {out}: model.pt, model.json, params.json, history.csv, config.json"
               + (", metrics.json" if "metrics" in summary else ""))
    if "metrics" in summary:
        _print_summary(summary["metrics"])


def _print_summary(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = metrics["held_out_tracking"]
    f = metrics["forecast"]
    table = Table(title="NeuraDiff on the synthetic video", show_lines=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("held-out frames", str(len(t["frames"])))
    table.add_row("pixel accuracy (held out)", f"{100 * t['pixel_accuracy']:.2f} %")
    table.add_row("void IoU (held out)", f"{t['iou']:.3f}")
    table.add_row("Dice (held out)", f"{t['dice']:.3f}")
    table.add_row("forecast from frame 0: max |area error|", f"{100 * f['max_relative_area_error']:.1f} %")
    table.add_row("forecast: eta IoU at the last frame" + (" (drift-corrected)" if f.get("drift_corrected") else ""),
                  f"{f['last_frame_iou']:.3f}")
    g = metrics.get("forecast_initial_guess")
    if g:
        table.add_row("same forecast with the initial guess: max |area error|", f"{100 * g['max_relative_area_error']:.1f} %")
        table.add_row("same forecast with the initial guess: last-frame IoU", f"{g['last_frame_iou']:.3f}")
    console.print(table)
    if metrics.get("parameters"):
        pt = Table(title="learned vs true parameters (dimensionless)")
        for col in ("parameter", "learned", "true", "rel. error"):
            pt.add_column(col, justify="right")
        for name, v in metrics["parameters"].items():
            pt.add_row(name, f"{v['learned']:.3g}", f"{v['true']:.3g}", f"{100 * v['relative_error']:.0f} %")
        console.print(pt)


@app.command("track")
@friendly_errors
def track(
    video: Path = typer.Argument(..., help="The video to track."),
    model: Path = typer.Option(..., "--model", help="Model folder written by neuradiff fit."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    batch: int = typer.Option(1, help="Frames per inference batch (1 is fastest on a few CPU cores)."),
    nm_per_px: Optional[float] = typer.Option(None, "--nm-per-px", help="Override the pixel size (nm)."),
    frame_interval: Optional[float] = typer.Option(None, "--frame-interval", help="Override the frame interval (s)."),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Also write void measurements."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Recognise eta in every frame: eta.tif (float), masks.tif (eta ≥ 0.5) and void measurements."""
    import numpy as np
    import tifffile

    from neuradiff.analysis.forecast import recognise
    from neuradiff.cli.progress import progress_bar
    from neuradiff.data.files import atomic_path, staged_output
    from neuradiff.data.io import read_video
    from neuradiff.training.outputs import load_model

    set_threads(threads)
    if batch < 1:
        raise ValueError("--batch must be >= 1")
    fitted = load_model(model)
    vid = read_video(video, nm_per_px=nm_per_px, frame_interval_s=frame_interval)
    frames = vid.frames.astype(np.float32)
    chunks = []
    t0 = time.perf_counter()
    with progress_bar("tracking", frames.shape[0]) as update:
        for i in range(0, frames.shape[0], batch):
            chunks.append(recognise(fitted.net, frames[i:i + batch], batch=batch, first_index=i, eta_only=True))
            update(min(i + batch, frames.shape[0]))
    eta = np.concatenate(chunks).astype(np.float32)
    seconds = time.perf_counter() - t0
    masks = (eta >= 0.5).astype(np.uint8)
    with staged_output(out) as stage:
        with atomic_path(stage / "eta.tif") as tmp:
            tifffile.imwrite(tmp, eta)
        with atomic_path(stage / "masks.tif") as tmp:
            tifffile.imwrite(tmp, masks, imagej=True)
        if measure:
            from neuradiff.analysis.measure import measure_masks, write_measurements

            meas = measure_masks(masks, calibration=vid.calibration)
            write_measurements(meas, stage, video_frames=vid.frames, masks=masks)
    typer.echo(f"wrote {out}: {frames.shape[0]} frames tracked in {seconds:.1f} s "
               f"({frames.shape[0] / max(seconds, 1e-9):.1f} frames/s)")


@app.command("forecast")
@friendly_errors
def forecast_cmd(
    model: Path = typer.Option(..., "--model", help="Model folder written by neuradiff fit."),
    video: Path = typer.Option(..., "--video", help="The video holding the start frame."),
    frame: int = typer.Option(0, "--frame", help="Start frame K (0-based)."),
    steps: int = typer.Option(..., "--steps", help="Number of frame intervals to forecast."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Recognise frame K and simulate forward with the learned physics: forecast.npz, forecast.tif, areas."""
    import numpy as np
    import tifffile

    from neuradiff.analysis.forecast import forecast
    from neuradiff.data.files import atomic_path, staged_output, write_npz, write_text
    from neuradiff.data.io import read_video
    from neuradiff.data.render import RenderSettings, render_video
    from neuradiff.training.outputs import load_model

    set_threads(threads)
    fitted = load_model(model)
    vid = read_video(video)
    frames = vid.frames.astype(np.float32)
    if not 0 <= frame < frames.shape[0]:
        raise ValueError(f"--frame {frame} is out of range: the video has {frames.shape[0]} frames")
    if steps < 1:
        raise ValueError("--steps must be >= 1")
    phys = fitted.info["physics"]
    fc = forecast(fitted.net, fitted.params, frames, frame, steps, sim_time_per_frame=fitted.sim_time_per_frame,
                  dt=fitted.dt, discretisation=phys["discretisation"], integrator=phys["integrator"])
    rendered, _ = render_video(np.clip(fc.eta, 0, 1), c_v=fc.fields[:, 0], c_i=fc.fields[:, 1],
                               settings=RenderSettings(drift=0.0, flicker=0.0), seed=0)
    interval = vid.calibration.frame_interval_s
    area = (fc.eta >= 0.5).sum(axis=(1, 2))
    with staged_output(out) as stage:
        write_npz(stage / "forecast.npz", c_v=fc.fields[:, 0], c_i=fc.fields[:, 1], eta=fc.eta, frame=fc.frames)
        with atomic_path(stage / "forecast.tif") as tmp:
            tifffile.imwrite(tmp, rendered, imagej=True)
        lines = ["frame,time_s,void_area_px"] + [
            f"{k},{'' if interval is None else f'{k * interval:g}'},{a}" for k, a in zip(fc.frames, area)]
        write_text(stage / "forecast_area.csv", "\n".join(lines) + "\n")
    typer.echo(f"wrote {out}: forecast of {steps} frames from frame {frame}; void area {area[0]} → {area[-1]} px")


@app.command("demo")
@friendly_errors
def demo(
    out: Path = typer.Option(Path("neuradiff-demo"), "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Seed of the synthetic video and of the fit."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML fit settings."),
    threads: Optional[int] = typer.Option(1, help="torch CPU threads (1: the setting the demo was timed with)."),
) -> None:
    """The main job: make the default synthetic video, fit, track, forecast and print a summary."""
    from neuradiff.data.files import prepare_output_dir, staged_output
    from neuradiff.data.synthetic import dataset_config, make_dataset, write_dataset
    from neuradiff.cli.progress import progress_bar
    from neuradiff.training.run import read_fit_config, run_fit

    set_threads(threads)
    t0 = time.perf_counter()
    root = prepare_output_dir(out)
    cfg = dataset_config("single-void", seed=seed)
    with staged_output(root / "video") as stage:
        with progress_bar("simulating the video", cfg.simulation.steps) as update:
            ds = make_dataset(cfg, progress=update)
        write_dataset(ds, stage)
    fit_cfg = read_fit_config(config)
    fit_cfg.seed = seed
    progress, update = _fit_progress()
    with progress:
        summary = run_fit(root / "video" / "video.tif", root / "video" / "annotations.tif", root / "model",
                          config=fit_cfg, truth_path=root / "video" / "truth.npz", progress=update)
    track(root / "video" / "video.tif", model=root / "model", out=root / "track", batch=1, nm_per_px=None,
           frame_interval=None, measure=True, threads=None)
    forecast_cmd(model=root / "model", video=root / "video" / "video.tif", frame=0, steps=ds.video.shape[0] - 1,
              out=root / "forecast", threads=None)
    _print_summary(summary["metrics"])
    typer.echo(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {root}")
