"""Make ``napari-correct-and-retrain.png``: a synthetic multi-void video opened with neuradiff's reader, tracked by
the "Correct and retrain" dock widget (the shipped generalist), one void painted by hand.

Run with the napari extra under a display (``xvfb-run -a python docs/images/napari_screenshot.py``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

import neuradiff as nd
from neuradiff.napari.loop import MASKS_LAYER, VOID_LABEL

OUT = Path(__file__).with_name("napari-correct-and-retrain.png")


def main() -> None:
    root = Path(tempfile.mkdtemp())
    sim = nd.simulate(
        "multi-void", seed=0, size=128, frames=20, config={"nm_per_px": 0.5, "frame_interval_s": 2.0}, device="cpu"
    )
    sim.save(root / "video")
    viewer = napari.Viewer()
    viewer.window.resize(1500, 820)
    viewer.open(str(root), plugin="neuradiff")
    viewer.layers["video: annotations"].visible = False
    _, widget = viewer.window.add_plugin_dock_widget("neuradiff", "Correct and retrain")
    widget.image.setCurrentText("video: video")
    widget.device.setCurrentText("cpu")
    widget.track()
    while widget.busy:
        QApplication.processEvents()
        time.sleep(0.05)
    if widget.error is not None:
        raise widget.error
    masks = viewer.layers[MASKS_LAYER]
    painted = np.asarray(masks.data).copy()
    painted[10, 100:112, 14:26] = VOID_LABEL  # a void painted by hand in frame 10
    masks.data = painted
    masks.selected_label = VOID_LABEL
    masks.mode = "paint"
    viewer.dims.set_current_step(0, 10)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"wrote {OUT}")
    viewer.close()


if __name__ == "__main__":
    main()
