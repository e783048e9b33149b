"""The "Segment everything" section of the MobileSAM widget: every object on the slice shown, or on every slice.

*This slice* segments the plane on screen (a worker with a progress bar) and
writes the objects into the widget's Labels layer (or a new one) as one undo
step, respecting *Overwrite existing labels*. *All slices* runs the whole-stack
command (:mod:`~napari_mobilesam._qt.stack_command`) on the widget's image:
slices appear in a new ``"<image> everything"`` layer as they finish; when a
Labels layer is picked in the widget, the linked result is then written into
it (one undo step, same overwrite rule) and the temporary layer removed.

Every change of a control becomes the last-used settings
(:mod:`napari_mobilesam.interactive.settings`) that the menu command uses.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from napari.utils.progress import progress
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.settings import last_used, remember
from ..segment.params import EverythingParams
from . import labels_output
from .encode_scheduler import Failed
from .layer_plane import LayerPlane, current_plane
from .notify import report
from .stack_command import StackRun, guarded

SAMPLERS = {"grid": "Point grid (SAM)", "boxes": "Box proposals (MobileSAMv2)"}


def everything_on_plane(session, plane: LayerPlane, settings: EverythingParams) -> Generator:
    """Worker generator: yields ``(steps done, steps in total)``, returns ``(H, W)`` int32 labels at full resolution.

    The embedding comes from the session's cache (the widget has usually computed it already).
    """
    from ..segment.everything import EverythingSegmenter

    yield 0, 0
    # A predictor of its own over the shared model: the widget's keeps its current image and prompts.
    predictor = session.new_predictor()
    pixels, embedding, _source = plane.embedding(session.cache, predictor)
    segmenter = EverythingSegmenter(sampler=settings.sampler, predictor=predictor, **settings.kwargs())
    labels = yield from segmenter.steps(embedding, image=pixels, contrast_limits=plane.contrast_limits)
    return slicing.upsample_mask(labels, plane.full_plane_shape)


def _objects(count: int) -> str:
    return f"{count} object" if count == 1 else f"{count} objects"


def _setting_box(name: str) -> QSpinBox | QDoubleSpinBox:
    """A spin box for one :class:`EverythingParams` setting: range, step, tooltip and default from its field."""
    from dataclasses import fields

    from ..segment.param_fields import setting_types

    item = next(f for f in fields(EverythingParams) if f.name == name)
    meta, kind = item.metadata, setting_types(EverythingParams)[name][0]
    step = meta.get("step", 1)
    box = QSpinBox() if kind is int else QDoubleSpinBox()
    if kind is float:
        box.setDecimals(2)
        box.setSingleStep(step)
    # An open end (box_nms_thresh > 0) starts one step inside; a spin box needs some maximum.
    box.setRange(meta.get("min", 0) + (step if meta.get("min_open") else 0), meta.get("max", 10_000_000))
    box.setValue(item.default)
    box.setToolTip(meta["help"][0].upper() + meta["help"][1:] + ".")
    return box


class EverythingSection(QGroupBox):
    """Segment every object on the slice shown (*This slice*) or on all slices (*All slices*).

    Public: :meth:`settings`, :meth:`set_settings`, :meth:`segment_slice`,
    :meth:`segment_all_slices`, :meth:`cancel`, :meth:`wait`, :attr:`busy`, :attr:`last_run`.
    """

    def __init__(self, widget, parent=None) -> None:
        super().__init__("Segment everything", parent)
        self._widget = widget
        self._slice_worker = None
        self._slice_progress = None
        #: The latest :class:`~napari_mobilesam._qt.stack_command.StackRun` of *All slices*.
        self.last_run: StackRun | None = None

        self.sampler = QComboBox()
        for key, text in SAMPLERS.items():
            self.sampler.addItem(text, key)
        self.sampler.setToolTip("Point grid: SAM's automatic masks. Box proposals: one box prompt per likely object.")
        self.points_per_side = _setting_box("points_per_side")
        self.pred_iou_thresh = _setting_box("pred_iou_thresh")
        self.stability_score_thresh = _setting_box("stability_score_thresh")
        self.box_nms_thresh = _setting_box("box_nms_thresh")
        self.min_mask_region_area = _setting_box("min_mask_region_area")
        self.min_mask_region_area.setSuffix(" px")
        self.this_slice = QPushButton("This slice")
        self.this_slice.setToolTip("Segment every object on the slice shown into the Labels layer (one undo step).")
        self.all_slices = QPushButton("All slices")
        self.all_slices.setToolTip("Segment every slice; objects continuing on the next z-slice keep one id.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Sampler", self.sampler)
        form.addRow("Points per side", self.points_per_side)
        form.addRow("Predicted IoU >", self.pred_iou_thresh)
        form.addRow("Stability ≥", self.stability_score_thresh)
        form.addRow("Box NMS IoU", self.box_nms_thresh)
        form.addRow("Min. region area", self.min_mask_region_area)
        buttons = QGridLayout()
        buttons.addWidget(self.this_slice, 0, 0)
        buttons.addWidget(self.all_slices, 0, 1)
        buttons.addWidget(self.cancel_button, 1, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self.set_settings(last_used())
        for control in (self.points_per_side, self.pred_iou_thresh, self.stability_score_thresh, self.box_nms_thresh):
            control.valueChanged.connect(self._remember)
        self.min_mask_region_area.valueChanged.connect(self._remember)
        self.sampler.currentIndexChanged.connect(self._remember)
        self.this_slice.clicked.connect(self.segment_slice)
        self.all_slices.clicked.connect(self.segment_all_slices)
        self.cancel_button.clicked.connect(self.cancel)

    # -- settings ----------------------------------------------------------------

    def settings(self) -> EverythingParams:
        """The settings shown."""
        return EverythingParams(
            sampler=self.sampler.currentData(),
            points_per_side=self.points_per_side.value(),
            pred_iou_thresh=round(self.pred_iou_thresh.value(), 4),
            stability_score_thresh=round(self.stability_score_thresh.value(), 4),
            box_nms_thresh=round(self.box_nms_thresh.value(), 4),
            min_mask_region_area=self.min_mask_region_area.value(),
        )

    def set_settings(self, settings: EverythingParams) -> None:
        """Show ``settings`` (and make them the last-used ones)."""
        index = self.sampler.findData(settings.sampler)
        if index < 0:
            raise MobileSAMError(f"Unknown sampler {settings.sampler!r}; choose one of {', '.join(SAMPLERS)}.")
        self.sampler.setCurrentIndex(index)
        self.points_per_side.setValue(settings.points_per_side)
        self.pred_iou_thresh.setValue(settings.pred_iou_thresh)
        self.stability_score_thresh.setValue(settings.stability_score_thresh)
        self.box_nms_thresh.setValue(settings.box_nms_thresh)
        self.min_mask_region_area.setValue(settings.min_mask_region_area)
        self._remember()

    def _remember(self, *_) -> None:
        self.points_per_side.setEnabled(self.sampler.currentData() == "grid")
        remember(self.settings())

    # -- running -----------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether *This slice* or *All slices* is running."""
        return self._slice_worker is not None or (self.last_run is not None and self.last_run.busy)

    def _can_start(self) -> bool:
        """Nothing is running and an image is chosen (otherwise the user is told why)."""
        if self.busy:
            show_info("MobileSAM: segment everything is running; wait for it or press Cancel.")
            return False
        return self._widget._require_image()

    def segment_slice(self):
        """Segment every object on the plane shown into the Labels layer; returns the worker (or None)."""
        widget = self._widget
        if not self._can_start():
            return None
        try:
            plane = current_plane(widget.viewer, widget.image_layer)
        except MobileSAMError as error:
            report(error, "reading the plane shown")
            return None
        settings = self.settings()
        remember(settings)
        steps = everything_on_plane(widget._session(), plane, settings)
        worker = create_worker(guarded, steps, _ignore_errors=True)
        self._slice_progress = progress(total=0, desc=f"MobileSAM: segment everything on {plane.describe()}")
        worker.yielded.connect(self._on_slice_step)
        worker.returned.connect(lambda result: self._on_slice_returned(plane, result))
        worker.errored.connect(lambda error: report(error, "segmenting everything"))
        worker.finished.connect(self._on_slice_finished)
        self._slice_worker = worker
        self._set_running(True, f"{plane.describe()}: segmenting…")
        worker.start()
        return worker

    def _on_slice_step(self, step: tuple[int, int]) -> None:
        done, total = step
        bar = self._slice_progress
        if bar is not None and total:
            bar.total = total
            bar.update(done - bar.n)

    def _on_slice_returned(self, plane: LayerPlane, result) -> None:
        if isinstance(result, Failed):
            report(result.error, "segmenting everything")
            self.status.setText(f"{plane.describe()}: failed")
        else:
            self._write_slice(plane, result)

    def _write_slice(self, plane: LayerPlane, labels: np.ndarray) -> None:
        widget = self._widget
        if plane.layer not in widget.viewer.layers:
            return
        try:
            if widget.image_layer is plane.layer:
                target = widget._output_labels()  # the picked layer, or a new one it then picks
            else:  # the user switched images meanwhile
                target = labels_output.new_labels_layer(plane.layer)
                widget.viewer.add_layer(target)
            if target is None:
                return
            ids = labels_output.paint_into_layer(target, labels, slicing.plane_index(plane.steps), widget.overwrite)
        except MobileSAMError as error:
            report(error, "writing the labels")
            return
        found = int(labels.max(initial=0))
        text = f"{plane.describe()}: {_objects(len(ids))} into {target.name!r}"
        if len(ids) < found:
            text += f" ({found - len(ids)} found only over existing labels; tick 'Overwrite')"
        self.status.setText(text)

    def _on_slice_finished(self) -> None:
        if self._slice_progress is not None:
            self._slice_progress.close()
        self._slice_worker = self._slice_progress = None
        self._set_running(False)

    def segment_all_slices(self) -> StackRun | None:
        """Segment every slice of the widget's image (see the module doc); returns the run (or None)."""
        widget = self._widget
        if not self._can_start():
            return None
        image, target, overwrite = widget.image_layer, widget.labels_layer, widget.overwrite
        settings = self.settings()
        remember(settings)
        try:
            if target is not None:
                labels_output.check_labels_fit(target, image)
            run = StackRun(
                widget.viewer,
                image,
                widget._session(),
                settings,
                on_done=lambda run: self._on_run_done(run, target, overwrite),
            )
        except MobileSAMError as error:
            report(error, "starting All slices")
            return None
        self.last_run = run
        self._set_running(True, f"{image.name}: segmenting {run.n_slices} slices…")
        return run

    def _on_run_done(self, run: StackRun, target, overwrite: bool) -> None:
        self._set_running(False)
        if run.failed is not None:
            return
        layers = self._widget.viewer.layers
        text = f"{run.image.name}: {run.slices_done} of {run.n_slices} slices"
        if target is not None and target in layers and run.layer in layers:
            try:
                ids = labels_output.paint_into_layer(target, run.layer.data, (), overwrite)
            except MobileSAMError as error:
                report(error, "writing the labels")
                return
            layers.remove(run.layer)
            text += f", {_objects(len(ids))} into {target.name!r}"
        elif run.layer in layers:
            text += f", {_objects(int(run.layer.data.max(initial=0)))} into {run.layer.name!r}"
        self.status.setText(text)

    def cancel(self) -> None:
        """Stop the running segmentation (*All slices* keeps its finished slices)."""
        if self._slice_worker is not None:
            self._slice_worker.quit()
        if self.last_run is not None:
            self.last_run.cancel()

    def wait(self, timeout: float = 600.0) -> bool:
        """Process events until nothing runs (scripts, tests). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() >= deadline:
                return False
            QApplication.instance().processEvents()
            time.sleep(0.002)
        return True

    def _set_running(self, running: bool, text: str | None = None) -> None:
        self.this_slice.setEnabled(not running)
        self.all_slices.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if text is not None:
            self.status.setText(text)
