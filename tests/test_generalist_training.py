"""Training the generalist recogniser: the loss weights (separation lines, small voids weighted up), the pool of
stills and evolved clip frames, and a short run that is the same twice from one seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.nets.generalist import load_generalist
from neuradiff.nets.levels import normalise_frame
from neuradiff.synth.capture import random_export, to_8bit
from neuradiff.synth.corpus import CorpusSettings, corpus_sample
from neuradiff.training.generalist import (
    CLIP_FRAMES,
    CLIP_SEED,
    EXPORT_STREAM,
    GAP_WEIGHT,
    SMALL_AREA_PX,
    SPARSE_SEED,
    SPARSE_SIZE,
    GeneralistConfig,
    loss_weights,
    make_pool,
    sparse_settings,
    train_generalist,
    write_generalist,
)


def _two_voids() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((48, 48), bool)
    mask[5:8, 5:8] = True  # 9 px
    mask[20:40, 20:40] = True  # 400 px
    eta = mask.astype(float)
    eta[30, 20:40] = 1.0
    mask[30, 20:40] = False  # a separation line: void in eta, left out of the mask
    return mask, eta


def test_loss_weights_mark_separation_lines_and_weight_small_voids_up():
    mask, eta = _two_voids()
    plain = loss_weights(mask, eta)
    assert (plain[30, 20:40] == GAP_WEIGHT).all()
    assert (plain[~((eta >= 0.5) & ~mask)] == 1).all()
    w = loss_weights(mask, eta, small_weight=0.5)
    up = (SMALL_AREA_PX / 9) ** 0.5
    assert w[6, 6] == pytest.approx(up, rel=1e-6)
    assert w[3, 3] == pytest.approx(up, rel=1e-6)  # the 2 px around the small void count with it
    assert w[0, 0] == 1 and w[12, 12] == 1
    assert (w[21:29, 21:39] == 1).all()  # a large void is not weighted up
    assert (w[30, 20:40] == GAP_WEIGHT).all()
    assert loss_weights(mask, eta, small_weight=5.0).max() == GAP_WEIGHT  # capped at 4 below the gap weight
    assert loss_weights(mask, eta, small_weight=5.0)[6, 6] == 4.0


@pytest.mark.slow
def test_pool_holds_stills_then_every_frame_of_each_clip():
    cfg = GeneralistConfig(size=32, pool=2, clips=1, small_weight=0.5)
    x, y, w = make_pool(cfg, first_seed=7)
    assert x.shape == y.shape == w.shape == (2 + CLIP_FRAMES, 32, 32)
    still = corpus_sample(8, CorpusSettings(size=32))
    np.testing.assert_array_equal(y[1], still.masks[0])
    clip = corpus_sample(CLIP_SEED, CorpusSettings(size=32, frames=CLIP_FRAMES))
    for t in range(CLIP_FRAMES):
        np.testing.assert_array_equal(x[2 + t], normalise_frame(clip.frames[t], index=2 + t))
        np.testing.assert_array_equal(y[2 + t], clip.masks[t])
        np.testing.assert_array_equal(w[2 + t], loss_weights(clip.masks[t], clip.eta[t], 0.5))


@pytest.mark.slow
def test_the_written_record_names_the_clips_it_trained_on(tmp_path):
    cfg = GeneralistConfig(size=32, pool=2, iters=1, batch=2, clips=1, small_weight=1.0, version="t")
    net, record = train_generalist(cfg, log=None)
    write_generalist(net, cfg, record, tmp_path)
    meta = json.loads((tmp_path / "generalist.json").read_text())
    assert meta["corpus"]["clip_seeds"] == [CLIP_SEED, CLIP_SEED]
    assert meta["corpus"]["clip_settings"]["frames"] == CLIP_FRAMES
    assert "--clips 1 --small-weight 1" in meta["command"]
    assert load_generalist(tmp_path).version == "t"


@pytest.mark.slow
def test_a_later_stage_gains_a_refinement_and_draws_later_clips(tmp_path):
    first = GeneralistConfig(size=32, pool=2, iters=1, batch=2, version="a")
    net0, _ = train_generalist(first, log=None)
    later = GeneralistConfig(size=32, pool=2, iters=2, batch=2, clips=1, first_clip=5, refine=3, version="b")
    x, _, _ = make_pool(later)
    clip = corpus_sample(CLIP_SEED + 5, CorpusSettings(size=32, frames=CLIP_FRAMES))
    np.testing.assert_array_equal(x[2], normalise_frame(clip.frames[0], index=2))
    net, record = train_generalist(later, log=None, init=net0)
    assert net.config.refine == 3
    assert float(net.refine[2].weight.abs().max()) > 0  # trained away from its start at zero
    write_generalist(net, later, record, tmp_path, stages=["the first stage"])
    meta = json.loads((tmp_path / "generalist.json").read_text())
    assert meta["corpus"]["clip_seeds"] == [CLIP_SEED + 5, CLIP_SEED + 5]
    assert "--first-clip 5 --refine 3 --init OUT_OF_PREVIOUS_STAGE" in meta["command"]
    assert load_generalist(tmp_path).net.config.refine == 3
    wider = GeneralistConfig(size=32, pool=2, iters=1, batch=2, width=4)
    with pytest.raises(NeuradiffError, match="does not fit"):
        train_generalist(wider, log=None, init=net0)


def test_a_short_training_run_is_the_same_twice():
    cfg = GeneralistConfig(size=32, pool=3, iters=3, batch=2, small_weight=0.5)
    a, rec_a = train_generalist(cfg, log=None)
    b, rec_b = train_generalist(cfg, log=None)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert rec_a["history"] == rec_b["history"]


@pytest.mark.slow
def test_a_sparse_frame_enters_the_pool_normalised_whole_and_cut(tmp_path):
    """A sparse frame is normalised as a whole frame is at inference, then cut into samples of the training size:
    most of them hold no void, only what surrounds the voids."""
    cfg = GeneralistConfig(size=128, pool=1, sparse=1, first_sparse=3, iters=1, batch=2, version="s")
    x, y, w = make_pool(cfg)
    pieces = (SPARSE_SIZE // 128) ** 2
    assert x.shape == (1 + pieces, 128, 128)
    frame = corpus_sample(SPARSE_SEED + 3, sparse_settings())
    whole = normalise_frame(frame.frames[0], index=1)
    piece = np.s_[128:256, 128:256]  # the second row's second piece
    np.testing.assert_array_equal(x[1 + 5], whole[piece])
    np.testing.assert_array_equal(y[1 + 5], frame.masks[0][piece])
    np.testing.assert_array_equal(w[1 + 5], loss_weights(frame.masks[0][piece], frame.eta[0][piece]))
    assert not np.allclose(x[1 + 5], normalise_frame(frame.frames[0][piece]))  # not normalised alone
    holding = [bool(m.any()) for m in y[1:]]
    assert 1 <= sum(holding) <= pieces // 2
    assert frame.masks[0].mean() < 0.05
    net, record = train_generalist(cfg, log=None)
    write_generalist(net, cfg, record, tmp_path)
    meta = json.loads((tmp_path / "generalist.json").read_text())
    assert meta["corpus"]["sparse_seeds"] == [SPARSE_SEED + 3, SPARSE_SEED + 3]
    assert meta["corpus"]["sparse_settings"]["size"] == SPARSE_SIZE
    assert "--sparse 1 --first-sparse 3" in meta["command"]


def test_negative_pool_settings_are_refused():
    for bad in ({"clips": -1}, {"small_weight": -0.5}, {"first_clip": -2}, {"refine": -1}, {"sparse": -1}):
        with pytest.raises(NeuradiffError, match="clips, small_weight, first_clip, refine, sparse and first_sparse"):
            GeneralistConfig(**bad)
    with pytest.raises(NeuradiffError, match="dividing"):
        GeneralistConfig(size=96, sparse=1)


@pytest.mark.slow
def test_exported_samples_enter_the_pool_as_exported_and_are_drawn_from_their_own_seed(tmp_path):
    """With ``export`` a share of the samples enter as a user's export would (8 bits, clipped, JPEG), decided and
    drawn from the sample's seed on a stream of its own: the same pool twice, the corpus itself unchanged."""
    cfg = GeneralistConfig(size=32, pool=12, clips=1, export=0.5, iters=1, batch=2, version="e")
    x, y, _ = make_pool(cfg, first_seed=40)
    plain, plain_y, _ = make_pool(GeneralistConfig(size=32, pool=12, clips=1), first_seed=40)
    np.testing.assert_array_equal(y, plain_y)  # masks are the corpus's own
    again, _, _ = make_pool(cfg, first_seed=40)
    np.testing.assert_array_equal(x, again)
    exported = changed = 0
    for j, seed in enumerate(range(40, 52)):
        rng = np.random.default_rng([seed, EXPORT_STREAM])
        frames = corpus_sample(seed, CorpusSettings(size=32)).frames
        if rng.random() < 0.5:
            exported += 1
            frames = random_export(frames, rng)
            changed += not np.array_equal(x[j], plain[j])  # an 8-bit sample exported unclipped stays as it was
        else:
            np.testing.assert_array_equal(x[j], plain[j])
        np.testing.assert_array_equal(x[j], normalise_frame(frames[0], index=j))
    assert 2 <= exported <= 10 and changed >= 2
    net, record = train_generalist(cfg, log=None)
    write_generalist(net, cfg, record, tmp_path)
    assert "--export 0.5" in json.loads((tmp_path / "generalist.json").read_text())["command"]
    for bad in (-0.1, 1.5):
        with pytest.raises(NeuradiffError, match="export must be a share"):
            GeneralistConfig(export=bad)


def test_a_random_export_is_8_bit_clipped_or_jpeg_and_the_same_for_every_frame_of_a_clip():
    frames = corpus_sample(3, CorpusSettings(size=64, frames=2)).frames
    plain = np.stack([to_8bit(f) for f in frames])
    kinds = {"as 8 bits": 0, "clipped": 0, "other": 0}
    for k in range(30):
        out = random_export(frames, np.random.default_rng(k))
        assert out.dtype == np.uint8 and out.shape == frames.shape
        np.testing.assert_array_equal(out, random_export(frames, np.random.default_rng(k)))
        top = [float((f == f.max()).mean()) for f in out]
        if np.array_equal(out, plain):
            kinds["as 8 bits"] += 1
        elif top[0] > 0.004:
            kinds["clipped"] += 1
            assert top[1] > 0.002  # the same export for both frames
        else:
            kinds["other"] += 1  # JPEG of an unclipped frame, or ImageJ's 0.35 %
    assert all(n >= 2 for n in kinds.values()), kinds
