"""The napari reader: every layer of a demo-like folder with its scale in s and nm, masks as Labels, tracks as
Tracks with the void sizes as properties, the forecast placed at its start frame; the npe2 manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neuradiff as nd
from neuradiff.methods import Forecast
from neuradiff.napari import layers_of, napari_get_reader

CALIBRATED = {"steps_per_frame": 5, "nm_per_px": 0.5, "frame_interval_s": 2.0, "annotations": {"fraction": 0.5}}


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    sim = nd.simulate(size=24, frames=6, config=CALIBRATED, device="cpu")
    sim.save(root / "video")
    eta = sim.truth["eta"]
    masks = (eta >= 0.5).astype(np.uint8)
    meas = nd.measure(masks, video=sim).measurements
    nd.TrackedVideo(eta, masks, meas, sim.video).save(root / "track")
    nd.VoidForecast(Forecast(eta=eta[2:], frames=np.arange(2, 6)), sim.calibration).save(root / "forecast")
    return root


@pytest.mark.slow
def test_a_demo_folder_opens_with_its_scale_in_s_and_nm(demo_folder):
    layers = layers_of(demo_folder)
    kinds = {kwargs["name"]: kind for _, kwargs, kind in layers}
    assert kinds == {
        "video: video": "image",
        "video: annotations": "labels",
        "track: eta": "image",
        "track: masks": "labels",
        "track: void tracks": "tracks",
        "forecast: forecast eta (from frame 2)": "image",
    }
    for _, kwargs, _ in layers:
        assert kwargs["scale"] == (2.0, 0.5, 0.5), kwargs["name"]
        assert kwargs["metadata"]["units"] == ("s", "nm", "nm"), kwargs["name"]
    by_name = {kwargs["name"]: (data, kwargs) for data, kwargs, _ in layers}
    annotations, _ = by_name["video: annotations"]
    assert set(np.unique(annotations)) <= {0, 1, 2} and (annotations == 1).any() and (annotations == 2).any()
    forecast, kwargs = by_name["forecast: forecast eta (from frame 2)"]
    assert forecast.shape == (4, 24, 24) and kwargs["translate"] == (4.0, 0.0, 0.0)


@pytest.mark.slow
def test_tracks_carry_the_void_sizes(demo_folder):
    (data, kwargs, _) = next(layer for layer in layers_of(demo_folder / "track") if layer[2] == "tracks")
    voids = nd.load(demo_folder / "track").voids.sort_values(["track_id", "frame"])
    assert data.shape == (len(voids), 4)  # track id, frame, y, x (px; the scale makes them s and nm)
    np.testing.assert_array_equal(data[:, 1], voids["frame"].to_numpy())
    np.testing.assert_allclose(data[:, 2], voids["y_px"].to_numpy())
    np.testing.assert_allclose(kwargs["properties"]["eq_diameter_nm"], voids["eq_diameter_nm"].to_numpy())
    np.testing.assert_allclose(kwargs["properties"]["time_s"], voids["frame"].to_numpy() * 2.0)


@pytest.mark.slow
def test_the_reader_hook_takes_only_what_it_reads(demo_folder, tmp_path):
    read = napari_get_reader(str(demo_folder))
    assert read is not None and len(read(str(demo_folder))) == 6
    recording = napari_get_reader(str(demo_folder / "video" / "video.tif"))
    assert recording is not None
    (frames, kwargs, kind) = recording(str(demo_folder / "video" / "video.tif"))[0]
    assert kind == "image" and frames.shape == (6, 24, 24) and kwargs["scale"] == (2.0, 0.5, 0.5)
    (tmp_path / "notes.txt").write_text("x")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None


def test_the_npe2_manifest_names_the_reader():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(Path(nd.__file__).parent / "napari" / "napari.yaml")
    commands = {c.id: c for c in manifest.contributions.commands or []}
    module, name = commands["neuradiff.get_reader"].python_name.split(":")
    assert getattr(__import__(module, fromlist=[name]), name) is napari_get_reader
    (widget,) = manifest.contributions.widgets or []
    assert widget.command == "neuradiff.correction_widget" and widget.display_name == "Correct and retrain"
    assert commands[widget.command].python_name == "neuradiff.napari.widget:CorrectionWidget"
    assert manifest.contributions.readers and manifest.contributions.readers[0].accepts_directories
