"""``neuradiff fit``, ``track``, ``forecast`` and ``demo``: learn, apply and show the NeuraDiff model."""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from neuradiff.cli._app import app, echo_err, friendly_errors, set_threads
from neuradiff.cli.options import device_option
from neuradiff.cli.progress import progress_bars
from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.annotations import LabelScheme
from neuradiff.io.stream import DEFAULT_CHUNK
from neuradiff.measure.denoise import Denoise
from neuradiff.methods import NeuraDiffModel
from neuradiff.training.distributed import launched
from neuradiff.workflows import read_fit_config, run_demo, run_fit, run_forecast, run_track
from neuradiff.workflows.cluster import DaskRunner, dask_client
from neuradiff.workflows.track import CLIPPED_NOTE_SHARE, recording_clipped_share, recording_scale

#: Below this fraction of the annotated voids that stand out of their frame's noise reproduced by the fitted net,
#: ``fit`` says what to do about it.
ANNOTATED_RECALL_WARNING = 0.8


@app.command("fit")
@friendly_errors
def fit(
    video: Path = typer.Argument(..., help="The video (TIFF stack, image folder, mp4, ...)."),
    annotations: Path = typer.Option(..., "--annotations", help="Annotations: 0 solid, 1 void, 255 unknown."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML file of fit settings."),
    truth: Optional[Path] = typer.Option(
        None, "--truth", help="A synthetic dataset's truth.npz (or its folder): also write metrics.json."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from DIR/checkpoint.pt."),
    sim_time_per_frame: Optional[float] = typer.Option(
        None, help="Simulation time between frames (default: dataset.json beside the video, else 1)."
    ),
    frame_times: Optional[Path] = typer.Option(
        None,
        "--frame-times",
        help="Per-frame time table (CSV: frame,time_s[,dose][,temperature]); default: VIDEO_frame_times.csv beside it.",
    ),
    instances: bool = typer.Option(
        False,
        "--instances",
        help="Annotations are instance labels (Cellpose, StarDist): 0 solid, every label > 0 void.",
    ),
    void_class: Optional[int] = typer.Option(
        None, "--void-class", help="Annotations are a class image (ilastik): this class is void, the others solid."
    ),
    unknown_class: Optional[int] = typer.Option(
        None, "--unknown-class", help="With --void-class: the class of not-annotated pixels (default 0)."
    ),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    device: str = device_option(),
) -> None:
    """Learn the void physics and a recognition net jointly from a partially annotated video.

    Under ``torchrun --nproc_per_node N`` the N processes train the one fit together (gloo on the CPU, nccl on
    CUDA GPUs); the first writes the model folder and shows the progress.
    """
    set_threads(threads)
    labels = LabelScheme.from_options(instances=instances, void_class=void_class, unknown_class=unknown_class)
    dev = resolve_device(device)
    cfg = read_fit_config(config)
    processes = launched()
    main = processes is None or processes.main
    with progress_bars() if main else contextlib.nullcontext(None) as progress:
        summary = run_fit(
            video,
            annotations,
            out,
            config=cfg,
            truth_path=truth,
            resume=resume,
            progress=progress,
            sim_time_per_frame=sim_time_per_frame,
            device=dev,
            labels=labels,
            frame_times=frame_times,
        )
    if not main:
        return
    typer.echo(f"wrote {out}: {', '.join(summary.files)}")
    print_threshold(summary.model)
    print_annotated_voids(summary.model)
    print_skipped(summary.history)
    print_identifiability(summary.model)
    if summary.metrics is not None:
        print_summary(summary.metrics)


def print_skipped(history: list[dict]) -> None:
    """How many training iterations were skipped because their rollouts were too stiff to take, by phase."""
    skipped: dict[str, int] = {}
    for row in history:
        if row.get("skipped"):
            skipped[row["phase"]] = skipped.get(row["phase"], 0) + 1
    for phase, n in skipped.items():
        total = sum(1 for row in history if row.get("phase") == phase)
        typer.echo(
            f"{n} of the {total} {phase} iterations {'was' if n == 1 else 'were'} skipped: a rollout of "
            f"{'its' if n == 1 else 'their'} batch needed more explicit sub-steps than allowed (history.csv, column "
            "skipped).",
            err=True,
        )


def print_threshold(model: NeuraDiffModel) -> None:
    """The contrast threshold of the fitted model's masks, and how many annotated voids were too faint to set it."""
    threshold = model.info.get("min_contrast")
    if not threshold:
        return
    typer.echo(
        f"Its masks leave out regions that stand out of their frame by less than t = {threshold:.1f} (the faintest "
        "annotated void with t ≥ 3, else the faintest, less one; at most 5); track --min-contrast changes it, "
        "0 keeps them all."
    )
    seen = model.info.get("annotated_voids") or {}
    if "clear" in seen and 0 < int(seen["clear"]) < int(seen["annotated"]):
        faint, total = int(seen["annotated"]) - int(seen["clear"]), int(seen["annotated"])
        typer.echo(
            f"{faint} of the {total} annotated voids stand out less than t = 3 and did not set it: voids as faint as "
            "those may be left out of the masks."
        )


def print_annotated_voids(model: NeuraDiffModel) -> None:
    """How many of the annotated voids the fitted net reproduces, and what to do when it misses many of those that
    stand out of their frame's noise."""
    seen = model.info.get("annotated_voids")
    if not seen or not seen.get("annotated"):
        return
    found, total = int(seen["found"]), int(seen["annotated"])
    line = f"The fitted net reproduces {found} of the {total} annotated voids on their own frames (IoU ≥ 0.5)"
    if "clear" not in seen:  # a model written before the clear voids were counted
        clear_found, clear = found, total
        typer.echo(line + ".")
    else:
        clear_found, clear = int(seen["clear_found"]), int(seen["clear"])
        faint = total - clear
        typer.echo(
            line + (f": {clear_found} of the {clear} that stand out of their frame's noise (contrast-to-noise ≥ 3) "
                    f"and {found - clear_found} of the {faint} fainter ones." if faint else ".")
        )  # fmt: skip
    if clear and clear_found < ANNOTATED_RECALL_WARNING * clear:
        typer.echo(
            "That is fewer than 8 in 10 of those that stand out: on voids among clutter, train the net longer "
            '(e.g. {"fit": {"pretrain_iters": 400}}) or annotate more, and check its masks before trusting counts.',
            err=True,
        )


def print_identifiability(model: NeuraDiffModel) -> None:
    """What the video determines about the parameters, in plain words."""
    if model.identifiable is not None:
        typer.echo("What this video determines: " + model.identifiable.statement())


def print_summary(metrics: dict[str, Any]) -> None:
    """The demo's table: tracking on held-out frames, the forecast, and learned vs true parameters."""
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
    table.add_row(
        "forecast: eta IoU at the last frame" + (" (estimated drift)" if f.get("drift_corrected") else ""),
        f"{f['last_frame_iou']:.3f}",
    )
    g = metrics.get("forecast_initial_guess")
    if g:
        table.add_row(
            "same forecast with the initial guess: max |area error|", f"{100 * g['max_relative_area_error']:.1f} %"
        )
        table.add_row("same forecast with the initial guess: last-frame IoU", f"{g['last_frame_iou']:.3f}")
    band = metrics.get("forecast_band")
    if band:
        share = band["fraction_of_frames_in_band"]
        table.add_row("forecast: frames whose true area is in the 90 % band", f"{100 * share:.0f} %")
    for c in metrics.get("identifiable_combinations", []):
        lo, hi = c["interval_90"]
        table.add_row(
            f"{c['combination']}: fitted (90 % interval) vs true",
            f"{c['fitted']:.3g} ({lo:.3g}–{hi:.3g}) vs {c['true']:.3g}",
        )
    console.print(table)
    if metrics.get("parameters"):
        pt = Table(title="learned vs true parameters (dimensionless)")
        for col in ("parameter", "learned", "true", "rel. error"):
            pt.add_column(col, justify="right")
        for name, v in metrics["parameters"].items():
            pt.add_row(name, f"{v['learned']:.3g}", f"{v['true']:.3g}", f"{100 * v['relative_error']:.0f} %")
        console.print(pt)


def parse_size(text: str | None) -> tuple[float | None, str]:
    """``"12px"``, ``"4nm"`` or ``"12"`` (px) → (value, unit), ``"auto"`` → (None, "auto"); one-line error
    otherwise."""
    if text is None:
        return None, "px"
    t = text.strip().lower()
    if t == "auto":
        return None, "auto"
    unit = "nm" if t.endswith("nm") else "px"
    number = t[:-2] if t.endswith(("nm", "px")) else t
    try:
        value = float(number)
    except ValueError:
        raise NeuradiffError(
            f"--void-size must be a number with px or nm, e.g. 12px or 4nm, or auto, got {text!r}"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise NeuradiffError(f"--void-size must be a positive size, got {text!r}")
    return value, unit


#: Said on stderr after every run with the shipped recogniser, while it has never been scored on real voids.
GENERALIST_NOTE = (
    "neuradiff: note: no --model, so the shipped generalist recogniser (version 1.5) is used; it was trained on "
    "synthetic frames only and has not been scored on real voids (held-out synthetic frames: object F1 0.82-0.90 "
    "on the voids that stand out of their noise, 0.63 on 1024² frames of a handful of voids among loops; real "
    "frames of dislocation loops: 0.5 false voids per frame; see the model card): fit a model on a few annotated "
    "frames of your recording for trustworthy counts"
)


#: What clipped frames do to the shipped recogniser (``benchmarks/bench_capture.py``).
CLIPPED_COST = (
    "the shipped recogniser marks more false voids on clipped frames (held-out 1024² frames clipped 2 % at each end: "
    "precision 0.80 against 0.92 unclipped); export without saturation if you can"
)


def scale_note(factor: float) -> str:
    """Said on stderr when the shipped recogniser, given no ``--void-size``, reads a recording most surely at
    ``factor`` < 1 of its size (:func:`~neuradiff.workflows.track.recording_scale`)."""
    return (
        f"neuradiff: note: the recogniser reads these frames most surely at {factor:.3g} of their size, as if they "
        "were recorded at a higher magnification than it was trained on: --void-size auto resamples them"
    )


def clipped_note(share: float) -> str:
    """Said on stderr when the shipped recogniser reads frames an export clipped (``share`` of a frame's pixels at
    its darkest or brightest grey level, :func:`~neuradiff.workflows.track.recording_clipped_share`)."""
    return (
        f"neuradiff: note: {100 * share:.1f} % of a frame's pixels sit at its darkest or brightest grey level: the "
        f"export clipped them; {CLIPPED_COST}"
    )


def clipped_recordings_note(clipped: list[tuple[str, float]], total: int) -> str:
    """:func:`clipped_note` for a batch: the recordings (name, share) whose frames an export clipped, of ``total``."""
    shown = ", ".join(f"{name} {100 * share:.1f} %" for name, share in clipped[:5])
    more = f" and {len(clipped) - 5} more" if len(clipped) > 5 else ""
    return (
        f"neuradiff: note: the export clipped the frames of {len(clipped)} of {total} recordings (share of a frame's "
        f"pixels at its darkest or brightest grey level: {shown}{more}); {CLIPPED_COST}"
    )


@app.command("track")
@friendly_errors
def track(
    video: Path = typer.Argument(..., help="The video to track."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model folder written by neuradiff fit (default: the shipped generalist recogniser)."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    void_size: Optional[str] = typer.Option(
        None,
        "--void-size",
        help="Expected void diameter, e.g. 12px or 4nm (generalist only): frames are resampled to the net's scale; "
        "auto: the recogniser chooses the factor from three frames (for frames drawn 2–4× larger than it was trained "
        "on, at a high magnification).",
    ),
    min_contrast: Optional[float] = typer.Option(
        None,
        "--min-contrast",
        help="The contrast filter's threshold: with the generalist a frame where enough voids reach it keeps every "
        "void from a contrast-to-noise statistic of 3, any other frame only those that reach it; with --model only "
        "the regions that reach it (default: the recogniser's own: the shipped one's, in its model card; a fitted "
        "model's, from the faintest annotated void that stands out; 0 keeps every void the net finds). Measured on the "
        "frames the net sees: with --denoise, the denoised ones.",
    ),
    batch: int = typer.Option(1, help="Frames per inference batch (1 is fastest on a few CPU cores)."),
    nm_per_px: Optional[float] = typer.Option(None, "--nm-per-px", help="Override the pixel size (nm)."),
    frame_interval: Optional[float] = typer.Option(None, "--frame-interval", help="Override the frame interval (s)."),
    frame_times: Optional[Path] = typer.Option(
        None,
        "--frame-times",
        help="Per-frame time table (CSV: frame,time_s[,dose][,temperature]); default: VIDEO_frame_times.csv beside it.",
    ),
    measure: bool = typer.Option(True, "--measure/--no-measure", help="Also write void measurements."),
    register: bool = typer.Option(
        False, "--register", help="Correct rigid stage drift first (phase correlation); shifts go to shifts.csv."
    ),
    denoise: str = typer.Option(
        "none",
        "--denoise",
        help="Denoise frames before recognition: none, gaussian, nlmeans (non-local means) or temporal (median "
        "over a few frames; after --register).",
    ),
    denoise_sigma: Optional[float] = typer.Option(
        None, "--denoise-sigma", help="Gaussian sigma in px for --denoise gaussian (default 1)."
    ),
    denoise_window: Optional[int] = typer.Option(
        None, "--denoise-window", help="Frames in the median window for --denoise temporal (odd, default 3)."
    ),
    chunk: int = typer.Option(
        DEFAULT_CHUNK,
        "--chunk",
        min=1,
        help="Frames read, recognised, measured and written at a time: memory depends on this and the frame "
        "size, not on the recording's length (--register reads the recording whole).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Split the recording into parts tracked by this many processes of a local Dask cluster (one torch "
        "thread each); the voids are linked across part borders in one pass, so the outputs equal one process's.",
    ),
    scheduler: Optional[str] = typer.Option(
        None,
        "--scheduler",
        help="Address of a running Dask scheduler (tcp://host:8786) whose workers track the parts; they must see "
        "the video and the output folder.",
    ),
    span: Optional[int] = typer.Option(
        None, "--span", min=1, help="Frames per part with --workers/--scheduler (default: an equal share each)."
    ),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    device: str = device_option(),
) -> None:
    """Recognise eta in every frame: eta.tif (float), masks.tif (eta ≥ 0.5) and void measurements."""
    cleanup = Denoise(denoise, sigma=denoise_sigma, window=denoise_window)
    set_threads(threads)
    size, unit = parse_size(void_size)
    dev = resolve_device(device)
    if span is not None and workers == 1 and scheduler is None:
        raise NeuradiffError("--span splits the recording among --workers (more than 1) or a --scheduler's workers")
    if register and (workers > 1 or scheduler is not None):
        raise NeuradiffError("--register reads the recording whole, in one process: drop --workers/--scheduler")
    with contextlib.ExitStack() as stack:
        runner = None
        if workers > 1 or scheduler is not None:
            runner = DaskRunner(stack.enter_context(dask_client(workers, scheduler)), threads=threads or 1)
        progress = stack.enter_context(progress_bars())
        summary = run_track(
            video,
            model,
            out,
            batch=batch,
            void_size=size,
            void_size_unit=unit,
            min_contrast=min_contrast,
            nm_per_px=nm_per_px,
            frame_interval_s=frame_interval,
            frame_times=frame_times,
            measure=measure,
            register=register,
            denoise=cleanup,
            device=dev,
            progress=progress,
            chunk=chunk,
            runner=runner,
            span=span,
        )
    if model is None:
        echo_err(GENERALIST_NOTE)
        if unit == "auto":
            echo_err(f"neuradiff: note: --void-size auto: frames resampled by {summary.resample_factor:.3g}")
        elif size is None and (factor := recording_scale(video)) < 1:
            echo_err(scale_note(factor))
        share = recording_clipped_share(video)
        if share >= CLIPPED_NOTE_SHARE:
            echo_err(clipped_note(share))
    typer.echo(
        f"wrote {out}: {summary.n_frames} frames tracked in {summary.seconds:.1f} s "
        f"({summary.frames_per_second:.1f} frames/s)"
    )


@app.command("forecast")
@friendly_errors
def forecast(
    model: Path = typer.Option(..., "--model", help="Model folder written by neuradiff fit."),
    video: Path = typer.Option(..., "--video", help="The video holding the start frame."),
    frame: int = typer.Option(0, "--frame", help="Start frame K (0-based)."),
    steps: int = typer.Option(..., "--steps", help="Number of frame intervals to forecast."),
    out: Path = typer.Option(..., "--out", help="Output folder."),
    frame_times: Optional[Path] = typer.Option(
        None,
        "--frame-times",
        help="Per-frame time table (CSV: frame,time_s[,dose][,temperature]); default: VIDEO_frame_times.csv beside it.",
    ),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    device: str = device_option(),
) -> None:
    """Recognise frame K and simulate forward with the learned physics: forecast.npz, forecast.tif, areas."""
    set_threads(threads)
    dev = resolve_device(device)
    summary = run_forecast(model, video, out, frame=frame, steps=steps, device=dev, frame_times=frame_times)
    area = summary.area_px
    typer.echo(f"wrote {out}: forecast of {steps} frames from frame {frame}; void area {area[0]} → {area[-1]} px")


@app.command("demo")
@friendly_errors
def demo(
    out: Path = typer.Option(Path("neuradiff-demo"), "--out", help="Output folder."),
    seed: int = typer.Option(0, help="Seed of the synthetic video and of the fit."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/TOML fit settings."),
    threads: Optional[int] = typer.Option(1, help="torch CPU threads (1: the setting the demo was timed with)."),
    device: str = device_option(),
) -> None:
    """The main job: make the default synthetic video, fit, track, forecast and print a summary."""
    set_threads(threads)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    with progress_bars() as progress:
        summary = run_demo(out, seed=seed, config=config, device=dev, progress=progress)
    area = summary.forecast.area_px
    typer.echo(
        f"wrote {summary.out}: video/, model/, track/ ({summary.track.n_frames} frames), forecast/ "
        f"(void area {area[0]} → {area[-1]} px)"
    )
    assert summary.fit.metrics is not None
    print_identifiability(summary.fit.model)
    print_summary(summary.fit.metrics)
    typer.echo(f"demo finished in {time.perf_counter() - t0:.0f} s; outputs in {summary.out}")
