"""The contrast-to-noise statistic of recognised voids: it measures the noise (white or grain), does not change
under gain and offset, keeps clear voids, drops regions drawn on texture, and its threshold is refused when bad."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.contrast import (
    ANNOTATION_MARGIN,
    CONFIDENT_AREA_PX,
    FITTED_MAX_CONTRAST,
    SHOWN_AREA_PX,
    SHOWN_COUNT,
    VISIBLE_CONTRAST,
    _Background,
    _box_sums,
    _grow,
    _integral,
    _rings,
    annotated_threshold,
    contrast_significance,
    drop_faint,
    null_spread,
    ring_width,
    shown_count,
)
from neuradiff.nets.generalist import load_generalist, weights_folder
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import HELD_OUT_SEED

runner = CliRunner()


def _random_specks(shape, count, rng, size=3):
    """``count`` square specks of ``size`` px at random places, apart from each other."""
    mask = np.zeros(shape, bool)
    for _ in range(count):
        y, x = rng.integers(4, shape[0] - 4 - size), rng.integers(4, shape[1] - 4 - size)
        if not ndimage.binary_dilation(mask, iterations=3)[y : y + size, x : x + size].any():
            mask[y : y + size, x : x + size] = True
    return mask


@pytest.mark.parametrize("grain_px", [0.0, 1.5, 2.5])
def test_regions_drawn_on_noise_are_rarely_significant(grain_px):
    """Specks placed blindly on pure noise, white or grain: t is about |N(0, 1)| (calibrated on white noise,
    conservative on grain), so the shipped threshold keeps none of them."""
    rng = np.random.default_rng(3)
    noise = rng.normal(0.0, 1.0, (256, 256))
    if grain_px:
        noise = ndimage.gaussian_filter(noise, grain_px)
    mask = _random_specks(noise.shape, 200, rng)
    _, t = contrast_significance(noise, mask)
    assert t.size > 100
    if grain_px == 0:
        assert 0.55 < np.median(t) < 0.85  # the median of |N(0, 1)| is 0.674
    else:
        assert np.median(t) < 0.85
    assert np.mean(t >= 2.0) < 0.1
    assert not (t >= 5.0).any()


def _rings_by_growing_the_whole_frame(x, labels, void, widths):
    """The rings as first written: every region grown over the whole frame, step by step, to the widest ring."""
    n = widths.size - 1
    ring_sum, ring_n = np.zeros(n + 1), np.zeros(n + 1)
    grown = labels.astype(np.intp)
    cross = ndimage.generate_binary_structure(2, 1)
    for step in range(1, int(widths.max()) + 1):
        grown = np.asarray(ndimage.grey_dilation(grown, footprint=cross), dtype=np.intp)
        done = (widths[grown] == step) & ~void
        ring_sum += np.bincount(grown[done], weights=x[done], minlength=n + 1)
        ring_n += np.bincount(grown[done], minlength=n + 1)
    return ring_sum, ring_n


@pytest.mark.parametrize("seed", [HELD_OUT_SEED + 1, HELD_OUT_SEED + 16, HELD_OUT_SEED + 22, HELD_OUT_SEED + 28])
def test_rings_grown_in_windows_are_the_rings_grown_over_the_frame(seed):
    s = corpus_sample(seed, CorpusSettings(size=192))
    x = s.frames[0].astype(np.float64)
    for void in (s.masks[0], ndimage.binary_dilation(s.masks[0], iterations=2)):  # apart, and merged/touching
        labels, _ = contrast_significance(x, void)
        area = np.bincount(labels.ravel())[1:]
        widths = np.array([0, *(ring_width(a) for a in area)], dtype=np.int64)
        assert widths.max() > 3  # some rings are grown in windows
        fast, slow = _rings(x, labels, void, widths), _rings_by_growing_the_whole_frame(x, labels, void, widths)
        np.testing.assert_array_equal(fast[1], slow[1])
        np.testing.assert_allclose(fast[0], slow[0], rtol=1e-12)


def test_a_second_thread_gives_the_same_statistics_and_masks():
    s = corpus_sample(HELD_OUT_SEED + 1, CorpusSettings(size=192, frames=2))
    frames, masks = np.stack(s.frames).astype(np.float64), np.stack(s.masks)
    labels, t = contrast_significance(frames[0], masks[0])
    labels2, t2 = contrast_significance(frames[0], masks[0], threads=2)
    assert t.size > 5 and np.array_equal(labels, labels2) and np.array_equal(t, t2)
    kept = drop_faint(frames, masks, 5.0)
    assert np.array_equal(kept, drop_faint(frames, masks, 5.0, threads=2)) and kept.any()


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (37, 53)])
def test_growing_labels_is_the_grey_dilation_by_the_cross(shape):
    labels = np.random.default_rng(shape[0] * 100 + shape[1]).integers(0, 50, shape).astype(np.int32)
    cross = ndimage.generate_binary_structure(2, 1)
    np.testing.assert_array_equal(_grow(labels), ndimage.grey_dilation(labels, footprint=cross))


def test_box_sums_on_a_grid_are_the_sums_over_their_squares():
    rng = np.random.default_rng(4)
    x = rng.integers(0, 1000, (61, 47)).astype(np.float64)  # whole numbers: every sum exact in any order
    s = _integral(x)
    np.testing.assert_array_equal(s, np.pad(x.cumsum(0).cumsum(1), ((1, 0), (1, 0))))
    got = _box_sums(s, 2, 3, 6, 4, 9, 5)
    want = [[x[2 + 9 * i : 7 + 9 * i, 3 + 9 * j : 8 + 9 * j].sum() for j in range(4)] for i in range(6)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("side", [1, 4, 12])
def test_null_spread_is_that_of_the_positions_clear_of_voids(side):
    """The spread from strided slices of the summed-area tables equals, to the bit, the one from the clear positions
    gathered one by one."""
    s = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=160))
    x, void = s.frames[0].astype(np.float64), s.masks[0]
    grey, voids = _integral(x), _integral(void.astype(np.float64))
    w = ring_width(side * side)
    outer = side + 2 * w
    stride = max(1, int(np.sqrt((160 - outer - 2) ** 2 / 40_000)))
    yy, xx = (a.ravel() for a in np.mgrid[1 : 160 - outer - 1 : stride, 1 : 160 - outer - 1 : stride])

    def box(t, y, x_, n):
        return t[y + n, x_ + n] - t[y, x_ + n] - t[y + n, x_] + t[y, x_]

    clear = box(voids, yy - 1, xx - 1, outer + 2) == 0
    assert 64 <= clear.sum() < clear.size
    yy, xx = yy[clear], xx[clear]
    inner = box(grey, yy + w, xx + w, side) / side**2
    d = inner - (box(grey, yy, xx, outer) - inner * side**2) / (outer**2 - side**2)
    assert _Background(x, void).spread(side) == 1.4826 * float(np.median(np.abs(d - np.median(d))))


@pytest.mark.parametrize("side", [1, 3, 8])
def test_null_spread_of_white_noise_is_the_analytic_one(side):
    rng = np.random.default_rng(side)
    sigma = 3.0
    noise = rng.normal(10.0, sigma, (512, 512))
    outer = side + 2 * ring_width(side * side)
    expected = sigma * np.sqrt(1 / side**2 + 1 / (outer**2 - side**2))
    assert null_spread(noise, np.zeros(noise.shape, bool), side) == pytest.approx(expected, rel=0.05)


def test_null_spread_grows_with_grain_where_specks_live():
    """Grain of 1.5 px makes a 3 px speck's difference to its ring vary more than white noise of the same pixel
    spread would: the null is measured on the frame, not assumed white."""
    rng = np.random.default_rng(0)
    white = rng.normal(0.0, 1.0, (256, 256))
    grain = ndimage.gaussian_filter(white, 1.5)
    grain /= grain.std()
    none = np.zeros(white.shape, bool)
    assert null_spread(grain, none, 3) > 1.5 * null_spread(white, none, 3)


def test_statistic_does_not_change_under_gain_and_offset():
    rng = np.random.default_rng(1)
    frame = rng.normal(100.0, 5.0, (96, 96))
    yy, xx = np.mgrid[:96, :96]
    disc = (yy - 40) ** 2 + (xx - 50) ** 2 < 64
    frame[disc] -= 12.0
    mask = disc | _random_specks(frame.shape, 10, rng)
    _, t = contrast_significance(frame, mask)
    _, t2 = contrast_significance(3.7 * frame - 250.0, mask)
    np.testing.assert_allclose(t, t2, rtol=1e-9)


def test_clear_voids_are_kept_and_the_threshold_only_removes():
    s = corpus_sample(HELD_OUT_SEED + 10, CorpusSettings(size=128))  # three bright voids with a dark rim
    truth = s.masks[:1].astype(bool)
    kept = drop_faint(s.frames[:1], truth, 5.5)
    np.testing.assert_array_equal(kept, truth)
    specks = truth | _random_specks(truth.shape[1:], 30, np.random.default_rng(0))[None]
    kept = drop_faint(s.frames[:1], specks, 5.5)
    assert (kept <= specks).all() and kept[truth].all() and kept.sum() < specks.sum()
    np.testing.assert_array_equal(drop_faint(s.frames[:1], specks, 0.0), specks)


def _frame_of_discs(strong: int, faint_amplitude: float, size: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``size``² white noise with ``strong`` discs of radius 5 at +3σ and one at ``faint_amplitude``σ."""
    rng = np.random.default_rng(3)
    frame = rng.normal(0.0, 1.0, (size, size))
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros(frame.shape, bool)
    for cy, cx in [(20, 20), (20, 70), (20, 120), (70, 20), (70, 120), (120, 20)][:strong]:
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 25
        frame[disc] += 3.0
        mask |= disc
    faint = (yy - 120) ** 2 + (xx - 120) ** 2 < 25
    frame[faint] += faint_amplitude
    return frame, mask | faint, faint


@pytest.mark.parametrize(("size", "strong"), [(512, SHOWN_COUNT), (512, SHOWN_COUNT - 1), (160, 1), (160, 0)])
def test_a_frame_that_shows_voids_keeps_the_visible_ones_and_a_texture_frame_only_the_clear_ones(size, strong):
    frame, mask, faint = _frame_of_discs(strong, 0.8 if size < 512 else 0.6, size)  # t of the faint one: 4.6 / 4.7
    labels, t = contrast_significance(frame, mask)
    t_faint = t[labels[faint][0] - 1]
    assert VISIBLE_CONTRAST <= t_faint < 5.0 and (np.delete(t, labels[faint][0] - 1) >= 5.0).all()
    kept = drop_faint(frame[None], mask[None], 5.0)[0]
    assert kept[mask & ~faint].all()
    # beside enough clear voids for the frame's size the faint one is a void
    assert kept[faint].all() == (strong >= shown_count(frame.shape))
    strict = drop_faint(frame[None], mask[None], 5.0, relaxed=False)[0]  # region by region, whatever the frame
    assert strict[mask & ~faint].all() and not strict[faint].any()
    np.testing.assert_array_equal(drop_faint(frame[None], mask[None], t_faint - 0.01)[0], mask)


def _texture_frame_with_a_large_faint_void(radius):
    """A 512² frame of noise with one faint disc (t between 3 and 5) and its net-like eta (1 inside, 0 outside)."""
    rng = np.random.default_rng(5)
    frame = rng.normal(0.0, 1.0, (512, 512))
    yy, xx = np.mgrid[:512, :512]
    disc = (yy - 200) ** 2 + (xx - 300) ** 2 < radius**2
    frame[disc] += 0.6 if radius < 8 else 0.35
    return frame, disc, disc.astype(np.float32)


@pytest.mark.parametrize("radius", [4, 12])
def test_a_texture_frame_keeps_a_large_faint_region_the_net_is_confident_of(radius):
    frame, disc, eta = _texture_frame_with_a_large_faint_void(radius)
    _, t = contrast_significance(frame, disc)
    assert VISIBLE_CONTRAST <= t[0] < 5.0  # faint, and alone: the frame is judged texture
    area = int(disc.sum())
    assert (area >= CONFIDENT_AREA_PX) == (radius == 12)

    def kept(**kw):
        return bool(drop_faint(frame[None], disc[None], 5.0, **kw)[0][disc].all())

    assert not kept()  # without the net's eta: clear regions only
    assert kept(eta=eta[None], confident_eta=0.95) == (radius == 12)  # only a large region is rescued
    assert not kept(eta=0.9 * eta[None], confident_eta=0.95)  # the net not confident enough
    assert not kept(eta=eta[None], confident_eta=0.0)  # off
    assert not kept(eta=eta[None], confident_eta=0.95, relaxed=False)  # a fitted model's threshold is final
    # the area counts at the net's scale: a frame the net saw at 0.4 of its size holds 0.16 of the pixels there
    assert (area * 0.4**2 < CONFIDENT_AREA_PX) and not kept(eta=eta[None], confident_eta=0.95, scale=0.4)
    assert kept(eta=eta[None], confident_eta=0.95, scale=2.0) == (area * 4 >= CONFIDENT_AREA_PX)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"confident_eta": 1.5}, "confident_eta must be in"),
        ({"confident_eta": float("nan")}, "confident_eta must be in"),
        ({"scale": 0.0}, "scale must be a positive number"),
        ({"eta": np.zeros((1, 8, 9))}, "must have one shape"),
    ],
)
def test_bad_rescue_settings_are_refused(kw, message):
    with pytest.raises(NeuradiffError, match=message):
        drop_faint(np.zeros((1, 8, 8)), np.zeros((1, 8, 8), bool), 5.0, **kw)


def test_the_shipped_recogniser_reads_its_confident_eta_and_refuses_a_bad_one(tmp_path):
    meta = json.loads((weights_folder() / "generalist.json").read_text())
    assert load_generalist().confident_eta == meta["confident_eta"] == 0.95
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "generalist.pt").write_bytes((weights_folder() / "generalist.pt").read_bytes())
    (folder / "generalist.json").write_text(json.dumps({**meta, "confident_eta": 2.0}))
    with pytest.raises(NeuradiffError, match="confident_eta must be in"):
        load_generalist(folder)
    (folder / "generalist.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "confident_eta"}))
    assert load_generalist(folder).confident_eta == 0.0  # a description without it: no rescue, as before


def test_the_count_of_clear_voids_a_frame_needs_scales_with_its_area_at_the_nets_scale():
    sides = (64, 128, 228, 229, 256, 400, 512, 513, 1024, 2048)
    assert [shown_count((s, s)) for s in sides] == [1, 1, 1, 2, 2, 4, 5, 6, 20, 80]
    assert shown_count((3, 512, 256)) == 3 == shown_count((256, 512))  # the frame's own area, not the stack's
    assert SHOWN_COUNT == 5 and SHOWN_AREA_PX == 512 * 512
    # a frame resampled by 1/2 (or 1/3) before the net counts as the frame the net reads
    assert shown_count((1024, 1024), 0.5) == shown_count((512, 512)) == 5
    assert shown_count((768, 768), 1 / 3) == shown_count((256, 256)) == 2
    with pytest.raises(NeuradiffError, match="scale must be a positive"):
        shown_count((64, 64), 0.0)


def test_a_1024_px_frame_needs_four_times_the_clear_voids_of_a_512_px_one():
    """Five clear voids and one faint one: a 512² frame shows voids and keeps the faint one, a 1024² frame of the same
    content and four times the grain does not, unless the net read it at half its size."""
    frame, mask, faint = _frame_of_discs(SHOWN_COUNT, 0.6, 512)
    big = np.random.default_rng(11).normal(0.0, 1.0, (1024, 1024))
    big[:512, :512] = frame
    big_mask = np.zeros(big.shape, bool)
    big_mask[:512, :512] = mask
    big_faint = np.zeros(big.shape, bool)
    big_faint[:512, :512] = faint
    assert drop_faint(frame[None], mask[None], 5.0)[0][faint].all()
    kept = drop_faint(big[None], big_mask[None], 5.0)[0]
    assert kept[big_mask & ~big_faint].all() and not kept[big_faint].any()
    assert drop_faint(big[None], big_mask[None], 5.0, scale=0.5)[0][big_faint].all()


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_threshold_is_refused(bad):
    with pytest.raises(NeuradiffError, match="minimum void contrast"):
        drop_faint(np.zeros((1, 8, 8)), np.zeros((1, 8, 8), bool), bad)
    with pytest.raises(NeuradiffError, match="minimum void contrast"):
        load_generalist(min_contrast=bad)


def test_shipped_threshold_and_its_override(tmp_path):
    meta = json.loads((weights_folder() / "generalist.json").read_text())
    assert load_generalist().min_contrast == meta["min_contrast"] >= 0
    s = corpus_sample(HELD_OUT_SEED + 7, CorpusSettings(size=128))
    strict, loose = load_generalist(min_contrast=5.5), load_generalist(min_contrast=0.0)
    m_strict, m_loose = strict.masks(s.frames), loose.masks(s.frames)
    assert (m_strict <= m_loose).all() and m_loose.sum() >= m_strict.sum()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--min-contrast", "-2"], "--min-contrast must be a number >= 0"), (["--min-contrast", "nan"], "must be")],
)
def test_track_refuses_a_bad_contrast_threshold_in_one_line(tmp_path, args, message):
    video = tmp_path / "v.tif"
    tifffile.imwrite(video, np.random.default_rng(0).integers(0, 255, (1, 64, 64), dtype=np.uint8))
    out = tmp_path / "out"
    res = runner.invoke(app, ["track", str(video), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.slow
def test_track_records_the_threshold_it_used(tmp_path):
    s = corpus_sample(HELD_OUT_SEED + 3, CorpusSettings(size=96, frames=2))
    video = tmp_path / "v.tif"
    tifffile.imwrite(video, s.frames)
    res = runner.invoke(app, ["track", str(video), "--out", str(tmp_path / "o"), "--no-measure", "--min-contrast", "0"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert record["model"]["min_contrast"] == 0.0
    assert record["model"]["confident_eta"] == load_generalist().confident_eta


def test_a_fit_takes_its_threshold_from_the_faintest_annotated_void():
    # Two strong discs and the faint one annotated: the threshold is the faint one's statistic less the margin;
    # without the faint one it is capped at the generalist's; with no void annotated it is 0 (every region kept).
    frame, mask, faint = _frame_of_discs(2, 0.8)
    labels, t = contrast_significance(frame, mask)
    ann = np.where(mask, 1, 0).astype(np.uint8)[None]
    assert annotated_threshold(frame[None], ann) == pytest.approx(t[labels[faint][0] - 1] - ANNOTATION_MARGIN)
    ann_strong = np.where(mask & ~faint, 1, 255).astype(np.uint8)[None]
    assert annotated_threshold(frame[None], ann_strong) == FITTED_MAX_CONTRAST
    assert annotated_threshold(frame[None], np.zeros_like(ann)) == 0.0


def test_an_annotated_void_fainter_than_visible_does_not_lower_the_threshold_when_others_stand_out():
    # The faint disc (t ≈ 4.7) and a barely-there one (t < 3) annotated beside the strong ones: the threshold comes
    # from the faint disc, not from the one no observer could tell from the grain; annotated alone, that one sets it.
    frame, mask, faint = _frame_of_discs(2, 0.6)
    yy, xx = np.mgrid[: frame.shape[0], : frame.shape[1]]
    hidden = (yy - 300) ** 2 + (xx - 300) ** 2 < 25
    frame[hidden] += 0.1
    labels, t = contrast_significance(frame, mask | hidden)
    t_faint, t_hidden = t[labels[faint][0] - 1], t[labels[hidden][0] - 1]
    assert t_hidden < VISIBLE_CONTRAST <= t_faint < FITTED_MAX_CONTRAST
    ann = np.where(mask | hidden, 1, 0).astype(np.uint8)[None]
    assert annotated_threshold(frame[None], ann) == pytest.approx(t_faint - ANNOTATION_MARGIN)
    alone = np.where(hidden, 1, 255).astype(np.uint8)[None]
    assert annotated_threshold(frame[None], alone) == pytest.approx(max(t_hidden - ANNOTATION_MARGIN, 0.0))


def test_a_fitted_models_masks_drop_regions_fainter_than_its_annotated_voids():
    from types import SimpleNamespace

    from neuradiff.methods import fitted_masks

    frame, mask, _ = _frame_of_discs(2, 0.8)
    specks = mask | _random_specks(mask.shape, 30, np.random.default_rng(0))
    eta = specks.astype(np.float32)[None]
    t_faint = annotated_threshold(frame[None], np.where(mask, 1, 0).astype(np.uint8)[None])
    kept = fitted_masks(SimpleNamespace(info={"min_contrast": t_faint}), eta, frame[None])[0]
    assert kept[mask].all() and kept.sum() < specks.sum()  # every disc, the faint annotated one too; fewer specks
    np.testing.assert_array_equal(
        fitted_masks(SimpleNamespace(info={"min_contrast": 0.0}), eta, frame[None])[0], specks
    )
    np.testing.assert_array_equal(fitted_masks(SimpleNamespace(info={}), eta, frame[None])[0], specks)
