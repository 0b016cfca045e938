"""Which torch device the work runs on: ``auto``, ``cpu``, ``cuda`` (or ``cuda:N``) and ``mps``, checked before any
work starts so that an unavailable device is one clear error rather than a failure halfway through a fit."""

from __future__ import annotations

import torch

from neuradiff.core.errors import NeuradiffError

#: The device names the command line offers (``cuda:N`` picks one GPU among several).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _available(kind: str) -> bool:
    if kind == "cuda":
        return bool(torch.cuda.is_available())
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return bool(mps is not None and mps.is_available())
    return kind == "cpu"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device to run on, refused with one clear line when it is unknown or not available here.

    Parameters
    ----------
    device : str or torch.device or None
        ``"auto"`` (or ``None``): CUDA when a GPU is available, otherwise the CPU (Apple's ``"mps"`` is used only
        when asked for by name); ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Returns
    -------
    torch.device

    Raises
    ------
    NeuradiffError
        For an unknown name (``"meta"`` included: it holds no data) or a device this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    neuradiff.core.errors.NeuradiffError: unknown device 'tpu'; choose auto, cpu, cuda, cuda:N or mps
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda") if _available("cuda") else torch.device("cpu")
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, ValueError, TypeError):
        raise NeuradiffError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise NeuradiffError(f"unknown device {str(device)!r}; choose auto, cpu, cuda, cuda:N or mps")
    if not _available(dev.type):
        what = "no CUDA GPU is visible to torch" if dev.type == "cuda" else "Apple's Metal backend is not available"
        raise NeuradiffError(f"device {str(device)!r} is not available here ({what}); use cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise NeuradiffError(
            f"device {str(device)!r} is not available here: torch sees {torch.cuda.device_count()} CUDA GPU(s)"
        )
    return dev


__all__ = ["DEVICE_CHOICES", "resolve_device"]
