"""COCO run-length encoding (RLE) of binary masks, plain and compressed, and COCO instance files of masks.

COCO stores a mask ``[H, W]`` as run lengths down its columns (Fortran order), starting with a run of 0.
The compressed form (what CVAT, Label Studio, Roboflow and ``pycocotools.mask.encode`` write) turns these
counts into a string: each count, less the count two places before it from the fourth on, is written as a
signed little-endian base-32 number, 5 bits a character, offset by 48 (``'0'``), bit 6 marking "more".
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import find_objects
from skimage.measure import find_contours, label

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path, json_default, write_json


def rle_counts(mask: np.ndarray) -> list[int]:
    """Run lengths of a 2-D mask down its columns, starting with a run of 0 (COCO uncompressed RLE).

    Examples
    --------
    >>> rle_counts(np.array([[0, 1], [1, 1]]))
    [1, 3]
    """
    flat = (np.asarray(mask) != 0).ravel(order="F").astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return [int(c) for c in counts]


def _runs_of_indices(flat: np.ndarray, size: int) -> list[int]:
    """:func:`rle_counts` of a mask of ``size`` pixels given the sorted column-major indices of its set pixels
    (cost grows with the object, not the frame)."""
    if flat.size == 0:
        return [int(size)]
    breaks = np.flatnonzero(np.diff(flat) != 1) + 1
    starts = flat[np.concatenate([[0], breaks])]
    ends = flat[np.concatenate([breaks - 1, [flat.size - 1]])] + 1  # one past each run
    gaps = starts - np.concatenate([[0], ends[:-1]])
    counts = np.stack([gaps, ends - starts], axis=1).ravel().tolist()
    if ends[-1] < size:
        counts.append(int(size - ends[-1]))
    return [int(c) for c in counts]


def frame_objects(mask: np.ndarray) -> list[tuple[int, tuple[slice, slice], np.ndarray]]:
    """The 8-connected objects of a 2-D mask (nonzero = object), numbered in ``label`` order: for each, its
    number, its bounding box as slices and its own mask inside that box (``bool``), so that work on one object
    costs its size, not the frame's."""
    labels = np.asarray(label(np.asarray(mask) != 0, connectivity=2))
    return [(k, box, labels[box] == k) for k, box in enumerate(find_objects(labels), start=1) if box is not None]


def counts_to_string(counts: Sequence[int]) -> str:
    """Compress run lengths to the COCO RLE string (as ``pycocotools`` writes it).

    Examples
    --------
    >>> counts_to_string([1, 3])
    '13'
    """
    out = []
    cnts = [int(c) for c in counts]
    for i, c in enumerate(cnts):
        x = c - cnts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift: a negative difference ends in -1
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(text: str | bytes) -> list[int]:
    """Run lengths from a COCO compressed RLE string.

    Raises
    ------
    ValueError
        A character outside ``'0'``..``'o'``, a number cut short, or a negative run.

    Examples
    --------
    >>> string_to_counts("13")
    [1, 3]
    """
    s = text.decode("ascii") if isinstance(text, bytes) else str(text)
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("compressed RLE string ends inside a number")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {s[p]!r} is not compressed RLE")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        if x < 0:
            raise ValueError("compressed RLE holds a negative run length")
        counts.append(x)
    return counts


def decode_rle(segmentation: dict) -> np.ndarray:
    """A COCO RLE segmentation (``{"size": [h, w], "counts": ...}``, counts a list or a compressed string)
    as a uint8 0/1 mask ``[h, w]``.

    Raises
    ------
    ValueError
        Malformed counts, or counts that do not add up to ``h * w``.

    Examples
    --------
    >>> decode_rle({"size": [2, 2], "counts": "13"}).tolist()
    [[0, 1], [1, 1]]
    """
    size = segmentation.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE size {size!r} is not [height, width]")
    h, w = (int(v) for v in size)
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = string_to_counts(counts)
    elif isinstance(counts, list):
        runs = [int(c) for c in counts]
    else:
        raise ValueError("RLE counts are neither a list nor a string")
    if any(c < 0 for c in runs):
        raise ValueError("RLE holds a negative run length")
    if sum(runs) != h * w:
        raise ValueError(f"RLE counts add up to {sum(runs)} pixels, not {h}×{w} = {h * w}")
    values = np.zeros(len(runs), np.uint8)
    values[1::2] = 1
    return np.repeat(values, runs).reshape((w, h)).T.copy()


def encode_rle(mask: np.ndarray) -> dict:
    """A 2-D mask as a compressed COCO RLE segmentation ``{"size": [h, w], "counts": str}``.

    Examples
    --------
    >>> encode_rle(np.array([[0, 1], [1, 1]]))
    {'size': [2, 2], 'counts': '13'}
    """
    m = np.asarray(mask)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(rle_counts(m))}


def mask_polygons(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """Outlines of one object's mask as COCO polygons (flat ``[x1, y1, x2, y2, ...]`` in px, pixel centres).

    The outline is the 0.5 iso-line of the mask (skimage ``find_contours``), so a polygon runs half a pixel
    outside the centres of the object's edge pixels; holes are not written. ``origin`` ``(row, col)`` is where
    ``mask``'s first pixel lies in the frame (pass an object's bounding box to skip the empty rest of the frame).
    """
    padded = np.pad(np.asarray(mask) != 0, 1).astype(np.float32)
    out = []
    for contour in find_contours(padded, 0.5):
        if len(contour) < 4:
            continue
        yx = contour[:-1] - 1.0 + np.asarray(origin, float)  # closed contour: the last point repeats the first
        x, y = yx[:, 1], yx[:, 0]
        area = 0.5 * (x[:-1] @ y[1:] + x[-1] * y[0] - x[1:] @ y[:-1] - x[0] * y[-1])  # shoelace
        if area < 0:  # in (x, y) with y down, find_contours runs one way round objects, the other round holes
            continue
        out.append([round(float(v), 2) for v in yx[:, ::-1].ravel()])
    return out


def coco_instances(
    masks: np.ndarray,
    frame_names: Sequence[str],
    *,
    times_s: Sequence[float] | np.ndarray | None = None,
    nm_per_px: float | None = None,
    polygons: bool = False,
) -> dict:
    """A COCO instance-segmentation document of void masks: one image per frame, one annotation per
    connected void (8-connected), category 1 ``"void"``.

    Parameters
    ----------
    masks : ndarray
        ``[T, H, W]``; nonzero is void (three-state masks: pass ``masks == 1``).
    frame_names : sequence of str
        ``T`` names, written as each image's ``file_name``.
    times_s : sequence of float, optional
        Time of each frame in s, written as each image's ``time_s``.
    nm_per_px : float, optional
        Pixel size, written under ``info`` and as each annotation's ``area_nm2``.
    polygons : bool
        Write outlines as polygons instead of compressed RLE (RLE is exact; polygons drop holes).

    Examples
    --------
    >>> doc = coco_instances(np.array([[[0, 1], [1, 1]]]), ["frame0.tif"])
    >>> doc["images"][0]["file_name"], doc["annotations"][0]["segmentation"], doc["annotations"][0]["area"]
    ('frame0.tif', {'size': [2, 2], 'counts': '13'}, 3)
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise NeuradiffError(f"masks must be [T, H, W], got shape {masks.shape}")
    if len(frame_names) != len(masks):
        raise NeuradiffError(f"{len(frame_names)} frame names for {len(masks)} masks")
    images, annotations = [], []
    for t in range(masks.shape[0]):
        image, anns = _coco_frame(masks[t], t, frame_names, times_s, nm_per_px, polygons, len(annotations) + 1)
        images.append(image)
        annotations.extend(anns)
    return {"info": _info(nm_per_px), "images": images, "annotations": annotations, "categories": CATEGORIES}


#: The one category of a void-mask document.
CATEGORIES = [{"id": 1, "name": "void", "supercategory": "defect"}]


def _info(nm_per_px: float | None) -> dict:
    return {"description": "void masks", "nm_per_px": nm_per_px}


def _coco_frame(
    mask: np.ndarray,
    t: int,
    frame_names: Sequence[str],
    times_s: Sequence[float] | np.ndarray | None,
    nm_per_px: float | None,
    polygons: bool,
    first_id: int,
) -> tuple[dict, list[dict]]:
    """The image entry of frame ``t`` (mask ``[H, W]``) and its annotations, numbered from ``first_id``."""
    h, w = mask.shape
    image = {"id": t + 1, "file_name": str(frame_names[t]), "height": int(h), "width": int(w), "frame": t}
    if times_s is not None:
        image["time_s"] = float(times_s[t])
    annotations = []
    for _, box, obj in frame_objects(mask):
        rows, cols = np.nonzero(obj)
        rows, cols = rows + box[0].start, cols + box[1].start
        x0, y0 = int(cols.min()), int(rows.min())
        area = int(rows.size)
        if polygons:
            segmentation: dict | list = mask_polygons(obj, (box[0].start, box[1].start))
        else:
            flat = np.sort(cols * h + rows)  # column-major, as COCO runs
            segmentation = {"size": [int(h), int(w)], "counts": counts_to_string(_runs_of_indices(flat, h * w))}
        ann: dict = {
            "id": first_id + len(annotations),
            "image_id": t + 1,
            "category_id": 1,
            "iscrowd": 0,
            "area": area,
            "bbox": [x0, y0, int(cols.max()) - x0 + 1, int(rows.max()) - y0 + 1],
            "segmentation": segmentation,
        }
        if nm_per_px is not None:
            ann["area_nm2"] = float(area) * float(nm_per_px) ** 2
        annotations.append(ann)
    return image, annotations


def write_coco(path: str | Path, document: dict) -> Path:
    """Write a COCO document as JSON, atomically."""
    path = Path(path)
    write_json(path, document)
    return path


def _member(obj) -> str:
    """``obj`` as an element of a list two levels down a ``json.dumps(..., indent=2)`` document."""
    return "    " + json.dumps(obj, indent=2, default=json_default).replace("\n", "\n    ")


def write_coco_masks(
    path: str | Path,
    masks,
    frame_names: Sequence[str],
    *,
    times_s: Sequence[float] | np.ndarray | None = None,
    nm_per_px: float | None = None,
    polygons: bool = False,
) -> Path:
    """Write the COCO document of :func:`coco_instances` to ``path`` reading ``masks`` one frame at a time and
    writing each image and annotation as it is made, so memory does not grow with the frames: the same bytes
    as ``write_coco(path, coco_instances(...))``, atomically.

    Parameters
    ----------
    masks : ndarray or VideoSource
        ``[T, H, W]`` (anything with ``shape`` that gives a frame for an index; nonzero is void).
    frame_names, times_s, nm_per_px, polygons
        As in :func:`coco_instances`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> m = np.zeros((2, 8, 8), np.uint8); m[1, 2:5, 3:6] = 1
    >>> a, b = (pathlib.Path(tempfile.mkdtemp()) / n for n in ("a.json", "b.json"))
    >>> _ = write_coco_masks(a, m, ["f0", "f1"]); _ = write_coco(b, coco_instances(m, ["f0", "f1"]))
    >>> a.read_bytes() == b.read_bytes()
    True
    """
    path = Path(path)
    shape = tuple(masks.shape) if hasattr(masks, "shape") else np.shape(masks)
    if len(shape) != 3:
        raise NeuradiffError(f"masks must be [T, H, W], got shape {shape}")
    n = shape[0]
    if len(frame_names) != n:
        raise NeuradiffError(f"{len(frame_names)} frame names for {n} masks")
    info = json.dumps(_info(nm_per_px), indent=2, default=json_default).replace("\n", "\n  ")
    categories = json.dumps(CATEGORIES, indent=2).replace("\n", "\n  ")
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", encoding="utf-8") as out,
        tempfile.TemporaryFile("w+", encoding="utf-8", dir=path.parent) as spool,
    ):  # annotations follow the images in the document: they wait in a scratch file
        out.write(f'{{\n  "info": {info},\n  "images": ' + ("[" if n else "[]"))
        count = 0
        for t in range(n):
            image, anns = _coco_frame(np.asarray(masks[t]), t, frame_names, times_s, nm_per_px, polygons, count + 1)
            out.write(("\n" if t == 0 else ",\n") + _member(image))
            for ann in anns:
                spool.write(("\n" if count == 0 else ",\n") + _member(ann))
                count += 1
        out.write("\n  ]" if n else "")
        out.write(',\n  "annotations": ' + ("[" if count else "[]"))
        spool.seek(0)
        shutil.copyfileobj(spool, out)
        out.write("\n  ]" if count else "")
        out.write(f',\n  "categories": {categories}\n}}\n')
    return path


__all__ = [
    "coco_instances",
    "counts_to_string",
    "decode_rle",
    "encode_rle",
    "frame_objects",
    "mask_polygons",
    "rle_counts",
    "string_to_counts",
    "write_coco",
    "write_coco_masks",
]
