"""Reading recordings and annotations other tools write, and fitted models on disk.

- :mod:`~neuradiff.io.video`: ``read_video`` (TIFF/OME, image folders, Gatan trees, movies, microscope formats)
  and its ``Calibration`` (nm, s);
- :mod:`~neuradiff.io.annotations`: ``read_annotations`` (mask stacks, binary masks, COCO, YOLO) as three-state
  masks;
- :mod:`~neuradiff.io.saved`: model folders (weights read without executing code).
"""

from neuradiff.io.annotations import read_annotations
from neuradiff.io.video import Calibration, Video, read_video

__all__ = ["Calibration", "Video", "read_annotations", "read_video"]
