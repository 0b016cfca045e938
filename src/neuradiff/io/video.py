"""Read in-situ TEM videos into one form: grey frames ``[T, H, W]`` plus their calibration.

Supported inputs: TIFF stacks (ImageJ and OME metadata), folders of images (natural order),
the Gatan in-situ tree ``Name/Hour_HH/Minute_MM/Second_SS/..._Frame_NNNN.dm4``, mp4/avi/mov
movies (ffmpeg) and, with the optional extra ``neuradiff[io]`` (RosettaSciIO), dm3/dm4/emd/ser/mrc.
Every problem with the input raises :class:`~neuradiff.core.errors.NeuradiffError` in one line that
names the file.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import tifffile

from neuradiff.core.checks import (
    FRAME_INTERVAL_S_RANGE,
    NM_PER_PX_RANGE,
    check_frame_interval,
    check_memory,
    check_pixel_size,
    finite_array,
    human_bytes,
)
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.frametimes import find_frame_table, read_frame_table, times_from_names

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp") + TIFF_SUFFIXES
MOVIE_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
#: Microscope formats read through RosettaSciIO: suffix -> rsciio module.
RSCIIO_SUFFIXES = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".ser": "tia",
    ".mrc": "mrc",
}

#: Smallest frame side neuradiff reads (px): a (T, 1, 1) stack is otherwise read by tifffile as one T×1 image.
MIN_FRAME_PX = 4

_LENGTH_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "nanometers": 1.0,
    "nanometres": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "micrometers": 1e3,
    "micrometres": 1e3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
    "picometre": 1e-3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
}
_TIME_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
}


@dataclass(frozen=True)
class Calibration:
    """Pixel size and timing of a video; ``None`` means unknown (outputs then stay in px / frames).

    Attributes
    ----------
    nm_per_px : float or None
        Pixel size in nm (square pixels).
    frame_interval_s : float or None
        Time between frames in s.
    frame_times_s : ndarray or None
        ``[T]`` time of each frame in s, relative to the first frame, when known.
    source : str
        Where the values came from, e.g. ``"imagej metadata"``, ``"ome"``, ``"file names"``,
        ``"override"`` or ``"none"``.
    conditions : dict of str to ndarray, optional
        Further per-frame columns of a frame-time table (``dose``, ``temperature``, ...), ``[T]`` each.
    """

    nm_per_px: float | None = None
    frame_interval_s: float | None = None
    frame_times_s: np.ndarray | None = field(default=None, compare=False)
    source: str = "none"
    conditions: dict[str, np.ndarray] | None = field(default=None, compare=False)

    def times_s(self, n_frames: int) -> np.ndarray | None:
        """``[n_frames]`` frame times in s, or ``None`` when the timing is unknown."""
        if self.frame_times_s is not None and len(self.frame_times_s) >= n_frames:
            return np.asarray(self.frame_times_s[:n_frames], dtype=float)
        if self.frame_interval_s is not None:
            return np.arange(n_frames) * float(self.frame_interval_s)
        return None

    def describe(self, n_frames: int | None = None) -> dict:
        """The calibration as plain data (for ``provenance.json``); frame times are listed when they are uneven."""
        out: dict = {"nm_per_px": self.nm_per_px, "frame_interval_s": self.frame_interval_s, "source": self.source}
        times = self.times_s(n_frames) if n_frames is not None else self.frame_times_s
        if self.frame_times_s is not None and times is not None:
            out["frame_times_s"] = [float(t) for t in times]
        return out


@dataclass
class Video:
    """A grey video and its calibration.

    Attributes
    ----------
    frames : ndarray
        ``[T, H, W]`` grey frames; integer types are kept (16-bit stays 16-bit), float stays float.
    calibration : Calibration
    names : list of str
        ``[T]`` source of each frame: the file name for folders, ``"path#k"`` for stacks.
    path : str
    """

    frames: np.ndarray
    calibration: Calibration
    names: list[str]
    path: str


# --------------------------------------------------------------------------- helpers


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0].strip() if text else ""
    msg = msg if len(msg) <= 160 else msg[:157] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def bad(path, problem: str) -> NeuradiffError:
    """A one-line :class:`NeuradiffError` that names ``path`` and the problem."""
    return NeuradiffError(f"{path}: {problem}")


def natural_key(name: str) -> list:
    """Sort key that puts ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def length_to_nm(value, unit) -> float | None:
    """``value`` in ``unit`` (nm, µm, Å, pm, m, ...) as nm; ``None`` if unknown or not positive."""
    if value is None or unit is None:
        return None
    key = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    factor = _LENGTH_NM.get(key)
    try:
        out = float(value) * factor if factor is not None else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and np.isfinite(out) and out > 0 else None


def time_to_s(value, unit="s") -> float | None:
    """``value`` in ``unit`` (s, ms, min, ...) as s; ``None`` if unknown or not positive."""
    if value is None:
        return None
    factor = _TIME_S.get(str(unit or "s").strip().replace("\\u00B5", "µ").lower())
    try:
        out = float(value) * factor if factor is not None else None
    except (TypeError, ValueError):
        return None
    return out if out is not None and np.isfinite(out) and out > 0 else None


def to_grey(img: np.ndarray, channel_axis: int = -1) -> np.ndarray:
    """Colour (RGB/RGBA along ``channel_axis``) to grey with Rec. 709 weights; dtype is kept."""
    img = np.moveaxis(np.asarray(img), channel_axis, -1)
    if img.shape[-1] == 1:
        return img[..., 0]
    if img.shape[-1] == 2:  # grey + alpha
        return img[..., 0]
    grey = img[..., :3].astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(grey), info.min, info.max).astype(img.dtype)
    return grey.astype(img.dtype if img.dtype.kind == "f" else np.float32)


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect errors that tifffile logs instead of raising (corrupt or truncated files)."""
    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                records.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler, old = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def _check_claim(path, shape, dtype, *, file_bytes: int | None = None, memory: bool = True) -> None:
    """Refuse a header whose pixels would not fit the memory limit, or (uncompressed data, ``file_bytes`` given)
    could not be held by the file: both before a single pixel is read."""
    n_bytes = float(np.prod([float(n) for n in shape])) * np.dtype(dtype).itemsize
    if file_bytes is not None and n_bytes > file_bytes:
        raise bad(
            path,
            f"is truncated or corrupt: its header claims {human_bytes(n_bytes)} of pixels "
            f"({'×'.join(str(int(n)) for n in shape)}) but the file holds {human_bytes(file_bytes)}",
        )
    if memory:
        check_memory(
            f"reading {path}", n_bytes, f"{'×'.join(str(int(n)) for n in shape)} {np.dtype(dtype).name} pixels"
        )


#: Bytes per voxel of the MRC modes (0 int8, 1 int16, 2 float32, 3 complex int16, 4 complex64, 6 uint16,
#: 12 float16, 101 4-bit).
_MRC_MODE_BYTES = {0: 1.0, 1: 2.0, 2: 4.0, 3: 4.0, 4: 8.0, 6: 2.0, 12: 2.0, 101: 0.5}


def _check_mrc_header(path: Path) -> None:
    """Compare the volume an MRC header claims with the file's size, before the reader maps it."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(1024)
    if len(head) < 1024:
        raise bad(path, f"is truncated: {size} bytes, shorter than the 1024-byte MRC header")
    for order in ("<", ">"):
        nx, ny, nz, mode = struct.unpack_from(f"{order}4i", head, 0)
        if mode in _MRC_MODE_BYTES and min(nx, ny, nz) >= 0:
            break
    else:
        raise bad(path, "is not an MRC file (header with an unknown data mode)")
    extended = max(struct.unpack_from(f"{order}i", head, 92)[0], 0)
    claimed = float(nx) * ny * nz * _MRC_MODE_BYTES[mode]
    _check_claim(path, (nz, ny, nx), np.uint8, file_bytes=None)  # memory, in bytes of the smallest mode
    if claimed > size - 1024 - extended:
        raise bad(
            path,
            f"is truncated or corrupt: its header claims {nz}×{ny}×{nx} voxels ({human_bytes(claimed)}) but the "
            f"file holds {human_bytes(max(size - 1024 - extended, 0))} of data",
        )


# --------------------------------------------------------------------------- TIFF


def _stack_from_axes(data: np.ndarray, axes: str, path, rgb: bool) -> np.ndarray:
    """``[T, H, W]`` from a tifffile series with ``axes`` (e.g. ``TYX``, ``YXS``, ``QYXS``).

    Interleaved colour samples (``YXS`` of an RGB page) become grey; planar "RGB" (``SYX``) is
    taken as frames, since that is what ``tifffile.imwrite`` makes of a ``[3, H, W]`` or
    ``[4, H, W]`` grey stack. Every other axis is flattened into frames,
    except a channel axis next to another stack axis (a multi-channel hyperstack), which is refused.
    """
    axes = axes.upper()
    colour = rgb and axes.endswith("S")
    if colour and data.shape[axes.index("S")] in (3, 4):
        data = to_grey(data, axes.index("S"))
        axes = axes.replace("S", "")
    if "Y" not in axes or "X" not in axes:
        if data.ndim < 2:
            raise bad(path, f"is not an image (array shape {data.shape})")
        axes = "Q" * (data.ndim - 2) + "YX"
    stack_sizes = {a: n for a, n in zip(axes, data.shape) if a not in "YX" and n > 1}
    if "C" in stack_sizes and len(stack_sizes) > 1:
        raise bad(path, f"has {stack_sizes['C']} channels; neuradiff reads single-channel (grey) videos")
    order = [i for i, a in enumerate(axes) if a not in "YX"] + [axes.index("Y"), axes.index("X")]
    data = np.transpose(data, order)
    return data.reshape((-1,) + data.shape[-2:])


def _imagej_calibration(tif) -> tuple[float | None, float | None]:
    meta = tif.imagej_metadata or {}
    nm = None
    tag = tif.pages[0].tags.get("XResolution")
    unit = meta.get("unit")
    if tag is not None and unit not in (None, "", "pixel", "pixels"):
        num, den = tag.value
        if num > 0 and den > 0:
            nm = length_to_nm(den / num, unit)
    dt = time_to_s(meta.get("finterval"), meta.get("tunit") or "s")
    return nm, dt


def _ome_calibration(xml: str, n_frames: int):
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, None, None
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return None, None, None
    nm = length_to_nm(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit", "µm"))
    tunit = pixels.get("TimeIncrementUnit", "s")
    dt = time_to_s(pixels.get("TimeIncrement"), tunit)
    deltas = []
    for el in pixels:
        plane = el.tag.rsplit("}", 1)[-1] == "Plane" and el.get("DeltaT") is not None
        if plane and el.get("TheC", "0") == "0" and el.get("TheZ", "0") == "0":
            unit = el.get("DeltaTUnit", "s")
            try:
                deltas.append(float(el.attrib["DeltaT"]) * _TIME_S.get(unit.lower(), np.nan))
            except ValueError:
                deltas = []
                break
    times = None
    if len(deltas) == n_frames and n_frames > 1 and np.all(np.isfinite(deltas)):
        times = np.asarray(deltas) - deltas[0]
        if not np.all(np.diff(times) > 0):
            times = None
    return nm, dt, times


def tiff_series(tif: tifffile.TiffFile, path) -> tuple[list, bool, bool]:
    """The image series of an open TIFF that make its frames (the first series of ImageJ and OME files, else all
    of them), whether its pages are RGB and whether they are uncompressed; pages of different sizes are refused."""
    if not tif.series:
        raise bad(path, "contains no images")
    series = list(tif.series) if not (tif.is_ome or tif.is_imagej) else list(tif.series[:1])
    shapes = {tuple(s.shape) for s in series}
    sizes = {
        (s.shape[s.axes.index("Y")], s.shape[s.axes.index("X")]) if "Y" in s.axes and "X" in s.axes else tuple(s.shape)
        for s in series
    }
    if len(sizes) > 1:
        raise bad(path, f"pages have different sizes {sorted(shapes)}")
    rgb = int(getattr(tif.pages[0], "photometric", 0)) == 2  # PHOTOMETRIC.RGB
    uncompressed = all(int(getattr(p, "compression", 1)) == 1 for p in tif.pages[:8])
    return series, rgb, uncompressed


def tiff_calibration(
    tif: tifffile.TiffFile, n_frames: int
) -> tuple[float | None, float | None, np.ndarray | None, str]:
    """nm/px, frame interval (s), frame times (s) and their source from an open TIFF's ImageJ, OME or FEI
    metadata."""
    nm = dt = times = None
    source = "none"
    if tif.is_imagej:
        nm, dt = _imagej_calibration(tif)
        source = "imagej metadata"
    elif tif.is_ome:
        nm, dt, times = _ome_calibration(tif.ome_metadata or "", n_frames)
        source = "ome"
    elif tif.is_fei and tif.fei_metadata:
        scan = tif.fei_metadata.get("Scan", {}) or {}
        nm = length_to_nm(scan.get("PixelWidth"), "m")
        source = "fei metadata"
    return nm, dt, times, source


def _read_tiff(path: Path) -> tuple[np.ndarray, float | None, float | None, np.ndarray | None, str]:
    with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
        series, rgb, uncompressed = tiff_series(tif, path)
        _check_claim(
            path,
            tuple(series[0].shape) if len(series) == 1 else (sum(int(np.prod(s.shape)) for s in series),),
            series[0].dtype,
            file_bytes=path.stat().st_size if uncompressed else None,
        )
        data = np.concatenate([_stack_from_axes(s.asarray(), s.axes, path, rgb) for s in series])
        nm, dt, times, source = tiff_calibration(tif, len(data))
        if errors:
            raise bad(path, f"is truncated or corrupt ({errors[0].strip()[:160]})")
    return data, nm, dt, times, source


# --------------------------------------------------------------------------- RosettaSciIO


def _rsciio_module(path: Path):
    name = RSCIIO_SUFFIXES[path.suffix.lower()]
    try:
        return importlib.import_module(f"rsciio.{name}")
    except ImportError as exc:
        missing = exc.name or "rsciio"
        if missing.split(".")[0] == "rsciio":
            raise bad(path, f"reading {path.suffix} files needs RosettaSciIO: pip install neuradiff[io]") from None
        raise bad(
            path, f"reading {path.suffix} files needs the package {missing.split('.')[0]}: pip install neuradiff[io]"
        ) from None


def _read_rsciio(path: Path) -> tuple[np.ndarray, float | None, float | None]:
    """Frames, nm/px and frame interval from a microscope file (first image dataset in it)."""
    module = _rsciio_module(path)
    if path.suffix.lower() == ".mrc":
        _check_mrc_header(path)
    try:
        signals = module.file_reader(str(path), lazy=True)  # shapes first: refuse an over-claiming header
    except NeuradiffError:
        raise
    except Exception as exc:
        raise bad(path, f"cannot read this {path.suffix} file ({_short(exc)})") from None
    for sig in signals or []:
        data = sig.get("data")
        if data is None or not hasattr(data, "shape") or not hasattr(data, "dtype"):
            continue
        axes = list(sig.get("axes") or [])
        if data.dtype.names:  # DM RGB images come as a structured dtype
            names = [n for n in ("R", "G", "B") if n in data.dtype.names]
            data = to_grey(np.stack([data[n] for n in names], -1)) if names else data
        if data.ndim < 2 or data.dtype.kind not in "uifb":
            continue
        signal_axes = [a for a in axes if not a.get("navigate", False)]
        if len(signal_axes) != 2 and axes:
            continue
        nm = None
        if signal_axes:
            xaxis = signal_axes[-1]
            nm = length_to_nm(xaxis.get("scale"), xaxis.get("units"))
        dt = None
        nav = [a for a in axes if a.get("navigate", False)]
        if len(nav) == 1:
            dt = time_to_s(nav[0].get("scale"), nav[0].get("units")) if nav[0].get("units") else None
        _check_claim(path, data.shape, data.dtype)
        frames = np.asarray(data).reshape((-1,) + data.shape[-2:])
        return frames, nm, dt
    raise bad(path, "contains no image data")


# --------------------------------------------------------------------------- single images


def _read_image_file(path: Path) -> tuple[np.ndarray, float | None]:
    """One 2-D grey frame (and nm/px when the file says) from an image or microscope file."""
    suffix = path.suffix.lower()
    nm = None
    if suffix in TIFF_SUFFIXES:
        stack, nm, _, _, _ = _read_tiff(path)
    elif suffix in RSCIIO_SUFFIXES:
        stack, nm, _ = _read_rsciio(path)
    else:
        img = np.asarray(iio.imread(path))
        if img.ndim == 3 and img.shape[-1] in (1, 2, 3, 4):
            img = to_grey(img)
        stack = img[None] if img.ndim == 2 else img
    if stack.ndim != 3 or stack.shape[0] != 1:
        raise bad(path, f"holds {stack.shape[0]} frames; a folder must hold one frame per file")
    return stack[0], nm


def _guarded(path: Path, reader, *args):
    """Run ``reader`` and turn any library failure into a one-line NeuradiffError."""
    try:
        return reader(*args)
    except NeuradiffError:
        raise
    except MemoryError:
        raise bad(path, "is too large to read into memory") from None
    except Exception as exc:
        raise bad(
            path, f"cannot be read: truncated, corrupt or not a {path.suffix or 'known'} file ({_short(exc)})"
        ) from None


def _stack_frames(frames: list[np.ndarray], files: list[Path], what: str) -> np.ndarray:
    check_same_frames(frames, files, what, frames[0], files[0].name)
    return np.stack(frames)


# --------------------------------------------------------------------------- folders


_HOUR = re.compile(r"^hour[_ -]?(\d+)$", re.I)
_MINUTE = re.compile(r"^minute[_ -]?(\d+)$", re.I)
_SECOND = re.compile(r"^second[_ -]?(\d+)$", re.I)
_FRAME = re.compile(r"frame[_ -]?(\d+)", re.I)


def _frame_files(folder: Path) -> list[Path]:
    ok = IMAGE_SUFFIXES + tuple(RSCIIO_SUFFIXES)
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in ok),
        key=lambda p: natural_key(p.name),
    )


def _subdirs(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    return sorted((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := pattern.match(p.name)))


def _read_folder(path: Path):
    files = folder_files(path)
    frames, nms = [], []
    for p in files:
        f, nm = read_frame_file(p)
        if not frames:
            _check_claim(path, (len(files),) + f.shape, f.dtype)
        frames.append(f)
        nms.append(nm)
    nm = next((n for n in nms if n is not None), None)
    return _stack_frames(frames, files, f"folder {path}"), files, nm


def _gatan_times(entries: list[tuple[int, int, int, int | None, Path]]) -> np.ndarray:
    """Frame times (s from the first frame) from Hour/Minute/Second folders and frame numbers."""
    per_second: dict[tuple[int, int, int], list[tuple[int | None, Path]]] = {}
    for h, m, s, k, p in entries:
        per_second.setdefault((h, m, s), []).append((k, p))
    fps = max(len(v) for v in per_second.values())
    numbers = [k for _, _, _, k, _ in entries]
    # Frame numbers restart every second (0..fps-1): use them; otherwise use the rank in the second.
    restart = all(k is not None and k < fps for k in numbers)
    times, rank = [], {}
    for h, m, s, k, _ in entries:
        r = rank.get((h, m, s), 0)
        rank[(h, m, s)] = r + 1
        times.append(3600 * h + 60 * m + s + ((k if restart and k is not None else r) / fps))
    times = np.asarray(times, float)
    return times - times[0]


def gatan_files(path: Path) -> tuple[list[Path], np.ndarray]:
    """The frame files of a Gatan in-situ tree (``Hour_*/Minute_*/Second_*``) in time order and their times (s)."""
    entries = []
    for h, hdir in _subdirs(path, _HOUR):
        for m, mdir in _subdirs(hdir, _MINUTE):
            for s, sdir in _subdirs(mdir, _SECOND):
                for p in _frame_files(sdir):
                    mk = _FRAME.search(p.stem)
                    entries.append((h, m, s, int(mk.group(1)) if mk else None, p))
    if not entries:
        raise bad(path, "Gatan in-situ folder (Hour_*/Minute_*/Second_*) holds no frames")
    entries.sort(key=lambda e: (e[0], e[1], e[2], e[3] if e[3] is not None else -1, natural_key(e[4].name)))
    return [e[4] for e in entries], _gatan_times(entries)


def is_gatan_tree(path: Path) -> bool:
    """Whether the folder ``path`` is a Gatan in-situ tree (it holds ``Hour_*`` folders)."""
    return bool(_subdirs(path, _HOUR))


def folder_files(path: Path) -> list[Path]:
    """The frame files of a plain folder, in natural order; a folder without images is refused."""
    files = _frame_files(path)
    if not files:
        raise bad(path, "folder holds no images (png, jpg, tif, dm3/dm4, ...)")
    return files


def read_frame_file(path: Path) -> tuple[np.ndarray, float | None]:
    """One frame ``[H, W]`` (and nm/px when its metadata say) of a folder's image file, refused in one line when
    empty or unreadable."""
    if path.stat().st_size == 0:
        raise bad(path, "is empty (0 bytes)")
    return _guarded(path, _read_image_file, path)


def check_same_frames(frames: list[np.ndarray], files: list[Path], what: str, first: np.ndarray, name: str) -> None:
    """Refuse frames whose size or pixel type differs from ``first`` (the recording's first frame, file ``name``)."""
    for f, p in zip(frames, files):
        if f.shape != first.shape:
            raise bad(
                p,
                f"is {f.shape[1]}x{f.shape[0]} px but {name} is "
                f"{first.shape[1]}x{first.shape[0]} px; all frames in {what} must match",
            )
        if f.dtype != first.dtype:
            raise bad(p, f"has pixel type {f.dtype} but {name} has {first.dtype}; all frames in {what} must match")


def _read_gatan_tree(path: Path):
    files, times = gatan_files(path)
    frames, nm = [], None
    for p in files:
        f, n = _guarded(p, _read_image_file, p)
        frames.append(f)
        nm = nm if nm is not None else n
    return _stack_frames(frames, files, f"folder {path}"), files, nm, times


# --------------------------------------------------------------------------- movies


def _read_movie(path: Path):
    try:
        reader = iio2.get_reader(path, format="FFMPEG")
    except RuntimeError as exc:
        if "ffmpeg" in str(exc).lower() and "find" in str(exc).lower():
            raise bad(path, "reading movies needs ffmpeg: pip install imageio-ffmpeg") from None
        raise
    try:
        meta = reader.get_meta_data()
        fps = meta.get("fps")
        n_claimed, size = meta.get("nframes"), meta.get("size")
        if isinstance(n_claimed, (int, float)) and np.isfinite(n_claimed) and size and len(size) == 2:
            _check_claim(path, (int(n_claimed), int(size[1]), int(size[0])), np.uint8)
        frames = []
        for img in reader.iter_data():
            img = np.asarray(img)
            frames.append(to_grey(img) if img.ndim == 3 else img)
    finally:
        reader.close()
    if not frames:
        raise bad(path, "movie holds no frames")
    dt = 1.0 / float(fps) if fps and np.isfinite(fps) and fps > 0 else None
    return np.stack(frames), dt


# --------------------------------------------------------------------------- public API


def _dispatch(path: Path):
    """frames, names, nm, dt, times, source for any supported input."""
    suffix = path.suffix.lower()
    if path.is_dir():
        if is_gatan_tree(path):
            frames, files, nm, times = _read_gatan_tree(path)
            src = "file names" + (" + dm metadata" if nm is not None else "")
            return frames, [str(p.relative_to(path)) for p in files], nm, None, times, src
        frames, files, nm = _read_folder(path)
        return frames, [p.name for p in files], nm, None, None, "file metadata" if nm else "none"
    if suffix in TIFF_SUFFIXES:
        frames, nm, dt, times, src = _guarded(path, _read_tiff, path)
    elif suffix in RSCIIO_SUFFIXES:
        frames, nm, dt = _guarded(path, _read_rsciio, path)
        times, src = None, f"{suffix[1:]} metadata"
    elif suffix in MOVIE_SUFFIXES:
        frames, dt = _guarded(path, _read_movie, path)
        nm, times, src = None, None, "video fps"
    elif suffix in IMAGE_SUFFIXES:
        frame, nm = _guarded(path, _read_image_file, path)
        frames, dt, times, src = frame[None], None, None, "none"
    else:
        raise bad(
            path,
            f"unsupported file type {path.suffix or '(no extension)'}; use a TIFF "
            "stack, a folder of images, mp4/avi or dm3/dm4/emd/ser/mrc",
        )
    names = [f"{path}#{k}" for k in range(len(frames))]
    return frames, names, nm, dt, times, src


def check_input_path(path) -> Path:
    """``path`` as a Path, refused (one line) when it does not exist or is an empty file."""
    path = Path(path)
    if not path.exists():
        raise bad(path, "no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise bad(path, "is empty (0 bytes)")
    return path


def check_frames(path, shape: tuple[int, ...], dtype) -> None:
    """Refuse frames of ``shape`` ``[T, H, W]`` and ``dtype`` that are not a usable grey video (before reading
    pixels when the shape comes from a header)."""
    dtype = np.dtype(dtype)
    if len(shape) != 3 or 0 in shape:
        raise bad(path, f"holds no usable frames (shape {tuple(shape)})")
    if dtype.kind not in "uifb":
        raise bad(path, f"has unsupported pixel type {dtype}")
    if min(shape[1:]) < MIN_FRAME_PX:
        raise bad(
            path,
            f"frames of {shape[2]}×{shape[1]} px are too small (at least {MIN_FRAME_PX} px a side); "
            f"a stack of tiny frames may have been read as one image",
        )


def resolve_calibration(
    path,
    nm: float | None,
    dt: float | None,
    times: np.ndarray | None,
    src: str,
    *,
    nm_override: float | None = None,
    dt_override: float | None = None,
    conditions: dict[str, np.ndarray] | None = None,
) -> Calibration:
    """The :class:`Calibration` of a recording from what its metadata say (``nm``, ``dt``, ``times`` from
    ``src``) and the user's overrides (checked values, winning over the metadata); metadata outside the physical
    ranges are refused with the option to give instead; ``conditions``: per-frame columns (dose, temperature)
    of a frame-time table."""
    if times is not None:
        dt = float(np.median(np.diff(times))) if len(times) > 1 else dt
        dt = dt if dt and dt > 0 else None
    sources = [src] if (nm is not None or dt is not None or times is not None) else []
    if nm_override is not None:
        nm = nm_override
    elif nm is not None and not NM_PER_PX_RANGE[0] <= nm <= NM_PER_PX_RANGE[1]:
        raise bad(
            path,
            f"metadata give {nm:g} nm per pixel, outside {NM_PER_PX_RANGE[0]:g}–{NM_PER_PX_RANGE[1]:g} "
            "nm; give the pixel size (--nm-per-px)",
        )
    if dt_override is not None:
        dt, times = dt_override, None
    elif dt is not None and not FRAME_INTERVAL_S_RANGE[0] <= dt <= FRAME_INTERVAL_S_RANGE[1]:
        raise bad(
            path,
            f"metadata give {dt:g} s between frames, outside {FRAME_INTERVAL_S_RANGE[0]:g}–"
            f"{FRAME_INTERVAL_S_RANGE[1]:g} s; give the frame interval (--frame-interval)",
        )
    if nm_override is not None or dt_override is not None:
        sources = (
            ["override"]
            if (nm_override is not None and dt_override is not None) or not sources
            else sources + ["override"]
        )
    return Calibration(
        nm_per_px=nm,
        frame_interval_s=dt,
        frame_times_s=times,
        source=" + ".join(sources) if sources else "none",
        conditions=conditions,
    )


def read_video(
    path, *, nm_per_px: float | None = None, frame_interval_s: float | None = None, frame_times=None
) -> Video:
    """Read a TEM video and its calibration.

    Parameters
    ----------
    path : str or Path
        TIFF stack, folder of images, Gatan in-situ folder, mp4/avi, or dm3/dm4/emd/ser/mrc
        (the latter need ``pip install neuradiff[io]``).
    nm_per_px, frame_interval_s : float, optional
        Overrides that win over any metadata (calibration source ``"override"``).
    frame_times : str or Path, optional
        A per-frame time table (CSV: ``frame``, ``time_s``, optional ``dose``, ``temperature``); without it the
        one beside the video is used (``<stem>_frame_times.csv``, or ``frame_times.csv`` in a folder of frames;
        :mod:`~neuradiff.io.frametimes`), else clock times in the frames' file names, else the metadata.

    Returns
    -------
    Video
        ``frames`` ``[T, H, W]`` grey (integer types kept), calibration in nm and s.

    Raises
    ------
    NeuradiffError
        One line naming the file and the problem, for any unreadable input.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "stack.tif"
    >>> tifffile.imwrite(path, np.zeros((3, 32, 32), np.uint16), imagej=True, resolution=(2.0, 2.0),
    ...                  metadata={"axes": "TYX", "unit": "nm", "finterval": 0.5})
    >>> video = read_video(path)
    >>> video.frames.shape, video.calibration.nm_per_px, video.calibration.frame_interval_s
    ((3, 32, 32), 0.5, 0.5)
    """
    nm_override = check_pixel_size("nm_per_px", nm_per_px)
    dt_override = check_frame_interval("frame_interval_s", frame_interval_s)
    path = check_input_path(path)
    try:
        frames, names, nm, dt, times, src = _dispatch(path)
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise bad(path, f"cannot be read ({_short(exc)})") from None
    frames = np.asarray(frames)
    check_frames(path, frames.shape, frames.dtype)
    if frames.dtype == bool:
        frames = frames.astype(np.uint8)
    finite_array(str(path), frames)
    times, src, conditions = resolve_frame_times(path, names, frames.shape[0], times, src, frame_times, dt_override)
    cal = resolve_calibration(
        path, nm, dt, times, src, nm_override=nm_override, dt_override=dt_override, conditions=conditions
    )
    return Video(frames=frames, calibration=cal, names=list(names), path=str(path))


def resolve_frame_times(path: Path, names, n: int, times, src: str, table_path, dt_override):
    """Frame times, their source and per-frame conditions: a time table (given or beside the video) wins over
    clock times in file names, which win over the metadata's; an explicit frame interval wins over all."""
    if table_path is not None and dt_override is not None:
        raise NeuradiffError("give a frame interval or a frame-time table, not both")
    if dt_override is not None:
        return times, src, None
    table = read_frame_table(table_path, n) if table_path is not None else find_frame_table(path, n)
    if table is not None:
        return table.time_s, f"time table {table.source}", table.columns or None
    if times is None and path.is_dir():
        from_names = times_from_names(names)
        if from_names is not None:
            return from_names, "file names", None
    return times, src, None


def read_calibration(path) -> Calibration:
    """The calibration stored in a TIFF stack's metadata (ImageJ, OME), without reading its pixels; an empty
    :class:`Calibration` for any other file or when the metadata say nothing.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "masks.tif"
    >>> tifffile.imwrite(path, np.zeros((2, 8, 8), np.uint8), imagej=True, resolution=(4.0, 4.0),
    ...                  metadata={"axes": "TYX", "unit": "nm", "finterval": 3.0})
    >>> cal = read_calibration(path)
    >>> cal.nm_per_px, cal.frame_interval_s, cal.source
    (0.25, 3.0, 'imagej metadata')
    """
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in TIFF_SUFFIXES:
        return Calibration()
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_imagej:
                nm, dt = _imagej_calibration(tif)
                times, source = None, "imagej metadata"
            elif tif.is_ome:
                n = tif.series[0].shape[0] if tif.series and len(tif.series[0].shape) > 2 else 1
                nm, dt, times = _ome_calibration(tif.ome_metadata or "", n)
                source = "ome"
            else:
                return Calibration()
    except Exception as exc:
        raise bad(path, f"cannot be read ({_short(exc)})") from None
    if nm is None and dt is None and times is None:
        return Calibration()
    return Calibration(nm_per_px=nm, frame_interval_s=dt, frame_times_s=times, source=source)


def normalise_frames(frames) -> np.ndarray:
    """Frames as float32 in ``[0, 1]``.

    Integer types are scaled by their dtype range (uint8 by 255, uint16 by 65535); floats by a
    robust min/max (0.5 and 99.5 percentiles of the whole stack, then clipped). NaN becomes 0.

    Parameters
    ----------
    frames : array_like
        ``[T, H, W]`` or ``[H, W]``.
    """
    a = np.asarray(frames)
    if a.dtype == bool:
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return ((a.astype(np.float64) - info.min) / (float(info.max) - info.min)).astype(np.float32)
    a = a.astype(np.float32)
    flat = a.ravel()
    step = max(1, flat.size // 2_000_000)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return np.zeros_like(a)
    lo, hi = np.percentile(sample, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        return np.zeros_like(a)
    out = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).astype(np.float32)


__all__ = [
    "Calibration",
    "Video",
    "length_to_nm",
    "natural_key",
    "normalise_frames",
    "read_calibration",
    "read_video",
    "time_to_s",
    "to_grey",
]
