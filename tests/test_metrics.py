import numpy as np
import pytest

from neuradiff.measure.metrics import dice, iou, object_f1, pixel_accuracy


def _masks():
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 px
    pred = np.zeros((10, 10), bool)
    pred[3:7, 2:6] = True  # 16 px, 12 shared
    return pred, truth


def test_hand_made_masks():
    pred, truth = _masks()
    assert pixel_accuracy(pred, truth) == pytest.approx(92 / 100)
    assert iou(pred, truth) == pytest.approx(12 / 20)
    assert dice(pred, truth) == pytest.approx(24 / 32)
    assert pixel_accuracy(np.zeros_like(truth), truth) == pytest.approx(0.84)  # the all-solid guess
    assert iou(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_object_f1_counts_matches_misses_and_false_alarms():
    truth = np.zeros((20, 20), bool)
    truth[1:5, 1:5] = truth[10:14, 10:14] = True
    pred = np.zeros_like(truth)
    pred[1:5, 1:6] = True  # matches the first (IoU 16/20)
    pred[16:19, 1:4] = True  # false alarm; the second void is missed
    r = object_f1(pred, truth)
    assert (r["precision"], r["recall"], r["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert object_f1(truth, truth)["f1"] == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((3, 3)), np.zeros((3, 4)))
