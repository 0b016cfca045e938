"""Read void annotations into the three-state form: uint8 ``[T, H, W]``, 0 solid, 1 void, 255 unknown.

Accepted: a three-state mask stack (TIFF), binary masks (0/255 or 0/1) for some frames (a folder of
PNG/TIFF, matched to frames by file-name stem, else by order), instance label images (Cellpose,
StarDist: 0 background, 1..N objects), class images (ilastik: one value per class, a
:class:`LabelScheme` names the void class), COCO JSON (polygons, RLE or compressed RLE) and YOLO
segmentation ``.txt`` files. Frames without an annotation stay 255 everywhere; a frame that is
annotated but has no void is all 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from skimage.draw import polygon

from neuradiff.core.checks import check_memory
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import SOLID, UNKNOWN, VOID
from neuradiff.io.coco import decode_rle
from neuradiff.io.stream import FrameStack, VideoSource, open_video
from neuradiff.io.video import IMAGE_SUFFIXES, TIFF_SUFFIXES, Video, bad, natural_key, read_video

_MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")
_DECORATION = re.compile(r"([_\-. ](mask|masks|label|labels|gt|seg|annotation)$)|(^(mask|label)[_\-])")


# --------------------------------------------------------------------------- label schemes


@dataclass(frozen=True)
class LabelScheme:
    """How the values of label images are read.

    Attributes
    ----------
    kind : {"masks", "instances", "classes"}
        ``"masks"``: three-state (0 solid, 1 void, 255 unknown) or binary (0/255, 0/1) masks.
        ``"instances"``: instance labels as Cellpose or StarDist write them, 0 background (solid) and every
        label above 0 a void. ``"classes"``: a class image (ilastik's segmentation or label export), value
        ``void_class`` is void, ``unknown_class`` unknown, every other class solid.
    void_class : int or None
        The class value of void (``kind="classes"`` only).
    unknown_class : int or None
        The class value of not-annotated pixels (``kind="classes"``; ilastik's labels use 0). ``None``:
        every pixel is annotated.

    Examples
    --------
    >>> LabelScheme.from_options(void_class=2)
    LabelScheme(kind='classes', void_class=2, unknown_class=0)
    """

    kind: Literal["masks", "instances", "classes"] = "masks"
    void_class: int | None = None
    unknown_class: int | None = None

    @classmethod
    def from_options(
        cls, *, instances: bool = False, void_class: int | None = None, unknown_class: int | None = None
    ) -> LabelScheme:
        """The scheme the command-line options ``--instances``, ``--void-class`` and ``--unknown-class`` name
        (``unknown_class`` defaults to 0 with a void class); one-line error for a contradiction."""
        if instances and void_class is not None:
            raise NeuradiffError("--instances and --void-class exclude each other: labels are instances or classes")
        if unknown_class is not None and void_class is None:
            raise NeuradiffError("--unknown-class needs --void-class (the class image's void class)")
        if void_class is None:
            return cls("instances" if instances else "masks")
        if void_class < 0:
            raise NeuradiffError(f"--void-class must be a class value ≥ 0, got {void_class}")
        unknown = 0 if unknown_class is None else unknown_class
        if unknown == void_class:
            raise NeuradiffError(f"--void-class and --unknown-class are both {void_class}; give two classes")
        return cls("classes", void_class, unknown)


MASKS = LabelScheme()


def _integer_labels(a: np.ndarray, where) -> np.ndarray:
    """A label image as int64; non-integer or negative values are an error."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            bad_value = a[~(np.isfinite(a) & (a == np.round(a)))].flat[0]
            raise bad(where, f"holds non-integer label {bad_value:g}; label images hold whole numbers")
    elif a.dtype.kind not in "uib":
        raise bad(where, f"has pixel type {a.dtype}, not integer labels")
    a = a.astype(np.int64)
    if a.size and a.min() < 0:
        raise bad(where, f"holds negative label {int(a.min())}")
    return a


def _decode_labels(a: np.ndarray, scheme: LabelScheme, where) -> np.ndarray:
    """Three-state uint8 of an instance or class label image (any leading shape)."""
    a = _integer_labels(a, where)
    if scheme.kind == "instances":
        return (a > 0).astype(np.uint8)
    out = np.full(a.shape, SOLID, np.uint8)
    out[a == scheme.void_class] = VOID
    if scheme.unknown_class is not None:
        out[a == scheme.unknown_class] = UNKNOWN
    return out


def _check_void_class(values: set[int], scheme: LabelScheme, path) -> None:
    if scheme.kind == "classes" and scheme.void_class not in values:
        shown = ", ".join(str(v) for v in sorted(values)[:8]) + (", ..." if len(values) > 8 else "")
        raise bad(path, f"void class {scheme.void_class} occurs nowhere; the image holds classes {shown}")


# --------------------------------------------------------------------------- frame matching


def _stem(name: str) -> str:
    name = str(name)
    if "#" in name:  # "stack.tif#3": a frame of a stack, never a file name
        return name.lower()
    return Path(name).stem.lower()


def _frame_indices(stems: list[str], path, frame_names, n_frames) -> list[int]:
    """Video frame index for each annotated item: by name stem when names match, else by order."""
    if frame_names:
        lookup: dict[str, int] = {}
        for i, name in enumerate(frame_names):
            lookup.setdefault(_stem(name), i)
        hits = []
        for s in stems:
            key = s.lower()
            hit = lookup.get(key)
            if hit is None:
                hit = lookup.get(_DECORATION.sub("", key))
            hits.append(hit)
        matched = [h for h in hits if h is not None]
        if matched:
            missing = [s for s, h in zip(stems, hits) if h is None]
            if missing:
                raise bad(path, f"annotation '{missing[0]}' matches no video frame name")
            if len(set(matched)) != len(matched):
                dup = next(h for h in matched if matched.count(h) > 1)
                raise bad(path, f"two annotations match video frame {frame_names[dup]}")
            return matched
        if len(stems) != len(frame_names):
            raise bad(
                path,
                f"{len(stems)} annotated frames whose names match none of the "
                f"{len(frame_names)} video frame names; name them like the frames",
            )
    if n_frames is not None and len(stems) > n_frames:
        raise bad(path, f"has {len(stems)} mask frames but the video has {n_frames}")
    return list(range(len(stems)))


def _target(video: Video | VideoSource | None, shape, n_frames, path):
    if video is not None:
        frames = video.frames if isinstance(video, Video) else video  # a VideoSource is read lazily
        vshape = tuple(int(s) for s in frames.shape[1:])
        if shape is not None and tuple(shape) != vshape:
            raise bad(path, f"shape {tuple(shape)} differs from the video frames {vshape}")
        return vshape, int(frames.shape[0]), list(video.names)
    shape = None if shape is None else tuple(int(s) for s in shape)
    if shape is not None and (len(shape) != 2 or min(shape) < 1):
        raise NeuradiffError(f"shape must be (height, width), got {shape}")
    return shape, (None if n_frames is None else int(n_frames)), None


def _check_size(arr_shape, shape, where) -> None:
    if shape is not None and tuple(arr_shape) != tuple(shape):
        raise bad(where, f"mask is {arr_shape[-1]}x{arr_shape[-2]} px but the frames are {shape[1]}x{shape[0]} px")


def _assemble(items: list[tuple[str, np.ndarray]], path, shape, n_frames, names) -> np.ndarray:
    """Place per-frame three-state masks ``(stem, [H, W])`` into ``[T, H, W]`` (rest unknown)."""
    if not items:
        raise bad(path, "holds no annotations")
    shape = shape or items[0][1].shape
    for stem, m in items:
        _check_size(m.shape, shape, f"{path} ({stem})")
    idx = _frame_indices([s for s, _ in items], path, names, n_frames)
    total = n_frames if n_frames is not None else max(idx) + 1
    check_memory(f"reading {path}", float(total) * np.prod(shape), f"{total} masks of {shape[1]}×{shape[0]} px")
    out = np.full((total,) + tuple(shape), UNKNOWN, np.uint8)
    for k, (_, m) in zip(idx, items):
        out[k] = m
    return out


# --------------------------------------------------------------------------- mask images


def _decoder(values: np.ndarray, dtype, path):
    """How to turn raw mask values into three-state: ``"three"``, ``"binary"`` (nonzero = void)."""
    vals = set(np.asarray(values).tolist())
    if np.dtype(dtype) == np.bool_ or vals <= {0, 1}:
        return "three"
    if vals <= {0, 1, 255} and ({1, 255} <= vals or vals == {255}):
        return "three"  # holds void and unknown, or is unknown everywhere
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 255
    if vals <= {0, 255} or vals <= {0, top}:
        return "binary"
    shown = ", ".join(str(v) for v in sorted(vals)[:6]) + (", ..." if len(vals) > 6 else "")
    raise bad(
        path,
        f"values other than 0/1/255 ({shown}); masks must be binary (0/255, 0/1) or "
        "three-state (0 solid, 1 void, 255 unknown); instance labels need --instances, a class image --void-class",
    )


def _decode(a: np.ndarray, kind: str) -> np.ndarray:
    if kind == "binary":
        return (a != 0).astype(np.uint8)
    return a.astype(np.uint8)


def _read_stack(
    path: Path, shape, n_frames, names, full_stack: bool = False, scheme: LabelScheme = MASKS
) -> np.ndarray:
    """A TIFF mask stack: three-state, or binary (0/255 only is read as binary: 255 = void), or labels."""
    stack = read_video(path).frames
    if full_stack and n_frames is not None and len(stack) != n_frames:
        raise NeuradiffError(
            f"{path} holds {len(stack)} annotation frames but the video has {n_frames}; "
            "a three-state stack needs one frame per video frame"
        )
    _check_size(stack.shape[1:], shape, path)
    if scheme.kind == "masks":
        stack = _decode(stack, _decoder(np.unique(stack), stack.dtype, path))
    else:
        labels = _integer_labels(stack, path)
        _check_void_class({int(v) for v in np.unique(labels)}, scheme, path)
        stack = _decode_labels(labels, scheme, path)
    if n_frames is not None and len(stack) > n_frames:
        raise bad(path, f"has {len(stack)} mask frames but the video has {n_frames}")
    if n_frames is not None and len(stack) < n_frames:
        pad = np.full((n_frames - len(stack),) + stack.shape[1:], UNKNOWN, np.uint8)
        stack = np.concatenate([stack, pad])
    return stack


class MaskStack(FrameStack):
    """Three-state masks of a TIFF mask stack, decoded frame by frame as they are read (the stack is never held
    whole): ``shape`` ``(T, H, W)``, ``len``, ``stack[k]``, ``stack[a:b]`` and :meth:`chunks`, like a
    :class:`~neuradiff.io.stream.VideoSource`. Frames past the end of a stack shorter than the video are unknown.
    Made by :func:`open_mask_stack`."""

    def __init__(self, source: VideoSource, kind: str, n_frames: int):
        self.source, self.kind, self.n_frames = source, kind, int(n_frames)
        self.frame_shape = source.frame_shape
        self.dtype = np.dtype(np.uint8)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Three-state frames ``start`` to ``stop - 1`` as uint8 ``[n, H, W]``."""
        start, stop = max(0, int(start)), min(self.n_frames, int(stop))
        stored = self.source.n_frames
        out = np.full((max(stop - start, 0), *self.frame_shape), UNKNOWN, np.uint8)
        if start < stored and stop > start:
            out[: min(stop, stored) - start] = _decode(self.source.read(start, min(stop, stored)), self.kind)
        return out

    def close(self) -> None:
        self.source.close()


def open_mask_stack(
    path: str | Path, *, shape=None, n_frames: int | None = None, full_stack: bool = False, chunk: int = 64
) -> MaskStack:
    """Open a TIFF mask stack for reading frame by frame: what :func:`read_annotations` reads from it, in
    constant memory (one pass over the file finds which values it holds, which decides three-state or binary).

    Parameters
    ----------
    path : str or Path
        A TIFF stack of masks (three-state 0 / 1 / 255, or binary).
    shape, n_frames, full_stack
        As in :func:`read_annotations` (the video's frame size and length; with ``full_stack`` the stack must hold
        one frame per video frame).
    chunk : int
        Frames read at a time by the first pass.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "masks.tif"
    >>> frame = np.kron([[0, 255], [255, 0]], np.ones((2, 2), np.uint8)).astype(np.uint8)  # binary: 255 = void
    >>> tifffile.imwrite(p, np.stack([frame] * 3), photometric="minisblack")
    >>> with open_mask_stack(p) as masks:
    ...     masks.shape, masks[2].tolist()
    ((3, 4, 4), [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]])
    """
    path = Path(path)
    source = open_video(path)
    try:
        stored = source.n_frames
        if full_stack and n_frames is not None and stored != n_frames:
            raise NeuradiffError(
                f"{path} holds {stored} annotation frames but the video has {n_frames}; "
                "a three-state stack needs one frame per video frame"
            )
        _check_size(source.frame_shape, shape, path)
        if n_frames is not None and stored > n_frames:
            raise bad(path, f"has {stored} mask frames but the video has {n_frames}")
        values: set[int] = set()
        for _, block in source.chunks(chunk):
            values.update(np.unique(block).tolist())
        kind = _decoder(np.array(sorted(values)), source.dtype, path)
    except BaseException:
        source.close()
        raise
    return MaskStack(source, kind, stored if n_frames is None else n_frames)


def _read_mask_files(files: list[Path], path, shape, n_frames, names, scheme: LabelScheme = MASKS) -> np.ndarray:
    raw = []
    for p in files:
        frames = read_video(p).frames
        if len(frames) != 1:
            raise bad(p, f"holds {len(frames)} frames; use one mask image per frame")
        raw.append(frames[0])
    if scheme.kind != "masks":
        labels = []
        for p, r in zip(files, raw):
            _check_size(r.shape, shape, p)
            labels.append(_integer_labels(r, p))
        _check_void_class({int(v) for lab in labels for v in np.unique(lab)}, scheme, path)
        items = [(p.stem, _decode_labels(lab, scheme, p)) for p, lab in zip(files, labels)]
        return _assemble(items, path, shape, n_frames, names)
    # A file holding both 1 and 255 can only be three-state: then the whole folder is. Otherwise
    # each file is a binary mask (0/255 or 0/1) on its own.
    values = [np.unique(r) for r in raw]
    three = any({1, 255} <= set(v.tolist()) for v in values)
    items = []
    for p, r, v in zip(files, raw, values):
        kind = _decoder(v, r.dtype, p)
        if three and kind == "binary" and not set(v.tolist()) <= {0, 1, 255}:
            raise bad(p, "is binary but other masks in the folder are three-state")
        items.append((p.stem, _decode(r, "three" if three else kind)))
    return _assemble(items, path, shape, n_frames, names)


# --------------------------------------------------------------------------- polygons


def _rasterise(polygons: list[np.ndarray], shape, where) -> np.ndarray:
    """Polygons (each ``[N, 2]`` x, y in px) to a 0/1 mask ``[H, W]`` with skimage.draw.polygon.

    Vertices are taken as pixel coordinates (pixel ``(r, c)`` is filled when its index point lies
    inside); a vertex more than one pixel outside ``[0, W] x [0, H]`` is an error.
    """
    h, w = shape
    out = np.zeros(shape, np.uint8)
    for poly in polygons:
        if len(poly) < 3:
            raise bad(where, f"polygon with {len(poly)} vertices (needs at least 3)")
        if not np.all(np.isfinite(poly)):
            raise bad(where, "polygon with non-finite coordinates")
        x, y = poly[:, 0], poly[:, 1]
        if x.min() < -1 or y.min() < -1 or x.max() > w + 1 or y.max() > h + 1:
            raise bad(
                where,
                f"polygon lies outside the {w}x{h} px image "
                f"(x {x.min():.1f}..{x.max():.1f}, y {y.min():.1f}..{y.max():.1f})",
            )
        rr, cc = polygon(y, x, shape)
        out[rr, cc] = VOID
    return out


def _flat_polygon(coords, where) -> np.ndarray:
    try:
        a = np.asarray(coords, dtype=float).ravel()
    except (TypeError, ValueError):
        raise bad(where, "polygon coordinates are not numbers") from None
    if a.size % 2:
        raise bad(where, f"polygon has an odd number of coordinates ({a.size})")
    return a.reshape(-1, 2)


def _rle(seg: dict, shape, where) -> np.ndarray:
    """A COCO RLE segmentation (uncompressed counts or the compressed string) as a 0/1 mask."""
    size = seg.get("size")
    if not isinstance(size, (list, tuple)) or [int(v) for v in size] != list(shape):
        raise bad(where, f"RLE size {size} does not match the image {list(shape)}")
    try:
        return decode_rle(seg)
    except (ValueError, TypeError) as exc:
        raise bad(where, f"bad RLE ({exc})") from None


def _read_coco(path: Path, shape, n_frames, names) -> np.ndarray:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(path, f"is not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations"), list)
    ):
        raise bad(path, "is not a COCO file (needs 'images' and 'annotations' lists)")
    images = {}
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise bad(path, "every COCO image needs 'id' and 'file_name'")
        if img["id"] in images:
            raise bad(path, f"image id {img['id']} is listed twice")
        images[img["id"]] = img
    if not images:
        raise bad(path, "lists no images")
    sizes = {(img.get("height"), img.get("width")) for img in images.values()} - {(None, None)}
    if shape is None:
        if len(sizes) != 1 or None in next(iter(sizes)):
            raise bad(path, "images have no single height/width; give the video or the shape")
        shape = tuple(int(v) for v in next(iter(sizes)))
        if min(shape) < 1:
            raise bad(path, f"images of {shape[1]}×{shape[0]} px")
    # every image's mask and the rasteriser's temporary: refuse a file claiming huge images before allocating
    check_memory(
        f"reading {path}",
        2.0 * len(images) * float(np.prod(shape)),
        f"{len(images)} images of {shape[1]}×{shape[0]} px",
    )
    polys: dict = {i: [] for i in images}
    rles: dict = {i: [] for i in images}
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise bad(
                path, f"annotation {ann.get('id') if isinstance(ann, dict) else ann!r} refers to an unknown image"
            )
        where = f"{path} (annotation {ann.get('id')}, image {images[ann['image_id']]['file_name']})"
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            rles[ann["image_id"]].append(_rle(seg, shape, where))
        elif isinstance(seg, list):
            polys[ann["image_id"]].extend((_flat_polygon(p, where), where) for p in seg)
        else:
            raise bad(where, "has no polygon or RLE segmentation")
    order = sorted(images, key=lambda i: natural_key(str(images[i]["file_name"])))
    items = []
    for i in order:
        img = images[i]
        name = str(img["file_name"])
        if img.get("height") is not None and img.get("width") is not None:
            _check_size((int(img["height"]), int(img["width"])), shape, f"{path} ({name})")
        mask = np.zeros(shape, np.uint8)
        for poly, where in polys[i]:
            mask |= _rasterise([poly], shape, where)
        for r in rles[i]:
            mask |= r
        items.append((Path(name).stem, mask))
    return _assemble(items, path, shape, n_frames, names)


def _read_yolo_file(p: Path, shape) -> np.ndarray:
    h, w = shape
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise bad(p, "is not a text file") from None
    polygons = []
    for k, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{p} line {k}"
        try:
            values = np.asarray([float(v) for v in parts[1:]])
        except ValueError:
            raise bad(where, "is not 'class x1 y1 x2 y2 ...' numbers") from None
        if len(values) == 4:
            raise bad(where, "is a YOLO box label (class cx cy w h), not a segmentation polygon")
        poly = _flat_polygon(values, where)
        polygons.append(poly * np.array([w, h], float))
    return _rasterise(polygons, shape, p) if polygons else np.zeros(shape, np.uint8)


def _read_yolo(files: list[Path], path, shape, n_frames, names) -> np.ndarray:
    if shape is None:
        raise bad(path, "YOLO labels need the frame size: give the video (or shape)")
    items = [(p.stem, _read_yolo_file(p, shape)) for p in files]
    return _assemble(items, path, shape, n_frames, names)


# --------------------------------------------------------------------------- public API


def read_annotations(
    path,
    *,
    video: Video | VideoSource | None = None,
    shape=None,
    n_frames: int | None = None,
    full_stack: bool = False,
    labels: LabelScheme | None = None,
) -> np.ndarray:
    """Read annotations of any supported form as three-state masks.

    Parameters
    ----------
    path : str or Path
        Three-state TIFF stack (a stack holding both 0 and 255 but no 1 is read as binary:
        255 = void; one holding only 255 is unknown everywhere),
        a mask image or folder of binary masks, a COCO ``.json``, or YOLO ``.txt`` file(s).
    video : Video or VideoSource, optional
        Gives the frame size, the number of frames and the frame names to match against.
    shape : (H, W), optional
        Frame size when no video is given (needed for YOLO).
    n_frames : int, optional
        Number of frames when no video is given.
    full_stack : bool
        A TIFF stack must hold exactly one frame per video frame (otherwise a shorter stack annotates the
        first frames and the rest are unknown).
    labels : LabelScheme, optional
        How the values of mask images are read: masks (the default), instance labels or classes (naming the
        void class). Not for COCO or YOLO files.

    Returns
    -------
    ndarray
        uint8 ``[T, H, W]``: 0 solid, 1 void, 255 unknown (frames without annotation).

    Raises
    ------
    NeuradiffError
        One line naming the file and the problem.
    """
    path = Path(path)
    shape, n_frames, names = _target(video, shape, n_frames, path)
    if not path.exists():
        raise bad(path, "no such file or folder")
    try:
        return _dispatch(path, shape, n_frames, names, full_stack, labels or MASKS)
    except NeuradiffError:
        raise
    except OSError as exc:
        raise bad(getattr(exc, "filename", None) or path, f"cannot be read ({exc.strerror or exc})") from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise bad(path, f"is malformed ({type(exc).__name__}: {str(exc)[:120]})") from None


def _not_labels(path: Path, scheme: LabelScheme, what: str) -> None:
    if scheme.kind != "masks":
        option = "--instances" if scheme.kind == "instances" else "--void-class"
        raise bad(path, f"is {what}; {option} applies to label images only")


def _dispatch(path: Path, shape, n_frames, names, full_stack: bool = False, scheme: LabelScheme = MASKS) -> np.ndarray:
    suffix = path.suffix.lower()
    if path.is_dir():
        files = [
            p
            for p in sorted(path.iterdir(), key=lambda p: natural_key(p.name))
            if p.is_file() and not p.name.startswith(".")
        ]
        masks = [p for p in files if p.suffix.lower() in _MASK_SUFFIXES]
        texts = [p for p in files if p.suffix.lower() == ".txt" and p.name != "classes.txt"]
        jsons = [p for p in files if p.suffix.lower() == ".json"]
        if masks and texts:
            raise bad(path, "holds both mask images and .txt labels; give one kind per folder")
        if masks:
            return _read_mask_files(masks, path, shape, n_frames, names, scheme)
        if texts:
            _not_labels(path, scheme, "a folder of YOLO labels")
            return _read_yolo(texts, path, shape, n_frames, names)
        if len(jsons) == 1:
            _not_labels(path, scheme, "a folder holding a COCO file")
            return _read_coco(jsons[0], shape, n_frames, names)
        raise bad(path, "folder holds no mask images (png, tif), YOLO .txt or COCO .json")
    if suffix in TIFF_SUFFIXES:
        return _read_stack(path, shape, n_frames, names, full_stack, scheme)
    if suffix in IMAGE_SUFFIXES:
        return _read_mask_files([path], path, shape, n_frames, names, scheme)
    if suffix == ".json":
        _not_labels(path, scheme, "a COCO file")
        return _read_coco(path, shape, n_frames, names)
    if suffix == ".txt":
        _not_labels(path, scheme, "a YOLO label file")
        return _read_yolo([path], path, shape, n_frames, names)
    raise bad(
        path,
        f"unknown annotation format {path.suffix or '(no extension)'}; use a mask "
        "TIFF/PNG (or a folder of them), COCO .json or YOLO .txt",
    )


def void_mask(masks: np.ndarray) -> np.ndarray:
    """Boolean ``[T, H, W]`` of void pixels (1); solid and unknown (255) are not void."""
    return np.asarray(masks) == VOID


__all__ = ["SOLID", "UNKNOWN", "VOID", "LabelScheme", "MaskStack", "open_mask_stack", "read_annotations", "void_mask"]
