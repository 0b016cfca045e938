"""Recognition net (UNet) and its annotation losses: shapes, ranges, embeddings, overfit, save/load, gradients."""

import math

import pytest
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import known as annotated_mask
from neuradiff.nets import NetConfig, RecognitionNet, annotation_loss, count_parameters, dice_loss, load_net, save_net

torch.set_num_threads(1)


def _disk_frame(n=64, radius=14.0, seed=0):
    """A bright disk on a noisy background (raw intensities ~100 / ~160) and its uint8 annotation."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    disk = ((yy - n / 2 + 3.5) ** 2 + (xx - n / 2 - 2.5) ** 2) <= radius**2
    frame = 100.0 + 60.0 * disk.float() + 15.0 * torch.randn(n, n, generator=g)
    return frame, disk.to(torch.uint8)


def _check_ranges(out, cfg):
    c_v, c_i, eta = out[:, 0], out[:, 1], out[:, 2]
    assert torch.isfinite(out).all()
    assert (eta >= 0).all() and (eta <= 1).all()
    assert (c_v >= cfg.c_v_range[0]).all() and (c_v <= cfg.c_v_range[1]).all()
    lo, hi = cfg.log_c_i_range
    assert (c_i > 0).all()
    assert (c_i >= 10**lo * (1 - 1e-5)).all() and (c_i <= 10**hi * (1 + 1e-5)).all()


# ----------------------------------------------------------------------------- shapes and ranges


@pytest.mark.parametrize("shape", [(32, 32), (30, 34)])
@pytest.mark.parametrize("norm", ["group", "batch"])
@pytest.mark.parametrize("stride", [1, 2])
def test_output_shape_and_ranges(shape, norm, stride):
    cfg = NetConfig(norm=norm, stride=stride)
    net = RecognitionNet(cfg, input_mean=100.0, input_std=20.0)
    frames = 100.0 + 20.0 * torch.randn(2, *shape)
    times = torch.tensor([0.0, 3.0])
    out = net(frames, times)
    assert out.shape == (2, 3, *shape)
    _check_ranges(out, cfg)
    # [B, 1, H, W] input gives the same result (eval mode: batch norm uses running statistics)
    net.eval()
    with torch.no_grad():
        a, b = net(frames, times), net(frames[:, None], times)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    logits = net.eta_logits(frames, times)
    assert logits.shape == (2, *shape)
    torch.testing.assert_close(torch.sigmoid(logits), a[:, 2])


@pytest.mark.parametrize("stride", [1, 2])
def test_initial_fields_are_a_void_free_matrix(stride):
    net = RecognitionNet(NetConfig(stride=stride))
    with torch.no_grad():
        out = net(torch.zeros(1, 16, 16), torch.zeros(1))
    # zero weights would give exactly 0.12 / 1e-4; random weights only spread them
    assert 0.02 < out[0, 0].median() < 0.5
    assert -6 < torch.log10(out[0, 1]).median() < -2


@pytest.mark.parametrize("stride", [1, 2])
def test_custom_ranges_and_odd_frames(stride):
    cfg = NetConfig(width=8, depth=2, c_v_range=(0.05, 0.3), log_c_i_range=(-6.0, -3.0), stride=stride)
    net = RecognitionNet(cfg)
    out = net(torch.randn(1, 1, 7, 13), torch.tensor([2.0]))
    assert out.shape == (1, 3, 7, 13)
    _check_ranges(out, cfg)


def test_bad_inputs_raise():
    net = RecognitionNet(NetConfig(width=4, depth=2))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 3, 16, 16), torch.zeros(2))
    with pytest.raises(ValueError):
        net(torch.zeros(2, 16, 16), torch.zeros(3))
    with pytest.raises(NeuradiffError):
        NetConfig(embedding="learned")
    with pytest.raises(NeuradiffError):
        NetConfig(embedding="per-frame")  # n_frames missing
    with pytest.raises(NeuradiffError):
        NetConfig(c_v_range=(1.0, 0.0))
    with pytest.raises(NeuradiffError):
        RecognitionNet(input_std=0.0)
    with pytest.raises(NeuradiffError, match="stride"):
        NetConfig(stride=3)


def test_config_dict_round_trip():
    cfg = NetConfig(
        width=8, embedding="per-frame", n_frames=7, emb_grid=4, norm="batch", c_v_range=(0.0, 0.5), stride=2
    )
    d = cfg.to_dict()
    assert d["c_v_range"] == [0.0, 0.5]
    assert NetConfig.from_dict(d) == cfg
    with pytest.raises(NeuradiffError):
        NetConfig.from_dict({**d, "colour": "red"})


# ----------------------------------------------------------------------------- time embeddings


def test_sinusoidal_embedding_depends_on_time_and_accepts_unseen_times():
    net = RecognitionNet(NetConfig(width=8)).eval()
    frame = torch.randn(1, 32, 32).expand(4, -1, -1)
    times = torch.tensor([0.0, 1.0, 57.25, 12345.0])  # 57.25 and 12345 are no training frame
    with torch.no_grad():
        out = net(frame, times)
    _check_ranges(out, net.config)
    for k in range(1, 4):
        assert (out[k] - out[0]).abs().max() > 1e-6
    # same time → same output; integer times work too
    with torch.no_grad():
        again = net(frame[:1], torch.tensor([57.25]))
        ints = net(frame[:2], torch.tensor([0, 1]))
    torch.testing.assert_close(again[0], out[2])
    torch.testing.assert_close(ints, out[:2])


def test_no_embedding_ignores_time():
    net = RecognitionNet(NetConfig(width=8, embedding="none")).eval()
    frame = torch.randn(1, 32, 32).expand(2, -1, -1)
    with torch.no_grad():
        out = net(frame, torch.tensor([0.0, 9.0]))
    torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)


@pytest.mark.parametrize("size", [32, 64])  # bottleneck 4×4 (code resized) and 8×8 (code grid as is)
def test_per_frame_embedding(size):
    net = RecognitionNet(NetConfig(width=8, embedding="per-frame", n_frames=5)).eval()
    frame = torch.randn(1, size, size).expand(3, -1, -1)
    with torch.no_grad():
        out = net(frame, torch.tensor([0.0, 4.0, 2.0]))
        out_long = net(frame, torch.tensor([0, 4, 2]))
    assert out.shape == (3, 3, size, size)
    _check_ranges(out, net.config)
    torch.testing.assert_close(out, out_long)
    assert (out[1] - out[0]).abs().max() > 1e-6
    for bad in ([5.0], [-1.0], [1.5], [100]):
        with pytest.raises(ValueError):
            net(frame[:1], torch.tensor(bad))


# ----------------------------------------------------------------------------- one-frame overfit


@pytest.mark.slow
@pytest.mark.parametrize("stride", [1, 2])
def test_overfit_one_frame(stride):
    """Also with stride 2: the outline is learned to the pixel, not to the 2×2 block of the coarse grid."""
    torch.manual_seed(0)
    frame, ann = _disk_frame()
    net = RecognitionNet(NetConfig(stride=stride), input_mean=frame.mean().item(), input_std=frame.std().item())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, a, t = frame[None], ann[None], torch.zeros(1)
    initial = None
    for it in range(150):  # noqa: B007 - printed after the loop
        loss = annotation_loss(net.eta_logits(x, t), a)
        if initial is None:
            initial = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            final = annotation_loss(net.eta_logits(x, t), a).item()
            acc = ((net(x, t)[0, 2] >= 0.5) == ann.bool()).float().mean().item()
        if final < 0.05 * initial and acc >= 0.995:
            break
    print(
        f"overfit: {it + 1} iterations, loss {initial:.4f} -> {final:.5f} "
        f"({100 * final / initial:.2f} %), accuracy {100 * acc:.2f} %"
    )
    assert final < 0.05 * initial
    assert acc >= 0.995  # the best outline made of 2×2 blocks scores 98.7 % on this disk


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path):
    for cfg in (NetConfig(width=8), NetConfig(width=8, embedding="per-frame", n_frames=4, norm="batch")):
        net = RecognitionNet(cfg, input_mean=123.0, input_std=7.5)
        with torch.no_grad():  # move away from the initialisation (batch-norm statistics too)
            for p in net.parameters():
                p.add_(0.01 * torch.randn_like(p))
            net.train()(torch.randn(2, 32, 32) * 7.5 + 123.0, torch.tensor([0.0, 1.0]))
        net.eval()
        path = save_net(net, tmp_path / "nets" / "net.pt")
        assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temp left
        loaded = load_net(path)
        assert loaded.config == cfg
        assert loaded.input_mean.item() == 123.0 and loaded.input_std.item() == 7.5
        frames = torch.randn(2, 30, 34) * 7.5 + 123.0
        times = torch.tensor([1.0, 3.0])
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(frames, times), net(frames, times), rtol=0, atol=0)


def _one_line_error(path):
    with pytest.raises(NeuradiffError) as info:
        load_net(path)
    msg = str(info.value)
    assert msg and "\n" not in msg
    assert str(path) in msg
    return msg


def test_load_net_errors(tmp_path):
    net = RecognitionNet(NetConfig(width=4, depth=2))
    good = save_net(net, tmp_path / "good.pt")
    data = good.read_bytes()

    _one_line_error(tmp_path / "missing.pt")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    _one_line_error(truncated)

    noise = tmp_path / "noise.pt"
    noise.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1), dtype=torch.uint8).numpy().tobytes()
    )
    _one_line_error(noise)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _one_line_error(empty)

    payload = torch.load(good, weights_only=True)
    wrong = tmp_path / "wrong_format.pt"
    torch.save({**payload, "format": "something-else"}, wrong)
    assert "format" in _one_line_error(wrong)

    not_dict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), not_dict)
    _one_line_error(not_dict)

    version = tmp_path / "version.pt"
    torch.save({**payload, "version": 99}, version)
    assert "version" in _one_line_error(version)

    mismatch = tmp_path / "mismatch.pt"
    torch.save({**payload, "config": {**payload["config"], "width": 8}}, mismatch)
    assert "state dict" in _one_line_error(mismatch)

    bad_config = tmp_path / "bad_config.pt"
    torch.save({**payload, "config": {**payload["config"], "embedding": "learned"}}, bad_config)
    _one_line_error(bad_config)


# ----------------------------------------------------------------------------- losses


def test_annotation_loss_hand_computed():
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])
    ann = torch.tensor([[[1, 0], [255, 1]]], dtype=torch.uint8)
    s = torch.sigmoid
    expected = (
        -(math.log(s(torch.tensor(2.0))) + math.log(1 - s(torch.tensor(-1.0))) + math.log(s(torch.tensor(3.0)))) / 3
    )
    assert annotation_loss(logits, ann).item() == pytest.approx(expected, rel=1e-6)
    # pos_weight multiplies the void terms
    w = 2.5
    expected_w = (
        -(w * math.log(s(torch.tensor(2.0))) + math.log(1 - s(torch.tensor(-1.0))) + w * math.log(s(torch.tensor(3.0))))
        / 3
    )
    assert annotation_loss(logits, ann, pos_weight=w).item() == pytest.approx(expected_w, rel=1e-6)
    # the same annotation as floats with NaN unknown, and as floats with 255 unknown
    f = torch.tensor([[[1.0, 0.0], [float("nan"), 1.0]]])
    assert annotation_loss(logits, f).item() == pytest.approx(expected, rel=1e-6)
    assert annotation_loss(logits, ann.float()).item() == pytest.approx(expected, rel=1e-6)
    # continuous targets
    c = torch.tensor([[[0.25, float("nan")], [float("nan"), float("nan")]]])
    p = s(torch.tensor(2.0)).item()
    assert annotation_loss(logits, c).item() == pytest.approx(-(0.25 * math.log(p) + 0.75 * math.log(1 - p)), rel=1e-6)
    with pytest.raises(NeuradiffError):
        annotation_loss(logits, torch.tensor([[[2, 0], [255, 1]]], dtype=torch.uint8))
    with pytest.raises(NeuradiffError):
        annotation_loss(logits, ann[:, :1])


def test_annotation_loss_ignores_unknown_pixels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 16, 16, generator=g)
    ann = torch.randint(0, 2, (2, 16, 16), generator=g).to(torch.uint8)
    unknown = torch.rand(2, 16, 16, generator=g) < 0.4
    ann[unknown] = 255
    assert torch.equal(annotated_mask(ann), ~unknown)
    base = annotation_loss(logits, ann)
    changed = logits.clone()
    changed[unknown] = 50.0 * torch.randn(int(unknown.sum()), generator=g)
    assert annotation_loss(changed, ann).item() == base.item()
    # gradient is zero on unknown pixels
    leaf = logits.clone().requires_grad_(True)
    annotation_loss(leaf, ann).backward()
    assert (leaf.grad[unknown] == 0).all() and (leaf.grad[~unknown] != 0).all()
    # dice ignores them too
    d = dice_loss(torch.sigmoid(logits), ann)
    assert dice_loss(torch.sigmoid(changed), ann).item() == pytest.approx(d.item(), abs=1e-7)


def test_losses_on_all_unknown_batch_are_zero_with_grad():
    logits = torch.randn(2, 8, 8, requires_grad=True)
    ann = torch.full((2, 8, 8), 255, dtype=torch.uint8)
    loss = annotation_loss(logits, ann)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))
    nan_ann = torch.full((2, 8, 8), float("nan"))
    assert annotation_loss(logits, nan_ann).item() == 0.0
    d = dice_loss(torch.sigmoid(logits), ann)
    assert d.item() == 0.0 and d.requires_grad


def test_dice_loss_values():
    ann = torch.tensor([[[1, 1, 0, 255]]], dtype=torch.uint8)
    perfect = torch.tensor([[[1.0, 1.0, 0.0, 0.3]]])
    assert dice_loss(perfect, ann).item() == pytest.approx(0.0, abs=1e-7)
    # p = (0.5, 0.5, 0.5): 1 - (2·1 + 1) / (1.5 + 2 + 1)
    half = torch.tensor([[[0.5, 0.5, 0.5, 0.9]]])
    assert dice_loss(half, ann).item() == pytest.approx(1 - 3 / 4.5, rel=1e-6)
    wrong = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    assert dice_loss(wrong, ann, smooth=0.0).item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("embedding", ["sinusoidal", "per-frame", "none"])
@pytest.mark.parametrize("stride", [1, 2])
def test_gradients_reach_every_parameter(embedding, stride):
    cfg = NetConfig(embedding=embedding, n_frames=6 if embedding == "per-frame" else 0, stride=stride)
    net = RecognitionNet(cfg, input_mean=130.0, input_std=30.0)
    frame, ann = _disk_frame(n=32, radius=7.0)
    frames = torch.stack([frame, frame.flip(0)])
    anns = torch.stack([ann, ann.flip(0)])
    anns[1, :8] = 255
    times = torch.tensor([1.0, 4.0])
    annotation_loss(net.eta_logits(frames, times), anns).backward()
    params = dict(net.named_parameters())
    assert count_parameters(net) == sum(p.numel() for p in params.values())
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name == "time_embedding.weight":
            used = p.grad.abs().sum(dim=1) > 0
            assert used.tolist() == [False, True, False, False, True, False]
        else:
            assert p.grad.abs().max() > 0, name


def test_the_pixel_shuffle_equals_the_library_one_values_and_gradients():
    from neuradiff.nets.unet import _pixel_shuffle

    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 12, 5, 7, generator=g).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    w = torch.randn(2, 3, 10, 14, generator=g)
    ours = _pixel_shuffle(z, 2)
    ref = torch.nn.functional.pixel_shuffle(z, 2)
    assert torch.equal(ours, ref)
    (ga,) = torch.autograd.grad((ours * w).sum(), z)
    (gb,) = torch.autograd.grad((ref * w).sum(), z)
    assert torch.equal(ga, gb)


def test_a_refinement_starts_as_no_change_and_then_moves_eta_only():
    torch.manual_seed(0)
    plain = RecognitionNet(NetConfig(width=4, depth=2, embedding="none", norm="batch", stride=2)).eval()
    refined = RecognitionNet(NetConfig(width=4, depth=2, embedding="none", norm="batch", stride=2, refine=3)).eval()
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["refine.0.bias", "refine.0.weight", "refine.2.bias", "refine.2.weight"]
    assert not unexpected
    frames, t = torch.randn(2, 30, 44), torch.zeros(2)  # odd sizes: padded and cropped around the refinement
    with torch.no_grad():
        assert torch.equal(plain.logits(frames, t), refined.logits(frames, t))
    frame, ann = _disk_frame(n=32, radius=2.5)
    opt = torch.optim.Adam(refined.refine.parameters(), lr=1e-2)
    for _ in range(3):
        loss = annotation_loss(refined.eta_logits(frame[None], torch.zeros(1)), ann[None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(refined.refine[0].weight.grad.abs().max()) > 0
    with torch.no_grad():
        a, b = plain.logits(frames, t), refined.logits(frames, t)
    assert torch.equal(a[:, :2], b[:, :2])
    assert float((a[:, 2] - b[:, 2]).abs().max()) > 0
    assert NetConfig(refine=5).to_dict()["refine"] == 5
    assert NetConfig.from_dict(NetConfig(refine=5).to_dict()) == NetConfig(refine=5)
    assert "refine" not in NetConfig().to_dict()  # files of nets without one read as before
    with pytest.raises(NeuradiffError, match="refine"):
        NetConfig(refine=-1)


def test_folding_the_batch_norms_keeps_the_outputs_and_the_original_net():
    from neuradiff.nets.unet import fuse_batch_norm

    torch.manual_seed(0)
    net = RecognitionNet(NetConfig(width=4, depth=2, embedding="none", norm="batch", stride=2))
    with torch.no_grad():  # non-trivial running statistics and affine terms
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    net.eval()
    fused = fuse_batch_norm(net)
    frames = torch.randn(2, 32, 48)
    with torch.no_grad():
        a = net.logits(frames, torch.zeros(2))
        b = fused.logits(frames, torch.zeros(2))
    assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(a.abs().max()))
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
