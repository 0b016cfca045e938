"""Options several commands share."""

from __future__ import annotations

from typing import Any

import typer

from neuradiff.core.devices import DEVICE_CHOICES


def device_option() -> Any:
    """``--device {auto,cpu,cuda,mps}`` (``cuda:N`` picks a GPU); an unavailable device is refused up front."""
    return typer.Option(
        "auto",
        "--device",
        help=f"torch device: {', '.join(DEVICE_CHOICES)} (or cuda:N); auto: a CUDA GPU when there is one, else cpu.",
    )
