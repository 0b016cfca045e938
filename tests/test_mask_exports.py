"""Predicted masks for other tools: COCO instances (compressed RLE) and an ImageJ ROI set, read back by our COCO
reader and by roifile."""

from __future__ import annotations

import json

import numpy as np
import pytest
import roifile
from skimage.draw import disk, polygon

from neuradiff.core.errors import NeuradiffError
from neuradiff.io.annotations import read_annotations
from neuradiff.io.coco import coco_instances
from neuradiff.io.rois import imagej_rois, write_imagej_rois
from neuradiff.io.video import Calibration
from neuradiff.workflows.track import write_track

TIMES = np.array([0.0, 49.0, 126.0, 203.5])


def _masks() -> np.ndarray:
    m = np.zeros((4, 40, 48), np.uint8)
    for t in range(4):
        rr, cc = disk((12, 14), 4 + t, shape=m.shape[1:])
        m[t, rr, cc] = 1
        m[t, 28:33, 30 + t : 40] = 1  # a second void per frame
    m[2, 0, 0] = 1  # a one-pixel void in a corner
    m[3] = 0  # a frame without voids
    return m


def test_track_outputs_read_back_as_coco_and_imagej_rois(tmp_path):
    masks = _masks()
    names = [f"Hour_00_Minute_0{t}_Second_00.tif" for t in range(4)]
    cal = Calibration(nm_per_px=0.8, frame_interval_s=None, frame_times_s=TIMES)
    write_track(tmp_path / "out", masks.astype(np.float32), masks, None, None, calibration=cal, frame_names=names)

    doc = json.loads((tmp_path / "out" / "masks_coco.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == names
    assert {(i["height"], i["width"]) for i in doc["images"]} == {(40, 48)}
    assert [i["time_s"] for i in doc["images"]] == pytest.approx(TIMES.tolist())
    assert [sum(a["image_id"] == i["id"] for a in doc["annotations"]) for i in doc["images"]] == [2, 2, 3, 0]
    assert all(isinstance(a["segmentation"]["counts"], str) for a in doc["annotations"])
    areas = [a["area_nm2"] for a in doc["annotations"]]
    assert sum(areas) == pytest.approx(masks.sum() * 0.8**2)
    back = read_annotations(tmp_path / "out" / "masks_coco.json", shape=(40, 48), n_frames=4)
    np.testing.assert_array_equal(back, masks)

    rois = roifile.roiread(tmp_path / "out" / "masks_rois.zip")
    assert isinstance(rois, list) and len(rois) == 7
    drawn = np.zeros_like(masks)
    for roi in rois:
        assert roi.roitype == roifile.ROI_TYPE.POLYGON and roi.position == roi.t_position
        xy = roi.coordinates() - 0.5  # ImageJ pixel (x, y) spans [x, x + 1): its centre is at x + 0.5
        rr, cc = polygon(xy[:, 1], xy[:, 0], masks.shape[1:])
        drawn[roi.t_position - 1, rr, cc] = 1
    np.testing.assert_array_equal(drawn, masks)


def test_coco_polygons_and_rois_leave_out_holes_but_rle_keeps_them():
    ring = np.zeros((1, 20, 20), np.uint8)
    ring[0, 3:17, 3:17] = 1
    ring[0, 7:12, 7:12] = 0
    rle = coco_instances(ring, ["a.png"])
    poly = coco_instances(ring, ["a.png"], polygons=True)
    assert rle["annotations"][0]["area"] == poly["annotations"][0]["area"] == int(ring.sum())
    outline = np.asarray(poly["annotations"][0]["segmentation"][0]).reshape(-1, 2)
    assert len(poly["annotations"][0]["segmentation"]) == 1 and outline.min() == pytest.approx(2.5)
    (roi,) = imagej_rois(ring)
    assert roi.coordinates().min() == pytest.approx(3.0) and roi.coordinates().max() == pytest.approx(17.0)


def test_empty_roi_set_and_bad_name(tmp_path):
    write_imagej_rois(tmp_path / "none.zip", np.zeros((2, 8, 8), np.uint8))
    assert roifile.roiread(tmp_path / "none.zip") == []
    with pytest.raises(NeuradiffError, match=r"is a \.zip file"):
        write_imagej_rois(tmp_path / "r.roi", np.ones((1, 8, 8), np.uint8))
