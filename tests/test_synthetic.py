import json
import os

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.synth.datasets import dataset_config, make_dataset

runner = CliRunner()
SMALL = {"frames": 12, "steps_per_frame": 40, "simulation": {"size": 40}}


def _config_file(tmp_path, extra=None):
    cfg = json.loads(json.dumps(SMALL))
    for k, v in (extra or {}).items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return path


def _simulate(tmp_path, name="ds", *args, extra=None):
    out = tmp_path / name
    r = runner.invoke(app, ["simulate", "--out", str(out), "--config", str(_config_file(tmp_path, extra)), *args])
    return r, out


@pytest.mark.slow
def test_dataset_folder_round_trips_through_tifffile(tmp_path):
    r, out = _simulate(tmp_path, "ds", "--seed", "4")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == [
        "annotations.tif",
        "contact_sheet.png",
        "dataset.json",
        "provenance.json",
        "truth.npz",
        "video.tif",
    ]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["command"] == "simulate" and prov["settings"]["seed"] == 4 and prov["inputs"]["config"]["sha256"]
    with tifffile.TiffFile(out / "video.tif") as tif:
        video = tif.asarray()
        ij = tif.imagej_metadata
        xres = tif.pages[0].tags["XResolution"].value
    assert video.shape == (12, 40, 40) and video.dtype == np.uint8
    assert ij["unit"] == "nm" and ij["finterval"] == pytest.approx(1.0)
    assert xres[1] / xres[0] == pytest.approx(1.0)  # 1 nm per pixel
    ann = tifffile.imread(out / "annotations.tif")
    assert ann.shape == video.shape and set(np.unique(ann)) <= {0, 1, 255}
    meta = json.loads((out / "dataset.json").read_text())
    annotated = meta["annotations"]["annotated_frames"]
    assert len(annotated) == 1 and annotated[0] == 0  # 10 % of 12 frames, at least one, the first included
    assert all((ann[k] == 255).all() for k in range(12) if k not in annotated)
    assert meta["steps_per_frame"] == 40 and meta["seed"] == 4 and meta["parameters"]["L"]["unit"]
    truth = np.load(out / "truth.npz")
    assert truth["eta"].shape == (12, 40, 40)
    assert np.array_equal(ann[0], (truth["eta"][0] >= 0.5).astype(np.uint8))  # binary annotation of truth
    assert dict(zip(truth["param_names"], truth["param_values"]))["E_v"] == 8.0


@pytest.mark.slow
def test_same_seed_same_bytes_and_another_seed_differs(tmp_path):
    (_, a), (_, b), (_, c) = (_simulate(tmp_path, n, "--seed", s) for n, s in (("a", "1"), ("b", "1"), ("c", "2")))
    for name in ("video.tif", "annotations.tif", "truth.npz", "dataset.json", "contact_sheet.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "video.tif").read_bytes() != (c / "video.tif").read_bytes()


@pytest.mark.slow
def test_annotation_options_fraction_and_half_regions():
    cfg = dataset_config(
        "single-void", overrides={**SMALL, "frames": 20, "annotations": {"fraction": 0.5, "region": "half"}}
    )
    ds = make_dataset(cfg)
    assert len(ds.annotated_frames) == 10
    for k in ds.annotated_frames:
        known_rows = (ds.annotations[k] != 255).all(axis=1)
        assert known_rows.sum() == 20  # exactly half of 40 rows


@pytest.mark.slow
def test_the_true_void_area_is_the_simulated_one_whatever_the_stage_drift():
    """The truth's fields follow the drifting specimen (resampled), but its void area is counted on the
    simulation's grid: resampling the sharp interface at sub-pixel offsets drops pixels, which a specimen's area
    does not."""
    base = {"frames": 12, "simulation": {"size": 32}}
    drifting = make_dataset(dataset_config("single-void", seed=3, overrides={**base, "render": {"drift": 0.3}}))
    still = make_dataset(dataset_config("single-void", seed=3, overrides={**base, "render": {"drift": 0.0}}))
    assert np.abs(drifting.truth["drift_px"][-1]).max() > 0.5
    assert np.array_equal(drifting.truth["void_area_px"], still.truth["void_area_px"])
    resampled = (drifting.truth["eta"] >= 0.5).sum(axis=(1, 2))
    assert np.array_equal(resampled[:1], still.truth["void_area_px"][:1])  # frame 0 is not moved
    assert (resampled < still.truth["void_area_px"]).any()


@pytest.mark.slow
def test_void_changes_visibly_over_the_default_video():
    cfg = dataset_config("single-void", overrides={"simulation": {"size": 48}}, frames=30)
    ds = make_dataset(cfg)
    area = ds.truth["void_area_px"]
    assert area[-1] < 0.85 * area[0]  # the void shrinks by more than 15 % of its area
    assert np.abs(ds.video[-1].astype(float) - ds.video[0].astype(float)).mean() > 3  # and the frames show it


@pytest.mark.slow
def test_cnr_responds_to_dose():
    cnrs = []
    for dose in (10.0, 100.0, 1000.0):
        cfg = dataset_config("single-void", overrides={**SMALL, "render": {"dose": dose}})
        cnrs.append(make_dataset(cfg).render_info["cnr"])
    assert cnrs[0] < cnrs[1] < cnrs[2]


def test_reference_renderer_aligns_truth():
    cfg = dataset_config("single-void", overrides={**SMALL, "steps_per_frame": 5, "render": {"mode": "reference"}})
    ds = make_dataset(cfg)
    assert ds.video.shape == (12, 38, 38) and ds.truth["eta"].shape == (12, 38, 38)
    assert ds.metadata["first_frame_step"] == 9 * 5


@pytest.mark.parametrize(
    "args,message",
    [
        (["--scenario", "volcano"], "unknown scenario"),
        (["--size", "10"], "too small"),
        (["--frames", "0"], "frames must be greater than or equal to 1"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    r, out = _simulate(tmp_path, "bad", *args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert not out.exists() or not any(out.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_non_writable_output_folder(tmp_path, monkeypatch):
    # Root may write anywhere, so the permission check itself is made to say no.
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: False if str(path).endswith("ds") and mode & os.W_OK else real_access(path, mode),
    )
    (tmp_path / "ds").mkdir()  # an existing folder; a new one is checked through its parent
    r, out = _simulate(tmp_path, "ds")
    assert r.exit_code == 2 and "not writable" in r.output
    assert not any(out.iterdir())


def test_output_under_a_file_is_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(app, ["simulate", "--out", str(blocker / "ds")])
    assert r.exit_code == 2 and "cannot create" in r.output
