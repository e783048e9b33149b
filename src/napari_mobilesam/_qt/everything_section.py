"""The "Segment everything" section of the MobileSAM widget: every object on the slice shown, or on every slice.

*This slice* segments the plane on screen (a worker with a progress bar) and
writes the objects into the image's Labels layer (or a new one) as one undo
step, respecting *Overwrite existing labels*. *All slices* runs the whole-stack
command (:mod:`~napari_mobilesam._qt.stack_command`) on the widget's image:
slices appear in a new ``"<image> everything"`` layer as they finish; when the
image has a Labels layer, the linked result is then written into it (one undo
step, same overwrite rule) and the temporary layer removed. A run started
from the menu shows here too, with its Cancel.

The settings form is built with magicgui from
:class:`~napari_mobilesam.segment.params.EverythingParams` (ranges and help from
its fields): the sampler and grid size in sight, the thresholds under
*Advanced*. With a model that has micro-sam's instance decoder the samplers
AIS and APG are offered too (AIS chosen when the model is), each with its form
(:class:`~napari_mobilesam.segment.instance_params.WatershedParams`,
:class:`~napari_mobilesam.segment.instance_params.APGParams`) showing the
model's defaults. Every change becomes the last-used settings
(:mod:`napari_mobilesam.interactive.settings`) that the menu command uses.
"""

from __future__ import annotations

import time
from collections.abc import Generator

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from napari.utils.progress import progress
from qtpy.QtWidgets import QApplication, QGridLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.settings import instance_settings, last_used, remember, remember_instance
from ..segment.instance_params import APGParams, WatershedParams
from ..segment.params import INSTANCE_SAMPLERS, EverythingParams
from . import labels_output
from .encode_scheduler import Failed
from .layer_plane import LayerPlane, current_plane
from .notify import report
from .params_form import ParamsForm
from .stack_command import RUNS, StackRun, guarded

SAMPLERS = [("Point grid (SAM)", "grid"), ("Box proposals (MobileSAMv2)", "boxes")]
# Offered when the model has micro-sam's instance decoder.
# fmt: off
INSTANCE_CHOICES = [("AIS: decoder maps, watershed (micro-sam)", "ais"), ("APG: prompts from the decoder (micro-sam)", "apg")]
INSTANCE_FORMS = {
    "ais": (WatershedParams, ("center_distance_threshold", "boundary_distance_threshold", "foreground_threshold",
                              "foreground_smoothing", "distance_smoothing")),
    "apg": (APGParams, ("center_distance_threshold", "boundary_distance_threshold", "foreground_threshold",
                        "nms_threshold", "batch_size", "intersection_over_min")),
}
# fmt: on
FORM_LABELS = {
    "sampler": "Sampler",
    "points_per_side": "Points per side",
    "points_per_batch": "Points per batch",
    "pred_iou_thresh": "Predicted IoU >",
    "stability_score_thresh": "Stability ≥",
    "stability_score_offset": "Stability offset",
    "box_nms_thresh": "Box NMS IoU",
    "min_mask_region_area": "Min. region (px)",
    "boxes_per_batch": "Boxes per batch",
}
ADVANCED = (
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "min_mask_region_area",
    "points_per_batch",
    "boxes_per_batch",
)


def everything_on_plane(session, plane: LayerPlane, settings: EverythingParams, instance=None) -> Generator:
    """Worker generator: yields ``(steps done, steps in total)``, returns ``(H, W)`` int32 labels at full resolution.

    The per-slice function of stacks and the command line
    (:func:`~napari_mobilesam.segment.stack.segment_slice_steps`): the embedding (and,
    for AIS/APG with the ``instance`` settings, the decoder's maps) come from the session's cache.
    """
    from dataclasses import asdict

    from ..segment.stack import segment_slice_steps

    yield 0, 0
    # A predictor of its own over the shared model: the widget's keeps its current image and prompts.
    predictor = session.new_predictor()
    params = settings.kwargs() if instance is None else asdict(instance)
    labels, _source = yield from segment_slice_steps(
        plane.read(),
        predictor=predictor,
        cache=session.cache,
        contrast_limits=plane.contrast_limits,
        image_id=plane.image_id,
        slice_index=plane.slice_index,
        n_slices=plane.n_slices,
        sampler=settings.sampler,
        **params,
    )
    return slicing.upsample_mask(labels, plane.full_plane_shape)


def _objects(count: int) -> str:
    return f"{count} object" if count == 1 else f"{count} objects"


class EverythingSection(QGroupBox):
    """Segment every object on the slice shown (*This slice*) or on all slices (*All slices*).

    Public: :meth:`settings`, :meth:`set_settings`, :meth:`segment_slice`,
    :meth:`segment_all_slices`, :meth:`cancel`, :meth:`wait`, :attr:`busy`, :attr:`last_run`.
    """

    def __init__(self, widget, parent=None, instance_forms: bool = True) -> None:
        """``instance_forms=False``: the AIS and APG forms come later, from :meth:`add_instance_forms` (the widget
        builds them in an event-loop turn of their own)."""
        super().__init__("Segment everything", parent)
        self._widget = widget
        self._slice_worker = None
        self._slice_progress = None
        self._slice_plane = None
        self._slice_cancelled = False
        #: The latest :class:`~napari_mobilesam._qt.stack_command.StackRun` shown here (All slices or the menu's).
        self.last_run: StackRun | None = None
        self._own_runs: list[StackRun] = []

        self.form = ParamsForm(
            EverythingParams,
            advanced=ADVANCED,
            labels=FORM_LABELS,
            choices={"sampler": SAMPLERS + INSTANCE_CHOICES},
        )
        #: The AIS and APG settings (shown for their sampler; thresholds under Advanced).
        self.instance_forms: dict[str, ParamsForm] = {}
        self.this_slice = QPushButton("This slice")
        self.this_slice.setToolTip("Segment every object on the slice shown into the Labels layer (one undo step).")
        self.all_slices = QPushButton("All slices")
        self.all_slices.setToolTip("Segment every slice; objects continuing on the next z-slice keep one id.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buttons = QGridLayout()
        buttons.addWidget(self.this_slice, 0, 0)
        buttons.addWidget(self.all_slices, 0, 1)
        buttons.addWidget(self.cancel_button, 1, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self.set_settings(last_used())
        self.follow_model()
        self.form.changed.connect(self._remember)
        if instance_forms:
            self.add_instance_forms()
        self.this_slice.clicked.connect(self.segment_slice)
        self.all_slices.clicked.connect(self.segment_all_slices)
        self.cancel_button.clicked.connect(self.cancel)
        RUNS.started.connect(self._on_run_started)

    # -- settings ----------------------------------------------------------------------------

    def settings(self) -> EverythingParams:
        """The settings shown."""
        return self.form.value()

    def set_settings(self, settings: EverythingParams) -> None:
        """Show ``settings`` (and make them the last-used ones)."""
        if not isinstance(settings, EverythingParams):
            raise MobileSAMError(f"Expected EverythingParams, got {type(settings).__name__}.")
        self.form.set_value(settings)
        self._remember()

    def add_instance_forms(self) -> None:
        """Add the AIS and APG forms below the common settings (once)."""
        if self.instance_forms:
            return
        layout = self.layout()
        for index, (sampler, (cls, advanced)) in enumerate(INSTANCE_FORMS.items(), start=1):
            form = self.instance_forms[sampler] = ParamsForm(cls, advanced=advanced, hidden=("mask_threshold",))
            layout.insertWidget(index, form)
        self.follow_model()
        for form in self.instance_forms.values():
            form.changed.connect(self._remember_instance)

    def instance_settings(self):
        """The AIS or APG settings shown, when that sampler is chosen; else None."""
        self.add_instance_forms()
        sampler = self.form.widgets["sampler"].value
        return self.instance_forms[sampler].value() if sampler in INSTANCE_SAMPLERS else None

    def follow_model(self) -> None:
        """The session's model changed (or the section opened): offer AIS/APG when it has a decoder, choosing
        AIS, else fall back to the point grid; show the model's AIS/APG settings."""
        session = self._widget.session()
        has_decoder = session.has_instance_decoder
        for sampler, form in self.instance_forms.items():
            form.set_value(instance_settings(session.model_name, sampler))
        sampler = self.form.widgets["sampler"].value
        self.form.set_choices("sampler", SAMPLERS + (INSTANCE_CHOICES if has_decoder else []))
        if has_decoder and sampler not in INSTANCE_SAMPLERS:
            self.form.widgets["sampler"].value = "ais"
        elif not has_decoder and sampler in INSTANCE_SAMPLERS:
            self.form.widgets["sampler"].value = "grid"
        self._remember()

    def _remember(self, *_) -> None:
        try:
            settings = self.settings()
        except MobileSAMError as error:
            self.status.setText(str(error))
            return
        self.form.widgets["points_per_side"].enabled = settings.sampler == "grid"
        instance = settings.sampler in INSTANCE_SAMPLERS
        self.form.widgets["points_per_side"].visible = not instance
        if self.form.advanced is not None:
            self.form.advanced.setVisible(not instance)
        for sampler, form in self.instance_forms.items():
            form.setVisible(sampler == settings.sampler)
        remember(settings)

    def _remember_instance(self, *_) -> None:
        name = self._widget.session().model_name
        for sampler, form in self.instance_forms.items():
            try:
                remember_instance(name, sampler, form.value())
            except MobileSAMError as error:
                self.status.setText(str(error))

    # -- running -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether *This slice* or a whole-stack run (All slices or the menu's) is running."""
        return self._slice_worker is not None or (self.last_run is not None and self.last_run.busy)

    def _can_start(self) -> bool:
        """Nothing is running and an image is chosen (otherwise the user is told why)."""
        if self.busy:
            show_info("MobileSAM: segment everything is running; wait for it or press Cancel.")
            return False
        return self._widget.require_image()

    def segment_slice(self):
        """Segment every object on the plane shown into the Labels layer; returns the worker (or None)."""
        widget = self._widget
        if not self._can_start():
            return None
        try:
            plane = current_plane(widget.viewer, widget.image_layer)
            settings, instance = self.settings(), self.instance_settings()
        except MobileSAMError as error:
            report(error, "reading the plane shown")
            return None
        remember(settings)
        steps = everything_on_plane(widget.session(), plane, settings, instance)
        worker = create_worker(guarded, steps, _ignore_errors=True)
        self._slice_progress = progress(total=0, desc=f"MobileSAM: segment everything on {plane.describe()}")
        self._slice_plane, self._slice_cancelled = plane, False
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
            if not self._slice_cancelled and done < total:  # the last step's news may arrive after the result
                self.status.setText(f"{self._slice_plane.describe()}: segmenting… step {done + 1} of {total}")

    def _on_slice_returned(self, plane: LayerPlane, result) -> None:
        if isinstance(result, Failed):
            report(result.error, "segmenting everything")
            self.status.setText(f"{plane.describe()}: failed (see the notification)")
        else:
            self._write_slice(plane, result)

    def _write_slice(self, plane: LayerPlane, labels: np.ndarray) -> None:
        widget = self._widget
        if plane.layer not in widget.viewer.layers:
            return
        try:
            state = widget.image_layers.state_for(plane.layer)
            target = widget.image_layers.output_labels(state)
            ids = labels_output.paint_into_layer(target, labels, slicing.plane_index(plane.steps), widget.overwrite)
        except MobileSAMError as error:
            report(error, "writing the labels")
            return
        found = int(labels.max(initial=0))
        text = f"{plane.describe()}: {_objects(len(ids))} into {target.name!r}"
        if len(ids) < found:
            text += f" ({found - len(ids)} found only over existing labels; tick 'Overwrite')"
        self.status.setText(text)
        state.set_message(text)

    def _on_slice_finished(self) -> None:
        if self._slice_progress is not None:
            self._slice_progress.close()
        if self._slice_cancelled and self._slice_plane is not None:
            self.status.setText(f"{self._slice_plane.describe()}: cancelled")
        self._slice_worker = self._slice_progress = None
        self._set_running(False)

    def segment_all_slices(self) -> StackRun | None:
        """Segment every slice of the widget's image (see the module doc); returns the run (or None)."""
        widget = self._widget
        if not self._can_start():
            return None
        image, target, overwrite = widget.image_layer, widget.labels_layer, widget.overwrite
        try:
            settings, instance = self.settings(), self.instance_settings()
            remember(settings)
            if target is not None:
                labels_output.check_labels_fit(target, image)
            run = StackRun(
                widget.viewer,
                image,
                widget.session(),
                settings,
                on_done=lambda run: self._on_run_done(run, target, overwrite),
                instance_settings=instance,
            )
        except MobileSAMError as error:
            report(error, "starting All slices")
            return None
        self._own_runs = [r for r in self._own_runs if r.busy] + [run]
        widget.tools.apply()  # the tool (e.g. clicking points) stays in effect
        return run

    def _on_run_started(self, run: StackRun) -> None:
        """A whole-stack run started (here or from the menu): show its progress, offer Cancel."""
        if run.viewer is not self._widget.viewer:
            return
        self.last_run = run
        run.changed.connect(self._on_run_changed)
        self._set_running(True, run.status)

    def _on_run_changed(self, text: str) -> None:
        run = self.last_run
        if run is None:
            return
        self.status.setText(text)
        if run.finished:
            self._set_running(False)

    def _on_run_done(self, run: StackRun, target, overwrite: bool) -> None:
        if run.failed is not None:
            return
        layers = self._widget.viewer.layers
        if target is not None and target in layers and run.layer in layers:
            try:
                ids = labels_output.paint_into_layer(target, run.layer.data, (), overwrite)
            except MobileSAMError as error:
                report(error, "writing the labels")
                return
            layers.remove(run.layer)
            run.status += f", {_objects(len(ids))} written into {target.name!r}"

    def cancel(self) -> None:
        """Stop the running segmentation within the prompts being decoded (*All slices* keeps its finished slices)."""
        if self._slice_worker is not None:
            self._slice_cancelled = True
            self.status.setText(f"{self._slice_plane.describe()}: cancelling…")
            self._slice_worker.quit()
        if self.last_run is not None and self.last_run.busy:
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

    @property
    def busy_here(self) -> bool:
        """Whether work started from this section (not from the menu) is running."""
        return self._slice_worker is not None or any(run.busy for run in self._own_runs)

    def on_image_changed(self) -> None:
        """Another image: the last result's words were about the previous one (a run keeps its own status)."""
        if not self.busy:
            self.status.setText("")

    def close_section(self) -> None:
        """The widget closes: stop listening, cancel what was started here (a menu run goes on)."""
        RUNS.started.disconnect(self._on_run_started)
        if self._slice_worker is not None:
            self._slice_worker.quit()
        for run in self._own_runs:
            run.cancel()

    def _set_running(self, running: bool, text: str | None = None) -> None:
        self.this_slice.setEnabled(not running)
        self.all_slices.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if text is not None:
            self.status.setText(text)
