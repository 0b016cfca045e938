"""The domain-randomised void corpus: reproducible, varied (both contrasts, bit depths, distractors), masks that
keep touching voids apart, and clips whose voids evolve under the void model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label

from neuradiff.core.errors import NeuradiffError
from neuradiff.synth.corpus import CorpusSettings, corpus_batch, corpus_contact_sheet, corpus_sample

SMALL = CorpusSettings(size=64)


def test_same_seed_same_sample_and_seeds_differ():
    a, b, c = corpus_sample(7, SMALL), corpus_sample(7, SMALL), corpus_sample(8, SMALL)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


def test_randomisation_covers_both_contrasts_bit_depths_and_distractors():
    infos = [corpus_sample(s, SMALL).info for s in range(24)]
    contrasts = {i["render"]["contrast"] for i in infos}
    assert contrasts == {"bright void, dark rim", "dark void, bright rim"}
    assert {i["render"]["bit_depth"] for i in infos} == {8, 16}
    assert sum(sum(i["render"]["distractors"].values()) for i in infos) > 24
    sizes = [v["diameter"] for i in infos for v in i["voids"]]
    assert min(sizes) >= 3.0 and max(sizes) <= 60.0 and max(sizes) > 4 * min(sizes)
    assert {v["shape"] for i in infos for v in i["voids"]} == {"round", "hexagon", "square"}


def test_voids_are_visible_with_their_sign():
    """The mean grey level inside voids lies on the side the contrast says, against the ring just outside."""
    checked = 0
    for s in range(16):
        smp = corpus_sample(s, CorpusSettings(size=64, distractors=False))
        m = smp.masks[0]
        if m.sum() < 20:
            continue
        f = smp.frames[0].astype(float)
        ring = ndimage.binary_dilation(m, iterations=6) & ~ndimage.binary_dilation(m, iterations=3)
        sign = 1 if smp.info["render"]["contrast"].startswith("bright") else -1
        assert sign * (f[m].mean() - f[ring].mean()) > 0, s
        checked += 1
    assert checked >= 8


@pytest.mark.slow
def test_touching_voids_stay_separate_objects():
    seen = 0
    for s in range(24):
        smp = corpus_sample(s, SMALL)
        n = smp.info["n_voids"]
        inside = sum(1 for v in smp.info["voids"] if 0 <= v["y"] < 64 and 0 <= v["x"] < 64)
        n_obj = int(label(smp.masks[0], connectivity=1).max())
        # voids cut by the frame edge may be missing; merged voids would make fewer objects than voids inside
        assert n_obj >= inside - max(1, n // 10), s
        seen += 1
    assert seen == 24


def test_clip_voids_follow_the_void_model():
    smp = corpus_sample(4, CorpusSettings(size=48, frames=3, steps_per_frame=(40, 40), max_diameter=20))
    assert smp.frames.shape == (3, 48, 48) and smp.masks.shape == (3, 48, 48)
    assert not np.allclose(smp.eta[0], smp.eta[2])  # the phase-field model moved the interfaces
    assert np.all((smp.eta >= 0) & (smp.eta <= 1))


def test_a_clip_evolved_with_the_compiled_kernel_matches_the_plain_one():
    """``kernel="fused"`` evolves the same voids: eta within float32 round-off of the plain steps, the same masks
    and grey levels on this seed; the default stays the plain path that drew every shipped corpus."""
    settings = CorpusSettings(size=48, frames=3, steps_per_frame=(40, 40), max_diameter=20)
    assert settings.kernel == "torch"
    plain = corpus_sample(4, settings)
    fused = corpus_sample(4, CorpusSettings(**{**settings.to_dict(), "kernel": "fused"}))
    assert not np.allclose(plain.eta[0], plain.eta[2])
    assert np.abs(fused.eta - plain.eta).max() < 1e-4
    assert np.array_equal(fused.masks, plain.masks) and np.array_equal(fused.frames, plain.frames)
    assert fused.info["settings"]["kernel"] == "fused"


def test_batch_and_contact_sheet(tmp_path):
    x, y = corpus_batch([1, 2], SMALL)
    assert x.shape == (2, 64, 64) and x.dtype == np.float32 and y.dtype == bool
    corpus_contact_sheet(tmp_path / "sheet.png", [1, 2], SMALL, columns=2)
    assert (tmp_path / "sheet.png").stat().st_size > 1000


def test_a_lower_fill_draws_fewer_voids_of_the_same_size():
    """The void area fraction is drawn from ``fill``; the typical size is drawn before it, so the same seed gives
    the same size with fewer voids, and never none."""
    fewer = 0
    for seed in range(8):
        full = corpus_sample(seed, CorpusSettings(size=128)).info
        sparse = corpus_sample(seed, CorpusSettings(size=128, fill=(0.001, 0.002))).info
        assert 1 <= sparse["n_voids"] <= full["n_voids"]
        fewer += sparse["n_voids"] < full["n_voids"]
    assert fewer >= 4


@pytest.mark.parametrize(
    "kw",
    [
        {"size": 8},
        {"frames": 0},
        {"min_diameter": 1.0},
        {"min_diameter": 9.0, "max_diameter": 5.0},
        {"fill": (0.0, 0.1)},
        {"fill": (0.2, 0.1)},
        {"fill": (0.1, 1.0)},
        {"kernel": "numba"},
    ],
)
def test_bad_settings_are_refused(kw):
    with pytest.raises(NeuradiffError):
        CorpusSettings(**kw)


def test_bad_seed_is_refused():
    with pytest.raises(NeuradiffError, match="seed"):
        corpus_sample(-1, SMALL)
