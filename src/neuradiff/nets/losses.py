"""Losses of the recognition net against void annotations (0 solid, 1 void, 255 or NaN unknown)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import known


def _targets(pred: Tensor, annotations, name: str) -> tuple[Tensor, Tensor]:
    """(annotated mask, float targets in [0, 1] on ``pred``'s device/dtype) after shape and value checks."""
    if not isinstance(annotations, Tensor):
        annotations = torch.as_tensor(annotations)
    annotations = annotations.to(pred.device)
    if annotations.shape != pred.shape:
        raise NeuradiffError(
            f"{name} {tuple(pred.shape)} and annotations {tuple(annotations.shape)} must have the same shape [B, H, W]"
        )
    mask = known(annotations)
    target = torch.where(mask, annotations, torch.zeros((), dtype=annotations.dtype, device=pred.device))
    target = target.to(pred.dtype)
    if bool(torch.any((target < 0) | (target > 1))):
        raise NeuradiffError(
            "annotations must be 0 (solid), 1 (void), 255 (unknown), or floats in [0, 1] with NaN unknown"
        )
    return mask, target


def annotation_loss(eta_logits: Tensor, annotations, *, pos_weight=None) -> Tensor:
    """Mean binary cross-entropy with logits over annotated pixels.

    Parameters
    ----------
    eta_logits : ``[B, H, W]`` pre-sigmoid ``eta``.
    annotations : ``[B, H, W]`` uint8 (0 solid, 1 void, 255 unknown) or float in [0, 1] (NaN or 255 unknown).
    pos_weight : optional weight (> 0) of the void class in the BCE.

    Returns
    -------
    Scalar tensor; 0 (still connected to ``eta_logits`` for the graph) if no pixel is annotated.
    """
    mask, target = _targets(eta_logits, annotations, "eta_logits")
    if not bool(mask.any()):
        return eta_logits.sum() * 0.0
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, dtype=eta_logits.dtype, device=eta_logits.device)
        if pos_weight.numel() != 1 or not bool(pos_weight > 0):
            raise NeuradiffError(f"pos_weight must be one number > 0, got {pos_weight.tolist()}")
        pos_weight = pos_weight.reshape(())
    return F.binary_cross_entropy_with_logits(eta_logits[mask], target[mask], pos_weight=pos_weight)


def dice_loss(eta: Tensor, annotations, *, smooth: float = 1.0) -> Tensor:
    """Soft Dice loss ``1 - (2Σpy + s) / (Σp + Σy + s)`` over the annotated pixels of the batch.

    Parameters
    ----------
    eta : ``[B, H, W]`` void probability in [0, 1].
    annotations : as for :func:`annotation_loss`.
    smooth : ``s``, in pixels; keeps the loss finite (and 0) when neither prediction nor target has a void.

    Returns
    -------
    Scalar tensor in [0, 1]; 0 (connected to ``eta``) if no pixel is annotated.
    """
    mask, target = _targets(eta, annotations, "eta")
    if not bool(mask.any()):
        return eta.sum() * 0.0
    p, y = eta[mask], target[mask]
    return 1.0 - (2.0 * (p * y).sum() + smooth) / (p.sum() + y.sum() + smooth)


__all__ = ["annotation_loss", "dice_loss"]
