"""Measurements on void masks: regions and their sizes (:mod:`~neuradiff.measure.voids`), tracks across frames
(:mod:`~neuradiff.measure.tracking`), segmentation metrics (:mod:`~neuradiff.measure.metrics`), and the clean-up of
frames before recognition: drift (:mod:`~neuradiff.measure.drift`) and noise (:mod:`~neuradiff.measure.denoise`)."""

from neuradiff.measure.denoise import DENOISE_METHODS, Denoise
from neuradiff.measure.metrics import dice, iou, object_f1, pixel_accuracy, segmentation_report
from neuradiff.measure.tracking import default_search_range_px, link_voids, track_table
from neuradiff.measure.voids import Measurements, label_voids, measure_masks

__all__ = [
    "DENOISE_METHODS",
    "Denoise",
    "Measurements",
    "default_search_range_px",
    "dice",
    "iou",
    "label_voids",
    "link_voids",
    "measure_masks",
    "object_f1",
    "pixel_accuracy",
    "segmentation_report",
    "track_table",
]
