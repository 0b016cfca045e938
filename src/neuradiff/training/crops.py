"""Square training windows cut out of large frames: the net and the physics train on crops, so a 1024² recording
costs what a 256² one does.

A window is anchored on annotated pixels (half of the time on annotated voids, when there are any), so sparse
annotations — a few frames, or part of one frame — are where training looks. Physics on a crop uses no-flux walls
and leaves a margin along the window edge out of its losses (the walls are not in the specimen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neuradiff.core.labels import VOID, known

#: Frames whose shorter side is larger than this train on windows of this side unless the config says otherwise.
DEFAULT_CROP = 256


@dataclass(frozen=True)
class Window:
    """The square ``[y, y + size) × [x, x + size)`` of a frame (pixels)."""

    y: int
    x: int
    size: int

    def cut(self, a: Tensor) -> Tensor:
        """The window of the last two axes of ``a``."""
        return a[..., self.y : self.y + self.size, self.x : self.x + self.size]


def resolve_crop(crop: int | None, height: int, width: int) -> int | None:
    """The training window side for frames ``height × width``: ``crop`` if given, else :data:`DEFAULT_CROP` for
    frames larger than it; ``None`` (whole frames) when the window would cover the frame.

    Examples
    --------
    >>> resolve_crop(None, 96, 96) is None, resolve_crop(None, 1024, 1024), resolve_crop(128, 96, 96)
    (True, 256, None)
    """
    side = crop if crop is not None else (DEFAULT_CROP if min(height, width) > DEFAULT_CROP else None)
    return None if side is None or side >= min(height, width) else int(side)


def random_window(rng: np.random.Generator, shape: tuple[int, int], size: int) -> Window:
    """A window of side ``size`` anywhere in a frame of ``shape``."""
    h, w = shape
    return Window(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1)), size)


def anchored_window(rng: np.random.Generator, annotation: Tensor, size: int) -> Window:
    """A window of side ``size`` around an annotated pixel of ``annotation`` ``[H, W]`` (a void pixel half of the
    time when the annotation has voids), clipped to the frame; anywhere when nothing is annotated."""
    h, w = annotation.shape[-2:]
    mask = known(annotation)
    void = annotation == VOID
    pick_void = bool(void.any()) and rng.random() < 0.5
    candidates = torch.nonzero(void if pick_void else mask)
    if candidates.shape[0] == 0:
        return random_window(rng, (h, w), size)
    cy, cx = candidates[int(rng.integers(candidates.shape[0]))].tolist()
    y = min(max(cy - size // 2, 0), h - size)
    x = min(max(cx - size // 2, 0), w - size)
    return Window(int(y), int(x), size)


def cut_batch(a: Tensor, windows: list[Window] | None) -> Tensor:
    """``a`` ``[B, ..., H, W]`` with element ``b`` cut to ``windows[b]`` (unchanged when ``windows`` is None)."""
    if windows is None:
        return a
    return torch.stack([w.cut(x) for x, w in zip(a, windows)])


def interior(size: int, margin: int, *, device: torch.device | None = None) -> Tensor:
    """Bool ``[size, size]``: True more than ``margin`` px away from the window edge."""
    m = torch.zeros((size, size), dtype=torch.bool, device=device)
    m[margin : size - margin, margin : size - margin] = True
    return m
