"""Tests of neuradiff.synth.annotate: three-state (solid / void / unknown) annotations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from helpers_eta import disk_stack
from neuradiff.core.labels import SOLID, UNKNOWN, VOID
from neuradiff.synth.annotate import AnnotationSettings, annotate


@pytest.fixture(scope="module")
def eta():
    return disk_stack(24, 48, 13.0, 7.0)


def test_defaults_binary_full(eta):
    ann, frames, info = annotate(eta)
    assert ann.dtype == np.uint8 and ann.shape == eta.shape
    assert frames.dtype.kind == "i" and frames.tolist() == [0, 12]  # 10 % of 24 frames, evenly spaced
    assert set(np.unique(ann).tolist()) == {SOLID, VOID, UNKNOWN}
    others = np.setdiff1d(np.arange(24), frames)
    assert np.all(ann[others] == UNKNOWN)
    assert np.array_equal(ann[frames], (eta[frames] >= 0.5).astype(np.uint8))
    assert info["n_annotated_frames"] == 2 and info["annotated_frames"] == [0, 12]
    assert info["annotated_pixel_fraction"] == pytest.approx(2 / 24)
    assert info["void_pixels"] == int((eta[frames] >= 0.5).sum())
    json.dumps(info)


@pytest.mark.parametrize(
    "fraction, expected",
    [(1.0, list(range(24))), (0.01, [0]), (0.25, [0, 4, 8, 12, 16, 20]), (0.5, list(range(0, 24, 2)))],
)
def test_fraction_of_frames(eta, fraction, expected):
    _, frames, info = annotate(eta, settings=AnnotationSettings(fraction=fraction))
    assert frames.tolist() == expected
    assert info["n_annotated_frames"] == len(expected)


def test_same_seed_identical_other_seed_differs(eta):
    s = AnnotationSettings(fraction=1.0, region="half", jitter_px=1.5)
    a = annotate(eta, settings=s, seed=3)[0]
    b = annotate(eta, settings=s, seed=3)[0]
    c = annotate(eta, settings=s, seed=4)[0]
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_half_region_annotates_exactly_half_the_rows(eta):
    ann, frames, info = annotate(eta, settings=AnnotationSettings(fraction=1.0, region="half"), seed=1)
    known_rows = (ann != UNKNOWN).any(axis=2)  # [T, H]
    assert np.all((ann != UNKNOWN).sum(axis=(1, 2)) == 24 * 48)
    for t in frames:
        rows = np.flatnonzero(known_rows[t])
        assert rows.tolist() in (list(range(24)), list(range(24, 48)))
    assert set(info["regions"]) == {"top", "bottom"}  # random per frame: both occur in 24 frames
    assert info["annotated_pixel_fraction"] == pytest.approx(0.5)


def test_boxes_cover_about_forty_percent(eta):
    ann, frames, _ = annotate(eta, settings=AnnotationSettings(fraction=1.0, region="boxes"), seed=2)
    cover = (ann[frames] != UNKNOWN).mean(axis=(1, 2))
    assert np.all(cover >= 0.4) and np.all(cover <= 0.5)
    assert len({(ann[t] != UNKNOWN).tobytes() for t in frames}) > 1  # not the same boxes every frame


def test_continuous_values_carry_eta_with_nan_unknown(eta):
    ann, frames, _ = annotate(eta, settings=AnnotationSettings(fraction=0.25, region="half", values="continuous"))
    assert ann.dtype == np.float32
    known = ~np.isnan(ann)
    assert np.all(np.isnan(ann[np.setdiff1d(np.arange(24), frames)]))
    assert np.allclose(ann[known], eta[known], atol=1e-6)
    assert known[frames].mean() == pytest.approx(0.5)
    assert np.nanmin(ann) >= 0 and np.nanmax(ann) <= 1


@pytest.mark.parametrize("jitter", [1.0, 2.0])
def test_jitter_moves_boundaries_by_about_the_requested_amount(jitter):
    eta = disk_stack(10, 64, 16.0, 12.0, width=0.0)
    ann, _, _ = annotate(eta, settings=AnnotationSettings(fraction=1.0, jitter_px=jitter), seed=0)
    truth = eta >= 0.5
    changed = (ann == VOID) != truth
    perimeter = 2 * np.pi * np.linspace(16, 12, 10)
    for t in range(10):
        # every changed pixel lies within the jitter (+ half a pixel) of the true rim
        dist = np.where(truth[t], ndimage.distance_transform_edt(truth[t]), ndimage.distance_transform_edt(~truth[t]))
        assert dist[changed[t]].max() <= jitter + 0.5
        # about the requested amount: a band of roughly 0.3-1 x jitter along the rim changes
        assert 0.3 * jitter * perimeter[t] < changed[t].sum() < 1.4 * jitter * perimeter[t]
    exact, _, _ = annotate(eta, settings=AnnotationSettings(fraction=1.0), seed=0)
    assert np.array_equal(exact == VOID, truth)


def test_jitter_continuous_moves_the_same_way_as_binary():
    eta = disk_stack(6, 48, 10.0, 7.0, width=0.8)
    kw = dict(fraction=1.0, jitter_px=2.0)
    cont, _, _ = annotate(eta, settings=AnnotationSettings(values="continuous", **kw), seed=5)
    binary, _, _ = annotate(eta, settings=AnnotationSettings(values="binary", **kw), seed=5)
    assert cont.dtype == np.float32 and np.all((cont >= 0) & (cont <= 1))
    moved = (binary == VOID) != (eta >= 0.5)
    disagree = (cont >= 0.5) != (binary == VOID)
    assert moved.sum() > 50
    assert disagree.sum() < 0.2 * moved.sum()


@pytest.mark.parametrize(
    "kw",
    [
        dict(fraction=0.0),
        dict(fraction=1.5),
        dict(fraction=-0.1),
        dict(region="quarter"),
        dict(values="soft"),
        dict(jitter_px=-1.0),
        dict(jitter_px=float("inf")),
    ],
)
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError) as err:
        AnnotationSettings(**kw)
    assert "\n" not in str(err.value)


def test_bad_eta_raises(eta):
    for bad, match in [
        (eta[0], r"\[T, H, W\]"),
        (eta + 0.5, r"\[0, 1\]"),
        (-eta, r"\[0, 1\]"),
        (np.full((2, 4, 4), np.nan), "NaN"),
        (np.zeros((0, 4, 4)), "non-empty"),
    ]:
        with pytest.raises(ValueError, match=match) as err:
            annotate(bad)
        assert "\n" not in str(err.value)


def test_settings_to_dict_roundtrip():
    s = AnnotationSettings(fraction=0.2, region="boxes", values="continuous", jitter_px=1.0)
    assert AnnotationSettings(**json.loads(json.dumps(s.to_dict()))) == s
