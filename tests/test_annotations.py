"""Reading annotations (mask stacks, binary masks, COCO, YOLO) into the three-state form."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from neuradiff.core.errors import NeuradiffError
from neuradiff.core.labels import UNKNOWN
from neuradiff.io.annotations import read_annotations
from neuradiff.io.video import read_video

CREME = Path(__file__).parent / "data" / "creme-316L" / "fov200nm"


@pytest.fixture(scope="module")
def creme_video():
    return read_video(CREME / "imgs", nm_per_px=200 / 512)


def test_creme_masks_and_coco_agree(creme_video):
    masks = read_annotations(CREME / "masks1", video=creme_video)
    coco = read_annotations(CREME / "clean.json", video=creme_video)
    assert masks.shape == coco.shape == (4, 512, 512)
    assert masks.dtype == coco.dtype == np.uint8
    assert set(np.unique(masks)) == set(np.unique(coco)) == {0, 1}
    png = iio.imread(CREME / "masks1" / "3.png")
    np.testing.assert_array_equal(masks[2], (png > 0).astype(np.uint8))
    inter = np.logical_and(masks == 1, coco == 1).sum()
    union = np.logical_or(masks == 1, coco == 1).sum()
    assert inter / union > 0.8


def test_coco_matches_by_name_and_lists_frames_without_voids(tmp_path, creme_video):
    data = json.loads((CREME / "clean.json").read_text())
    # keep only frame "3.png", give it a different id, and add "1.png" with no polygons
    data["images"] = [dict(i, id=100 + i["id"]) for i in data["images"] if i["file_name"] in ("3.png", "1.png")]
    data["annotations"] = [dict(a, image_id=100 + a["image_id"]) for a in data["annotations"] if a["image_id"] == 3]
    (tmp_path / "c.json").write_text(json.dumps(data))
    out = read_annotations(tmp_path / "c.json", video=creme_video)
    assert out.shape == (4, 512, 512)
    assert np.all(out[0] == 0)  # annotated, no voids
    assert np.all(out[1] == UNKNOWN) and np.all(out[3] == UNKNOWN)
    assert (out[2] == 1).sum() > 1000


def test_three_state_stack_pads_to_video(tmp_path):
    stack = np.zeros((2, 16, 20), np.uint8)
    stack[0, 2:6, 2:6] = 1
    stack[1] = UNKNOWN
    stack[1, :8] = 0
    tifffile.imwrite(tmp_path / "m.tif", stack)
    out = read_annotations(tmp_path / "m.tif", shape=(16, 20), n_frames=3)
    assert out.shape == (3, 16, 20)
    np.testing.assert_array_equal(out[:2], stack)
    assert np.all(out[2] == UNKNOWN)


def test_binary_tiff_stack_0_255_means_void(tmp_path):
    stack = np.zeros((2, 8, 8), np.uint8)
    stack[:, 2:4, 2:4] = 255
    tifffile.imwrite(tmp_path / "b.tif", stack)
    out = read_annotations(tmp_path / "b.tif")
    assert out.sum() == 8 and set(np.unique(out)) == {0, 1}


def test_mask_folder_some_frames_by_name_and_by_order(tmp_path):
    video_dir = tmp_path / "video"
    video_dir.mkdir()
    for k in range(1, 6):
        iio.imwrite(video_dir / f"img{k}.png", np.zeros((10, 12), np.uint8))
    video = read_video(video_dir)
    masks = tmp_path / "masks"
    masks.mkdir()
    m = np.zeros((10, 12), np.uint8)
    m[3:6, 3:6] = 255
    iio.imwrite(masks / "img2_mask.png", m)
    iio.imwrite(masks / "img5.png", (m > 0).astype(np.uint8))  # 0/1 works too
    out = read_annotations(masks, video=video)
    assert out.shape == (5, 10, 12)
    assert [bool(np.all(out[k] == UNKNOWN)) for k in range(5)] == [True, False, True, True, False]
    assert out[1].sum() == 9 and out[4].sum() == 9
    # no video: by order
    out = read_annotations(masks)
    assert out.shape == (2, 10, 12)


def test_yolo_polygons(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "f0.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.75 0.25 0.75\n")
    (labels / "f1.txt").write_text("")
    (labels / "classes.txt").write_text("void\n")
    out = read_annotations(labels, shape=(20, 40), n_frames=3)
    assert out.shape == (3, 20, 40)
    assert out[0, 10, 20] == 1 and out[0, 1, 1] == 0
    assert 0.2 < out[0].mean() < 0.3
    assert np.all(out[1] == 0) and np.all(out[2] == UNKNOWN)


def _coco(tmp_path, poly, width=20, height=10):
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "segmentation": [poly]}],
        "categories": [{"id": 1, "name": "void"}],
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_validation_errors(tmp_path):
    cases = []
    # polygon outside the image
    cases.append((_coco(tmp_path, [1, 1, 30, 1, 30, 5]), {}, "outside"))
    # three-state stack with other values
    tifffile.imwrite(tmp_path / "bad.tif", np.arange(64, dtype=np.uint8).reshape(1, 8, 8))
    cases.append((tmp_path / "bad.tif", {}, "values other than"))
    # mask size differs from the frames
    iio.imwrite(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    cases.append((tmp_path / "m.png", {"shape": (5, 5)}, "4x4 px but the frames are 5x5"))
    # more mask frames than video frames
    tifffile.imwrite(tmp_path / "many.tif", np.zeros((4, 8, 8), np.uint8))
    cases.append((tmp_path / "many.tif", {"shape": (8, 8), "n_frames": 2}, "4 mask frames"))
    # unknown format
    (tmp_path / "m.xyz").write_text("?")
    cases.append((tmp_path / "m.xyz", {}, "unknown annotation format"))
    # YOLO boxes instead of polygons
    (tmp_path / "box.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    cases.append((tmp_path / "box.txt", {"shape": (8, 8)}, "box label"))
    for path, kw, text in cases:
        with pytest.raises(NeuradiffError, match=text) as err:
            read_annotations(path, **kw)
        assert "\n" not in str(err.value) and path.name in str(err.value)
