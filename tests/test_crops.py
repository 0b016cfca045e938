"""Training on windows of large frames: where windows fall, what the losses see, and a fit end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuradiff.core.labels import UNKNOWN
from neuradiff.methods.neuradiff import NeuraDiffObjective, fit_neuradiff
from neuradiff.training import FitConfig, TrainingData
from neuradiff.training.crops import Window, anchored_window, cut_batch, interior, random_window, resolve_crop


def test_windows_stay_inside_and_land_on_annotations():
    rng = np.random.default_rng(0)
    ann = torch.full((100, 80), UNKNOWN, dtype=torch.uint8)
    ann[90:95, 3:6] = 1  # a small annotated void near a corner
    for _ in range(50):
        w = anchored_window(rng, ann, 32)
        assert 0 <= w.y <= 100 - 32 and 0 <= w.x <= 80 - 32
        assert bool((w.cut(ann) != UNKNOWN).any())  # the annotation is inside the window
    nothing = torch.full((100, 80), UNKNOWN, dtype=torch.uint8)
    w = anchored_window(rng, nothing, 32)  # nothing annotated: anywhere, still inside
    assert 0 <= w.y <= 68 and 0 <= w.x <= 48
    assert random_window(rng, (40, 40), 40) == Window(0, 0, 40)


def test_cut_batch_and_interior():
    a = torch.arange(2 * 6 * 6).view(2, 6, 6)
    out = cut_batch(a, [Window(0, 0, 3), Window(3, 2, 3)])
    assert out.shape == (2, 3, 3) and out[1, 0, 0] == a[1, 3, 2]
    assert cut_batch(a, None) is a
    m = interior(8, 2)
    assert m.sum() == 16 and not m[1].any() and m[2, 2:6].all()
    assert (
        resolve_crop(None, 300, 1024) == 256
        and resolve_crop(64, 300, 1024) == 64
        and resolve_crop(None, 256, 256) is None
    )


def _big_video(side=96, frames=8):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:side, :side]
    void = (np.hypot(yy - 60, xx - 30) < 9).astype(np.float32)
    video = np.stack([100 + 40 * void + rng.normal(0, 3, void.shape) for _ in range(frames)]).astype(np.float32)
    ann = np.full(video.shape, UNKNOWN, np.uint8)
    for k in (0, 3, 6):  # part of three frames annotated around the void
        ann[k, 40:80, 10:50] = void[40:80, 10:50].astype(np.uint8)
    return TrainingData(video, ann, 1.0, 1.0, 0.2)


TINY = {
    "pretrain_iters": 3,
    "joint_iters": 2,
    "eval_every": 1,
    "batch": 2,
    "gap": 2,
    "dt": 0.2,
    "net": {"width": 4, "depth": 2},
}


def test_pairs_are_cut_to_windows_and_the_simulator_has_walls():
    objective = NeuraDiffObjective(_big_video(), FitConfig(**TINY, crop=32, crop_margin=4))
    assert objective.rec.crop == 32 and objective.simulator.boundary == "no-flux"
    windows = [Window(40, 14, 32)]
    fields, logits = objective.rec.recognise(objective.net, torch.tensor([3]), windows=windows)
    assert fields.shape == (1, 3, 32, 32) and logits.shape == (1, 32, 32)
    with torch.no_grad():
        terms = objective.pair_loss(objective.params(), torch.tensor([0]), gap=6, windows=windows)  # 0 → 6
        assert all(bool(torch.isfinite(v)) for v in terms.values()) and float(terms["sim"]) > 0
        # The physics loss ignores annotations within the margin of the window edge ...
        changed = objective.rec.train_annotations.clone()
        changed[6, 40, 14:46] = 1 - changed[6, 40, 14:46].clamp(max=1)  # the window's first row
        edge = objective.pair_loss(objective.params(), torch.tensor([0]), gap=6, windows=windows, annotations=changed)
        assert float(edge["sim"]) == pytest.approx(float(terms["sim"]), rel=1e-6)
        # ... and sees the ones inside it.
        changed[6, 56, 20:40] = 1 - changed[6, 56, 20:40].clamp(max=1)
        inner = objective.pair_loss(objective.params(), torch.tensor([0]), gap=6, windows=windows, annotations=changed)
        assert float(inner["sim"]) != pytest.approx(float(terms["sim"]), rel=1e-6)


def test_whole_frames_keep_the_periodic_simulator():
    objective = NeuraDiffObjective(_big_video(side=48), FitConfig(**TINY))
    assert objective.rec.crop is None and objective.simulator.boundary == "periodic"


@pytest.mark.slow
def test_fit_on_windows_end_to_end(tmp_path):
    data = _big_video()
    cfg = FitConfig(**TINY, crop=32)
    fit = fit_neuradiff(data, cfg, checkpoint_path=tmp_path / "c.pt")
    assert len(fit.history) == 5 and all(np.isfinite(r["loss_loss"]) for r in fit.history)
    assert fit.model.simulator.boundary == "no-flux"
    resumed = fit_neuradiff(data, cfg, checkpoint_path=tmp_path / "c.pt", resume=True)  # from the last checkpoint
    assert resumed.model.params.as_floats() == fit.model.params.as_floats()
    eta = fit.model.recognise(data.frames, eta_only=True)  # tracking works on whole frames
    assert eta.shape == data.frames.shape
