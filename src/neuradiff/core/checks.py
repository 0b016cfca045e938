"""Validators shared by every room: one wording for the same mistake wherever it is made."""

from __future__ import annotations

import math
from typing import Any

from neuradiff.core.errors import NeuradiffError


def positive(name: str, value: Any) -> float | None:
    """``value`` as a positive finite float, ``None`` kept; otherwise :class:`NeuradiffError` naming ``name``.

    Examples
    --------
    >>> positive("nm_per_px", "0.5")
    0.5
    >>> positive("frame interval", None) is None
    True
    """
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise NeuradiffError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise NeuradiffError(f"{name} must be a positive number, got {number}")
    return number
