"""Recordings read lazily, a chunk of frames at a time, in memory that does not grow with their length.

:func:`open_video` gives a :class:`VideoSource`: the number of frames, their size, pixel type and calibration
from the headers, then frames on demand. TIFF / OME-TIFF / ImageJ stacks are read straight from the file when
uncompressed and contiguous (positioned reads, not a memory map, so resident memory does not grow with the frames
read) and page by page otherwise; folders (and Gatan in-situ trees) file by file; movies are
decoded chunk by chunk (imageio's ffmpeg reader); microscope formats through RosettaSciIO's lazy (Dask) arrays.
Anything else (colour or multi-series TIFF, single images) is read whole with :func:`~neuradiff.io.video.
read_video` and served from memory. Every chunk passes the same checks as a whole read (size and pixel type of
every frame, finite pixels).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import imageio.v2 as iio2
import numpy as np
import tifffile

from neuradiff.core.checks import check_frame_interval, check_pixel_size, finite_array
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.video import (
    MOVIE_SUFFIXES,
    RSCIIO_SUFFIXES,
    TIFF_SUFFIXES,
    Calibration,
    _check_claim,
    _guarded,
    _rsciio_module,
    _short,
    _tifffile_errors,
    bad,
    check_frames,
    check_input_path,
    check_same_frames,
    folder_files,
    gatan_files,
    is_gatan_tree,
    length_to_nm,
    read_frame_file,
    read_video,
    resolve_calibration,
    resolve_frame_times,
    tiff_calibration,
    tiff_series,
    time_to_s,
    to_grey,
)

#: Frames per chunk when none is given.
DEFAULT_CHUNK = 64


_Stack = TypeVar("_Stack", bound="FrameStack")


class FrameStack:
    """Shape, length, frame indexing and chunks of a ``[T, H, W]`` stack whose frames a subclass reads on demand
    with ``read(start, stop)``; it also closes as a context manager."""

    n_frames: int
    frame_shape: tuple[int, int]

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the frames are read from."""

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        return (self.n_frames, *self.frame_shape)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, key) -> np.ndarray:
        """One frame ``[H, W]`` (an int) or frames ``[n, H, W]`` (a slice with step 1)."""
        if isinstance(key, (int, np.integer)):
            k = int(key) + (self.n_frames if key < 0 else 0)
            if not 0 <= k < self.n_frames:
                raise IndexError(f"frame {key} is out of range for {self.n_frames} frames")
            return self.read(k, k + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_frames)
            if step != 1:
                return np.stack([self[k] for k in range(start, stop, step)]) if stop > start else self.read(0, 0)
            return self.read(start, stop)
        raise TypeError(f"a video source is indexed by a frame number or a slice, not {type(key).__name__}")

    def chunks(
        self, size: int = DEFAULT_CHUNK, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(first frame index, frames [n, H, W])`` for consecutive chunks of at most ``size`` frames, from frame
        ``start`` up to (not including) ``stop`` (default: the last frame)."""
        if size < 1:
            raise ValueError(f"chunk size must be >= 1, got {size}")
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        for first in range(start, stop, size):
            yield first, self.read(first, min(first + size, stop))

    def __enter__(self: _Stack) -> _Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class VideoSource(FrameStack):
    """A recording whose frames are read on demand.

    Attributes
    ----------
    path : str
    n_frames : int
    frame_shape : (int, int)
        ``(H, W)`` px.
    dtype : numpy dtype
        Pixel type of the frames served (bool files are served as uint8).
    calibration : Calibration
    names : list of str
        ``[T]`` source of each frame (file names for folders, ``"path#k"`` for stacks).
    kind : str
        How frames are read: ``"contiguous"``, ``"pages"``, ``"files"``, ``"movie"``, ``"lazy"`` or ``"memory"``.
    """

    path: str
    n_frames: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    calibration: Calibration
    names: list[str]
    kind: str
    _read: Callable[[int, int], np.ndarray] = field(repr=False)
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start`` to ``stop - 1`` as one ``[stop - start, H, W]`` array (checked: size, type, finite)."""
        start, stop = max(0, int(start)), min(self.n_frames, int(stop))
        if stop <= start:
            return np.zeros((0, *self.frame_shape), self.dtype)
        frames = np.asarray(self._read(start, stop))
        if frames.dtype == bool:
            frames = frames.astype(np.uint8)
        if frames.shape != (stop - start, *self.frame_shape) or frames.dtype != self.dtype:
            raise bad(
                self.path,
                f"frames {start}–{stop - 1} are {frames.shape[1:]} {frames.dtype}, not {self.frame_shape} "
                f"{self.dtype} like the first frame; all frames must match",
            )
        finite_array(f"{self.path} (frames {start}–{stop - 1})", frames)
        return frames

    def close(self) -> None:
        """Release the file (open file, TIFF or movie reader)."""
        self._close()


# --------------------------------------------------------------------------- TIFF


def _contiguous_reader(path: Path, offset: int, n: int, shape: tuple[int, int], stored: np.dtype):
    """``(read, close)`` for ``n`` frames stored one after the other from byte ``offset`` of ``path``.

    Frames are read with ordinary positioned reads, not a memory map: pages of a mapped file that have been
    touched count towards the process's resident memory until the kernel drops them, so mapping a long
    recording would make the resident size grow with the part read so far.
    """
    handle = open(path, "rb")  # noqa: SIM115 - kept open until the source is closed
    lock = threading.Lock()
    frame_items = shape[0] * shape[1]

    def read(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, *shape), stored)
        with lock:
            handle.seek(offset + a * frame_items * stored.itemsize)
            got = handle.readinto(out.reshape(-1).view(np.uint8).data)
        if got != out.nbytes:
            raise bad(path, f"is truncated: frames {a}–{b - 1} end beyond the end of the file")
        return out if stored.isnative else out.astype(stored.newbyteorder("="))

    return read, handle.close


def _tiff_source(path: Path):
    """(n, shape, dtype, read, close, kind, nm, dt, times, src) of a single-series grey TIFF, or None when it is not
    one (the caller then reads it whole)."""
    with _tifffile_errors() as errors:
        tif = tifffile.TiffFile(path)
    try:
        with _tifffile_errors() as more:  # tifffile parses the series (and logs a truncated one) on first use
            series, rgb, uncompressed = tiff_series(tif, path)
        if errors or more:  # what reading it whole would say: refused before anything is written
            raise bad(path, f"is truncated or corrupt ({(errors or more)[0].strip()[:160]})")
        s = series[0]
        axes = s.axes.upper()
        if len(series) != 1 or rgb or not axes.endswith("YX") or "S" in axes:
            tif.close()
            return None
        stack_sizes = {a: n for a, n in zip(axes[:-2], s.shape[:-2]) if n > 1}
        if "C" in stack_sizes and len(stack_sizes) > 1:
            raise bad(path, f"has {stack_sizes['C']} channels; neuradiff reads single-channel (grey) videos")
        n = int(np.prod(s.shape[:-2], dtype=np.int64))
        shape = (int(s.shape[-2]), int(s.shape[-1]))
        _check_claim(path, (n, *shape), s.dtype, file_bytes=path.stat().st_size if uncompressed else None, memory=False)
        nm, dt, times, src = tiff_calibration(tif, n)
        offset = s.dataoffset if uncompressed else None
        if offset is not None:  # uncompressed and contiguous: chunks read straight from the file
            stored = np.dtype(tif.byteorder + s.dtype.char)
            tif.close()
            read, close = _contiguous_reader(path, int(offset), n, shape, stored)
            return n, shape, stored.newbyteorder("="), read, close, "contiguous", nm, dt, times, src

        def read_pages(a: int, b: int) -> np.ndarray:
            with _tifffile_errors() as errs:
                out = tif.asarray(key=slice(a, b), series=0)
            if errs:
                raise bad(path, f"is truncated or corrupt ({errs[0].strip()[:160]})")
            return np.asarray(out).reshape((b - a, *shape))

        return n, shape, s.dtype, read_pages, tif.close, "pages", nm, dt, times, src
    except BaseException:
        tif.close()
        raise


# --------------------------------------------------------------------------- folders


def _files_source(path: Path, files: list[Path], names: list[str]):
    first, nm = read_frame_file(files[0])
    what = f"folder {path}"

    def read_files(a: int, b: int) -> np.ndarray:
        frames = [first if k == 0 else read_frame_file(files[k])[0] for k in range(a, b)]
        check_same_frames(frames, files[a:b], what, first, files[0].name)
        return np.stack(frames)

    return len(files), first.shape, first.dtype, read_files, names, nm


# --------------------------------------------------------------------------- movies


class _Movie:
    """Sequential chunk decoding of a movie (imageio's ffmpeg reader); reopened when asked for earlier frames."""

    def __init__(self, path: Path):
        self.path = path
        self.reader = None
        self.next = 0
        self._open()
        meta = self.reader.get_meta_data() if self.reader is not None else {}
        self.fps = meta.get("fps")
        assert self.reader is not None
        self.n = int(self.reader.count_frames())
        first = self._frame(self.reader.get_data(0))
        self.shape, self.dtype = first.shape, first.dtype
        self._open()

    def _open(self) -> None:
        self.close()
        try:
            self.reader = iio2.get_reader(self.path, format="FFMPEG")
        except RuntimeError as exc:
            if "ffmpeg" in str(exc).lower() and "find" in str(exc).lower():
                raise bad(self.path, "reading movies needs ffmpeg: pip install imageio-ffmpeg") from None
            raise
        self.iterator = self.reader.iter_data()
        self.next = 0

    @staticmethod
    def _frame(img) -> np.ndarray:
        img = np.asarray(img)
        return to_grey(img) if img.ndim == 3 else img

    def read(self, a: int, b: int) -> np.ndarray:
        if a < self.next:
            self._open()
        out = []
        while self.next < b:
            try:
                img = next(self.iterator)  # pyright: ignore[reportArgumentType]
            except StopIteration:
                raise bad(self.path, f"movie ends after {self.next} frames, before frame {b - 1}") from None
            if self.next >= a:
                out.append(self._frame(img))
            self.next += 1
        return np.stack(out)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


# --------------------------------------------------------------------------- RosettaSciIO


def _rsciio_source(path: Path):
    """(data, nm, dt) of the first grey image dataset of a microscope file as a lazy array ``[T, H, W]``, or None."""
    module = _rsciio_module(path)
    signals = module.file_reader(str(path), lazy=True)
    for sig in signals or []:
        data = sig.get("data")
        if data is None or not hasattr(data, "shape") or data.dtype.names or data.ndim < 2:
            continue
        if data.dtype.kind not in "uifb":
            continue
        axes = list(sig.get("axes") or [])
        signal_axes = [a for a in axes if not a.get("navigate", False)]
        if len(signal_axes) != 2 and axes:
            continue
        nm = length_to_nm(signal_axes[-1].get("scale"), signal_axes[-1].get("units")) if signal_axes else None
        nav = [a for a in axes if a.get("navigate", False)]
        dt = None
        if len(nav) == 1 and nav[0].get("units"):
            dt = time_to_s(nav[0].get("scale"), nav[0].get("units"))
        return data.reshape((-1,) + tuple(data.shape[-2:])), nm, dt
    return None


# --------------------------------------------------------------------------- public API


def open_video(
    path,
    *,
    nm_per_px: float | None = None,
    frame_interval_s: float | None = None,
    frame_times=None,
    in_memory: bool = False,
) -> VideoSource:
    """Open a recording for reading chunk by chunk: frames stay on disk until asked for.

    Parameters
    ----------
    path : str or Path
        Any input :func:`~neuradiff.io.video.read_video` reads.
    nm_per_px, frame_interval_s : float, optional
        Overrides that win over any metadata (as in ``read_video``).
    frame_times : str or Path, optional
        A per-frame time table (as in ``read_video``; without it the one beside the video, else clock times in
        file names, else the metadata).
    in_memory : bool
        Read the whole recording now (``read_video``) and serve it from memory.

    Returns
    -------
    VideoSource
        Close it (or use it as a context manager) to release the file.

    Raises
    ------
    NeuradiffError
        One line naming the file and the problem (the same checks as ``read_video``; problems in later frames
        are raised when those frames are read).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "stack.tif"
    >>> tifffile.imwrite(path, np.arange(5 * 32 * 32, dtype=np.uint16).reshape(5, 32, 32), imagej=True,
    ...                  resolution=(2.0, 2.0), metadata={"axes": "TYX", "unit": "nm", "finterval": 0.5})
    >>> with open_video(path) as video:
    ...     video.shape, video.kind, video.calibration.nm_per_px, [k for k, c in video.chunks(2)]
    ((5, 32, 32), 'contiguous', 0.5, [0, 2, 4])
    """
    nm_override = check_pixel_size("nm_per_px", nm_per_px)
    dt_override = check_frame_interval("frame_interval_s", frame_interval_s)
    path = check_input_path(path)
    suffix = path.suffix.lower()
    times = None
    close: Callable[[], None] = lambda: None  # noqa: E731
    opened: Any = None
    try:
        if in_memory:
            opened = None
        elif path.is_dir():
            if is_gatan_tree(path):
                files, times = gatan_files(path)
                n, shape, dtype, read, names, nm = _files_source(path, files, [str(p.relative_to(path)) for p in files])
                dt, src = None, "file names" + (" + dm metadata" if nm is not None else "")
            else:
                files = folder_files(path)
                n, shape, dtype, read, names, nm = _files_source(path, files, [p.name for p in files])
                dt, src = None, "file metadata" if nm else "none"
            opened = (n, shape, dtype, read, close, "files", nm, dt, times, src, names)
        elif suffix in TIFF_SUFFIXES:
            got = _guarded(path, _tiff_source, path)
            if got is not None:
                opened = (*got, [f"{path}#{k}" for k in range(got[0])])
        elif suffix in MOVIE_SUFFIXES:
            movie = _guarded(path, _Movie, path)
            fps = movie.fps
            dt = 1.0 / float(fps) if fps and np.isfinite(fps) and fps > 0 else None
            names = [f"{path}#{k}" for k in range(movie.n)]
            opened = (movie.n, movie.shape, movie.dtype, movie.read, movie.close, "movie", None, dt, None, "video fps")
            opened = (*opened, names)
        elif suffix in RSCIIO_SUFFIXES and suffix != ".mrc":
            got = _guarded(path, _rsciio_source, path)
            if got is not None:
                data, nm, dt = got
                n = int(data.shape[0])

                def read_lazy(a: int, b: int) -> np.ndarray:
                    try:
                        return np.asarray(data[a:b])
                    except Exception as exc:
                        raise bad(path, f"cannot be read: truncated or corrupt ({_short(exc)})") from None

                opened = (n, tuple(data.shape[1:]), data.dtype, read_lazy, close, "lazy", nm, dt, None)
                opened = (*opened, f"{suffix[1:]} metadata", [f"{path}#{k}" for k in range(n)])
    except (PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        raise bad(path, f"cannot be read ({_short(exc)})") from None
    if opened is None:  # everything else: read whole, served from memory
        video = read_video(path, nm_per_px=nm_per_px, frame_interval_s=frame_interval_s, frame_times=frame_times)
        frames = video.frames
        return VideoSource(
            path=str(path),
            n_frames=frames.shape[0],
            frame_shape=(frames.shape[1], frames.shape[2]),
            dtype=frames.dtype,
            calibration=video.calibration,
            names=video.names,
            kind="memory",
            _read=lambda a, b: frames[a:b],
        )
    n, shape, dtype, read, close, kind, nm, dt, times, src, names = opened
    try:
        check_frames(path, (n, *shape), dtype)
        times, src, conditions = resolve_frame_times(path, names, n, times, src, frame_times, dt_override)
        cal = resolve_calibration(
            path, nm, dt, times, src, nm_override=nm_override, dt_override=dt_override, conditions=conditions
        )
    except NeuradiffError:
        close()
        raise
    dtype = np.dtype(np.uint8) if np.dtype(dtype) == bool else np.dtype(dtype)
    return VideoSource(
        path=str(path),
        n_frames=int(n),
        frame_shape=(int(shape[0]), int(shape[1])),
        dtype=dtype,
        calibration=cal,
        names=list(names),
        kind=kind,
        _read=read,
        _close=close,
    )


__all__ = ["DEFAULT_CHUNK", "VideoSource", "open_video"]
