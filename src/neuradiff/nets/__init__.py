"""The recognition net (TEM frame → ``c_v, c_i, eta``), its losses against void annotations and its inference.

- :mod:`~neuradiff.nets.unet`: ``NetConfig``, ``RecognitionNet``, ``default_stride``, ``count_parameters``,
  ``save_net``, ``load_net``;
- :mod:`~neuradiff.nets.losses`: ``annotation_loss`` (masked BCE), ``dice_loss``;
- :mod:`~neuradiff.nets.inference`: ``recognise`` (a video through a net, in batches).
"""

from neuradiff.nets.inference import recognise
from neuradiff.nets.losses import annotation_loss, dice_loss
from neuradiff.nets.unet import NetConfig, RecognitionNet, count_parameters, default_stride, load_net, save_net

__all__ = [
    "NetConfig",
    "RecognitionNet",
    "annotation_loss",
    "count_parameters",
    "default_stride",
    "dice_loss",
    "load_net",
    "recognise",
    "save_net",
]
