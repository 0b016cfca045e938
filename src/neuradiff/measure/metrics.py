"""Segmentation metrics on boolean void masks shaped ``[..., H, W]`` (True = void)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from skimage.measure import label


def _pair(pred, truth) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred, dtype=bool), np.asarray(truth, dtype=bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and truth {t.shape} differ in shape")
    return p, t


def pixel_accuracy(pred, truth) -> float:
    """Fraction of pixels classified alike (the paper's metric; dominated by the solid background)."""
    p, t = _pair(pred, truth)
    return float((p == t).mean())


def iou(pred, truth) -> float:
    """Void intersection over union; 1 when both are empty."""
    p, t = _pair(pred, truth)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred, truth) -> float:
    """Dice coefficient 2|P∩T|/(|P|+|T|) of the void class; 1 when both are empty."""
    p, t = _pair(pred, truth)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(p, t).sum() / total)


def object_f1(pred, truth, *, iou_threshold: float = 0.5) -> dict[str, float]:
    """Object-level precision, recall and F1: a void counts as found when a predicted object overlaps it
    with IoU ≥ ``iou_threshold`` (one-to-one matching, per frame for ``[T, H, W]`` stacks)."""
    p, t = _pair(pred, truth)
    if p.ndim == 2:
        p, t = p[None], t[None]
    tp = n_pred = n_true = 0
    for pf, tf in zip(p, t):
        lp, lt = np.asarray(label(pf)), np.asarray(label(tf))
        n_p, n_t = int(lp.max()), int(lt.max())
        n_pred += n_p
        n_true += n_t
        if n_p == 0 or n_t == 0:
            continue
        inter = np.zeros((n_t + 1, n_p + 1), dtype=np.int64)
        np.add.at(inter, (lt.ravel(), lp.ravel()), 1)
        inter = inter[1:, 1:]
        area_t = np.bincount(lt.ravel(), minlength=n_t + 1)[1:]
        area_p = np.bincount(lp.ravel(), minlength=n_p + 1)[1:]
        ious = inter / (area_t[:, None] + area_p[None, :] - inter)
        rows, cols = linear_sum_assignment(-ious)
        tp += int((ious[rows, cols] >= iou_threshold).sum())
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1, "n_pred": n_pred, "n_true": n_true}


def segmentation_report(pred, truth) -> dict[str, float]:
    """Pixel accuracy, IoU and Dice over a whole stack, and object-level F1."""
    return {
        "pixel_accuracy": pixel_accuracy(pred, truth),
        "iou": iou(pred, truth),
        "dice": dice(pred, truth),
        "object_f1": object_f1(pred, truth)["f1"],
    }
