"""Writing image stacks that other tools read with their calibration: ImageJ/Fiji hyperstacks (``TYX``, pixel
size in nm, frame interval in s) that also carry the DigitalMicrograph scale tags RosettaSciIO (HyperSpy) reads,
so both show time, height and width in nm and s.

ImageJ stores only one frame interval; uneven frame times are written to the tables and ``provenance.json``
beside the stack, and the stack gets their mean interval.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path
from neuradiff.io.video import Calibration

#: Pixel types ImageJ reads; anything else is converted (bool -> uint8, other integers -> uint16 when they fit,
#: floats -> float32).
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


def _imagej_array(data: np.ndarray) -> np.ndarray:
    if data.dtype == bool:
        return data.astype(np.uint8)
    if data.dtype in IMAGEJ_DTYPES:
        return data
    if data.dtype.kind in "ui":
        lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
        if lo >= 0 and hi <= 255:
            return data.astype(np.uint8)
        if lo >= 0 and hi <= 65535:
            return data.astype(np.uint16)
    return data.astype(np.float32)


def frame_interval(calibration: Calibration, n_frames: int) -> float | None:
    """The one interval (s) a stack of ``n_frames`` can carry: the constant interval, else the mean of the frame
    times, else ``None``."""
    times = calibration.times_s(n_frames)
    if times is not None and n_frames > 1:
        step = float((times[-1] - times[0]) / (n_frames - 1))
        return step if step > 0 else None
    return calibration.frame_interval_s


def _imagej_options(calibration: Calibration | None, n_frames: int) -> dict:
    """tifffile keyword arguments of a calibrated ImageJ hyperstack of ``n_frames`` frames."""
    cal = calibration or Calibration()
    nm = cal.nm_per_px
    dt = frame_interval(cal, n_frames)
    metadata: dict = {"axes": "TYX"}
    kwargs: dict = {}
    # DigitalMicrograph scale tags (x, y: the frame; z: the stack axis), as RosettaSciIO writes and reads them.
    extratags: list[tuple] = []
    if nm is not None:
        metadata["unit"] = "nm"
        kwargs["resolution"] = (1.0 / nm, 1.0 / nm)
        extratags += [
            (65003, "s", 0, "nm", False),
            (65004, "s", 0, "nm", False),
            (65009, "d", 1, float(nm), False),
            (65010, "d", 1, float(nm), False),
        ]
    if dt is not None:
        metadata["finterval"] = float(dt)
        metadata["tunit"] = "s"
        extratags += [(65005, "s", 0, "s", False), (65011, "d", 1, float(dt), False)]
    return {"imagej": True, "metadata": metadata, "extratags": extratags, **kwargs}


def write_stack(path: str | Path, data: np.ndarray, calibration: Calibration | None = None) -> Path:
    """Write ``data`` ``[T, H, W]`` as a calibrated ImageJ hyperstack (atomically).

    Parameters
    ----------
    path : str or Path
        The ``.tif`` file to write.
    data : ndarray
        ``[T, H, W]`` frames; kept as uint8, uint16 or float32 (bool becomes uint8, other types are converted).
    calibration : Calibration, optional
        Pixel size (nm) and frame timing (s); unknown values are left out (ImageJ then shows pixels/frames).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from neuradiff.io.video import read_video
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "masks.tif"
    >>> _ = write_stack(path, np.zeros((4, 16, 16), bool), Calibration(nm_per_px=0.5, frame_interval_s=2.0))
    >>> cal = read_video(path).calibration
    >>> cal.nm_per_px, cal.frame_interval_s
    (0.5, 2.0)
    """
    arr = np.asarray(data)
    if arr.ndim != 3 or 0 in arr.shape:
        raise NeuradiffError(f"{path}: a stack must be [T, H, W] frames, got shape {arr.shape}")
    arr = _imagej_array(arr)
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, **_imagej_options(calibration, arr.shape[0]))
    return path


class StackWriter:
    """Write a calibrated ImageJ hyperstack chunk by chunk, in memory bounded by a few chunks: the same file
    :func:`write_stack` writes for the whole array, byte for byte, appearing (atomically) at :meth:`close`.

    ``tifffile.imwrite`` runs in a thread that takes the chunks from a short queue as they are written.

    Parameters
    ----------
    path : str or Path
        The ``.tif`` file to write.
    n_frames : int
        Frames the stack will hold (all must be written before :meth:`close`).
    frame_shape : (int, int)
        ``(H, W)`` px.
    dtype : numpy dtype
        uint8, uint16 or float32.
    calibration : Calibration, optional

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "eta.tif"
    >>> with StackWriter(path, 5, (8, 8), np.float32, Calibration(nm_per_px=0.5)) as writer:
    ...     writer.write(np.zeros((3, 8, 8), np.float32)); writer.write(np.ones((2, 8, 8), np.float32))
    >>> tifffile.imread(path)[:, 0, 0].tolist()
    [0.0, 0.0, 0.0, 1.0, 1.0]
    """

    def __init__(
        self, path: str | Path, n_frames: int, frame_shape: tuple[int, int], dtype, calibration: Calibration | None
    ):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if self.dtype not in [np.dtype(d) for d in IMAGEJ_DTYPES]:
            raise NeuradiffError(f"{path}: a stack is written as uint8, uint16 or float32, not {self.dtype}")
        if n_frames < 1 or len(frame_shape) != 2 or min(frame_shape) < 1:
            raise NeuradiffError(f"{path}: a stack must be [T, H, W] frames, got {n_frames} × {tuple(frame_shape)}")
        self.n_frames, self.frame_shape = int(n_frames), (int(frame_shape[0]), int(frame_shape[1]))
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        options = _imagej_options(calibration, self.n_frames)
        self._thread = threading.Thread(target=self._run, args=(options,), daemon=True)
        self._thread.start()

    def _chunks(self) -> Iterator[np.ndarray]:
        while (item := self._queue.get()) is not None:
            yield item

    def _run(self, options: dict) -> None:
        try:
            tifffile.imwrite(
                self._tmp, data=self._chunks(), shape=(self.n_frames, *self.frame_shape), dtype=self.dtype, **options
            )
        except BaseException as exc:  # handed to the writing thread at its next call (it polls the queue)
            self._error = exc

    def _put(self, item) -> None:
        while True:
            if self._error is not None:
                raise NeuradiffError(f"{self.path}: writing failed ({self._error})") from self._error
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def write(self, frames: np.ndarray) -> None:
        """Append ``frames`` ``[n, H, W]`` (of the writer's pixel type)."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.frame_shape or frames.dtype != self.dtype:
            raise NeuradiffError(
                f"{self.path}: chunk of {frames.shape} {frames.dtype} does not match the stack's "
                f"{self.frame_shape} {self.dtype} frames"
            )
        if self.written + frames.shape[0] > self.n_frames:
            raise NeuradiffError(f"{self.path}: more than the {self.n_frames} frames the stack was opened for")
        if frames.shape[0]:
            self._put(np.ascontiguousarray(frames))
            self.written += frames.shape[0]

    def close(self) -> Path:
        """Finish the file and move it into place; every frame must have been written."""
        if self.written != self.n_frames:
            self.abort()
            raise NeuradiffError(f"{self.path}: {self.written} of {self.n_frames} frames written")
        self._put(None)
        self._thread.join()
        if self._error is not None:
            self._atomic.__exit__(type(self._error), self._error, None)
            raise NeuradiffError(f"{self.path}: writing failed ({self._error})") from self._error
        self._atomic.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the partial file."""
        if self._thread.is_alive():
            self._error = self._error or NeuradiffError("aborted")
            self._queue.put(None)
            self._thread.join()
        with contextlib.suppress(BaseException):
            err = NeuradiffError(f"{self.path}: aborted")
            self._atomic.__exit__(NeuradiffError, err, None)

    def __enter__(self) -> StackWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


__all__ = ["StackWriter", "frame_interval", "write_stack"]
