"""Retraining from a model: the fit starts from a copy of its net and learned parameters (the model itself is left
as it is), and the correction loop refuses a round without corrections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuradiff.core.errors import NeuradiffError
from neuradiff.methods import fit_neuradiff
from neuradiff.napari.loop import corrected_annotations, three_state_of_labels
from neuradiff.synth.datasets import dataset_config, make_dataset
from neuradiff.training import FitConfig, TrainingData

SETTINGS = dict(gap=2, batch=1, dt=0.1, net={"width": 4, "depth": 1}, uncertainty=False, refine_iters=0)


def _data() -> TrainingData:
    ds = make_dataset(
        dataset_config(
            "single-void",
            overrides={"frames": 6, "steps_per_frame": 5, "simulation": {"size": 24}, "annotations": {"fraction": 0.5}},
        )
    )
    return TrainingData(ds.video.astype("float32"), ds.annotations, 1.0, 1.0, 0.1)


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.slow
def test_a_retraining_starts_from_the_model_and_leaves_it_as_it_is():
    data = _data()
    first = fit_neuradiff(data, FitConfig(pretrain_iters=3, joint_iters=1, **SETTINGS)).model
    before = _state(first.net)
    same = fit_neuradiff(data, FitConfig(pretrain_iters=0, joint_iters=0, seed=7, **SETTINGS), init=first).model
    for name, value in _state(same.net).items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)
    assert same.params.as_floats() == pytest.approx(first.params.as_floats())
    assert same.info["param_table"]["E_v"]["initial"] == pytest.approx(first.params.as_floats()["E_v"])
    fresh = fit_neuradiff(data, FitConfig(pretrain_iters=0, joint_iters=0, seed=7, **SETTINGS)).model
    assert any(not torch.equal(v, before[k]) for k, v in _state(fresh.net).items() if v.is_floating_point())

    moved = fit_neuradiff(data, FitConfig(pretrain_iters=2, joint_iters=0, **SETTINGS), init=first).model
    assert moved.net is not first.net
    assert any(not torch.equal(v, before[k]) for k, v in _state(moved.net).items() if v.is_floating_point())
    for name, value in _state(first.net).items():
        torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)


def test_a_round_without_corrections_is_refused():
    predicted = np.full((2, 4, 4), 2, np.uint8)
    with pytest.raises(NeuradiffError, match="no frame was corrected"):
        corrected_annotations(predicted.copy(), predicted)
    with pytest.raises(NeuradiffError, match="holds label 3"):
        three_state_of_labels(np.array([[[3]]]))


@pytest.mark.parametrize("first_levels", ["recording", "per-frame"])
def test_a_retraining_prepares_the_frames_as_the_models_net_reads_them(first_levels):
    # A model fitted with one frame mapping (e.g. an older model, before per-frame levels) retrained under the
    # other default: the training frames follow the net, so the retraining sees what the net saw.
    from neuradiff.methods.neuradiff import NeuraDiffObjective

    data = _data()
    first = fit_neuradiff(data, FitConfig(pretrain_iters=1, joint_iters=0, levels=first_levels, **SETTINGS)).model
    other = "recording" if first_levels == "per-frame" else "per-frame"
    objective = NeuraDiffObjective(data, FitConfig(pretrain_iters=1, joint_iters=0, levels=other, **SETTINGS), first)
    assert objective.rec.level == first.net.config.level == (first_levels == "per-frame")
    np.testing.assert_array_equal(objective.rec.frames.numpy(), first.net.prepare(data.frames))
