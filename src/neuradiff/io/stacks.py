"""Writing image stacks that other tools read with their calibration: ImageJ/Fiji hyperstacks (``TYX``, pixel
size in nm, frame interval in s) that also carry the DigitalMicrograph scale tags RosettaSciIO (HyperSpy) reads,
so both show time, height and width in nm and s.

ImageJ stores only one frame interval; uneven frame times are written to the tables and ``provenance.json``
beside the stack, and the stack gets their mean interval.
"""

from __future__ import annotations

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
    cal = calibration or Calibration()
    nm = cal.nm_per_px
    dt = frame_interval(cal, arr.shape[0])
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
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, metadata=metadata, extratags=extratags, **kwargs)
    return path


__all__ = ["frame_interval", "write_stack"]
