"""Forecasts of a drifting synthetic video are scored with the drift estimated from the video (as
``track --register`` estimates it), not with the simulator's known drift, which stays a reference figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuradiff.evaluation.truth import evaluate_model, recording_drift, score_forecast
from neuradiff.methods import NeuraDiffModel
from neuradiff.nets import NetConfig, RecognitionNet
from neuradiff.physics import Simulator, VoidParameters
from neuradiff.synth.datasets import dataset_config, make_dataset
from neuradiff.synth.render import shift_like


@pytest.fixture(scope="module")
def drifting():
    cfg = dataset_config(
        "single-void",
        overrides={"frames": 6, "steps_per_frame": 5, "simulation": {"size": 48}, "render": {"drift": 1.5}},
        seed=3,
    )
    return make_dataset(cfg)


def test_estimated_drift_scores_like_the_known_drift(drifting):
    truth, known = drifting.truth["eta"], drifting.truth["drift_px"]
    assert np.abs(known[-1] - known[0]).max() > 3  # the specimen really moves
    still = shift_like(truth.astype(np.float32), -(known - known[0]))  # a perfect forecast, frame-0 coordinates
    est = recording_drift(drifting.video)
    s = score_forecast(still, truth, drift_px=est, truth_drift_px=known)
    assert s["drift_corrected"] and s["drift_error_rms_px"] < 0.3
    assert s["last_frame_iou"] > 0.9 and abs(s["last_frame_iou"] - s["last_frame_iou_truth_drift"]) < 0.05
    assert s["last_frame_iou_without_drift"] < s["last_frame_iou"] - 0.1
    assert "last_frame_iou_truth_drift" not in score_forecast(still, truth, drift_px=est)


def test_evaluate_model_does_not_use_the_known_drift(drifting):
    torch.manual_seed(0)
    model = NeuraDiffModel(RecognitionNet(NetConfig(width=4, depth=1)), VoidParameters(), Simulator(dt=0.5))
    frames = drifting.video.astype(np.float32)
    ann = drifting.annotations
    wrong = {**drifting.truth, "drift_px": np.zeros_like(drifting.truth["drift_px"])}
    right = evaluate_model(model, frames, ann, drifting.truth, np.array([0]))["forecast"]
    told_wrong = evaluate_model(model, frames, ann, wrong, np.array([0]))["forecast"]
    for key in ("last_frame_iou", "max_relative_area_error", "area_forecast_px"):
        assert right[key] == told_wrong[key], key
    assert right["drift_error_rms_px"] < 0.3 < told_wrong["drift_error_rms_px"]
