"""Putting a fitted model on the device a command runs on."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from neuradiff.core.devices import resolve_device
from neuradiff.methods import FittedMethod


def place_model(fitted: FittedMethod, device: str | torch.device | None) -> torch.device:
    """Move every net of ``fitted`` to ``device`` (resolved by :func:`~neuradiff.core.devices.resolve_device`); the
    methods recognise and forecast on the device their nets are on. Returns the device.

    Examples
    --------
    >>> from neuradiff.methods import SupervisedModel
    >>> from neuradiff.nets import NetConfig, RecognitionNet
    >>> model = SupervisedModel(RecognitionNet(NetConfig(width=4, depth=1)))
    >>> place_model(model, "cpu"), model.net.input_mean.device
    (device(type='cpu'), device(type='cpu'))
    """
    dev = resolve_device(device)
    if dataclasses.is_dataclass(fitted):
        for f in dataclasses.fields(fitted):
            value = getattr(fitted, f.name)
            if isinstance(value, nn.Module):
                value.to(dev)
    return dev


__all__ = ["place_model"]
