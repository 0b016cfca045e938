"""Device plumbing, checked on the CPU: names resolved or refused up front (one line, exit code 2, nothing
written), and every tensor and module a fit or a fitted model uses moved together."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.devices import resolve_device
from neuradiff.core.errors import NeuradiffError
from neuradiff.methods import SurrogateModel, place_model
from neuradiff.methods.neuradiff import NeuraDiffObjective
from neuradiff.methods.physics_only import PhysicsOnlyObjective
from neuradiff.methods.supervised import SupervisedObjective
from neuradiff.methods.surrogate import SurrogateConfig, SurrogateObjective
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.training import FitConfig, TrainingData

runner = CliRunner()
NO_CUDA = not torch.cuda.is_available()


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected


@pytest.mark.parametrize("name", ["meta", "tpu", "gpu", "", "cuda:x", "xla"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(NeuradiffError, match="unknown device"):
        resolve_device(name)


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA GPU is visible")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_an_unavailable_gpu_is_refused(name):
    with pytest.raises(NeuradiffError, match="not available here"):
        resolve_device(name)


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA GPU is visible")
@pytest.mark.parametrize(
    "command",
    [
        ["fit", "video.tif", "--annotations", "ann.tif"],
        ["track", "video.tif", "--model", "model"],
        ["forecast", "--model", "model", "--video", "video.tif", "--steps", "2"],
        ["simulate"],
        ["simulate-fields"],
        ["demo"],
        ["evaluate", "--quick"],
    ],
)
def test_commands_refuse_an_unavailable_device_before_writing(tmp_path, command):
    out = tmp_path / "out"
    res = runner.invoke(app, [*command, "--out", str(out), "--device", "cuda"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "device 'cuda' is not available here" in lines[0], res.stderr
    assert not out.exists()


def test_commands_refuse_an_unknown_device(tmp_path):
    res = runner.invoke(app, ["simulate", "--out", str(tmp_path / "out"), "--device", "meta"])
    assert res.exit_code == 2
    assert "unknown device 'meta'" in res.stderr
    assert not (tmp_path / "out").exists()


def _tiny_data() -> TrainingData:
    rng = np.random.default_rng(0)
    frames = rng.random((6, 20, 20)).astype(np.float32)
    ann = np.full((6, 20, 20), 255, np.uint8)
    for k in (0, 2, 4, 5):
        ann[k] = 0
        ann[k, 6:12, 6:12] = 1
    return TrainingData(frames, ann, 1.0, 1.0, 0.3)


def _placed(obj: object, device: torch.device) -> list[str]:
    """Names of the tensors and modules held by ``obj`` (one level down) that are not on ``device``."""
    wrong = []
    for name, value in vars(obj).items():
        if isinstance(value, Tensor) and value.device != device:
            wrong.append(name)
        if isinstance(value, nn.Module):
            tensors = [*value.parameters(), *value.buffers()]
            if any(t.device != device for t in tensors):
                wrong.append(name)
    return wrong


@pytest.mark.parametrize("objective_class", [NeuraDiffObjective, SupervisedObjective, PhysicsOnlyObjective])
def test_an_objective_moves_every_tensor_it_trains_with(objective_class):
    config = FitConfig(
        gap=2, batch=1, crop=16, crop_margin=2, net={"width": 4, "depth": 1}
    )  # crops: the interior mask too
    objective = objective_class(_tiny_data(), config)
    meta = torch.device("meta")  # holds no data: any tensor left behind shows up
    objective.to(meta)
    assert _placed(objective, meta) == []
    if hasattr(objective, "rec"):
        assert _placed(objective.rec, meta) == []
    for module in objective.modules().values():
        assert all(p.device == meta for p in module.parameters())


def test_the_surrogate_objective_moves_its_net_and_targets():
    eta = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    objective = SurrogateObjective(eta, SurrogateConfig(net={"width": 4, "depth": 1}))
    meta = torch.device("meta")
    objective.to(meta)
    assert _placed(objective, meta) == []


def test_place_model_moves_every_net_of_a_fitted_model():
    net = RecognitionNet(NetConfig(width=4, depth=1))
    model = SurrogateModel(RecognitionNet(NetConfig(width=4, depth=1)), net)
    place_model(model, "cpu")
    assert _placed(model, torch.device("cpu")) == []
    with pytest.raises(NeuradiffError, match="unknown device"):
        place_model(model, "meta")
