"""Void masks as an ImageJ/Fiji ROI set (a ``.zip`` of polygon ROIs the ROI Manager opens), with ``roifile``."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from roifile import ROI_TYPE, ImagejRoi, roiwrite

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path
from neuradiff.io.coco import frame_objects, mask_polygons


def imagej_rois(masks: np.ndarray) -> list[ImagejRoi]:
    """One polygon ROI per connected void (8-connected) of every frame.

    Parameters
    ----------
    masks : ndarray or VideoSource
        ``[T, H, W]``, nonzero is void; read one frame at a time.

    Returns
    -------
    list of ImagejRoi
        Named ``t0003-v002`` (frame 3, its second void; both 0-based), placed on frame ``t + 1`` of the stack
        (``position`` and the hyperstack ``t_position``). The outline is the 0.5 iso-line of the mask in ImageJ
        pixel coordinates (pixel ``(x, y)`` spans ``[x, x + 1)``), so ImageJ's mask of the ROI is the void;
        holes in a void are not drawn.

    Examples
    --------
    >>> m = np.zeros((2, 8, 8), np.uint8); m[1, 2:5, 3:6] = 1
    >>> [(r.name, r.t_position, r.coordinates().min(axis=0).tolist(), r.coordinates().max(axis=0).tolist())
    ...  for r in imagej_rois(m)]
    [('t0001-v001', 2, [3.0, 2.0], [6.0, 5.0])]
    """
    return list(iter_imagej_rois(masks))


def iter_imagej_rois(masks) -> Iterator[ImagejRoi]:
    """The ROIs of :func:`imagej_rois` one at a time, reading ``masks`` (an array, a memory map or a
    :class:`~neuradiff.io.stream.VideoSource`) one frame at a time."""
    masks = masks if hasattr(masks, "shape") else np.asarray(masks)
    if len(masks.shape) != 3:
        raise NeuradiffError(f"masks must be [T, H, W], got shape {tuple(masks.shape)}")
    for t in range(masks.shape[0]):
        for k, box, obj in frame_objects(np.asarray(masks[t])):
            for j, poly in enumerate(mask_polygons(obj, (box[0].start, box[1].start))):
                points = np.asarray(poly, dtype=float).reshape(-1, 2) + 0.5
                name = f"t{t:04d}-v{k:03d}" + (f"-{j + 1}" if j else "")
                roi = ImagejRoi.frompoints(points, name=name, position=t, t=t)  # 0-based, stored 1-based
                roi.roitype = ROI_TYPE.POLYGON
                yield roi


def write_imagej_rois(path: str | Path, masks) -> Path:
    """Write the ROI set of ``masks`` (see :func:`imagej_rois`) to ``path`` (``.zip``), atomically, one frame
    and one ROI at a time; a stack without voids gives an empty zip archive."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise NeuradiffError(f"{path}: an ImageJ ROI set is a .zip file")
    rois = iter_imagej_rois(masks)  # written as they are made: memory does not grow with the frames
    with atomic_path(path) as tmp:
        zipped = tmp.with_name(tmp.name + ".zip")  # roifile writes a zip archive for a .zip name
        try:
            roiwrite(zipped, rois, mode="w")
            if not zipped.exists():
                zipfile.ZipFile(zipped, "w").close()
            zipped.replace(tmp)
        finally:
            zipped.unlink(missing_ok=True)
    return path


__all__ = ["imagej_rois", "iter_imagej_rois", "write_imagej_rois"]
