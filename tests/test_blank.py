"""Blank regions of frames as handed over (padding bands, burned-in scale bars and text): found, filled before the
net, no void drawn on them; noisy specimen, clipped voids and drawn frames left as they are."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from skimage.measure import label
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.methods.base import fitted_masks
from neuradiff.nets.blank import blank_regions, clipped_share, fill_blank, off_blank, specimen_frames
from neuradiff.nets.generalist import load_generalist
from neuradiff.nets.levels import normalise_frame
from neuradiff.synth.capture import ARTEFACTS, burn_in, pad_band, to_8bit
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED


@functools.lru_cache(maxsize=4)
def _frame_512(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A held-out corpus frame of 512² and its true void mask (drawn once per test session)."""
    sample = corpus_sample(seed, CorpusSettings(size=512))
    return sample.frames[0], sample.masks[0]


def _specimen(n: int = 128, seed: int = 0) -> np.ndarray:
    """A noisy frame (Poisson counts around 100 on a gentle ramp), uint16."""
    rng = np.random.default_rng(seed)
    ramp = 1.0 + 0.3 * np.linspace(-1, 1, n)[None, :]
    return rng.poisson(100.0 * ramp * np.ones((n, 1))).astype(np.uint16)


@pytest.mark.parametrize("seed", range(6))
def test_recorded_frames_have_no_blank_region_and_normalise_as_before(seed):
    frame = corpus_sample(seed, CorpusSettings(size=128)).frames[0]
    assert not blank_regions(frame).any()
    assert np.array_equal(normalise_frame(frame), normalise_frame(frame, fill=False))
    assert not blank_regions(_specimen(seed=seed)).any()


def test_a_padding_band_is_blank_and_filled_like_the_specimen_beside_it():
    f = _specimen()
    banded = f.copy()
    banded[:, :12] = 0
    b = blank_regions(banded)
    assert b[:, :12].all() and not b[:, 14:].any()  # the band and its one-pixel fringe
    g = fill_blank(banded, b)
    assert np.array_equal(g[:, 14:], f[:, 14:].astype(np.float64))
    level = f[:, 13:20].mean()
    assert abs(g[:, :12].mean() - level) < 0.03 * level
    assert 0.7 * 10.0 < g[:, :12].std() < 1.3 * 10.0 * 1.1  # Poisson noise of ~100 counts, plus the ramp
    # the band no longer sets the percentiles: the specimen is mapped as it was without it
    assert np.abs(normalise_frame(banded)[:, 14:] - normalise_frame(f)[:, 14:]).max() < 0.05
    assert np.abs(normalise_frame(banded, fill=False)[:, 14:] - normalise_frame(f)[:, 14:]).max() > 0.2


@pytest.mark.slow
def test_a_burned_in_scale_bar_and_text_are_blank_and_the_specimen_is_not():
    raw = _frame_512(HELD_OUT_SEED + 1)[0]
    plain, burned = to_8bit(raw), burn_in(raw, text_px=40)
    overlay = burned != plain
    b = blank_regions(burned)
    bar = np.zeros_like(overlay)
    bar[int(0.90 * 512) + 1 : int(0.90 * 512) + 15, 27:153] = True
    assert b[bar].all()
    text = burned == 255
    text &= ~bar & (plain != 255)
    assert b[text].mean() > 0.9  # the label's and the time stamp's strokes at full white
    away = ~ndimage.binary_dilation(overlay, iterations=4)
    assert b[away].mean() < 0.001


def _clipped_void(sign: float) -> np.ndarray:
    """A noisy frame with one void of radius 9 px and a Fresnel rim, exported with its extreme 1 % clipped."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96]
    r = np.hypot(yy - 48.3, xx - 47.6)
    eta = 0.5 * (1 - np.tanh((r - 9.0) / 1.2))
    rim = np.exp(-(((r - 10.5) / 1.2) ** 2))
    img = ndimage.gaussian_filter(1.0 + sign * (0.8 * eta - 0.4 * rim), 0.8)
    return to_8bit(rng.poisson(300 * img) / 300, clip=0.01)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_void_clipped_at_the_cameras_limit_is_not_blank(sign):
    f = _clipped_void(sign)
    extreme = 255 if sign > 0 else 0
    assert (f == extreme)[40:57, 40:57].sum() >= 20  # its interior is clipped flat
    assert not blank_regions(f).any()


def test_a_drawn_frame_without_noise_is_left_as_it_is():
    f = np.zeros((64, 64), np.uint8)
    f[20:40, 20:40] = 200
    assert not blank_regions(f).any()
    assert np.array_equal(fill_blank(f), f.astype(np.float64))


def test_the_fill_is_seeded_and_regions_touching_blank_are_dropped():
    f = _specimen(64)[None].copy()
    f[0, :, :6] = 0
    blank, filled = specimen_frames(f)
    assert np.array_equal(filled, specimen_frames(f)[1])
    m = np.zeros(f.shape, bool)
    m[0, 10:14, 7:11] = True  # one pixel from the band's fringe
    m[0, 30:35, 30:35] = True
    kept = off_blank(m, blank)
    assert kept[0, 30:35, 30:35].all() and not kept[0, 10:14, 7:11].any()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [HELD_OUT_SEED + 1, HELD_OUT_SEED + 6])
def test_the_generalist_draws_no_void_on_a_scale_bar_and_finds_the_voids_elsewhere(seed):
    g = load_generalist()
    raw, truth = _frame_512(seed)
    handed = burn_in(raw, stamp=False, text_px=40)  # a scale bar with its label (40 px) at the bottom left
    covered = ndimage.binary_dilation(handed != to_8bit(raw), iterations=2)
    corner = np.zeros_like(covered)
    corner[380:, :200] = True

    def on_the_bar(masks):
        lab = label(masks, connectivity=2)
        return int(np.count_nonzero(np.unique(lab[covered & corner & (lab > 0)])))

    def iou_elsewhere(masks):
        m, t = masks & ~covered, truth & ~covered
        return (m & t).sum() / max((m | t).sum(), 1)

    eta, found, _ = g.recognise(handed)
    before = dataclasses.replace(g, blank=False).masks(handed)[0]
    assert on_the_bar(found[0]) == 0
    assert on_the_bar(before) >= 3  # what the handling removes: voids drawn on the label's letters
    assert iou_elsewhere(found[0]) >= 0.9 * iou_elsewhere(g.masks(to_8bit(raw))[0])  # the same export, bare
    assert np.array_equal(found, g.masks_of(eta, handed[None]))


def test_a_padding_band_no_longer_hides_the_voids_beside_it():
    g = load_generalist()
    sample = corpus_sample(HELD_OUT_SEED + 2, CorpusSettings(size=256))
    raw, truth = sample.frames[0], sample.masks[0]
    handed = pad_band(raw)
    away = np.zeros(truth.shape, bool)
    away[24:, :-16] = True

    def recall(masks):
        lab = label(truth & away, connectivity=2)
        hit = np.unique(lab[masks & (lab > 0)])
        return np.count_nonzero(hit) / max(int(lab.max()), 1)

    clean, banded = recall(g.masks(raw)[0]), recall(g.masks(handed)[0])
    before = recall(dataclasses.replace(g, blank=False).masks(handed)[0])
    assert banded >= clean - 0.05 and banded > before + 0.05


def test_every_capture_artefact_hands_over_a_frame_of_the_same_shape():
    raw = corpus_sample(5, CorpusSettings(size=64)).frames[0]
    for name, hand_over in ARTEFACTS.items():
        out = np.asarray(hand_over(raw))
        assert out.shape == raw.shape, name
        assert np.isfinite(out.astype(np.float64)).all(), name
    assert pad_band(raw)[:4].max() == 0


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        st.sampled_from([np.uint8, np.uint16, np.float32]),
        st.tuples(st.integers(1, 24), st.integers(1, 24)),
        elements=st.integers(0, 255),
    )
)
def test_any_frame_gets_a_blank_mask_of_its_shape_and_a_finite_fill(frame):
    b = blank_regions(frame)
    assert b.shape == frame.shape and b.dtype == bool
    assert np.isfinite(fill_blank(frame, b)).all()


def test_a_fitted_models_masks_leave_out_regions_on_a_padding_band():
    frames = _specimen(64)[None].copy()
    frames[0, :, :6] = 0
    eta = np.zeros(frames.shape)
    eta[0, 10:14, 3:10] = 1.0  # drawn across the band's edge
    eta[0, 30:35, 30:35] = 1.0
    masks = fitted_masks(SimpleNamespace(info={}), eta, frames)
    assert masks[0, 30:35, 30:35].all() and not masks[0, 10:14].any()


@pytest.mark.slow
def test_track_marks_a_padding_band_unknown_and_measures_per_area_of_specimen(tmp_path):
    s = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=128, frames=2))
    video = tmp_path / "banded.tif"
    tifffile.imwrite(video, np.stack([pad_band(f) for f in s.frames]))
    res = CliRunner().invoke(app, ["track", str(video), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "clipped" not in res.stderr  # the band is blank, not clipped specimen
    masks = tifffile.imread(tmp_path / "out" / "masks.tif")
    assert set(np.unique(masks).tolist()) <= {0, 1, 255}
    assert (masks[:, :8] == 255).all() and (masks[:, 10:, :-6] != 255).all()  # the band (8 rows, 4 columns) only
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    specimen = (masks != 255).reshape(2, -1).sum(axis=1)
    assert np.allclose(frames["annotated_area_px2"], specimen)
    coco = json.loads((tmp_path / "out" / "masks_coco.json").read_text())
    assert len(coco["annotations"]) == int(frames["count"].sum())
    assert all(a["bbox"][1] >= 8 for a in coco["annotations"])  # no void drawn on the band


def test_the_clipped_share_counts_saturated_specimen_and_track_says_so():
    frame = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=128)).frames[0]
    assert clipped_share(frame) < 0.005 and clipped_share(to_8bit(frame)) < 0.005
    assert clipped_share(to_8bit(frame, clip=0.0035)) == pytest.approx(0.0035, abs=0.002)
    assert clipped_share(to_8bit(frame, clip=0.02)) == pytest.approx(0.02, abs=0.005)
    assert clipped_share(pad_band(frame)) < 0.005  # a zero band is blank, not specimen
    clipped = to_8bit(frame, clip=0.03)  # at least 3 %: levels within half a step of the ends round onto them
    assert clipped_share(clipped) >= 0.03
    assert clipped_share(pad_band(clipped)) == pytest.approx(clipped_share(clipped), abs=0.005)  # specimen only
    assert clipped_share(np.zeros((8, 8))) == 1.0 and clipped_share(frame, np.ones(frame.shape, bool)) == 0.0


@pytest.mark.slow
def test_track_says_when_an_export_clipped_the_frames(tmp_path):
    s = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=96, frames=2))
    said = {}
    for name, clip in (("recorded", 0.0), ("imagej", 0.0035), ("clipped", 0.03)):
        video = tmp_path / f"{name}.tif"
        tifffile.imwrite(video, np.stack([to_8bit(f, clip=clip) for f in s.frames]))
        res = CliRunner().invoke(app, ["track", str(video), "--out", str(tmp_path / name), "--no-measure"])
        assert res.exit_code == 0, res.output
        said[name] = [line for line in res.stderr.splitlines() if "clipped" in line]
    assert not said["recorded"] and not said["imagej"]
    assert len(said["clipped"]) == 1, said
    share = re.search(r"(\d+\.\d) % of a frame's pixels", said["clipped"][0])
    assert share is not None and 3.0 <= float(share.group(1)) <= 4.0, said


def test_masks_of_eta_and_frames_of_different_shapes_are_refused_in_one_line():
    frames = _specimen(32)[None]
    with pytest.raises(NeuradiffError, match="must both be"):
        load_generalist().masks_of(np.zeros((2, 32, 32)), frames)
    with pytest.raises(NeuradiffError, match="must both be"):
        fitted_masks(SimpleNamespace(info={}), np.zeros((1, 32, 30)), frames)
