"""The generalist void recogniser shipped in the package: its files, what it finds zero-shot, tiles without
seams on it, and ``neuradiff track`` without ``--model`` (bad scales and blank frames refused in one line)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage.measure import label
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.cli.fit import GENERALIST_NOTE
from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.generalist import load_generalist, void_masks, weights_folder
from neuradiff.nets.levels import normalise_frame
from neuradiff.nets.tiles import Tiling, eta_tiled
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_shipped_files_are_small_versioned_and_load_without_pickle():
    folder = weights_folder()
    pt = folder / "generalist.pt"
    assert pt.stat().st_size < 2_000_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        payload = torch.load(pt, map_location="cpu", weights_only=True)
    assert payload["format"] == "neuradiff-recognition-net"
    meta = json.loads((folder / "generalist.json").read_text())
    assert meta["version"] and "python -m neuradiff.training.generalist" in meta["command"]
    assert meta["stages"][-1] == meta["command"] and f"--seed {meta['config']['seed']} " in meta["command"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert all(stage in card for stage in meta["stages"])  # every training stage, as run
    assert f"version {meta['version']}" in card
    # what track and batch say on stderr about the shipped recogniser names the version shipped
    assert f"(version {meta['version']})" in GENERALIST_NOTE
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"neuradiff.nets" = ["weights/*.pt", "weights/*.json", "weights/*.md"]' in pyproject


def test_finds_held_out_voids_of_both_contrasts():
    g = load_generalist()
    signs = set()
    found = true = 0
    for k in range(6):
        s = corpus_sample(HELD_OUT_SEED + k, CorpusSettings(size=128))
        eta = g.eta(s.frames)[0]
        truth = s.masks[0]
        inter, union = np.logical_and(eta >= 0.5, truth).sum(), np.logical_or(eta >= 0.5, truth).sum()
        found += inter
        true += union
        signs.add(s.info["render"]["contrast"])
    assert len(signs) == 2
    assert found / true > 0.5  # pooled pixel IoU over six held-out frames


@pytest.mark.slow
def test_tiles_of_the_generalist_have_no_seams():
    g = load_generalist()
    s = corpus_sample(HELD_OUT_SEED + 7, CorpusSettings(size=320))
    x = normalise_frame(s.frames[0])
    tiled = eta_tiled(g.net, x, Tiling(256, 112))  # 4 tiles
    whole = eta_tiled(g.net, x, g.tiling)  # one tile: the frame at once
    assert np.abs(tiled - whole)[16:-16, 16:-16].max() < 0.2
    assert ((tiled >= 0.5) != (whole >= 0.5))[16:-16, 16:-16].mean() < 1e-3


def _video(tmp_path: Path, frames: np.ndarray) -> Path:
    path = tmp_path / "video.tif"
    tifffile.imwrite(path, frames, photometric="minisblack")
    return path


@pytest.mark.slow
def test_track_without_model_uses_the_generalist(tmp_path):
    s = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=96, frames=2))
    video = _video(tmp_path, s.frames)
    res = runner.invoke(app, ["track", str(video), "--out", str(tmp_path / "out"), "--no-measure"])
    assert res.exit_code == 0, res.output
    masks = tifffile.imread(tmp_path / "out" / "masks.tif")
    assert masks.shape == (2, 96, 96) and masks.any()


def _drawn_larger(frame: np.ndarray, k: int) -> np.ndarray:
    """``frame`` drawn ``k`` times larger (each pixel a k × k block) with fresh pixel noise, as at a higher
    magnification."""
    big = np.kron(frame.astype(np.float32), np.ones((k, k), np.float32))
    return big + np.random.default_rng(k).normal(0.0, 0.1 * float(frame.std()), big.shape).astype(np.float32)


def test_the_scale_is_chosen_where_the_net_is_sure():
    g = load_generalist()
    s = corpus_sample(HELD_OUT_SEED + 5, CorpusSettings(size=128))
    assert g.estimate_scale(s.frames[0]) == 1.0
    big = _drawn_larger(s.frames[0], 3)
    factor = g.estimate_scale(big)
    assert factor in (0.5, 1 / 3, 0.25)
    truth = np.kron(s.masks[0], np.ones((3, 3), bool))

    def iou(m):
        return np.logical_and(m, truth).sum() / np.logical_or(m, truth).sum()

    assert iou(g.masks(big, void_px=g.void_px_for(factor))[0]) > iou(g.masks(big)[0]) + 0.2
    # nothing the net is sure of at any factor: the frames stay as they are
    noise = np.random.default_rng(0).normal(0.0, 1.0, (96, 96))
    assert g.estimate_scale(noise, candidates=(1.0, 0.5)) == 1.0 or g.estimate_scale(noise) == 1.0


@pytest.mark.parametrize("factor", [2.0, 1.0, 0.5, 1 / 3, 0.25])
def test_the_void_size_for_a_factor_gives_that_factor(factor):
    g = load_generalist()
    px = g.void_px_for(factor)
    assert (px is None) == (factor == 1.0)
    frame = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    assert g._checked(frame, px)[1] == pytest.approx(factor, rel=1e-12)


@pytest.mark.slow
def test_track_chooses_the_scale_with_void_size_auto(tmp_path):
    s = corpus_sample(HELD_OUT_SEED + 5, CorpusSettings(size=64, frames=2))
    big = np.stack([_drawn_larger(f, 3) for f in s.frames]).astype(np.float32)
    res = runner.invoke(app, ["track", str(_video(tmp_path, big)), "--out", str(tmp_path / "out"), "--no-measure",
                              "--void-size", "auto"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "--void-size auto: frames resampled by 0.5" in res.output or "resampled by 0.333" in res.output
    settings = json.loads((tmp_path / "out" / "provenance.json").read_text())["settings"]
    assert settings["void_size_unit"] == "auto" and settings["resample_factor"] < 1
    # without --void-size the frames are tracked as they are, and the note says what auto would do
    res = runner.invoke(app, ["track", str(tmp_path / "video.tif"), "--out", str(tmp_path / "as-is"), "--no-measure"])
    assert res.exit_code == 0, res.output
    assert "most surely at" in res.stderr and "--void-size auto" in res.stderr
    settings = json.loads((tmp_path / "as-is" / "provenance.json").read_text())["settings"]
    assert settings["resample_factor"] == 1.0
    small = _video(tmp_path, s.frames)  # as recorded: no note
    res = runner.invoke(app, ["track", str(small), "--out", str(tmp_path / "small"), "--no-measure"])
    assert res.exit_code == 0 and "most surely" not in res.stderr


def test_void_size_auto_is_refused_with_a_fitted_model(tmp_path):
    video = _video(tmp_path, np.random.default_rng(0).integers(0, 255, (1, 64, 64), dtype=np.uint8))
    model = tmp_path / "model"
    model.mkdir()
    out = tmp_path / "out"
    res = runner.invoke(app, ["track", str(video), "--model", str(model), "--out", str(out), "--void-size", "auto"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--void-size", "1.5px"], "below 2 px"),
        (["--void-size", "2000"], "larger than a tile"),
        (["--void-size", "3nm"], "needs the pixel size"),
        (["--void-size", "big"], "must be a number"),
    ],
)
def test_bad_scales_are_refused_in_one_line(tmp_path, args, message):
    video = _video(tmp_path, np.random.default_rng(0).integers(0, 255, (1, 64, 64), dtype=np.uint8))
    out = tmp_path / "out"
    res = runner.invoke(app, ["track", str(video), "--out", str(out), *args])
    assert res.exit_code == 2
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_blank_16_bit_frame_is_refused_in_one_line(tmp_path):
    frames = np.full((2, 64, 64), 1000, np.uint16)
    frames[0] = np.random.default_rng(0).integers(0, 4000, (64, 64))
    out = tmp_path / "out"
    res = runner.invoke(app, ["track", str(_video(tmp_path, frames)), "--out", str(out)])
    assert res.exit_code == 2 and "single grey level" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_resampled_frames_too_small_are_refused():
    g = load_generalist()
    with pytest.raises(NeuradiffError, match="smaller than 8 px"):
        g.eta(np.random.default_rng(0).integers(0, 255, (1, 12, 12)), void_px=200.0)


def test_fit_refuses_an_annotation_that_marks_everything_void(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8)
    video = _video(tmp_path, frames)
    ann = np.full((3, 32, 32), 255, np.uint8)
    ann[1] = 1
    tifffile.imwrite(tmp_path / "ann.tif", ann, photometric="minisblack")
    out = tmp_path / "model"
    res = runner.invoke(app, ["fit", str(video), "--annotations", str(tmp_path / "ann.tif"), "--out", str(out)])
    assert res.exit_code == 2 and "marks every pixel as void" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_masks_keep_only_regions_whose_eta_peaks_high_enough():
    g = load_generalist(min_contrast=0.0)  # the peak filter alone (the contrast filter is tested in test_contrast)
    assert g.min_peak_eta == 0.95
    s = corpus_sample(HELD_OUT_SEED + 5, CorpusSettings(size=128))
    eta = g.eta(s.frames)[0]
    masks = g.masks(s.frames)[0]
    assert masks.any() and not (masks & (eta < 0.5)).any()
    lab = label(masks, connectivity=2)
    for region in range(1, int(lab.max()) + 1):
        assert eta[lab == region].max() >= 0.95
    loose = void_masks(eta[None], min_peak_eta=0.5)[0]
    assert (loose | ~masks).all()  # the filter only removes regions
    lab = label(loose, connectivity=2)
    for region in range(1, int(lab.max()) + 1):  # ... and exactly those that never reach the peak
        inside = lab == region
        assert masks[inside].all() == (eta[inside].max() >= 0.95) and masks[inside].all() == masks[inside].any()


def test_bad_peak_threshold_is_refused(tmp_path):
    meta = json.loads((weights_folder() / "generalist.json").read_text())
    meta["min_peak_eta"] = 0.2
    (tmp_path / "generalist.json").write_text(json.dumps(meta))
    (tmp_path / "generalist.pt").write_bytes((weights_folder() / "generalist.pt").read_bytes())
    with pytest.raises(NeuradiffError, match="min_peak_eta"):
        load_generalist(tmp_path)
    with pytest.raises(NeuradiffError, match="min_peak_eta"):
        void_masks(np.zeros((1, 4, 4)), min_peak_eta=1.5)
