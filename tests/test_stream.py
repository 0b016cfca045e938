"""Streaming: chunked reading, writing, measuring and tracking give exactly what whole-recording processing gives."""

from __future__ import annotations

import filecmp
import zipfile

import numpy as np
import pandas as pd
import pytest
import tifffile

from helpers_cli import run_command
from neuradiff.core.errors import NeuradiffError
from neuradiff.io.coco import coco_instances, write_coco, write_coco_masks
from neuradiff.io.rois import write_imagej_rois
from neuradiff.io.stacks import StackWriter, write_stack
from neuradiff.io.stream import open_video
from neuradiff.io.video import Calibration, read_video
from neuradiff.measure.voids import MaskMeasurer, measure_masks
from neuradiff.workflows.track import run_track


def _recording(path, n=12, size=48, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    stack = np.empty((n, size, size), np.uint8)
    for t in range(n):
        f = 200 + 10 * rng.standard_normal((size, size))
        for cy, cx, r in ((12, 14, 5 + t * 0.2), (34, 30, 7 - t * 0.1)):
            f[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 60
        stack[t] = np.clip(f, 0, 255)
    tifffile.imwrite(path, stack, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TYX", "unit": "nm"})
    return stack


def test_open_video_chunks_equal_read_video(tmp_path):
    stack = _recording(tmp_path / "a.tif")
    whole = read_video(tmp_path / "a.tif")
    with open_video(tmp_path / "a.tif") as src:
        assert src.kind == "contiguous" and src.shape == stack.shape
        assert src.calibration == whole.calibration
        got = np.concatenate([c for _, c in src.chunks(5)])
    np.testing.assert_array_equal(got, whole.frames)


def test_open_video_folder_refuses_mismatched_frame(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for k in range(3):
        tifffile.imwrite(folder / f"f{k}.tif", np.zeros((16, 16) if k < 2 else (20, 16), np.uint8))
    with open_video(folder) as src, pytest.raises(Exception, match="must match"):
        src.read(0, 3)


def test_stack_writer_is_byte_identical_to_write_stack(tmp_path):
    data = np.random.default_rng(1).random((7, 9, 11)).astype(np.float32)
    cal = Calibration(nm_per_px=0.5, frame_interval_s=2.0)
    write_stack(tmp_path / "whole.tif", data, cal)
    with StackWriter(tmp_path / "chunks.tif", 7, (9, 11), np.float32, cal) as w:
        for k in range(0, 7, 3):
            w.write(data[k : k + 3])
    assert filecmp.cmp(tmp_path / "whole.tif", tmp_path / "chunks.tif", shallow=False)


def test_stack_writer_incomplete_leaves_nothing(tmp_path):
    w = StackWriter(tmp_path / "x.tif", 4, (8, 8), np.uint8, None)
    w.write(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(Exception, match="of 4 frames"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_chunked_measurer_equals_whole(tmp_path):
    masks = (read_video(_save(tmp_path)).frames < 100).astype(np.uint8)
    cal = Calibration(nm_per_px=0.5, frame_interval_s=1.0)
    whole = measure_masks(masks, calibration=cal)
    m = MaskMeasurer(len(masks), calibration=cal)
    for k in (8, 0, 4):  # any order
        m.add(masks[k : k + 4], k)
    part = m.finish()
    pd.testing.assert_frame_equal(whole.voids, part.voids)
    pd.testing.assert_frame_equal(whole.tracks, part.tracks)


def test_measurers_merged_equal_whole(tmp_path):
    masks = (read_video(_save(tmp_path)).frames < 100).astype(np.uint8)
    cal = Calibration(nm_per_px=0.5, frame_interval_s=1.0)
    whole = measure_masks(masks, calibration=cal)
    parts = []
    for k in (8, 0, 4):  # chunks measured apart (as on other workers), merged in any order
        worker = MaskMeasurer(len(masks), calibration=cal)
        worker.add(masks[k : k + 4], k)
        parts.append(worker.partial())
    joined = MaskMeasurer(len(masks), calibration=cal)
    for part in parts:
        joined.merge(part)
    got = joined.finish()
    for a, b in ((whole.voids, got.voids), (whole.tracks, got.tracks), (whole.frames, got.frames)):
        pd.testing.assert_frame_equal(a, b)


def _save(tmp_path):
    _recording(tmp_path / "m.tif")
    return tmp_path / "m.tif"


@pytest.mark.slow
def test_track_chunked_equals_one_chunk(tmp_path):
    _recording(tmp_path / "a.tif", n=10)
    run_track(tmp_path / "a.tif", None, tmp_path / "one", chunk=1000, overlay=False)
    run_track(tmp_path / "a.tif", None, tmp_path / "many", chunk=3, overlay=False)
    for name in ("eta.tif", "masks.tif", "voids.csv", "tracks.csv", "frames.csv"):
        assert filecmp.cmp(tmp_path / "one" / name, tmp_path / "many" / name, shallow=False), name


def test_contiguous_reader_big_endian_and_truncated(tmp_path):
    stack = np.arange(4 * 8 * 8, dtype=">u2").reshape(4, 8, 8)
    tifffile.imwrite(tmp_path / "be.tif", stack, byteorder=">", photometric="minisblack")
    with open_video(tmp_path / "be.tif") as src:
        assert src.kind == "contiguous" and src.dtype == np.dtype("uint16")
        np.testing.assert_array_equal(src.read(1, 4), stack[1:4].astype(np.uint16))
    data = (tmp_path / "be.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) - 100])
    with pytest.raises(NeuradiffError, match="truncated"), open_video(tmp_path / "cut.tif") as src:
        src.read(0, 4)  # refused when opened or when the missing frames are read


def test_mask_exports_streamed_from_a_source_equal_whole(tmp_path):
    rng = np.random.default_rng(3)
    masks = (rng.random((6, 24, 24)) > 0.8).astype(np.uint8)
    cal = Calibration(nm_per_px=0.5, frame_interval_s=2.0)
    write_stack(tmp_path / "masks.tif", masks, cal)
    names = [f"f{k}.tif" for k in range(6)]
    write_coco(tmp_path / "whole.json", coco_instances(masks, names, times_s=cal.times_s(6), nm_per_px=0.5))
    with open_video(tmp_path / "masks.tif") as src:
        write_coco_masks(tmp_path / "streamed.json", src, names, times_s=cal.times_s(6), nm_per_px=0.5)
        write_imagej_rois(tmp_path / "streamed.zip", src)
    write_imagej_rois(tmp_path / "whole.zip", masks)
    assert filecmp.cmp(tmp_path / "whole.json", tmp_path / "streamed.json", shallow=False)
    with zipfile.ZipFile(tmp_path / "whole.zip") as a, zipfile.ZipFile(tmp_path / "streamed.zip") as b:
        assert a.namelist() == b.namelist() and len(a.namelist()) > 6
        assert all(a.read(name) == b.read(name) for name in a.namelist())


@pytest.mark.slow
def test_cli_track_chunk_option(tmp_path):
    _recording(tmp_path / "a.tif", n=6)
    ok = run_command(["track", str(tmp_path / "a.tif"), "--out", str(tmp_path / "o"), "--chunk", "2"], tmp_path)
    assert ok.code == 0, ok.lines
    run_track(tmp_path / "a.tif", None, tmp_path / "ref", chunk=1000)
    for name in ("masks.tif", "voids.csv", "tracks.csv", "masks_coco.json"):
        assert filecmp.cmp(tmp_path / "o" / name, tmp_path / "ref" / name, shallow=False), name
    bad = run_command(["track", str(tmp_path / "a.tif"), "--out", str(tmp_path / "b"), "--chunk", "0"], tmp_path)
    assert bad.code == 2 and not (tmp_path / "b").exists()
