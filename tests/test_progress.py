"""Progress bars: count, rate and time left per task, loss terms on their own line, silent off a terminal."""

import io

import numpy as np
import pytest
import tifffile
from rich.console import Console

from neuradiff.cli.progress import progress_bars
from neuradiff.workflows import run_measure


def test_bars_show_count_rate_time_left_and_the_loss_below():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    with progress_bars(console) as progress:
        for k in range(1, 11):
            progress("pretrain", k, 40, {"loss_total": 0.5 / k, "loss_rec": 0.25, "param_E_v": 6.0})
    text = out.getvalue()
    assert "pretrain" in text and "10/40" in text and "/s" in text and "left" in text
    last = text.rsplit("pretrain", 1)[1]
    assert "total=0.05 rec=0.25  E_v=6" in last
    bar_line = next(line for line in last.splitlines() if "10/40" in line)
    assert "total=" not in bar_line  # the loss never shares the bar's line


def test_nothing_is_drawn_off_a_terminal():
    out = io.StringIO()
    with progress_bars(Console(file=out, force_terminal=False)) as progress:
        progress("tracking", 3, 3)
    assert out.getvalue() == ""


@pytest.mark.slow
def test_measure_reports_every_frame(tmp_path):
    masks = np.zeros((4, 16, 16), np.uint8)
    masks[:, 4:8, 4:8] = 1
    path = tmp_path / "masks.tif"
    tifffile.imwrite(path, masks, photometric="minisblack")
    seen: dict[str, tuple[int, int]] = {}
    run_measure(
        path,
        tmp_path / "out",
        overlay=False,
        progress=lambda task, done, total, info=None: seen.__setitem__(task, (done, total)),
    )
    assert seen["measuring"] == (4, 4)
