"""Write a suite's results: ``report.html`` (self-contained: figures inlined), the PNG figures, CSV tables,
``results.json`` and the two synthetic datasets."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from neuradiff._version import __version__
from neuradiff.core.files import json_default, staged_output, write_bytes
from neuradiff.evaluation.suite import METHODS
from neuradiff.methods import FitResult
from neuradiff.report import figures
from neuradiff.synth.datasets import write_dataset

_NAMES = {**METHODS, "initial_guess": "physics with the initial guess (no learning)"}


def _name(method: str) -> str:
    return _NAMES.get(method) or figures.style(method)[0]


_CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;
color:#222;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:2em}
table{border-collapse:collapse;margin:10px 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 9px}
th{background:#f2f2f2;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;border:1px solid #ddd;margin:6px 0}p.note{color:#555;font-size:0.9em}
code{background:#f5f5f5;padding:0 3px}div.wide{overflow-x:auto}table.compact{font-size:0.78em}
table.compact th,table.compact td{padding:3px 5px}
"""


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not np.isfinite(v):
            return "–"
        return "0" if abs(v) < 1e-9 else f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return html.escape(str(v))


def _table(rows: list[dict[str, Any]], css_class: str = "") -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{_fmt(v)}</td>" if isinstance(v, (int, float)) else f"<td>{_fmt(v)}</td>"
            for v in r.values()
        )
        + "</tr>"
        for r in rows
    )
    attr = f" class='{css_class}'" if css_class else ""
    return f"<div class='wide'><table{attr}><tr>{head}</tr>{body}</table></div>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def tracking_rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "method": _name(m),
            "pixel accuracy (%)": 100 * r["pixel_accuracy"],
            "void IoU": r["iou"],
            "Dice": r["dice"],
            "object F1": r["object_f1"],
        }
        for m, r in block.items()
    ]


def forecast_rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "method": _name(m),
            "max |area error| (%)": 100 * r["max_relative_area_error"],
            "mean |area error| (%)": 100 * r["mean_relative_area_error"],
            "IoU at the last frame": r["last_frame_iou"],
            "IoU at the last frame vs drift-corrected recognition": r["against_recognition"]["last_frame_iou"],
        }
        for m, r in block["methods"].items()
    ]


def curve_rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for k, t in enumerate(block["time_s"]):
        row = {
            "time_s": t,
            "truth_area_nm2": block["truth"]["area_nm2"][k],
            "truth_mean_radius_nm": block["truth"]["mean_radius_nm"][k],
        }
        for m, r in block["methods"].items():
            row[f"{m}_area_nm2"] = r["area_nm2"][k]
            row[f"{m}_mean_radius_nm"] = r["mean_radius_nm"][k]
        rows.append(row)
    return rows


def parameter_rows(p: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for n in p["names"]:
        row = {"parameter": n, "true": p["true"][n], "initial guess": p["initial"][n]}
        for s, values in zip(p["seeds"], p["neuradiff_seeds"]):
            row[f"NeuraDiff seed {s}"] = values[n]
        sp = p["spread"][n]
        row.update(
            {
                "NeuraDiff mean": sp["mean"],
                "spread (std/mean)": sp["cv"],
                "mean |rel. error|": sp["mean_relative_error"],
                "physics only": p["physics_only"][n],
                "residual fit": p["residual"][n],
                "area sensitivity": p["sensitivity"]["rms_log_sensitivity"][n],
                "loading on the determined combinations": p["loading"][n],
                "verdict": p["verdict"][n],
            }
        )
        rows.append(row)
    return rows


def _kept(kept: dict[str, Any] | None) -> str:
    return "" if not kept else f"{kept['phase']} iteration {kept['iteration']}"


def summary_lines(scores: dict[str, Any]) -> list[str]:
    """The headline numbers of a suite, one sentence each (from the scores, nothing else)."""
    t = scores["tracking"]
    lines = [
        f"Tracking, {len(scores['held_out_frames'])} held-out frames: void IoU "
        + ", ".join(f"{_name(m)} {r['iou']:.3f}" for m, r in t.items())
        + "; pixel accuracy "
        + ", ".join(f"{_name(m)} {100 * r['pixel_accuracy']:.2f} %" for m, r in t.items())
        + "."
    ]
    for label, block in (
        ("Forecast of the training video from frame 0", scores["forecast"]),
        ("Forecast of the unseen multi-void video from frame 0", scores["transfer"]["forecast"]),
    ):
        lines.append(
            f"{label}, largest void-area error over all frames (lower is better): "
            + ", ".join(
                f"{_name(m)} {100 * r['max_relative_area_error']:.1f} %"
                for m, r in sorted(block["methods"].items(), key=lambda kv: kv[1]["max_relative_area_error"])
            )
            + "."
        )
    tt = scores["transfer"]["tracking"]
    lines.append(
        "Tracking of the unseen multi-void video, every frame: void IoU "
        + ", ".join(f"{_name(m)} {r['iou']:.3f}" for m, r in tt.items())
        + "; object F1 "
        + ", ".join(f"{_name(m)} {r['object_f1']:.3f}" for m, r in tt.items())
        + "."
    )
    return lines


def _fit_summary(fit: FitResult) -> dict[str, Any]:
    """A fit as plain data: its parameters (if any), history, kept iteration and training frames."""
    out: dict[str, Any] = {
        "method": fit.model.method,
        "history": fit.history,
        "kept": fit.kept,
        "train_frames": fit.train_frames.tolist(),
    }
    params = fit.model.parameters()
    if params is not None:
        out["params"] = {
            "values": params.as_floats(),
            "learned": list(getattr(fit.model, "info", {}).get("learned", [])),
        }
    return out


def _json_ready(result: dict[str, Any]) -> dict[str, Any]:
    scores = {k: v for k, v in result["scores"].items() if k != "arrays"}
    fits = {}
    for name, fit in result["fits"].items():
        entries = fit if isinstance(fit, list) else [fit]
        fits[name] = [_fit_summary(e) for e in entries]
    return {
        "neuradiff_version": __version__,
        "config": result["config"],
        "fit_config": result["fit_config"],
        "seconds": result["seconds"],
        "scores": scores,
        "fits": fits,
        "datasets": [ds.metadata for ds in result["datasets"]],
    }


def build(result: dict[str, Any]) -> dict[str, bytes]:
    """Every file of the report, by relative path."""
    scores = result["scores"]
    train_ds, transfer_ds = result["datasets"]
    files: dict[str, bytes] = {}
    figs = {}
    for key, ds, label in (("train", train_ds, "fig4"), ("transfer", transfer_ds, "fig6")):
        arr = scores["arrays"][key]
        cal = ds.metadata["calibration"]
        figs[f"{label}_frames"] = figures.frame_rows(
            ds.video,
            ds.truth["eta"],
            arr["tracking"],
            arr["forecast"],
            arr["drift_px"],
            ds.truth["time_s"],
            cal["nm_per_px"],
        )
    scenario = result.get("config", {}).get("train_scenario", "single-void")
    figs["fig4_curves"] = figures.curves(scores["forecast"], f"{scenario} training video: forecasts from frame 0")
    figs["fig6_curves"] = figures.curves(
        scores["transfer"]["forecast"], "unseen multi-void video (no fine-tuning): forecasts from frame 0"
    )
    figs["parameters"] = figures.parameters(scores["parameters"])
    for name, png in figs.items():
        files[f"figures/{name}.png"] = png
    tables = {
        "table1_tracking": tracking_rows(scores["tracking"]),
        "fig4_forecast": forecast_rows(scores["forecast"]),
        "fig4_curves": curve_rows(scores["forecast"]),
        "fig6_tracking": tracking_rows(scores["transfer"]["tracking"]),
        "fig6_forecast": forecast_rows(scores["transfer"]["forecast"]),
        "fig6_curves": curve_rows(scores["transfer"]["forecast"]),
        "parameters": parameter_rows(scores["parameters"]),
        "timing": [
            {
                "stage": k,
                "seconds": v,
                "kept model (validation)": _kept(result.get("kept", {}).get(k)),
                "from checkpoint": "yes" if k in result.get("reused", ()) else "",
            }
            for k, v in result["seconds"].items()
        ],
    }
    for name, rows in tables.items():
        files[f"tables/{name}.csv"] = _csv(rows).encode()
    files["results.json"] = json.dumps(_json_ready(result), indent=2, default=json_default).encode()
    files["report.html"] = _html(result, figs, tables).encode()
    return files


def _html(result: dict[str, Any], figs: dict[str, bytes], tables: dict[str, list]) -> str:
    scores = result["scores"]
    train_ds, transfer_ds = result["datasets"]
    cfg = result["config"]
    scenario = cfg.get("train_scenario", "single-void")
    tm, tr = train_ds.metadata, transfer_ds.metadata
    p = scores["parameters"]
    n_ann = len(tm["annotations"]["annotated_frames"])
    total_min = result["seconds"]["total"] / 60

    def video_line(meta) -> str:
        t, h, w = meta["shape"]
        return (
            f"{meta['scenario']} (seed {meta['seed']}): {t} frames of {h}×{w} px, "
            f"{meta['calibration']['nm_per_px']:g} nm/px, {meta['calibration']['frame_interval_s']:g} s per frame, "
            f"contrast-to-noise {meta['contrast_to_noise']:.1f}"
        )

    methods = "".join(
        f"<li><b>{html.escape(v)}</b>: {html.escape(d)}</li>"
        for v, d in (
            (
                "NeuraDiff",
                "the recognition net and the phase-field parameters trained jointly (L = L_sim + λ1 L_rec + "
                "λ2 L_sim-rec), forecasts by simulating from the recognised frame 0.",
            ),
            (
                "supervised UNet",
                "the same net trained on the annotated pixels only, for the same number of iterations "
                "(tracking only, the paper's Table 1 baseline).",
            ),
            (
                "autoregressive UNet surrogate",
                "a UNet that maps the eta map of one frame to the next, trained on "
                "consecutive frames of the supervised net's tracking (annotations where "
                "they exist), rolled out from frame 0 (the paper's pure neural forecast). "
                "Several seeds are trained: a rollout of a learned map is chaotic, and one "
                "seed can lose the void where another keeps it; the frame rows show the "
                "first seed, the tables and curves every seed.",
            ),
            (
                "differentiable physics, no net",
                "the same simulator and parameters, fitted by simulating from one "
                "annotated frame to the next and matching its annotation; the unobserved "
                "c_v, c_i start from the same priors NeuraDiff uses.",
            ),
            (
                "physics-informed residual fit",
                "a net and the parameters trained so that the recognised fields of "
                "consecutive frames satisfy the equations (midpoint residual over one "
                "frame interval) instead of a simulated rollout.",
            ),
            (
                "physics with the initial guess",
                "the NeuraDiff start state simulated with the parameters every fit "
                "starts from: what learning the physics adds.",
            ),
        )
    )
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>neuradiff evaluation</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>neuradiff evaluation: the paper suite</h1>",
        f"<p><b>Suite:</b> {html.escape(cfg['name'])}.</p>",
        f"<p>neuradiff {__version__}, Python {platform.python_version()}; {cfg['workers']} worker process(es) with "
        f"{cfg['threads']} torch thread(s) each; total {total_min:.1f} min. Everything below was computed in this run "
        "from synthetic videos whose physics is known.</p>",
        f"<ul><li>Training video: {html.escape(video_line(tm))}; {n_ann} frames annotated "
        f"({', '.join(map(str, tm['annotations']['annotated_frames']))}), one of them held out for validation.</li>"
        f"<li>Transfer video (never seen in training): {html.escape(video_line(tr))}.</li></ul>",
        "<h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in summary_lines(scores)) + "</ul>",
        f"<h2>Methods</h2><ul>{methods}</ul>",
        "<h2>Table 1 analogue: tracking on held-out frames</h2>",
        f"<p>Masks are eta ≥ 0.5, compared with the true eta ≥ 0.5 on the {len(scores['held_out_frames'])} frames not "
        "used for training. Pixel accuracy is the paper's metric; it is dominated by the solid background, so void "
        "IoU, Dice and object-level F1 (a void found when a predicted object overlaps it with IoU ≥ 0.5) are shown "
        "too.</p>",
        _table(tables["table1_tracking"]),
        "<h2>Figure 4 analogue: tracking and forecasts of the training video</h2>",
        "<p>Rows: the video; NeuraDiff's tracking (voids in red); each method's forecast from frame 0 (eta in grey, "
        "moved with the stage drift estimated from the video by phase correlation, as neuradiff track --register "
        "estimates it, because no model can predict the stage; the true void outline in cyan).</p>",
        _img(figs["fig4_frames"], "Figure 4 analogue: frames"),
        _img(figs["fig4_curves"], "Figure 4 analogue: void area and radius against time"),
        _table(tables["fig4_forecast"]),
        "<h2>Figure 6 analogue: transfer to an unseen multi-void video</h2>",
        f"<p>The models trained on the {html.escape(scenario)} training video, applied without fine-tuning. "
        "Tracking on every frame:</p>",
        _table(tables["fig6_tracking"]),
        _img(figs["fig6_frames"], "Figure 6 analogue: frames"),
        _img(figs["fig6_curves"], "Figure 6 analogue: void area and radius against time"),
        _table(tables["fig6_forecast"]),
        "<h2>Learned parameters and identifiability</h2>",
        f"<p>{html.escape(p['statement'])}</p>",
        *[
            f"<p>What the calibration of NeuraDiff fit {k + 1} determines, with 90 % intervals (its Fisher matrix "
            f"of the whole video's void-area curve): {html.escape(c['statement'])}</p>"
            for k, c in enumerate(p.get("calibration") or [])
            if c
        ],
        _img(figs["parameters"], "learned vs true parameters"),
        _table(tables["parameters"], "compact"),
        "<p class='note'>Parameters are dimensionless (energies per site in the simulation's units, lengths in grid "
        "spacings, times in simulation units). Area sensitivity: RMS over the frames of ∂ ln(void area)/∂ ln(θ) at "
        "the first NeuraDiff fit, by central differences (a sensitivity of zero is drawn at the axis floor, 10⁻⁴).</p>",
        "<h2>Timing</h2>",
        _table(tables["timing"]),
        "<p class='note'>Files beside this report: <code>figures/*.png</code>, <code>tables/*.csv</code>, "
        "<code>results.json</code> (every score, history and setting), <code>data/</code> (the two synthetic "
        "datasets, readable by <code>neuradiff fit</code>), <code>checkpoints/</code> (each finished training job; "
        "<code>--resume</code> reuses them). Training times are per job; with several workers they overlap, so "
        "their sum exceeds the total.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(result: dict[str, Any], out: str | Path) -> Path:
    """Write every file into ``out`` at once (a staging folder renamed at the end: nothing half-written)."""
    files = build(result)
    with staged_output(out) as stage:
        for rel, blob in files.items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            write_bytes(stage / rel, blob)
        train_ds, transfer_ds = result["datasets"]
        for ds in (train_ds, transfer_ds):
            name = ds.metadata["scenario"]
            if ds is transfer_ds and name == train_ds.metadata["scenario"]:
                name += "-transfer"  # a multi-void training video beside the multi-void transfer video
            folder = stage / "data" / name
            folder.mkdir(parents=True, exist_ok=True)
            write_dataset(ds, folder)
    return Path(out) / "report.html"
