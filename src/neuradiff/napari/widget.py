"""The napari dock widget "Correct and retrain": track the selected image with a model, paint corrections on the
masks, retrain from the corrections and track again (the loop is :mod:`neuradiff.napari.loop`; this module only
lays it out in Qt and runs it in a worker thread so that the viewer stays responsive).

Needs the ``napari`` extra (napari and a Qt binding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels, Tracks
from napari.qt.threading import FunctionWorker, create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from neuradiff.napari.loop import (
    MASKS_LAYER,
    Retraining,
    Tracking,
    calibration_of_layer,
    retrain,
    track_layers,
)
from neuradiff.napari.reader import LayerData

#: Devices offered (``auto``: CUDA, else MPS, else the CPU).
DEVICES = ("auto", "cpu", "cuda", "mps")


class CorrectionWidget(QWidget):
    """Dock widget: image layer, model folder (empty: the shipped generalist), output folder, fit iterations,
    device; buttons Track and Retrain.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer (napari passes it).
    """

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image = QComboBox()
        self.model = QLineEdit()
        self.model.setPlaceholderText("empty: the shipped generalist recogniser")
        self.out = QLineEdit(str(Path.home() / "neuradiff-corrections"))
        self.pretrain = QSpinBox()
        self.pretrain.setRange(0, 100_000)
        self.pretrain.setValue(150)
        self.joint = QSpinBox()
        self.joint.setRange(0, 100_000)
        self.joint.setValue(50)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        self.track_button = QPushButton("Track")
        self.retrain_button = QPushButton("Retrain from corrections")
        self.status = QLabel("Pick an image and a model, then Track.")
        self.status.setWordWrap(True)
        #: the model that made the current masks (a folder, a fitted model or None for the generalist)
        self.current_model: Any = None
        #: the labels as tracked, before corrections
        self.predicted: np.ndarray | None = None
        #: the image layer the masks belong to
        self.tracked_layer: Image | None = None
        self.worker: FunctionWorker | None = None
        self.last: Tracking | Retraining | None = None
        self.error: Exception | None = None

        browse_model = QPushButton("…")
        browse_model.clicked.connect(lambda: self._browse(self.model))
        browse_out = QPushButton("…")
        browse_out.clicked.connect(lambda: self._browse(self.out))
        form = QFormLayout()
        form.addRow("image", self.image)
        form.addRow("model folder", _row(self.model, browse_model))
        form.addRow("output folder", _row(self.out, browse_out))
        form.addRow("pretrain iterations", self.pretrain)
        form.addRow("joint iterations", self.joint)
        form.addRow("device", self.device)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.track_button)
        layout.addWidget(QLabel("Paint on the masks: label 1 void, 2 solid, 0 (eraser) unknown."))
        layout.addWidget(self.retrain_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.track_button.clicked.connect(self.track)
        self.retrain_button.clicked.connect(self.retrain)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_images)
        self._refresh_images()

    # ---- state -----------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """A track or a retraining is running."""
        return self.worker is not None

    def _refresh_images(self, *_: Any) -> None:
        current = self.image.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image.clear()
        self.image.addItems(names)
        if current in names:
            self.image.setCurrentText(current)

    def _browse(self, target: QLineEdit) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder", target.text() or str(Path.home()))
        if folder:
            target.setText(folder)

    def _selected_image(self) -> Image:
        name = self.image.currentText()
        if not name or name not in self.viewer.layers:
            raise ValueError("no image layer selected")
        layer = self.viewer.layers[name]
        assert isinstance(layer, Image)
        return layer

    def _run(self, function: Any, *args: Any, **kwargs: Any) -> FunctionWorker:
        worker = create_worker(function, *args, _start_thread=False, **kwargs)
        assert isinstance(worker, FunctionWorker)
        worker.returned.connect(self._show)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._done)
        self.worker, self.error = worker, None
        self.track_button.setEnabled(False)
        self.retrain_button.setEnabled(False)
        worker.start()
        return worker

    # ---- actions ---------------------------------------------------------------------------------------
    def track(self) -> FunctionWorker | None:
        """Track the selected image with the chosen model (in a worker thread)."""
        if self.busy:
            return None
        try:
            layer = self._selected_image()
        except ValueError as exc:
            self.status.setText(str(exc))
            return None
        text = self.model.text().strip()
        self.current_model = Path(text) if text else None
        self.tracked_layer = layer
        frames = np.asarray(layer.data)
        frames = frames[None] if frames.ndim == 2 else frames
        cal = calibration_of_layer(layer.scale, layer.metadata)
        which = "the shipped generalist" if self.current_model is None else str(self.current_model)
        self.status.setText(f"tracking {layer.name} with {which} …")
        return self._run(track_layers, frames, cal, self.current_model, device=self.device.currentText())

    def retrain(self) -> FunctionWorker | None:
        """Write the corrected frames as annotations, retrain from the model and track again (worker thread)."""
        if self.busy:
            return None
        if self.predicted is None or self.tracked_layer is None or MASKS_LAYER not in self.viewer.layers:
            self.status.setText("Track first, then paint corrections on the masks.")
            return None
        layer = self.tracked_layer
        frames = np.asarray(layer.data)
        frames = frames[None] if frames.ndim == 2 else frames
        labels = np.asarray(self.viewer.layers[MASKS_LAYER].data).copy()
        self.status.setText("retraining from the corrected frames …")
        return self._run(
            retrain,
            frames,
            calibration_of_layer(layer.scale, layer.metadata),
            labels,
            self.predicted,
            self.current_model,
            Path(self.out.text()).expanduser(),
            pretrain_iters=self.pretrain.value(),
            joint_iters=self.joint.value(),
            device=self.device.currentText(),
        )

    # ---- results ---------------------------------------------------------------------------------------
    def _show(self, result: Tracking | Retraining) -> None:
        self.last = result
        tracking = result if isinstance(result, Tracking) else result.tracking
        self.predicted = tracking.predicted.copy()
        _put(self.viewer, tracking.labels)
        if tracking.tracks is not None:
            _put(self.viewer, tracking.tracks)
        self.viewer.layers.selection.active = self.viewer.layers[MASKS_LAYER]
        n = 0 if tracking.result.measurements is None else int(tracking.result.voids["track_id"].nunique())
        if isinstance(result, Retraining):
            self.current_model = result.model_folder
            self.model.setText(str(result.model_folder))
            message = (
                f"retrained on frames {result.corrected_frames} → {result.model_folder}; tracked again: {n} void "
                "tracks. " + " ".join(result.notes)
            )
        else:
            message = f"tracked {len(tracking.predicted)} frames in {tracking.result.seconds:.1f} s: {n} void tracks"
        self.status.setText(message)
        show_info(message)

    def _failed(self, exc: Exception) -> None:
        self.error = exc
        self.status.setText(f"error: {exc}")
        show_error(str(exc))

    def _done(self, *_: Any) -> None:
        self.worker = None
        self.track_button.setEnabled(True)
        self.retrain_button.setEnabled(True)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


def _put(viewer: napari.Viewer, layer: LayerData) -> None:
    """Add a layer, or replace the data of the layer of that name."""
    data, kwargs, kind = layer
    name = kwargs["name"]
    if name in viewer.layers:
        existing = viewer.layers[name]
        if isinstance(existing, Labels) and kind == "labels":
            existing.data = data
            return
        viewer.layers.remove(name)
    viewer.add_layer(Labels(data, **kwargs) if kind == "labels" else Tracks(data, **kwargs))


__all__ = ["CorrectionWidget"]
