"""The three annotation states of a pixel, and the one rule that combines an annotation with a recognised eta.

An annotation stack is uint8 ``[T, H, W]`` with ``SOLID`` (0), ``VOID`` (1) and ``UNKNOWN`` (255); a
continuous annotation (the paper's eta in [0, 1]) marks unknown pixels with NaN.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor


class Label(IntEnum):
    """State of an annotated pixel."""

    SOLID = 0
    VOID = 1
    UNKNOWN = 255


SOLID = int(Label.SOLID)
VOID = int(Label.VOID)
UNKNOWN = int(Label.UNKNOWN)
#: What an annotation value means, for JSON outputs.
LABEL_NAMES = {str(SOLID): "solid", str(VOID): "void", str(UNKNOWN): "unknown"}

A = TypeVar("A", np.ndarray, Tensor)


def known(annotation: A) -> A:
    """True where a pixel is annotated (not ``UNKNOWN``, not NaN); same shape, numpy or torch as given.

    Examples
    --------
    >>> import numpy as np
    >>> known(np.array([0, 1, 255], np.uint8)).tolist()
    [True, True, False]
    """
    if isinstance(annotation, Tensor):
        mask = annotation != UNKNOWN
        if annotation.is_floating_point():
            mask &= ~torch.isnan(annotation)
        return mask
    a = np.asarray(annotation)
    mask = a != UNKNOWN
    if a.dtype.kind == "f":
        mask &= ~np.isnan(a)
    return mask


def overlay_annotation(eta: A, annotation: A | None) -> A:
    """eta where the pixel is unknown, the annotation (clipped to [0, 1]) where it is known: the paper's eta**.

    Parameters
    ----------
    eta : ndarray or Tensor, shape (..., H, W)
        Recognised void order parameter in [0, 1].
    annotation : ndarray or Tensor, shape (..., H, W), or None
        Three-state annotation (0 solid, 1 void, 255 unknown) or continuous eta with NaN unknown; ``None``
        returns ``eta`` unchanged.

    Returns
    -------
    Same type, dtype and shape as ``eta``.

    Examples
    --------
    >>> import numpy as np
    >>> overlay_annotation(np.array([0.2, 0.7, 0.4], np.float32), np.array([1, 0, 255], np.uint8)).tolist()
    [1.0, 0.0, 0.4000000059604645]
    """
    if annotation is None:
        return eta
    if isinstance(eta, Tensor):
        a = torch.as_tensor(annotation, device=eta.device)
        return torch.where(known(a), a.to(eta.dtype).clamp(0, 1), eta)
    a = np.asarray(annotation)
    return np.where(known(a), np.clip(a, 0, 1), eta).astype(eta.dtype, copy=False)


def has_annotation(annotation: np.ndarray | Tensor | None) -> bool:
    """True when at least one pixel of ``annotation`` is known."""
    if isinstance(annotation, Tensor):
        return bool(known(annotation).any())
    return annotation is not None and bool(known(np.asarray(annotation)).any())
