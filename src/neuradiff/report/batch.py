"""The tables and the summary figure of a batch of recordings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neuradiff.core.files import atomic_path, write_bytes
from neuradiff.report.plots import figure, png_bytes


def write_batch_tables(out: Path, recordings: pd.DataFrame, voids: list[pd.DataFrame]) -> list[str]:
    """Write ``recordings.csv`` and, when any void was found, ``voids.csv`` and ``summary.png`` into ``out``.

    Parameters
    ----------
    out : Path
        The batch folder.
    recordings : DataFrame
        One row per recording (its manifest entry and conditions).
    voids : list of DataFrame
        Each recording's ``voids.csv`` with a leading ``recording`` column (and its conditions).

    Returns
    -------
    list of str
        The names of the files written (each atomically).
    """
    written = []
    with atomic_path(out / "recordings.csv") as tmp:
        recordings.to_csv(tmp, index=False)
    written.append("recordings.csv")
    voids = [v for v in voids if len(v)]
    if voids:
        table = pd.concat(voids, ignore_index=True)
        with atomic_path(out / "voids.csv") as tmp:
            table.to_csv(tmp, index=False)
        write_bytes(out / "summary.png", summary_png(table))
        written += ["voids.csv", "summary.png"]
    return written


def summary_png(voids: pd.DataFrame) -> bytes:
    """Void count and mean equivalent diameter against time (s, else frame), one line per recording."""
    time_col = "time_s" if "time_s" in voids.columns and voids["time_s"].notna().any() else "frame"
    size_col = next(
        (c for c in ("eq_diameter_nm", "eq_diameter_px") if c in voids.columns and voids[c].notna().any()), None
    )
    fig, ax = figure(1, 2, (10, 4.2))
    for name, group in voids.groupby("recording", sort=False):
        per_time = group.groupby(time_col)
        counts = per_time.size()
        ax[0, 0].plot(counts.index, counts.to_numpy(), lw=1.2, label=str(name))
        if size_col is not None:
            mean = group.groupby(time_col)[size_col].agg("mean")
            ax[0, 1].plot(mean.index.to_numpy(), mean.to_numpy(), lw=1.2)
    xlabel = "time (s)" if time_col == "time_s" else "frame"
    unit = "nm" if size_col == "eq_diameter_nm" else "px"
    ax[0, 0].set(xlabel=xlabel, ylabel="voids per frame", title="void count")
    ax[0, 1].set(xlabel=xlabel, ylabel=f"mean equivalent diameter ({unit})", title="void size")
    n = voids["recording"].nunique()
    if n <= 12:
        fig.legend(loc="outside lower center", ncol=min(4, n), fontsize=8, frameon=False)
    return png_bytes(fig)
