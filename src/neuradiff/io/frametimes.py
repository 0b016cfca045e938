"""Frame times from where recordings keep them besides the image metadata: clock times written in flat file names
(``..._Hour_00_Minute_07_Second_05_Frame_0003.dm4``, ``..._00h07m05.250s_...``) and a per-frame time table
(a CSV sidecar with the columns ``frame``, ``time_s`` and optionally ``dose`` and ``temperature``).

The sidecar beside a video file ``movie.tif`` is ``movie_frame_times.csv``; inside a folder of frames it is
``frame_times.csv``. Times are seconds from the first frame.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuradiff.core.errors import NeuradiffError

#: File name of the time table inside a folder of frames.
FOLDER_SIDECAR = "frame_times.csv"
#: Suffix of the time table beside a video file (``movie.tif`` → ``movie_frame_times.csv``).
FILE_SIDECAR_SUFFIX = "_frame_times.csv"

_SEP = r"[_\- .]?"
_CLOCK_WORDS = re.compile(
    rf"hours?{_SEP}(\d+){_SEP}minutes?{_SEP}(\d+){_SEP}seconds?{_SEP}(\d+(?:[.,]\d+)?)"
    rf"(?:{_SEP}(?:(?:milli(?:second)?s?|ms){_SEP}(\d+)|frames?{_SEP}(\d+)))?",
    re.I,
)
_CLOCK_UNITS = re.compile(r"(?<![0-9a-z])(\d+)h(\d+)m(\d+(?:[.,]\d+)?)s(?![a-z])", re.I)


@dataclass(frozen=True)
class FrameTable:
    """Per-frame times and conditions of a recording.

    Attributes
    ----------
    time_s : ndarray
        ``[T]`` seconds from the first frame, increasing.
    columns : dict of str to ndarray
        Further per-frame columns (``dose``, ``temperature`` or their unit-suffixed forms such as
        ``dose_dpa``, ``temperature_C``), ``[T]`` floats.
    source : str
        Where the times come from (a file name, or ``"file names"``).
    """

    time_s: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""


def clock_seconds(name: str) -> tuple[float, int | None] | None:
    """Clock time in s (and the frame number within the second, when named) from one file name, else None.

    Examples
    --------
    >>> clock_seconds("in-situ_Hour_00_Minute_07_Second_05_Frame_0003.dm4")
    (425.0, 3)
    >>> clock_seconds("run2_01h02m03.5s.tif")
    (3723.5, None)
    >>> clock_seconds("frame_0001.tif") is None
    True
    """
    stem = Path(str(name)).name
    m = _CLOCK_WORDS.search(stem)
    if m:
        h, mi, s, ms, frame = m.groups()
        seconds = 3600 * int(h) + 60 * int(mi) + float(s.replace(",", "."))
        if ms is not None:
            seconds += int(ms) / 1000.0
        return seconds, (int(frame) if frame is not None else None)
    m = _CLOCK_UNITS.search(stem)
    if m:
        h, mi, s = m.groups()
        return 3600 * int(h) + 60 * int(mi) + float(s.replace(",", ".")), None
    return None


def times_from_names(names: Sequence[str]) -> np.ndarray | None:
    """Frame times (s from the first frame) from clock times in the frames' file names, or None unless every name
    holds one.

    Frames sharing a whole second are spread evenly over it: by their frame number when the numbers restart every
    second, else by their order. Times that run backwards (a recording over midnight, mixed names) give None.

    Examples
    --------
    >>> times_from_names(["a_Hour_00_Minute_00_Second_10.tif", "a_Hour_00_Minute_00_Second_59.tif",
    ...                   "a_Hour_00_Minute_02_Second_16.tif"]).tolist()
    [0.0, 49.0, 126.0]
    """
    parsed = [clock_seconds(n) for n in names]
    if not parsed or any(p is None for p in parsed):
        return None
    clock = [p for p in parsed if p is not None]
    whole = [int(np.floor(s)) for s, _ in clock]
    per_second: dict[int, int] = {}
    for w in whole:
        per_second[w] = per_second.get(w, 0) + 1
    fps = max(per_second.values())
    numbers = [k for _, k in clock]
    restart = fps > 1 and all(k is not None and k < fps for k in numbers)
    rank: dict[int, int] = {}
    times = []
    for (s, k), w in zip(clock, whole):
        r = rank.get(w, 0)
        rank[w] = r + 1
        if fps > 1 and s == w:  # several frames in a second named by the whole second only
            s = w + ((k if restart and k is not None else r) / fps)
        times.append(s)
    out = np.asarray(times, float) - times[0]
    if len(out) > 1 and np.any(np.diff(out) <= 0):
        return None
    return out


def sidecar_path(video_path: str | Path) -> Path:
    """Where a video's time table is looked for: ``frame_times.csv`` in a folder of frames, else
    ``<stem>_frame_times.csv`` beside the file."""
    p = Path(video_path)
    return p / FOLDER_SIDECAR if p.is_dir() else p.with_name(p.stem + FILE_SIDECAR_SUFFIX)


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise NeuradiffError(f"{where}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise NeuradiffError(f"{where}: {text!r} is not a finite number")
    return value


def read_frame_table(path: str | Path, n_frames: int | None = None) -> FrameTable:
    """Read a per-frame time table (CSV: ``frame``, ``time_s``, optional ``dose*`` and ``temperature*``).

    Parameters
    ----------
    path : path
        The CSV file. ``frame`` counts from 0 and lists every frame once (in any order); ``time_s`` increases with
        the frame; ``time`` is read as seconds too. Other columns than dose and temperature are refused, so that a
        misspelt header is not silently dropped.
    n_frames : int, optional
        The video's number of frames: the table must list exactly these.

    Returns
    -------
    FrameTable
        Times from the first frame (the table's first time is subtracted).

    Raises
    ------
    NeuradiffError
        One line naming the file, the row or column, and the problem.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "movie_frame_times.csv"
    >>> _ = p.write_text("frame,time_s,dose_dpa\\n0,12,0.1\\n1,61,0.2\\n2,138,0.3\\n")
    >>> t = read_frame_table(p, 3)
    >>> t.time_s.tolist(), t.columns["dose_dpa"].tolist()
    ([0.0, 49.0, 126.0], [0.1, 0.2, 0.3])
    """
    path = Path(path)
    if not path.is_file():
        raise NeuradiffError(f"{path}: no such time table")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise NeuradiffError(f"{path}: is not a text (CSV) file") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise NeuradiffError(f"{path}: needs a header (frame,time_s[,dose][,temperature]) and one row per frame")
    header = [h.strip() for h in rows[0]]
    keys = [h.lower() for h in header]
    time_key = "time_s" if "time_s" in keys else "time" if "time" in keys else None
    if "frame" not in keys or time_key is None:
        raise NeuradiffError(f"{path}: the header {','.join(header)} lacks 'frame' and 'time_s'")
    extra = [h for h, k in zip(header, keys) if k not in ("frame", time_key)]
    for h in extra:
        if not h.lower().startswith(("dose", "temperature")):
            raise NeuradiffError(f"{path}: unknown column {h!r} (frame, time_s, dose*, temperature* are read)")
    if len(set(keys)) != len(keys):
        raise NeuradiffError(f"{path}: a column is named twice in {','.join(header)}")
    values: dict[str, list[float]] = {h: [] for h in header}
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise NeuradiffError(f"{path} line {k}: {len(row)} values for {len(header)} columns")
        for h, cell in zip(header, row):
            values[h].append(_number(cell.strip(), f"{path} line {k}, column {h}"))
    frame_col = header[keys.index("frame")]
    frames = np.asarray(values[frame_col])
    if np.any(frames != np.round(frames)) or np.any(frames < 0):
        raise NeuradiffError(f"{path}: frame numbers must be whole numbers from 0")
    order = np.argsort(frames, kind="stable")
    frames = frames[order].astype(int)
    if not np.array_equal(frames, np.arange(len(frames))):
        missing = sorted(set(range(int(frames.max()) + 1)) - set(frames.tolist()))
        what = f"frame {missing[0]} is missing" if missing else "a frame is listed twice"
        raise NeuradiffError(f"{path}: {what}; list every frame 0, 1, 2, ... once")
    if n_frames is not None and len(frames) != n_frames:
        raise NeuradiffError(f"{path}: lists {len(frames)} frames but the video has {n_frames}")
    times = np.asarray(values[header[keys.index(time_key)]])[order]
    if len(times) > 1 and np.any(np.diff(times) <= 0):
        k = int(np.flatnonzero(np.diff(times) <= 0)[0])
        raise NeuradiffError(f"{path}: time of frame {k + 1} ({times[k + 1]:g} s) is not after frame {k}'s")
    columns = {h: np.asarray(values[h])[order] for h in extra}
    return FrameTable(time_s=times - times[0], columns=columns, source=path.name)


def find_frame_table(video_path: str | Path, n_frames: int) -> FrameTable | None:
    """The time table beside a video (:func:`sidecar_path`), when there is one."""
    side = sidecar_path(video_path)
    return read_frame_table(side, n_frames) if side.is_file() else None


__all__ = [
    "FILE_SIDECAR_SUFFIX",
    "FOLDER_SIDECAR",
    "FrameTable",
    "clock_seconds",
    "find_frame_table",
    "read_frame_table",
    "sidecar_path",
    "times_from_names",
]
