"""Layers › Segment › Segment whole stack (MobileSAM): segment everything on every slice of an image.

The command (``napari-mobilesam.segment_stack``) takes the selected Image
layer -- or, when a layer the MobileSAM widget made is selected (its prompts,
boxes or labels), that layer's image, or the widget's image -- and the
last-used settings of the widget's "Segment everything" section
(:mod:`napari_mobilesam.interactive.settings`). It runs
:func:`~napari_mobilesam.segment.stack.iter_segment_stack` in a worker with
the default session's model and embedding cache. Finished slices appear in a
new Labels layer ``"<image> everything"`` as they arrive (the layer selection
is left as it was). Cancel (the progress bar, or the widget) takes effect
between two parts of a prompt batch (a fraction of a second on a CPU); finished slices are kept.
At the end, objects that continue on the next z-slice are given one id and
ids are renumbered ``1..N`` (:mod:`napari_mobilesam.segment.linking`), in a
worker too: the result equals :func:`~napari_mobilesam.segment_stack`'s.

Every run is announced on :data:`RUNS` so an open widget shows its progress
and Cancel. The slices are the ``(y, x)`` planes over the last two spatial
axes; each is seen through the layer's contrast limits, as in the widget, so
embeddings the widget computed are reused.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from napari.utils.progress import cancelable_progress
from napari.viewer import Viewer
from psygnal import Signal
from qtpy.QtWidgets import QApplication

from ..engine.session import default_session
from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.settings import settings_for_run
from ..segment.params import EverythingParams
from . import labels_output
from .encode_scheduler import Failed, safely
from .layer_plane import image_id, spatial_shape
from .notify import report
from .prompt_layers import OWNER_KEY


class _Runs:
    """Whole-stack runs in progress: ``started(run)`` when one starts (widgets show its progress and Cancel)."""

    started = Signal(object)

    def __init__(self) -> None:
        self.running: set[StackRun] = set()  # keeps runs (and their workers' connections) alive until they end
        # id(viewer) -> its MobileSAM widget, for the menu command; weak: a closed viewer must be freed
        self.widgets: weakref.WeakValueDictionary[int, object] = weakref.WeakValueDictionary()


RUNS = _Runs()


def segment_stack(viewer: Viewer) -> StackRun | None:
    """Segment everything on every slice of the image (the menu command); see the module doc for which image.

    Uses the last-used "Segment everything" settings (AIS for a model with a decoder
    until a sampler is chosen). Returns the :class:`StackRun` (None when there is
    nothing to segment; a notification says why).
    """
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari injects a public-only proxy
    try:
        image = image_for_command(viewer)
        session = default_session()
        settings, instance = settings_for_run(session.model_name, session.has_instance_decoder)
        return StackRun(viewer, image, session, settings, instance_settings=instance)
    except MobileSAMError as error:
        report(error, "starting Segment whole stack")
        return None


def image_for_command(viewer) -> Image:
    """The selected Image; else the image of a selected MobileSAM layer, the widget's image, or the only image."""
    active = viewer.layers.selection.active
    if isinstance(active, Image):
        return active
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    selected = [layer for layer in viewer.layers.selection if isinstance(layer, Image)]
    if len(selected) == 1:
        return selected[0]
    owner = None if active is None else active.metadata.get(OWNER_KEY)
    for image in images:
        if owner is not None and str(image.unique_id) == owner:
            return image
    widget = RUNS.widgets.get(id(viewer))
    if widget is not None and widget.image_layer in images:
        return widget.image_layer
    if len(images) == 1:
        return images[0]
    raise MobileSAMError(
        "Segment whole stack works on one image: select the Image layer in the layer list, "
        "then choose Layers › Segment › Segment whole stack (MobileSAM) again."
    )


@dataclass(frozen=True)
class StackSource:
    """What the worker reads: the stack (one multiscale level), and how it is seen."""

    data: object  # (..., Y, X[, C]) numpy, dask or zarr
    rgb: bool
    contrast_limits: tuple[float, float]
    image_id: str | None
    full_plane_shape: tuple[int, int]  # (Y, X) at full resolution
    n_slices: int

    @classmethod
    def from_layer(cls, layer) -> StackSource:
        """The ``(y, x)`` planes of ``layer``; of a multiscale layer, the level nearest 1024 pixels."""
        full_shape = spatial_shape(layer)
        if len(full_shape) < 2:
            raise MobileSAMError(f"Image {layer.name!r} has fewer than two spatial axes; it cannot be segmented.")
        displayed = (len(full_shape) - 2, len(full_shape) - 1)
        if layer.multiscale:
            level_shapes = [tuple(d.shape[:-1] if layer.rgb else d.shape) for d in layer.data]
            level = slicing.choose_level(level_shapes, displayed)
            data = layer.data[level]
        else:
            level, data = 0, layer.data
        return cls(
            data=data,
            rgb=bool(layer.rgb),
            contrast_limits=tuple(float(v) for v in layer.contrast_limits),
            image_id=image_id(layer, level, displayed),
            full_plane_shape=full_shape[-2:],
            n_slices=int(np.prod(full_shape[:-2], dtype=np.int64)),
        )


@dataclass(frozen=True)
class FinishedSlice:
    """One slice's labels at full resolution, ids following those of the slices before it."""

    index: tuple[int, ...]  # position over the leading axes, e.g. (z,)
    slice_index: int
    n_slices: int
    labels: np.ndarray  # (Y, X) int32
    embedding_source: str


def stack_slices(session, source: StackSource, settings: EverythingParams, instance_settings=None) -> Iterator:
    """Worker generator: yields a ``SliceStep`` between prompt batches and a :class:`FinishedSlice` per slice.

    Each slice's objects ``1..n`` are offset by the objects of the slices before it
    (the numbering of :mod:`napari_mobilesam.segment.linking`), so the layer
    stays int32 while slices arrive.
    """
    from ..segment.linking import offset_labels
    from ..segment.stack import SliceStep, iter_segment_stack

    # A predictor of its own over the shared model: the widget's keeps its current image.
    predictor = session.new_predictor()
    params = settings.kwargs() if instance_settings is None else asdict(instance_settings)
    count = 0
    for result in iter_segment_stack(
        source.data,
        rgb=source.rgb,
        cache=session.cache,
        contrast_limits=source.contrast_limits,
        image_id=source.image_id,
        predictor=predictor,
        sampler=settings.sampler,
        steps=True,
        **params,
    ):
        if isinstance(result, SliceStep):
            yield result
            continue
        objects = int(result.labels.max(initial=0))
        labels = offset_labels(result.labels, count).astype(np.int32)
        count += objects
        labels = slicing.upsample_mask(labels, source.full_plane_shape)
        yield FinishedSlice(result.index, result.slice_index, result.n_slices, labels, result.embedding_source)


def guarded(steps: Iterator) -> Iterator:
    """Run the worker generator ``steps``, returning :class:`Failed` instead of raising.

    superqt reports a ``RuntimeError`` raised in a worker (torch's errors are
    RuntimeErrors) only as a warning, so the worker catches everything itself.
    """
    try:
        return (yield from steps)
    except Exception as error:  # reported on the UI thread as a notification
        return Failed(error)


def link_and_number(labels: np.ndarray) -> np.ndarray:
    """Link objects across z and renumber ``1..N`` (int32); for a worker."""
    from ..segment.linking import link_stack

    return link_stack(labels)


class _Progress(cancelable_progress):
    """A progress bar whose Cancel button stops the worker at once (napari's waits for the next iteration)."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()


class StackRun:
    """One whole-stack run: a worker, its progress bar and the Labels layer the slices go to.

    Attributes: ``layer`` (the new Labels layer), ``settings``, ``instance_settings``
    (AIS/APG's, or None), ``slices_done``,
    ``n_slices``, ``cancelled``, ``finished`` (True once linked and written, or failed),
    ``failed`` (the exception, or None), ``worker``, ``status`` (a line for the user).
    ``changed`` fires with :attr:`status` whenever it changes; ``on_done(run)``, when
    given, is called on the UI thread when the run has finished.
    """

    changed = Signal(str)

    def __init__(
        self,
        viewer,
        image,
        session,
        settings: EverythingParams,
        on_done: Callable[[StackRun], None] | None = None,
        instance_settings=None,
    ) -> None:
        self.viewer = viewer
        self.image = image
        self.settings = settings
        self.instance_settings = instance_settings
        self.source = StackSource.from_layer(image)
        self.n_slices = self.source.n_slices
        self.slices_done = 0
        self.cancelled = False
        self.cancelling = False
        self.finished = False
        self.failed: Exception | None = None
        self.status = f"{image.name}: segmenting {self.n_slices} slice{'s' if self.n_slices != 1 else ''}…"
        self._on_done = on_done
        self._link_worker = None

        self.layer = labels_output.new_labels_layer(image)
        self.layer.name = f"{image.name} everything"
        self._add_layer_quietly()

        self.worker = create_worker(guarded, stack_slices(session, self.source, settings, instance_settings), _ignore_errors=True)
        self.progress = _Progress(
            total=self.n_slices, desc=f"MobileSAM: segment everything in {image.name}", cancel_callback=self.cancel
        )
        self.worker.yielded.connect(self._on_yielded)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(self._on_error)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_worker_finished)
        RUNS.running.add(self)
        self.worker.start()
        RUNS.started.emit(self)

    def _add_layer_quietly(self) -> None:
        """Add the result layer above the image without taking the selection (a click goes on prompting)."""
        layers = self.viewer.layers
        active = layers.selection.active
        index = layers.index(self.image) + 1 if self.image in layers else len(layers)
        layers.insert(index, self.layer)
        if active is not None and active in layers:
            layers.selection.active = active

    @property
    def busy(self) -> bool:
        return not self.finished

    def _say(self, text: str) -> None:
        self.status = text
        self.changed.emit(text)

    def cancel(self) -> None:
        """Stop within the part of a prompt batch being decoded (~0.1 s on a CPU); finished slices are kept (and linked)."""
        if self.finished or self.cancelling:
            return
        self.cancelling = True
        self._say(f"{self.image.name}: cancelling…")
        self.worker.quit()

    def _on_yielded(self, item) -> None:
        if not isinstance(item, FinishedSlice):
            if not self.cancelling and item.total and item.done < item.total:
                self._say(
                    f"{self.image.name}: slice {self.slices_done + 1} of {self.n_slices}, "
                    f"step {item.done + 1} of {item.total}"
                )
            return
        if self.layer in self.viewer.layers:
            self.layer.data[item.index] = item.labels
            self.layer.refresh()
        self.slices_done += 1
        self.progress.update(1)

    def _on_aborted(self) -> None:
        self.cancelled = True

    def _on_returned(self, result) -> None:
        if isinstance(result, Failed):
            self._on_error(result.error)

    def _on_error(self, error: Exception) -> None:
        self.failed = error
        self._say(f"{self.image.name}: failed (see the notification)")
        report(error, f"segmenting every slice of {self.image.name!r}")

    def _on_worker_finished(self) -> None:
        self.progress.close()
        self.cancelled = self.cancelled or self.cancelling
        if self.layer not in self.viewer.layers:
            self._end()
            return
        if self.slices_done == 0:  # failed or cancelled before any slice: no empty layer left behind
            self.viewer.layers.remove(self.layer)
            if self.cancelled and self.failed is None:
                self._say(f"{self.image.name}: cancelled before the first slice finished")
            self._end()
            return
        if self.cancelled:
            self._say(f"{self.image.name}: cancelled after {self.slices_done} of {self.n_slices} slices; linking…")
        else:
            self._say(f"{self.image.name}: linking objects across slices…")
        # Linking reads the whole stack: a worker too, so the viewer stays responsive.
        worker = create_worker(
            safely(link_and_number),
            self.layer.data,
            _ignore_errors=True,
            _progress={"total": 0, "desc": "MobileSAM: linking objects across slices"},
        )
        worker.returned.connect(self._on_linked)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._end)
        self._link_worker = worker
        worker.start()

    def _on_linked(self, labels) -> None:
        if isinstance(labels, Failed):
            self._on_error(labels.error)
            return
        if self.layer in self.viewer.layers:
            self.layer.data = labels
        count = int(labels.max(initial=0))
        objects = "1 object" if count == 1 else f"{count} objects"
        if self.cancelled:
            text = f"{self.image.name}: cancelled after {self.slices_done} of {self.n_slices} slices, {objects}"
        else:
            text = f"{self.image.name}: {objects} in {self.n_slices} slice{'s' if self.n_slices != 1 else ''}"
        self._say(text)
        show_info(f"MobileSAM: {text}.")

    def _end(self) -> None:
        self.finished = True
        RUNS.running.discard(self)
        if self._on_done is not None:
            self._on_done(self)
        self.changed.emit(self.status)

    def wait(self, timeout: float = 600.0) -> bool:
        """Process events until the run has finished (scripts, tests). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.finished:
            if time.monotonic() >= deadline:
                return False
            QApplication.instance().processEvents()
            time.sleep(0.002)
        return True
