"""Tests of neuradiff.synth.render: fields -> synthetic TEM video frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from helpers_eta import concentrations, disk_stack
from neuradiff.synth.render import (
    MATRIX_LEVEL,
    REFERENCE_MATRIX,
    REFERENCE_VOID,
    RenderSettings,
    contrast_to_noise,
    render_video,
    shift_like,
)

QUIET = dict(shade_strength=0.0, concentration_coupling=0.0, flicker=0.0, drift=0.0)


@pytest.fixture(scope="module")
def eta():
    return disk_stack(24, 48, 13.0, 9.0)


def test_same_seed_gives_identical_bytes(eta):
    c_v, c_i = concentrations(eta)
    a, info_a = render_video(eta, c_v=c_v, c_i=c_i, seed=7)
    b, info_b = render_video(eta, c_v=c_v, c_i=c_i, seed=7)
    c, _ = render_video(eta, c_v=c_v, c_i=c_i, seed=8)
    assert a.tobytes() == b.tobytes()
    assert np.array_equal(info_a["drift_px"], info_b["drift_px"])
    assert info_a["cnr"] == info_b["cnr"]
    assert a.tobytes() != c.tobytes()


def test_reference_mode_is_seeded(eta):
    s = RenderSettings(mode="reference")
    assert render_video(eta, settings=s, seed=3)[0].tobytes() == render_video(eta, settings=s, seed=3)[0].tobytes()


def test_tem_shapes_dtypes_and_info(eta):
    frames, info = render_video(eta)
    assert frames.shape == eta.shape and frames.dtype == np.uint8
    assert info["mode"] == "tem" and info["frame_offset"] == 0 and info["crop"] == 0
    assert info["drift_px"].shape == (eta.shape[0], 2)
    assert np.all(info["drift_px"][0] == 0)
    assert np.isfinite(info["cnr"]) and info["cnr"] > 0
    json.dumps(info["settings"])
    assert RenderSettings.__dataclass_params__.frozen


def test_bit_depth_16(eta):
    frames, info = render_video(eta, settings=RenderSettings(bit_depth=16))
    assert frames.dtype == np.uint16 and frames.shape == eta.shape
    assert frames.max() > 255
    # the same picture on a finer grey scale: the matrix sits at the same fraction of the full scale
    assert abs(info["matrix_mean"] / 65535 - render_video(eta)[1]["matrix_mean"] / 255) < 0.01


def test_reference_mode_valid_convolution_and_statistics():
    eta = disk_stack(24, 48, 14.0)
    frames, info = render_video(eta, settings=RenderSettings(mode="reference"), seed=1)
    assert frames.shape == (24 - 18, 46, 46) and frames.dtype == np.uint8
    assert info["frame_offset"] == 9 and info["crop"] == 1 and info["mode"] == "reference"
    assert np.all(info["drift_px"] == 0) and info["drift_px"].shape == (6, 2)
    aligned = eta[9:15, 1:-1, 1:-1]
    matrix = frames[aligned < 0.01].astype(float)
    void = frames[aligned > 0.99].astype(float)
    assert abs(matrix.mean() - (REFERENCE_MATRIX[0] * 128 + 128)) < 2.0
    assert abs(void.mean() - (REFERENCE_VOID[0] * 128 + 128)) < 2.0
    # the 19x3x3 box average shrinks the per-pixel std by sqrt(171)
    assert matrix.std() == pytest.approx(REFERENCE_MATRIX[1] * 128 / np.sqrt(171), rel=0.25)
    assert info["cnr"] > 8


def test_reference_mode_needs_19_frames():
    with pytest.raises(ValueError, match="19 frames"):
        render_video(disk_stack(18, 16, 4.0), settings=RenderSettings(mode="reference"))


def test_reference_bit_depth_16_same_recipe():
    eta = disk_stack(20, 24, 6.0)
    f8, _ = render_video(eta, settings=RenderSettings(mode="reference"), seed=2)
    f16, _ = render_video(eta, settings=RenderSettings(mode="reference", bit_depth=16), seed=2)
    assert f16.dtype == np.uint16
    assert np.abs(f16 / 256.0 - f8).max() <= 1.0


def test_voids_brighter_than_matrix_with_dark_fringe():
    eta = disk_stack(8, 48, 12.0, width=0.7)
    frames, info = render_video(eta, settings=RenderSettings(dose=2000, defocus=1.5, **QUIET), seed=0)
    mean = frames.astype(float).mean(axis=0)
    r = np.hypot(*np.mgrid[0:48, 0:48] - 23.5)
    inside, rim, far = mean[r < 9].mean(), mean[(r > 12.5) & (r < 14.5)].mean(), mean[r > 18].mean()
    assert info["void_mean"] > info["matrix_mean"]
    assert inside > far + 20
    assert rim < far - 3
    flat, _ = render_video(eta, settings=RenderSettings(dose=2000, defocus=0.0, **QUIET), seed=0)
    flat = flat.astype(float).mean(axis=0)
    assert flat[(r > 12.5) & (r < 14.5)].mean() > rim + 5


def test_cnr_increases_with_dose(eta):
    cnr = [render_video(eta, settings=RenderSettings(dose=d), seed=0)[1]["cnr"] for d in (5, 50, 500)]
    assert cnr[0] < cnr[1] < cnr[2]
    assert cnr[0] < 2 < cnr[2]


def test_default_cnr_is_moderate():
    eta = disk_stack(16, 64, 14.0, 10.0)
    c_v, c_i = concentrations(eta)
    cnr = [render_video(eta, c_v=c_v, c_i=c_i, seed=s)[1]["cnr"] for s in range(3)]
    assert 2.5 < np.mean(cnr) < 8


def test_static_eta_without_flicker_or_drift_differs_only_by_shot_noise():
    eta = disk_stack(12, 48, 12.0)
    s = RenderSettings(dose=100, flicker=0.0, drift=0.0, shade_strength=0.0)
    frames, _ = render_video(eta, settings=s, seed=4)
    f = frames.astype(float)
    diff = f[1:] - f[:-1]
    gain = MATRIX_LEVEL * 255 / s.dose  # grey levels per electron
    # Poisson: var(grey) = gain * mean(grey); a difference of two frames has twice that (+ rounding)
    expected = 2 * gain * f.mean() + 2 / 12
    assert diff.var() == pytest.approx(expected, rel=0.05)
    assert np.abs(diff.mean(axis=(1, 2))).max() < 4 * np.sqrt(expected / eta[0].size)
    # the default black shades move, but slowly: one frame apart they add almost nothing
    shaded, _ = render_video(eta, settings=RenderSettings(dose=100, flicker=0.0, drift=0.0), seed=4)
    sd = np.diff(shaded.astype(float), axis=0)
    assert sd.var() == pytest.approx(2 * gain * shaded.mean() + 2 / 12, rel=0.1)
    flick, _ = render_video(eta, settings=RenderSettings(dose=100, flicker=0.05, drift=0.0), seed=4)
    assert np.abs(np.diff(flick.astype(float).mean(axis=(1, 2)))).max() > 3.0


def test_drift_path_and_shift_like_alignment():
    eta = disk_stack(24, 48, 8.0)
    s = RenderSettings(dose=1000, drift=0.5, **{k: v for k, v in QUIET.items() if k != "drift"})
    frames, info = render_video(eta, settings=s, seed=5)
    d = info["drift_px"]
    assert d.shape == (24, 2) and np.all(d[0] == 0)
    steps = np.linalg.norm(np.diff(d, axis=0), axis=1)
    assert steps.mean() == pytest.approx(0.5, rel=1e-6)
    assert np.linalg.norm(d[-1]) > 3  # it really moved
    aligned = shift_like(eta, d)
    f = frames.astype(float)

    def corr(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    assert corr(f[-1], aligned[-1]) > corr(f[-1], eta[-1]) + 0.1
    assert contrast_to_noise(frames, aligned >= 0.5) == pytest.approx(info["cnr"])
    assert contrast_to_noise(frames, eta >= 0.5) < info["cnr"]


def test_shift_like_integer_shifts_are_rolls():
    eta = disk_stack(3, 32, 6.0, width=0.0)
    mask = eta >= 0.5
    d = np.array([[0.0, 0.0], [2.0, -3.0], [-5.0, 1.0]])
    out_mask = shift_like(mask, d)
    out_eta = shift_like(eta, d)
    assert out_mask.dtype == np.bool_ and out_eta.dtype == eta.dtype
    for t in range(3):
        expect = np.roll(mask[t], (int(d[t, 0]), int(d[t, 1])), axis=(0, 1))
        assert np.array_equal(out_mask[t], expect)
        assert np.allclose(out_eta[t], np.roll(eta[t], (int(d[t, 0]), int(d[t, 1])), axis=(0, 1)))
    ann = np.where(mask, 1, 255).astype(np.uint8)
    assert set(np.unique(shift_like(ann, d + 0.4)).tolist()) <= {1, 255}
    with pytest.raises(ValueError):
        shift_like(mask, d[:2])


def test_contrast_to_noise_is_calibrated():
    rng = np.random.default_rng(0)
    mask = disk_stack(4, 64, 15.0, width=0.0) >= 0.5
    sigma = 4.0
    frames = np.where(mask, 140.0, 100.0) + sigma * rng.standard_normal(mask.shape)
    assert contrast_to_noise(frames, mask) == pytest.approx(40.0 / sigma, rel=0.05)
    # slowly varying background (shades) does not count as noise
    shaded = frames + 30 * np.sin(np.arange(64) / 64 * np.pi)[None, :, None]
    disk = np.hypot(*np.mgrid[-2:3, -2:3]) <= 2
    void = ndimage.binary_erosion(mask, disk[None])
    matrix = ndimage.binary_erosion(~mask, disk[None])
    contrast = shaded[void].mean() - shaded[matrix].mean()
    assert contrast_to_noise(shaded, mask) == pytest.approx(contrast / sigma, rel=0.05)
    assert np.isnan(contrast_to_noise(frames, np.zeros_like(mask)))


def test_concentration_excess_darkens():
    eta = disk_stack(6, 48, 8.0)
    c_v, c_i = concentrations(eta)
    c_v[:, :, 30:] = 0.18  # supersaturated right-hand side
    s = RenderSettings(dose=2000, shade_strength=0.0, concentration_coupling=0.5, flicker=0.0, drift=0.0)
    dark, _ = render_video(eta, c_v=c_v, c_i=c_i, settings=s, seed=1)
    plain, _ = render_video(
        eta,
        c_v=c_v,
        c_i=c_i,
        settings=RenderSettings(dose=2000, shade_strength=0.0, concentration_coupling=0.0, flicker=0.0, drift=0.0),
        seed=1,
    )
    right = (slice(None), slice(None), slice(34, 46))
    left = (slice(None), slice(None), slice(2, 12))
    assert dark[right].mean() < 0.85 * plain[right].mean()
    assert abs(dark[left].mean() - plain[left].mean()) < 1.0


@pytest.mark.parametrize(
    "kw",
    [
        dict(mode="sem"),
        dict(dose=0),
        dict(dose=-1.0),
        dict(bit_depth=12),
        dict(shade_scale=0),
        dict(grain=float("nan")),
        dict(shade_strength=2.0),
    ],
)
def test_bad_settings_raise(kw):
    with pytest.raises(ValueError):
        RenderSettings(**kw)


def test_bad_inputs_raise(eta):
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        render_video(eta[0])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        render_video(eta * 1.5)
    with pytest.raises(ValueError, match="NaN"):
        render_video(np.where(eta > 0.5, np.nan, eta))
    with pytest.raises(ValueError, match="c_v"):
        render_video(eta, c_v=np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="seed"):
        render_video(eta, seed=-1)
