"""The overlay video of void measurements (ffmpeg): void outlines in red, track ids in yellow, the frame time and,
when the pixel size is known, a scale bar (Å, nm or µm); text drawn with Pillow's scalable font, outlines from
scikit-image (no per-frame matplotlib: fast).
"""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
from pathlib import Path

import imageio.v2 as iio2
import imageio_ffmpeg
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from skimage.draw import circle_perimeter
from skimage.segmentation import find_boundaries

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.files import atomic_path
from neuradiff.core.labels import UNKNOWN, VOID
from neuradiff.core.progress import ProgressSink, no_progress
from neuradiff.measure.voids import Measurements, label_voids

# --------------------------------------------------------------------------- text (Pillow)


#: DejaVu Sans, shipped with matplotlib: a scalable font with the unit symbols (µ, Å, ...).
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at ``size`` px (Pillow's own font when it is missing)."""
    try:
        return ImageFont.truetype(str(FONT), size)
    except OSError:
        return ImageFont.load_default(size=size)


def _draw_text(rgb: np.ndarray, text: str, x: int, y: int, colour, size: int) -> None:
    """Write ``text`` with its top-left at (x, y) and a dark outline, clipped to the image (in place)."""
    image = Image.fromarray(rgb)
    ImageDraw.Draw(image).text(
        (x, y), text, fill=tuple(colour), font=_font(size), stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0)
    )
    rgb[...] = np.asarray(image)


def scale_bar_label(length_nm: float) -> str:
    """The scale bar's text in the unit that keeps the number readable: Å below 1 nm, µm from 1000 nm.

    Examples
    --------
    >>> scale_bar_label(0.5), scale_bar_label(20.0), scale_bar_label(2000.0)
    ('5 Å', '20 nm', '2 µm')
    """
    if length_nm < 1:
        return f"{length_nm * 10:g} Å"
    if length_nm >= 1000:
        return f"{length_nm / 1000:g} µm"
    return f"{length_nm:g} nm"


def _scale_bar_nm(width_px: int, nm_per_px: float) -> float:
    """A round length (1, 2 or 5 × 10^k nm) close to a fifth of the image width."""
    target = width_px * nm_per_px / 5
    k = np.floor(np.log10(target))
    return float(min((m * 10**k for m in (1, 2, 5, 10)), key=lambda v: abs(v - target)))


# --------------------------------------------------------------------------- overlay video


def _display_range(frames) -> tuple[float, float]:
    """0.5 and 99.5 percentiles of 20 frames spread over the recording (read one at a time: ``frames`` may be a
    lazy :class:`~neuradiff.io.stream.VideoSource`)."""
    pick = np.stack([frames[int(k)] for k in np.linspace(0, len(frames) - 1, min(len(frames), 20)).astype(int)])
    vals = pick[..., ::2, ::2].astype(np.float32)
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def inner_edges(labels: np.ndarray) -> np.ndarray:
    """Boolean ``[H, W]``: the outline pixels inside each labelled region (label > 0),
    ``skimage.segmentation.find_boundaries(mode="inner")``."""
    return find_boundaries(labels, mode="inner")


def _overlay_frames(meas: Measurements, video_frames, masks, progress: ProgressSink = no_progress):
    """Yield ``[H', W', 3]`` uint8 overlay frames (padded to even size)."""
    base = video_frames if video_frames is not None else masks
    n, h, w = base.shape
    if masks is not None and video_frames is not None and masks.shape != video_frames.shape:
        raise NeuradiffError(
            f"masks {masks.shape} and video frames {video_frames.shape} differ in size; cannot draw the overlay"
        )
    lo, hi = _display_range(video_frames) if video_frames is not None else (0.0, 1.0)
    scale = max(1, int(round(max(h, w) / 256)))
    size = max(10, int(round(max(h, w) / 24)))  # text height: readable at 96 px and at 4k
    cal = meas.calibration
    times = cal.times_s(n)
    # one array of the voids sorted by frame and each frame's rows found by bisection (not one table per frame)
    void_frames, void_rows = np.zeros(0, np.int64), np.zeros((0, 4))
    if len(meas.voids):
        table = meas.voids.sort_values("frame", kind="stable")
        void_frames = table["frame"].to_numpy(np.int64)
        void_rows = table[["x_px", "y_px", "eq_diameter_px", "track_id"]].to_numpy(float)
    min_area = int(meas.params.get("min_area_px", 4))
    bar_nm = _scale_bar_nm(w, cal.nm_per_px) if cal.nm_per_px else None
    for k in range(n):
        progress("overlay", k + 1, n)
        if video_frames is not None:
            g8 = np.clip((video_frames[k].astype(np.float32) - lo) / (hi - lo), 0, 1) * 255
            g8 = np.nan_to_num(g8).astype(np.uint8)
        else:
            assert masks is not None
            g8 = np.where(masks[k] == VOID, 170, np.where(masks[k] == UNKNOWN, 90, 40))
            g8 = g8.astype(np.uint8)
        rgb = np.repeat(g8[..., None], 3, axis=2)
        lo_row, hi_row = np.searchsorted(void_frames, [k, k + 1])
        voids = void_rows[lo_row:hi_row] if hi_row > lo_row else None
        if masks is not None and not np.all(masks[k] == UNKNOWN):
            rgb[inner_edges(label_voids(masks[k] == VOID, min_area))] = (255, 0, 0)
        elif voids is not None:
            for x, y, d, _ in voids:
                rr, cc = circle_perimeter(int(round(y)), int(round(x)), max(1, int(round(d / 2))), shape=(h, w))
                rgb[rr, cc] = (255, 0, 0)
        if voids is not None:
            for x, y, d, tid in voids:
                _draw_text(rgb, str(int(tid)), int(x + 0.35 * d), int(y - 0.35 * d - size), (255, 255, 0), size)
        stamp = f"{times[k]:.2f} s" if times is not None else f"#{k}"
        _draw_text(rgb, stamp, 3 * scale, 2 * scale, (255, 255, 255), size)
        if bar_nm and cal.nm_per_px:
            length = int(round(bar_nm / cal.nm_per_px))
            y1, x0 = h - 4 * scale, 4 * scale
            rgb[y1 - 2 * scale : y1, x0 : x0 + length] = 255
            _draw_text(rgb, scale_bar_label(bar_nm), x0, y1 - 2 * scale - size - 2, (255, 255, 255), size)
        yield np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_overlay(
    path, meas: Measurements, video_frames=None, masks=None, progress: ProgressSink = no_progress
) -> Path:
    """Write the overlay video to ``path`` (mp4 via imageio's ffmpeg writer) and return the path.

    Without ffmpeg an animated GIF is written beside it instead, with a warning.
    """
    path = Path(path)
    # arrays, memory maps and lazy sources (anything with a shape, read frame by frame) are kept as they are
    video_frames = video_frames if video_frames is None or hasattr(video_frames, "shape") else np.asarray(video_frames)
    masks = masks if masks is None or hasattr(masks, "shape") else np.asarray(masks)
    dt = meas.calibration.frame_interval_s
    fps = float(np.clip(1.0 / dt, 1.0, 30.0)) if dt else 5.0
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        gif = path.with_suffix(".gif")
        warnings.warn("ffmpeg is not available; writing the overlay as an animated GIF", stacklevel=2)
        with atomic_path(gif) as tmp:
            iio2.mimwrite(
                tmp,
                list(_overlay_frames(meas, video_frames, masks, progress)),
                format="GIF",
                duration=1.0 / fps,
                loop=0,
            )
        return gif
    # ffmpeg picks the container from the file name, so encode to a named *.mp4 scratch file
    # next to the target and move it into the atomic temporary path.
    with atomic_path(path) as tmp:
        fd, scratch = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
        os.close(fd)
        try:
            writer = iio2.get_writer(
                scratch,
                format="FFMPEG",
                mode="I",
                fps=fps,
                codec="libx264",
                quality=8,
                macro_block_size=1,
                pixelformat="yuv420p",
            )
            try:
                for frame in _overlay_frames(meas, video_frames, masks, progress):
                    writer.append_data(frame)
            finally:
                writer.close()
            os.replace(scratch, tmp)
        finally:
            Path(scratch).unlink(missing_ok=True)
    return path


__all__ = ["inner_edges", "scale_bar_label", "write_overlay"]
