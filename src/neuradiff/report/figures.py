"""The report's figures as PNG bytes: frame rows (the paper's Figures 4 and 6), area and radius curves, and
learned vs true parameters."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
from matplotlib.ticker import FuncFormatter
from skimage.segmentation import find_boundaries

from neuradiff.report.plots import figure, png_bytes
from neuradiff.synth.render import shift_like

#: Line styles of the methods in the curves (truth is black).
STYLE = {
    "neuradiff": ("NeuraDiff", "tab:red", "-"),
    "physics_only": ("differentiable physics, no net", "tab:blue", "-"),
    "residual": ("physics-informed residual fit", "tab:green", "-"),
    "surrogate": ("autoregressive UNet surrogate", "tab:purple", "-"),
    "initial_guess": ("physics with the initial guess", "0.5", "--"),
}
FORECAST_ROWS = ("neuradiff", "physics_only", "residual", "surrogate")
SURROGATE_SEED = "surrogate_seed"  # prefix of the further surrogate seeds' method names
NEURADIFF_SEED = "neuradiff_seed"  # prefix of the further NeuraDiff fits' method names


def style(name: str) -> tuple[str, str, str]:
    """(label, colour, line style) of a method; the further seeds of the surrogate and of NeuraDiff are dotted or
    dashed lines in their method's colour."""
    for prefix, method in ((SURROGATE_SEED, "surrogate"), (NEURADIFF_SEED, "neuradiff")):
        if name.startswith(prefix):
            label, colour, _ = STYLE[method]
            seed = name[len(prefix) :]
            return f"{label}, seed {seed}", colour, (":", "-.", "--")[int(seed) % 3]
    return STYLE[name]


def shown_frames(n_frames: int, count: int = 6) -> list[int]:
    """``count`` evenly spaced frame indices from the first to the last."""
    return sorted({int(round(x)) for x in np.linspace(0, n_frames - 1, min(count, n_frames))})


def _grey(frame: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(frame, [1, 99])
    return np.clip((frame - lo) / max(hi - lo, 1e-9), 0, 1)


def frame_rows(
    video: np.ndarray,
    truth_eta: np.ndarray,
    tracking: np.ndarray,
    forecasts: dict[str, np.ndarray],
    drift_px: np.ndarray,
    time_s: np.ndarray,
    nm_per_px: float,
) -> bytes:
    """Rows: the video, NeuraDiff's tracking (voids in red), and each method's forecast from frame 0 (eta in grey,
    moved with the stage drift, the true void outline in cyan); columns: evenly spaced frames."""
    cols = shown_frames(video.shape[0])
    moved = {
        k: shift_like(v.astype(np.float32), drift_px - drift_px[0]) for k, v in forecasts.items() if k in FORECAST_ROWS
    }
    rows = [("video", None), ("NeuraDiff tracking", None)] + [
        (textwrap.fill(f"{style(k)[0]} forecast", 20), k) for k in FORECAST_ROWS if k in moved
    ]
    h, w = video.shape[1:]
    scale = 1.45
    width, height = scale * len(cols) + 1.7, scale * len(rows) * h / w + 0.5
    fig, axes = figure(len(rows), len(cols), size=(width, height), layout=None)
    for j, k in enumerate(cols):
        outline = find_boundaries(truth_eta[k] >= 0.5, mode="inner")
        for i, (label, key) in enumerate(rows):
            ax = axes[i, j]
            if i == 0:
                img = np.repeat(_grey(video[k])[..., None], 3, axis=2)
            elif i == 1:
                img = np.repeat(_grey(video[k])[..., None], 3, axis=2)
                void = tracking[k] >= 0.5
                img[void] = 0.45 * img[void] + 0.55 * np.array([1.0, 0.0, 0.0])
            else:
                assert key is not None
                img = np.repeat(np.clip(moved[key][k], 0, 1)[..., None], 3, axis=2)
                img[outline] = (0.0, 0.85, 0.95)
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"frame {k}\nt = {time_s[k]:g} s", fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=7.5, rotation=0, ha="right", va="center", labelpad=4)
    bar_px = max(1, int(round(20 / nm_per_px)))
    axes[0, 0].plot([3, 3 + bar_px], [h - 4, h - 4], color="yellow", lw=2)
    axes[0, 0].text(3, h - 7, f"{20:g} nm", color="yellow", fontsize=6)
    fig.subplots_adjust(
        left=1.65 / width, right=0.995, top=1 - 0.42 / height, bottom=0.05 / height, wspace=0.04, hspace=0.06
    )
    return png_bytes(fig)


def curves(block: dict[str, Any], title: str) -> bytes:
    """Total void area (nm²) and mean void radius (nm) against time (s): the truth and every method's forecast."""
    t = np.asarray(block["time_s"])
    fig, axes = figure(1, 2, size=(11.0, 4.4))
    axes = axes[0]
    for ax, key, ylabel in (
        (axes[0], "area_nm2", "total void area (nm²)"),
        (axes[1], "mean_radius_nm", "mean void radius (nm)"),
    ):
        ax.plot(t, block["truth"][key], color="black", lw=2.2, label="truth")
        for name, res in block["methods"].items():
            label, colour, ls = style(name)
            ax.plot(t, res[key], color=colour, ls=ls, lw=1.4, label=label)
        ax.set_xlabel("time (s)")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7.5, loc="outside lower center", ncol=4)
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig)


def _plain(v: float, _pos: object = None) -> str:
    return f"{v:g}"


def _mantissa(v: float) -> int:
    return int(round(v / 10 ** np.floor(np.log10(v))))


def parameters(block: dict[str, Any]) -> bytes:
    """Learned / true value of every parameter (log scale) for the NeuraDiff seeds and the physics baselines,
    and the sensitivity of the forecast void-area curve to each."""
    names = block["names"]
    x = np.arange(len(names))
    true = np.array([block["true"][n] for n in names])
    fig, axes = figure(1, 2, size=(11.0, 4.4))
    axes = axes[0]
    ax = axes[0]
    ax.axhline(1.0, color="black", lw=1)
    for k, values in enumerate(block["neuradiff_seeds"]):
        ax.scatter(
            x - 0.15,
            [values[n] for n in names] / true,
            color="tab:red",
            s=18,
            label="NeuraDiff (each seed)" if k == 0 else None,
            zorder=3,
        )
    for key, marker, colour, label in (
        ("physics_only", "s", "tab:blue", "differentiable physics, no net"),
        ("residual", "^", "tab:green", "physics-informed residual fit"),
        ("initial", "x", "0.4", "initial guess"),
    ):
        ax.scatter(x + 0.15, [block[key][n] for n in names] / true, marker=marker, color=colour, s=22, label=label)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: _plain(v) if _mantissa(v) in (2, 3, 5) else ""))
    ax.set_xticks(x, names, rotation=45, fontsize=8)
    ax.set_ylabel("learned / true (dimensionless)")
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    ax = axes[1]
    sens = [block["sensitivity"]["rms_log_sensitivity"][n] for n in names]
    colours = {
        "pinned down": "tab:red",
        "jointly constrained": "tab:orange",
        "weakly constrained": "gold",
        "not constrained": "0.6",
    }
    ax.bar(x, np.maximum(sens, 1e-4), color=[colours[block["verdict"][n]] for n in names])
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=45, fontsize=8)
    ax.set_ylabel("RMS ∂ ln(void area) / ∂ ln(parameter)")
    ax.set_title(
        "colour: the verdict (red pinned down, orange jointly,\nyellow weakly, grey not constrained)", fontsize=8
    )
    return png_bytes(fig)
