"""Recognition of frames of any size and brightness: per-frame normalisation, tiles without seams, scale checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.nets.levels import normalise_frame
from neuradiff.nets.tiles import Tiling, back_to, eta_tiled, resample, resample_factor


def _net(**kw) -> RecognitionNet:
    torch.manual_seed(0)
    net = RecognitionNet(NetConfig(embedding="none", norm="batch", **kw)).eval()
    for m in net.modules():  # stored statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_(0.0, 0.1)
    return net


def _whole(net: RecognitionNet, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(net.eta_logits(torch.from_numpy(x)[None], torch.zeros(1)))[0].numpy()


@pytest.mark.parametrize(
    ("cfg", "tiling"),
    [({"width": 4, "depth": 2}, Tiling(64, 16)), ({"width": 4, "depth": 2, "stride": 2}, Tiling(64, 16))],
)
def test_tiled_equals_whole_frame_away_from_the_border(cfg, tiling):
    net = _net(**cfg)
    x = np.random.default_rng(0).standard_normal((208, 272)).astype(np.float32)
    tiled, whole = eta_tiled(net, x, tiling), _whole(net, x)
    assert tiled.shape == x.shape
    diff = np.abs(tiled - whole)[8:-8, 8:-8]
    assert diff.max() < 2e-3
    # no seam: the step across a tile boundary is no larger than the whole frame's own steps there
    for b in range(tiling.tile - tiling.overlap, x.shape[1] - tiling.tile, tiling.tile - tiling.overlap):
        step_t = np.abs(np.diff(tiled[8:-8, b - 2 : b + 2], axis=1)).max()
        step_w = np.abs(np.diff(whole[8:-8, b - 2 : b + 2], axis=1)).max()
        assert step_t <= step_w + 2e-3


def test_any_frame_size_including_smaller_than_a_tile():
    net = _net(width=4, depth=2)
    for shape in [(20, 20), (37, 150), (150, 37), (65, 65)]:
        assert eta_tiled(net, np.zeros(shape, np.float32), Tiling(64, 16)).shape == shape


def test_bad_tiling_is_refused():
    net = _net(width=4, depth=2)
    with pytest.raises(NeuradiffError, match="tile"):
        eta_tiled(net, np.zeros((80, 80), np.float32), Tiling(62, 8))
    with pytest.raises(NeuradiffError, match="overlap"):
        eta_tiled(net, np.zeros((80, 80), np.float32), Tiling(64, 32))


def test_normalisation_ignores_gain_offset_and_bit_depth():
    rng = np.random.default_rng(1)
    x = rng.gamma(3.0, 20.0, (64, 64))
    a = normalise_frame(x.astype(np.float32))
    b = normalise_frame((x * 87.0 + 1000.0).astype(np.uint16))
    assert np.allclose(a, b, atol=0.02)
    assert np.percentile(a, 1) == pytest.approx(-1.0) and np.percentile(a, 99) == pytest.approx(1.0)


def test_single_valued_frame_is_refused():
    with pytest.raises(NeuradiffError, match="single grey level"):
        normalise_frame(np.full((32, 32), 4095, np.uint16), index=3)
    with pytest.raises(NeuradiffError, match="NaN"):
        normalise_frame(np.full((8, 8), np.nan))


def test_scale_factor_and_its_limits():
    assert resample_factor(None, target=(4, 48), tile=256) == 1.0
    assert resample_factor(20.0, target=(4, 48), tile=256) == 1.0
    assert resample_factor(96.0, target=(4, 48), tile=256) == pytest.approx(0.5)
    assert resample_factor(2.0, target=(4, 48), tile=256) == pytest.approx(2.0)
    with pytest.raises(NeuradiffError, match="below 2 px"):
        resample_factor(1.5, target=(4, 48), tile=256)
    with pytest.raises(NeuradiffError, match="larger than a tile"):
        resample_factor(300.0, target=(4, 48), tile=256)


def test_resample_round_trip_keeps_a_disk():
    yy, xx = np.mgrid[:100, :120]
    disk = (((yy - 50) ** 2 + (xx - 60) ** 2) < 20**2).astype(np.float32)
    small = resample(disk, 0.5)
    assert small.shape == (50, 60)
    back = back_to(small, disk.shape)
    assert abs((back >= 0.5).sum() - disk.sum()) / disk.sum() < 0.05
