"""The napari dock widget in a real viewer (headless, under Xvfb): open a demo-like folder with the reader (every
layer in s and nm), track with the model, paint a correction, retrain from it and track again."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

if find_spec("napari") is None or find_spec("qtpy") is None:
    pytest.skip("the napari extra is not installed", allow_module_level=True)
if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
    message = "napari's viewer needs an X display: install Xvfb (pytest-xvfb starts it)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)

import neuradiff as nd
from neuradiff.io.annotations import read_annotations
from neuradiff.methods import Forecast
from neuradiff.napari.loop import MASKS_LAYER, TRACKS_LAYER, Retraining, Tracking, labels_of_masks

CALIBRATED = {"steps_per_frame": 5, "nm_per_px": 0.5, "frame_interval_s": 2.0, "annotations": {"fraction": 0.5}}
TINY_FIT = {"pretrain_iters": 2, "joint_iters": 1, "gap": 2, "batch": 1, "net": {"width": 4, "depth": 1}}
SCALE = (2.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, nd.SimulatedVideo]:
    """A folder laid out as ``neuradiff demo`` lays it out: video/, model/, track/, forecast/."""
    root = tmp_path_factory.mktemp("demo")
    sim = nd.simulate(size=24, frames=6, config=CALIBRATED, device="cpu")
    sim.save(root / "video")
    fitted = nd.fit(sim, config=TINY_FIT, device="cpu", out=root / "model")
    nd.track(sim, fitted, device="cpu").save(root / "track")
    eta = sim.truth["eta"]
    nd.VoidForecast(Forecast(eta=eta[2:], frames=np.arange(2, 6)), sim.calibration).save(root / "forecast")
    return root, sim


def _wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.error is None, widget.error


@pytest.mark.slow
def test_track_correct_and_retrain_in_the_viewer(make_napari_viewer, qtbot, demo, tmp_path):
    root, sim = demo
    viewer = make_napari_viewer()
    viewer.open(str(root), plugin="neuradiff")
    assert len(viewer.layers) == 6
    for layer in viewer.layers:
        assert tuple(layer.scale) == SCALE, layer.name
        assert tuple(layer.metadata["units"]) == ("s", "nm", "nm"), layer.name

    from neuradiff.napari.widget import CorrectionWidget  # imports napari and Qt: only when the test runs

    _, widget = viewer.window.add_plugin_dock_widget("neuradiff", "Correct and retrain")
    assert isinstance(widget, CorrectionWidget)
    widget.image.setCurrentText("video: video")
    widget.model.setText(str(root / "model"))
    widget.out.setText(str(tmp_path / "corrections"))
    widget.pretrain.setValue(2)
    widget.joint.setValue(1)
    widget.device.setCurrentText("cpu")

    assert widget.track() is not None
    _wait(qtbot, widget)
    assert isinstance(widget.last, Tracking)
    masks, tracks = viewer.layers[MASKS_LAYER], viewer.layers[TRACKS_LAYER]
    assert tuple(masks.scale) == SCALE and tuple(tracks.scale) == SCALE
    assert masks.data.shape == (6, 24, 24) and set(np.unique(masks.data)) <= {1, 2}
    assert "eq_diameter_nm" in tracks.properties

    # The user paints frame 1: the true void, solid elsewhere; the other frames stay as tracked.
    truth = labels_of_masks(sim.truth["eta"][1] >= 0.5)
    painted = np.asarray(masks.data).copy()
    painted[1] = truth
    painted[1, :2, :2] = 0  # and leaves a corner unknown
    assert (painted[1] != masks.data[1]).any()
    masks.data = painted

    assert widget.retrain() is not None
    _wait(qtbot, widget)
    result = widget.last
    assert isinstance(result, Retraining) and result.corrected_frames == [1]
    ann = read_annotations(result.annotations_path, n_frames=6, shape=(24, 24))
    assert (ann[[0, 2, 3, 4, 5]] == 255).all() and ann[1, 0, 0] == 255
    np.testing.assert_array_equal(ann[1, 2:, 2:], np.where(truth[2:, 2:] == 1, 1, 0))
    assert (result.model_folder / "model.json").is_file() and widget.model.text() == str(result.model_folder)
    # the masks were tracked again with the retrained model, and the next round starts from it
    np.testing.assert_array_equal(viewer.layers[MASKS_LAYER].data, result.tracking.predicted)
    np.testing.assert_array_equal(widget.predicted, result.tracking.predicted)
