"""Annotations other tools write: instance labels (Cellpose, StarDist), class images (ilastik), compressed COCO RLE."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from neuradiff.cli import app
from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import SOLID, UNKNOWN, VOID
from neuradiff.io.annotations import LabelScheme, read_annotations
from neuradiff.io.coco import counts_to_string, decode_rle, encode_rle, rle_counts, string_to_counts
from neuradiff.io.video import read_video

runner = CliRunner()

# Masks and their compressed RLE strings as pycocotools 2.0.11 writes them (pycocotools.mask.encode).
KNOWN_SMALL = np.zeros((7, 9), np.uint8)
KNOWN_SMALL[1:4, 2:6] = 1
KNOWN_SMALL[5, 7] = 1
KNOWN_SMALL[0, 0] = 1
KNOWN_SMALL_RLE = "01>2F00000;NI"
KNOWN_RING = np.zeros((40, 60), np.uint8)
KNOWN_RING[5:30, 10:50] = 1
KNOWN_RING[12:20, 20:30] = 0
KNOWN_RING[35:, 55:] = 1
KNOWN_RING_RLE = (
    "e<i0?000000000000000000^OI37MI37MI37MI37MI37MI37MI37MI37MI37MI37?00000000000000000000000000000000000000"
    "V7\\O^I0000000"
)


@pytest.mark.parametrize(("mask", "text"), [(KNOWN_SMALL, KNOWN_SMALL_RLE), (KNOWN_RING, KNOWN_RING_RLE)])
def test_compressed_rle_matches_pycocotools_encodings(mask, text):
    assert encode_rle(mask) == {"size": list(mask.shape), "counts": text}
    np.testing.assert_array_equal(decode_rle({"size": list(mask.shape), "counts": text}), mask)
    np.testing.assert_array_equal(decode_rle({"size": list(mask.shape), "counts": text.encode()}), mask)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_rle_round_trip(h, w, seed, fill):
    mask = (np.random.default_rng(seed).random((h, w)) < fill).astype(np.uint8)
    counts = rle_counts(mask)
    assert sum(counts) == h * w and min(counts[1:], default=1) > 0
    assert string_to_counts(counts_to_string(counts)) == counts
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask)
    np.testing.assert_array_equal(decode_rle({"size": [h, w], "counts": counts}), mask)


def test_rle_agrees_with_pycocotools_when_installed():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = rng.integers(1, 50, 2)
        mask = np.cumsum(rng.random((h, w)) < 0.08, axis=1) % 2
        ref = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert encode_rle(mask)["counts"] == ref["counts"].decode()
        np.testing.assert_array_equal(decode_rle(ref), mask)


@pytest.mark.parametrize(("text", "problem"), [("01>2F0", "add up to"), ("0\x7f", "not compressed RLE"), ("W", "ends")])
def test_bad_rle_strings_are_refused(text, problem):
    with pytest.raises(ValueError, match=problem):
        decode_rle({"size": [7, 9], "counts": text})


def _coco_rle(tmp_path, masks, names):
    images = [
        {"id": k + 10, "file_name": n, "height": m.shape[0], "width": m.shape[1]}
        for k, (m, n) in enumerate(zip(masks, names))
    ]
    anns = [{"id": k, "image_id": k + 10, "category_id": 1, "segmentation": encode_rle(m)} for k, m in enumerate(masks)]
    path = tmp_path / "rle.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "void"}]}))
    return path


def test_coco_with_compressed_rle(tmp_path):
    out = read_annotations(_coco_rle(tmp_path, [KNOWN_RING, KNOWN_RING[::-1]], ["f0.png", "f2.png"]), n_frames=3)
    assert out.shape == (3, 40, 60)
    np.testing.assert_array_equal(out[0], KNOWN_RING)
    np.testing.assert_array_equal(out[1], KNOWN_RING[::-1])
    assert np.all(out[2] == UNKNOWN)
    data = json.loads((tmp_path / "rle.json").read_text())
    data["annotations"][0]["segmentation"]["counts"] = KNOWN_RING_RLE[:-3]
    (tmp_path / "rle.json").write_text(json.dumps(data))
    with pytest.raises(NeuradiffError, match="bad RLE") as err:
        read_annotations(tmp_path / "rle.json")
    assert "\n" not in str(err.value)


def test_instance_labels_stack_and_folder(tmp_path):
    labels = np.zeros((3, 16, 20), np.uint16)  # Cellpose writes uint16 masks
    labels[0, 2:6, 2:6] = 1
    labels[0, 9:12, 9:15] = 2
    labels[1, 1:4, 10:19] = 300
    tifffile.imwrite(tmp_path / "cp_masks.tif", labels, photometric="minisblack")
    out = read_annotations(tmp_path / "cp_masks.tif", n_frames=3, labels=LabelScheme("instances"))
    np.testing.assert_array_equal(out, (labels > 0).astype(np.uint8))
    # StarDist: int32 label images, one per annotated frame, matched to the video's frames by name
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(4):
        tifffile.imwrite(frames / f"frame_{k:03d}.tif", np.full((16, 20), k, np.uint8))
    folder = tmp_path / "labels"
    folder.mkdir()
    tifffile.imwrite(folder / "frame_002.tif", labels[0].astype(np.int32))
    out = read_annotations(folder, video=read_video(frames), labels=LabelScheme("instances"))
    assert out.shape == (4, 16, 20)
    np.testing.assert_array_equal(out[2], (labels[0] > 0).astype(np.uint8))
    assert np.all(out[[0, 1, 3]] == UNKNOWN)


def test_instance_labels_need_the_option(tmp_path):
    labels = np.zeros((1, 16, 20), np.uint16)
    labels[0, 2:6, 2:6] = 7
    labels[0, 8:10, 2:6] = 9
    tifffile.imwrite(tmp_path / "m.tif", labels)
    with pytest.raises(NeuradiffError, match="--instances"):
        read_annotations(tmp_path / "m.tif")


def test_class_image_names_the_void_class(tmp_path):
    classes = np.ones((2, 16, 20), np.uint8)  # ilastik simple segmentation: 1 solid, 2 void
    classes[0, 3:8, 4:9] = 2
    classes[1, 10:14, 1:5] = 2
    classes[1, :2] = 3  # a third class (e.g. a precipitate) is solid
    tifffile.imwrite(tmp_path / "seg.tif", classes)
    out = read_annotations(tmp_path / "seg.tif", n_frames=2, labels=LabelScheme.from_options(void_class=2))
    expected = np.where(classes == 2, VOID, SOLID)
    np.testing.assert_array_equal(out, expected)
    # ilastik labels: 0 not labelled → unknown; another class value for unknown
    classes[0, 12:] = 0
    iio.imwrite(tmp_path / "lab.png", classes[0])
    out = read_annotations(tmp_path / "lab.png", labels=LabelScheme.from_options(void_class=2))
    assert np.all(out[0, 12:] == UNKNOWN) and np.all(out[0, 3:8, 4:9] == VOID) and np.all(out[0, :3] == SOLID)
    out = read_annotations(tmp_path / "lab.png", labels=LabelScheme.from_options(void_class=2, unknown_class=1))
    assert np.all(out[0, 12:] == SOLID) and np.all(out[0, :3] == UNKNOWN)


@pytest.mark.parametrize(
    ("make", "scheme", "problem"),
    [
        (lambda: np.full((1, 16, 20), 1.5, np.float32), LabelScheme("instances"), "non-integer label 1.5"),
        (lambda: np.full((1, 16, 20), -1, np.int16), LabelScheme("instances"), "negative label -1"),
        (lambda: np.ones((1, 12, 20), np.uint16), LabelScheme("instances"), "20x12 px but the frames are 20x16"),
        (lambda: np.ones((1, 16, 20), np.uint8), LabelScheme.from_options(void_class=2), "void class 2 occurs nowhere"),
    ],
)
def test_bad_label_images(tmp_path, make, scheme, problem):
    tifffile.imwrite(tmp_path / "lab.tif", make())
    with pytest.raises(NeuradiffError, match=problem) as err:
        read_annotations(tmp_path / "lab.tif", shape=(16, 20), n_frames=1, labels=scheme)
    assert "\n" not in str(err.value) and "lab.tif" in str(err.value)


def test_label_options_do_not_apply_to_coco(tmp_path):
    path = _coco_rle(tmp_path, [KNOWN_RING], ["f0.png"])
    with pytest.raises(NeuradiffError, match="label images only"):
        read_annotations(path, labels=LabelScheme("instances"))


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--instances", "--void-class", "2"], "exclude each other"),
        (["--unknown-class", "0"], "needs --void-class"),
        (["--void-class", "2", "--unknown-class", "2"], "both 2"),
        (["--instances"], "non-integer label"),
        (["--void-class", "1"], "width"),
    ],
)
def test_fit_cli_label_options_refuse_bad_input_in_one_line(tmp_path, args, problem):
    video = tmp_path / "video.tif"
    tifffile.imwrite(video, np.zeros((3, 16, 20), np.uint8), photometric="minisblack")
    ann = tmp_path / "ann.tif"
    if "width" in problem:
        tifffile.imwrite(ann, np.ones((3, 16, 24), np.uint8), photometric="minisblack")
        problem = "24x16 px but the frames are 20x16"
    else:
        tifffile.imwrite(ann, np.full((3, 16, 20), 0.5, np.float32), photometric="minisblack")
    out = tmp_path / "model"
    res = runner.invoke(app, ["fit", str(video), "--annotations", str(ann), "--out", str(out), *args])
    assert res.exit_code == 2, res.output
    assert problem in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()
