"""The MobileSAM dock widget: click on an object, see its mask, accept it into a Labels layer.

Open it from Plugins › napari-mobilesam › MobileSAM (or Layers › Segment), or
from napari's console::

    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.add_point((120, 80))          # world (y, x) on the plane shown (of the selected or first image)
    widget.segment()                     # wait for the mask
    widget.accept()                      # -> [1]: the new label id

Every button has a public method, so a script can do what a user does. The state of each image lives
in an :class:`~napari_mobilesam.interactive.image_state.ImageState` (:attr:`MobileSAMWidget.state` is the
current image's); the controllers (layers, tools, plane, prompts, accepting) change it and the widget
redraws on its events.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from functools import partial

import numpy as np
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from ..engine.gc_freeze import host_objects_frozen
from .notify import report
from .staged_build import StagedBuild

#: The widget's attributes that the stages of ``widget_build`` make.
PARTS = frozenset(
    "image_layers layers_section prompt_section cache_section status_label _extra_sections tools status_view choice "
    "lifecycle planes prompts acceptor timers encoder decoder prefetcher model_picker everything_section "
    "precision_section _viewer_events".split()
)


class MobileSAMWidget(QWidget):
    """Interactive MobileSAM segmentation of the plane shown in the viewer.

    Public methods (for napari's console and scripts); coordinates are world
    coordinates, ``(y, x)`` on the plane shown or one per viewer axis:

    - layers: :meth:`set_image_layer`, :meth:`set_points_layer`, :meth:`set_boxes_layer`,
      :meth:`set_labels_layer` (and the ``*_layer`` properties);
    - tools: :meth:`set_tool` (``"points"``, ``"boxes"``, ``"edit"`` or None) and :attr:`tool`;
    - prompts: :meth:`add_point`, :meth:`add_box`, :meth:`toggle_polarity`, :meth:`clear_prompts`;
    - results: :meth:`segment` (waits), :meth:`next_candidate`, :meth:`accept`, :meth:`undo`, :meth:`redo`,
      :meth:`edit_label`;
    - engine: :meth:`use_model` (by name), :meth:`set_model`, :meth:`set_cache`, :meth:`encode`,
      :meth:`clear_cache`, :meth:`wait`;
    - settings: :attr:`overwrite`, :attr:`default_positive`, :attr:`prefetch`;
    - layout: :meth:`add_section` (for further sections such as "Segment everything").
    """

    def __init__(self, napari_viewer, session=None) -> None:
        super().__init__()
        # napari hands plugins a public-only proxy; the layers it returns are proxies too, and
        # "is this the prompts layer?" must compare the layers themselves.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self._proxy = napari_viewer  # what the layer pickers are given
        self._session_obj = session
        self.closed = False
        self.state = None
        #: Encode the neighbouring slices (z +- 1) in the background when the user is idle.
        self.prefetch = True

        # Opening makes many objects (layers, torch): the garbage collections they trigger leave napari's own
        # objects out until the first image is set up (see engine/gc_freeze.py).
        self._opening_freeze = ExitStack()
        self._opening_freeze.enter_context(host_objects_frozen())
        self.destroyed.connect(self._opening_freeze.close)  # a widget deleted while opening gives them back
        # Built in stages (see staged_build.py): napari docks the widget while it holds only this line.
        layout = QVBoxLayout(self)
        self._opening = QLabel("MobileSAM: opening…")
        layout.addWidget(self._opening)
        layout.addStretch(1)
        self._build = StagedBuild(
            self, f"{__package__}.widget_build", (self,), partial(report, doing="opening the widget")
        )

    def __getattr__(self, name: str):
        # A part not built yet (a script right after opening the widget): build the rest now.
        build = self.__dict__.get("_build")
        if name not in PARTS or build is None or build.done or build.running:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        build.finish()
        return getattr(self, name)

    def finish_opening(self) -> None:
        """Build what the widget has not built yet, now (it builds itself over the first event-loop turns)."""
        self._build.finish()

    def opened(self) -> None:
        """The first image is set up: opening is over."""
        self._opening_freeze.close()

    # -- engine ------------------------------------------------------------------------------------

    def session(self):
        """The session holding the model and the embedding cache (the process-wide one unless given)."""
        from ..engine.session import default_session

        return self._session_obj if self._session_obj is not None else default_session()

    def add_section(self, section: QWidget) -> None:
        """Add a section (a QWidget, e.g. a QGroupBox) below the prompt controls."""
        self._extra_sections.addWidget(section)

    # -- the image and its layers ----------------------------------------------------------------

    @property
    def image_layer(self):
        """The image being segmented (None if there is none)."""
        return None if self.state is None else self.state.image

    points_layer = property(lambda self: None if self.state is None else self.state.points)
    boxes_layer = property(lambda self: None if self.state is None else self.state.boxes)

    @property
    def labels_layer(self):
        """The image's output Labels layer, or None until the first accept makes one."""
        return None if self.state is None else self.state.labels

    def set_image_layer(self, layer) -> None:
        """Segment ``layer`` (an Image layer of the viewer)."""
        self.layers_section.image.show_layer(layer)
        self.choice.set_image(layer)

    def set_points_layer(self, layer) -> None:
        """Take point prompts of the current image from ``layer`` (a Points layer; None: the widget's own)."""
        self.layers_section.points.set_layer(layer)

    def set_boxes_layer(self, layer) -> None:
        """Take box prompts of the current image from ``layer`` (a Shapes layer; None: the widget's own)."""
        self.layers_section.boxes.set_layer(layer)

    def set_labels_layer(self, layer) -> None:
        """Write the current image's accepted objects into ``layer`` (None: make ``"<image> labels"`` on accept)."""
        self.layers_section.labels.set_layer(layer)

    # -- settings -------------------------------------------------------------------------------

    @property
    def overwrite(self) -> bool:
        """Whether accepting paints over existing labels (default False: only background is painted)."""
        return self.prompt_section.overwrite.isChecked()

    @overwrite.setter
    def overwrite(self, value: bool) -> None:
        self.prompt_section.overwrite.setChecked(bool(value))

    @property
    def default_positive(self) -> bool:
        """Polarity of a left click (right click or Alt+click gives the other); ``T`` toggles it."""
        return self.prompt_section.positive.isChecked()

    @default_positive.setter
    def default_positive(self, value: bool) -> None:
        self.prompt_section.positive.setChecked(bool(value))

    def toggle_polarity(self) -> None:
        """Swap the default polarity of clicks (key ``T``)."""
        self.default_positive = not self.default_positive

    def _on_polarity_toggled(self, positive: bool) -> None:
        if self.points_layer is not None:
            from .prompt_layers import set_default_polarity

            set_default_polarity(self.points_layer, positive)
        self.render()

    @property
    def tool(self) -> str | None:
        """The tool in effect: ``"points"``, ``"boxes"``, ``"edit"`` or None (pan and zoom)."""
        return self.tools.current

    def set_tool(self, tool: str | None) -> None:
        """Turn a tool on, as its button does (None: back to pan and zoom)."""
        self.tools.choose(tool)

    # -- prompts and results (public; the controllers do the work) --------------------------------

    def add_point(self, position, positive: bool | None = None) -> None:
        """Add a point prompt at world ``position``: ``(y, x)`` on the plane shown, or one value per viewer axis.

        ``positive`` defaults to :attr:`default_positive`. The preview updates in
        the background; :meth:`segment` waits for it.
        """
        self.prompts.add_point(position, positive)

    def add_box(self, corner, opposite_corner) -> None:
        """Add a box prompt between two world corners, each ``(y, x)`` on the plane shown or one value per axis."""
        self.prompts.add_box(corner, opposite_corner)

    def clear_prompts(self) -> None:
        """Remove the points and boxes on the plane shown and the preview (key ``Escape``)."""
        self.prompts.clear()
        if self.state is not None:
            self.state.set_message("")

    def segment(self) -> np.ndarray | None:
        """Wait for the masks of the prompts on the plane shown (scripts): ``(N, H, W)`` bool, or None.

        One mask per object on the plane's pixels (of the multiscale level read); the
        preview shows them. The event loop keeps turning meanwhile.
        """
        return self.prompts.segment()

    def next_candidate(self) -> None:
        """Show the next of the three candidate masks of a single object (key ``M``)."""
        self.prompts.next_candidate()

    def accept(self) -> list[int]:
        """Write the preview into the image's Labels layer on the plane shown (key ``Enter``).

        Each object gets a new id (max + 1, ...); without :attr:`overwrite` only
        background is painted; one undo step (Ctrl+Z); the prompts on the plane
        are cleared. Returns the new ids. If the mask is not ready yet (the slice
        is still encoding), the accept happens when it is, and ``[]`` is returned
        now; call :meth:`segment` first in a script to get the ids.
        """
        return self.acceptor.accept()

    def undo(self) -> None:
        """Ctrl+Z: take back the last prompt on the plane shown; without prompts, undo the last accept."""
        self.acceptor.undo()

    def redo(self) -> None:
        """Redo what :meth:`undo` undid in the Labels layer (Ctrl+Shift+Z)."""
        self.acceptor.redo()

    def edit_label(self, label_id: int) -> None:
        """Refine an existing object of the Labels layer: its mask becomes the prompt, points refine it, Enter
        replaces it (one undo step). The *Edit label* tool does this for the object clicked."""
        self.acceptor.edit(label_id)

    @property
    def preview(self) -> np.ndarray | None:
        """``(N, H, W)`` bool masks shown in the preview layer, or None."""
        if self.state is None or self.state.result is None:
            return None
        return self.state.result[1].masks

    @property
    def plane(self):
        """The plane being segmented (layer, steps per axis, multiscale level), or None."""
        return None if self.state is None else self.state.plane

    def require_image(self) -> bool:
        if self.state is None and not self.closed and not self.lifecycle.layers_made.is_set():
            self.choice.first_image_now()  # called as the widget opens: its first image is taken now
        if self.state is None:
            show_warning("MobileSAM: open an image first (File › Open, or File › Open Sample › napari-mobilesam).")
            return False
        return True

    # -- model and cache ---------------------------------------------------------------------------

    def use_model(self, name: str):
        """Segment with the registered model ``name`` (e.g. ``"vit_t_lm"``), loaded in a worker (returned)."""
        return self.model_picker.choose(name)

    def set_model(self, model, source: str | None = None) -> None:
        """Segment with ``model`` (a MobileSAM, e.g. from ``load_model(path)``) instead of the default weights."""
        self.session().set_model(model, source)
        self.model_picker.model_changed()

    def set_cache(self, cache) -> None:
        """Use ``cache`` (an :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`) for this session."""
        self.session().set_cache(cache)
        self.update_cache_text()

    def clear_cache(self) -> None:
        """Forget every stored embedding (memory and disk); the plane shown keeps its embedding."""
        self.session().cache.clear()
        self.update_cache_text()
        show_info("MobileSAM: embedding cache cleared.")

    def update_cache_text(self, text: str | None = None) -> None:
        self.cache_section.size.setText(text if text is not None else self.session().cache.describe())

    def encode(self) -> str | None:
        """Encode the plane shown, waiting for it (scripts). Returns the source: "memory", "disk" or "computed"."""
        return self.planes.encode_now()

    # -- status and waiting -------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether an encode, a prediction or a prefetch is running or scheduled."""
        return self._pending() or self.prefetcher.busy

    def _pending(self) -> bool:
        timers = ("start", "predict", "view", "contrast")
        starting = not self.lifecycle.layers_made.is_set() and not self.closed  # the first image is not picked yet
        return starting or any(self.timers[t].isActive() for t in timers) or self.encoder.busy or self.decoder.busy

    def wait(self, timeout: float = 60.0, include_prefetch: bool = False) -> bool:
        """Process events until encoding and prediction are done (scripts). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        self.finish_opening()
        app = QApplication.instance()
        while self._pending() or (include_prefetch and self.prefetcher.busy):
            if time.monotonic() >= deadline:
                return False
            app.processEvents()
            time.sleep(0.002)
        return True

    @property
    def status(self) -> str:
        """The status lines: model, image and plane, the result or last action, hints."""
        return self.status_label.text()

    def on_state_changed(self, what: str) -> None:
        if what in ("result", "plane") and self.state is not None:
            self.prompts.show(self.state)
        if what == "layers":  # e.g. the labels layer the first accept made: the pickers show it
            self.choice.show_pickers()
        if what in ("layers", "plane", "message", "result"):
            self.timers["work"].start()
        self.render()

    def render(self) -> None:
        """Redraw the status from the state (after every change)."""
        if not self.closed:
            self.status_view.render()

    # -- closing ------------------------------------------------------------------------------------------

    def close_widget(self, tidy_layers: bool = True) -> None:
        """Stop everything: events, workers (an encode under way stops between the encoder's stages), timers;
        with ``tidy_layers``, remove the widget's empty helper layers and previews (the panel closed, the
        viewer stays). The dock's close button, napari's window closing and quitting call it."""
        if self.closed:
            return
        self.opened()
        if not self._build.done:
            try:
                self.finish_opening()  # everything it connected is disconnected below
            except Exception:  # noqa: BLE001 - a widget that failed to open has nothing more to stop
                self._build.cancel()
                self.closed = True
                return
        from .stack_command import RUNS

        self.closed = True
        if RUNS.widgets.get(id(self.viewer)) is self:
            del RUNS.widgets[id(self.viewer)]
        self.lifecycle.stop_watching()
        for timer in self.timers.values():
            timer.stop()
        for emitter, callback in self._viewer_events:
            emitter.disconnect(callback)
        if self.state is not None:
            self.choice.watch_image(self.state.image, connect=False)
            self.state.changed.disconnect(self.on_state_changed)
        self.image_layers.close()
        self.tools.close()
        for picker in self.layers_section.pickers():
            picker.disconnect_viewer()
        self.encoder.stop()
        self.decoder.stop()
        self.prefetcher.close()
        self.everything_section.close_section()
        self.lifecycle.wait_for_workers()
        if tidy_layers:
            for state in list(self.image_layers.states.values()):
                self.image_layers.remove_helpers(state, only_empty=True)
        self.state = None
