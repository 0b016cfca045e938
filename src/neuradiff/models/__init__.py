"""The recognition net (TEM frame → ``c_v, c_i, eta``) and its losses against void annotations.

- :mod:`~neuradiff.models.unet`: ``NetConfig``, ``RecognitionNet``, ``default_stride``, ``count_parameters``,
  ``save_net``, ``load_net``;
- :mod:`~neuradiff.models.losses`: ``annotation_loss`` (masked BCE), ``dice_loss``, ``annotated_mask``.
"""

from neuradiff.models.losses import annotated_mask, annotation_loss, dice_loss
from neuradiff.models.unet import NetConfig, RecognitionNet, count_parameters, default_stride, load_net, save_net

__all__ = ["NetConfig", "RecognitionNet", "annotated_mask", "annotation_loss", "count_parameters", "default_stride",
           "dice_loss", "load_net", "save_net"]
