"""Reading recordings and annotations other tools write, and fitted models on disk.

- :mod:`~neuradiff.io.video`: ``read_video`` (TIFF/OME, image folders, Gatan trees, movies, microscope formats)
  and its ``Calibration`` (nm, s);
- :mod:`~neuradiff.io.annotations`: ``read_annotations`` (mask stacks, binary masks, instance labels, class images,
  COCO, YOLO) as three-state masks;
- :mod:`~neuradiff.io.coco`: COCO run-length encoding (plain and compressed) and COCO instance files of masks;
- :mod:`~neuradiff.io.saved`: model folders (weights read without executing code).
"""

from neuradiff.io.annotations import LabelScheme, read_annotations
from neuradiff.io.video import Calibration, Video, read_video

__all__ = ["Calibration", "LabelScheme", "Video", "read_annotations", "read_video"]
