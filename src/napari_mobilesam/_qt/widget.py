"""The MobileSAM dock widget: click on an object, see its mask, accept it into a Labels layer.

Open it from Plugins › napari-mobilesam › MobileSAM (or Layers › Segment), or
from napari's console::

    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.add_point((120, 80))          # world (y, x) on the plane shown
    widget.segment()                     # wait for the mask
    widget.accept()                      # -> [1]: the new label id

Every button has a public method, so a script can do what a user does. The
state of each image lives in an :class:`~napari_mobilesam.interactive.image_state.ImageState`
(:attr:`MobileSAMWidget.state` is the current image's); the controllers
(layers, tools, plane, prompts, accepting) change it and the widget redraws
on its events.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QApplication, QVBoxLayout, QWidget

from ..engine.session import default_session
from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.status import status_lines, work_summary
from . import prompt_layers
from .accepting import Acceptor
from .decode_scheduler import PromptDecoder
from .encode_scheduler import Failed, PlaneEncoder
from .everything_section import EverythingSection
from .image_layers import ImageLayers
from .interaction import PromptLoop
from .notify import report, reporting
from .plane_tracking import PlaneFollower
from .prefetch import Prefetcher
from .sections import CacheSection, LayersSection, PromptSection, StatusLabel
from .stack_command import RUNS
from .tools import Tools

TIMERS = {
    "start": 0,  # the first image is picked on the next turn: a script can call set_model() before any encode
    "predict": 0,  # the end of the event-loop turn: merges the bursts of events one click or drag emits
    "view": 20,
    "contrast": 300,  # dragging the contrast slider: encode once it rests
    "prefetch": 500,
    "work": 200,  # which slices hold labels or prompts, once edits rest
}
WORK_SCAN_LIMIT = 200_000_000  # labels scanned for the slices they cover (larger stacks: not, the UI would stall)


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
    - engine: :meth:`set_model`, :meth:`set_cache`, :meth:`encode`, :meth:`clear_cache`, :meth:`wait`;
    - settings: :attr:`overwrite`, :attr:`default_positive`, :attr:`prefetch`;
    - layout: :meth:`add_section` (for further sections such as "Segment everything").
    """

    def __init__(self, napari_viewer, session=None) -> None:
        super().__init__()
        # napari hands plugins a public-only proxy; the layers it returns are proxies too, and
        # "is this the prompts layer?" must compare the layers themselves.
        self.viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self._session_obj = session
        self._closed = False
        self.state = None
        #: Encode the neighbouring slices (z +- 1) in the background when the user is idle.
        self.prefetch = True

        self.image_layers = ImageLayers(self)
        self.layers_section = LayersSection(napari_viewer, eligible_helper=self.image_layers.pickable_helper)
        self.prompt_section = PromptSection()
        self.cache_section = CacheSection()
        self.status_label = StatusLabel()
        layout = QVBoxLayout(self)
        layout.addWidget(self.layers_section)
        layout.addWidget(self.status_label)
        layout.addWidget(self.prompt_section)
        self._extra_sections = QVBoxLayout()
        layout.addLayout(self._extra_sections)
        layout.addWidget(self.cache_section)
        layout.addStretch(1)

        self.tools = Tools(self)
        self.planes = PlaneFollower(self)
        self.prompts = PromptLoop(self)
        self.acceptor = Acceptor(self)
        self.timers = {name: self._timer(ms) for name, ms in TIMERS.items()}
        for name, slot in (
            ("predict", self.prompts.predict_now),
            ("view", self.planes.update),
            ("contrast", self.planes.update),
            ("prefetch", self.planes.start_prefetch),
            ("work", self._update_work),
            ("start", self._first_image),
        ):
            self.timers[name].timeout.connect(reporting("following the viewer")(slot))
        self.encoder = PlaneEncoder(
            self.session, self.planes.on_encoded, self.planes.on_encode_error, self.planes.on_encode_start
        )
        self.decoder = PromptDecoder(
            self.session, self.prompts.is_current, self.prompts.on_decoded, self.prompts.on_decode_error
        )
        self.prefetcher = Prefetcher(self.session, self.planes.user_is_busy, self.planes.on_prefetched)
        self._model_worker = None
        #: "Segment everything": every object on the slice shown, or on all slices.
        self.everything_section = EverythingSection(self)
        self.add_section(self.everything_section)

        self._work = ""
        self._tool_before_3d = None
        RUNS.widgets[id(self.viewer)] = self
        self._connect()
        self._watch_for_the_end()
        self.update_cache_text()
        self._render()
        self._load_model()  # starts the "start" timer when the prompt layers can be made

    # -- construction --------------------------------------------------------------------------

    def _timer(self, interval: int) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(interval)
        return timer

    def _connect(self) -> None:
        layers, prompts = self.layers_section, self.prompt_section
        layers.image.changed.connect(reporting("switching images")(self._set_image))
        layers.points.changed.connect(reporting("picking the points layer")(self._on_points_picked))
        layers.boxes.changed.connect(reporting("picking the boxes layer")(self._on_boxes_picked))
        layers.labels.changed.connect(reporting("picking the labels layer")(self._on_labels_picked))
        prompts.positive.toggled.connect(self._on_polarity_toggled)
        prompts.next_mask.clicked.connect(self.next_candidate)
        prompts.accept.clicked.connect(self.accept)
        prompts.clear.clicked.connect(self.clear_prompts)
        self.cache_section.clear.clicked.connect(self.clear_cache)
        self._viewer_events = [
            (self.viewer.dims.events.current_step, self._on_view_event),
            (self.viewer.dims.events.ndisplay, self._on_ndisplay),
            (self.viewer.dims.events.order, self._on_view_event),
            (self.viewer.layers.events.removed, self._on_layers_changed),
            (self.viewer.layers.events.inserted, self._on_layers_changed),
        ]
        for emitter, callback in self._viewer_events:
            emitter.connect(callback)

    def _watch_for_the_end(self) -> None:
        """Stop when the application quits; napari's window is watched once the widget is docked in it."""
        self._top = None
        app = QApplication.instance()
        if app is not None:
            this = weakref.ref(self)  # the application must not keep a closed viewer's widget alive
            app.aboutToQuit.connect(lambda: this() is not None and this().close_widget(tidy_layers=False))

    def _watch_window(self) -> None:
        """Stop when the window the widget is docked in closes (no close event reaches a docked widget)."""
        top = self.window()
        current = self._top() if self._top is not None else None
        if top is self or top is current:
            return
        if current is not None:
            current.removeEventFilter(self)
        self._top = weakref.ref(top)  # weak: the widget must not keep napari's window alive
        top.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        top = self._top() if self._top is not None else None
        if watched is top and event.type() == QEvent.Type.Close and not self._closed:
            self.close_widget(tidy_layers=False)  # the window goes, its layers with it
        return False

    def _first_image(self) -> None:
        if self._closed:
            return
        QTimer.singleShot(0, self._layers_made.set)  # once this turn (making the prompt layers) is over
        active = self.viewer.layers.selection.active
        image = active if active in self.image_layers.images() else self.layers_section.image.layer()
        if image is not None:
            self.layers_section.image.show_layer(image)
        self._set_image(image)

    def session(self):
        """The session holding the model and the embedding cache (the process-wide one unless given)."""
        return self._session_obj if self._session_obj is not None else default_session()

    def add_section(self, section: QWidget) -> None:
        """Add a section (a QWidget, e.g. a QGroupBox) below the prompt controls."""
        self._extra_sections.addWidget(section)

    # -- the image and its layers ----------------------------------------------------------------

    @property
    def image_layer(self):
        """The image being segmented (None if there is none)."""
        return None if self.state is None else self.state.image

    @property
    def points_layer(self):
        return None if self.state is None else self.state.points

    @property
    def boxes_layer(self):
        return None if self.state is None else self.state.boxes

    @property
    def labels_layer(self):
        """The image's output Labels layer, or None until the first accept makes one."""
        return None if self.state is None else self.state.labels

    def set_image_layer(self, layer) -> None:
        """Segment ``layer`` (an Image layer of the viewer)."""
        self.layers_section.image.show_layer(layer)
        self._set_image(layer)

    def set_points_layer(self, layer) -> None:
        """Take point prompts of the current image from ``layer`` (a Points layer; None: the widget's own)."""
        self.layers_section.points.set_layer(layer)

    def set_boxes_layer(self, layer) -> None:
        """Take box prompts of the current image from ``layer`` (a Shapes layer; None: the widget's own)."""
        self.layers_section.boxes.set_layer(layer)

    def set_labels_layer(self, layer) -> None:
        """Write the current image's accepted objects into ``layer`` (None: make ``"<image> labels"`` on accept)."""
        self.layers_section.labels.set_layer(layer)

    def _set_image(self, layer) -> None:
        old = self.state
        if old is not None and old.image is layer:
            return
        if old is not None:
            self._watch_image(old.image, connect=False)
            old.changed.disconnect(self._on_state_changed)
        self.image_layers.unwire()
        self.decoder.cancel_waiting()
        self.prefetcher.stop()
        if layer is None:
            self.state = None
            self.encoder.request(None)
            self._show_pickers()
            self._render()
            return
        self.tools.hold()
        state = self.state = self.image_layers.state_for(layer)
        state.changed.connect(self._on_state_changed)
        self._watch_image(layer, connect=True)
        self.image_layers.ensure_prompt_layers(state)
        self.image_layers.wire(state)
        if state.labels is not None and state.labels not in self.viewer.layers:
            state.set_layers(labels=None)
        self._show_pickers()
        state.plane = None  # recomputed: the view may have changed while another image was worked on
        self.planes.update()
        self.tools.set(self.tools.current)  # the tool stays in effect on the new image
        self.prompts.show(state)
        self._render()

    def _show_pickers(self) -> None:
        section, state = self.layers_section, self.state
        for picker in (section.points, section.boxes, section.labels):
            picker.refresh()
        section.points.show_layer(None if state is None or _is_own(state.points) else state.points)
        section.boxes.show_layer(None if state is None or _is_own(state.boxes) else state.boxes)
        section.labels.show_layer(None if state is None else state.labels)

    def _watch_image(self, layer, connect: bool) -> None:
        events = layer.events
        pairs = [(events.contrast_limits, self._on_contrast_limits), (events.data, self._on_image_data)]
        pairs += [
            (getattr(events, name), self._on_view_event) for name in ("scale", "translate", "rotate", "shear", "affine")
        ]
        for emitter, callback in pairs:
            emitter.connect(callback) if connect else emitter.disconnect(callback)

    def _on_contrast_limits(self, event=None) -> None:
        self.planes.touch()
        self.timers["contrast"].start()

    def _on_image_data(self, event=None) -> None:
        if self.state is not None:
            self.state.set_plane(None)  # same layer, new pixels: encode again
            self.state.embedding = None
        self.timers["view"].start()

    def _on_view_event(self, event=None) -> None:
        self.planes.touch()
        self.timers["view"].start()

    def _on_ndisplay(self, event=None) -> None:
        """3D: clicks cannot prompt (the tool is kept aside); back in 2D the same tool is on again."""
        if self.viewer.dims.ndisplay == 3:
            self._tool_before_3d = self.tools.current if self.tools.current is not None else self._tool_before_3d
        elif self._tool_before_3d is not None:
            self.tools.set(self._tool_before_3d)
            self._tool_before_3d = None
        self._on_view_event()

    def _on_layers_changed(self, event=None) -> None:
        self.timers["work"].start()

    def _on_points_picked(self, layer) -> None:
        self._use_prompt_layer("points", layer)

    def _on_boxes_picked(self, layer) -> None:
        self._use_prompt_layer("boxes", layer)

    def _use_prompt_layer(self, slot: str, layer) -> None:
        state = self.state
        if state is None:
            return
        self.image_layers.unwire()
        if layer is None:
            state.set_layers(**{slot: None})
            self.image_layers.ensure_prompt_layers(state)  # the widget's own, found again or made
        else:
            state.set_layers(**{slot: layer})
        self.image_layers.wire(state)
        state.invalidate_result()
        self.prompts.schedule()

    def _on_labels_picked(self, layer) -> None:
        state = self.state
        if state is None:
            return
        if layer is not None:
            try:
                self.image_layers.check_labels_fit(layer, state.image)
            except MobileSAMError as error:
                show_warning(str(error))
                self.layers_section.labels.show_layer(state.labels)
                return
        state.set_layers(labels=layer)

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
            prompt_layers.set_default_polarity(self.points_layer, positive)
        self._render()

    @property
    def tool(self) -> str | None:
        """The tool in effect: ``"points"``, ``"boxes"``, ``"edit"`` or None (pan and zoom)."""
        return self.tools.current

    def set_tool(self, tool: str | None) -> None:
        """Turn a tool on, as its button does (None: back to pan and zoom)."""
        if tool is not None and tool not in ("points", "boxes", "edit"):
            raise MobileSAMError(f"Unknown tool {tool!r}; choose 'points', 'boxes', 'edit' or None.")
        if tool is None:
            self.tools.set(None)
        else:
            self.tools.press(tool, True)

    # -- prompts and results (public; the controllers do the work) --------------------------------

    def add_point(self, position, positive: bool | None = None) -> None:
        """Add a point prompt at world ``position``: ``(y, x)`` on the plane shown, or one value per viewer axis.

        ``positive`` defaults to :attr:`default_positive`. The preview updates in
        the background; :meth:`segment` waits for it.
        """
        if not self.require_image():
            return
        self.image_layers.ensure_prompt_layers(self.state)
        layer = self.points_layer
        coords = layer.world_to_data(self._world_position(position))
        polarity = self.default_positive if positive is None else bool(positive)
        previous = bool(layer.feature_defaults[prompt_layers.POLARITY].iloc[0])
        layer.feature_defaults[prompt_layers.POLARITY] = polarity
        try:
            layer.add(np.asarray(coords, dtype=float)[None])
        finally:
            layer.feature_defaults[prompt_layers.POLARITY] = previous

    def add_box(self, corner, opposite_corner) -> None:
        """Add a box prompt between two world corners, each ``(y, x)`` on the plane shown or one value per axis."""
        if not self.require_image():
            return
        self.image_layers.ensure_prompt_layers(self.state)
        layer = self.boxes_layer
        a = np.asarray(layer.world_to_data(self._world_position(corner)), dtype=float)
        b = np.asarray(layer.world_to_data(self._world_position(opposite_corner)), dtype=float)
        row, column = layer.ndim - 2, layer.ndim - 1
        plane = self.state.plane
        if plane is not None and layer.ndim == self.state.image.ndim:
            row, column = plane.displayed
        corners = np.repeat(a[None], 4, axis=0)
        corners[1, column] = b[column]
        corners[2, [row, column]] = b[[row, column]]
        corners[3, row] = b[row]
        layer.add_rectangles(corners[None])

    def _world_position(self, position) -> np.ndarray:
        position = np.asarray(position, dtype=float)
        world = np.asarray(self.viewer.dims.point, dtype=float).copy()
        if len(position) == len(world):
            return position
        if len(position) != 2:
            raise MobileSAMError(
                f"A position is (y, x) or has one value per viewer axis ({len(world)}); got {position}."
            )
        world[list(self.viewer.dims.displayed)] = position
        return world

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
        if self.state is None:
            show_warning("MobileSAM: open an image first (File › Open, or File › Open Sample › napari-mobilesam).")
            return False
        return True

    # -- model and cache ---------------------------------------------------------------------------

    def _load_model(self) -> None:
        """Warm up in a worker: napari's table library first (so the prompt layers can be made without a stall),
        then the model (so the first click does not wait for it). The first image is picked once the first
        part is done."""
        import sys

        session = self.session()
        self._layers_made = threading.Event()
        if session.has_model and "pandas" in sys.modules:
            self.timers["start"].start()
            return
        worker = create_worker(
            _warm_up,
            session,
            self._layers_made,
            _progress={"total": 0, "desc": "MobileSAM: loading the model"},
            _ignore_errors=True,
        )
        worker.yielded.connect(lambda _: self.timers["start"].start())
        worker.returned.connect(self._on_model_loaded)
        worker.finished.connect(self._on_model_worker_done)
        self._model_worker = worker
        worker.start()

    def _on_model_loaded(self, result) -> None:
        if isinstance(result, Failed) and not self._closed:
            if not self._layers_made.is_set():
                self.timers["start"].start()
            report(result.error, "loading the model")
        self._render()

    def _on_model_worker_done(self) -> None:
        self._model_worker = None

    def set_model(self, model, source: str | None = None) -> None:
        """Segment with ``model`` (a MobileSAM, e.g. from ``load_model(path)``) instead of the default weights."""
        self.session().set_model(model, source)
        for state in self.image_layers.states.values():
            state.set_plane(None)
            state.embedding = None
        self.planes.update()
        self._render()

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
        starting = not self._layers_made.is_set() and not self._closed  # the first image is not picked yet
        return starting or any(self.timers[t].isActive() for t in timers) or self.encoder.busy or self.decoder.busy

    def wait(self, timeout: float = 60.0, include_prefetch: bool = False) -> bool:
        """Process events until encoding and prediction are done (scripts). Returns False on timeout."""
        deadline = time.monotonic() + timeout
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

    def _on_state_changed(self, what: str) -> None:
        if what in ("result", "plane") and self.state is not None:
            self.prompts.show(self.state)
        if what in ("layers", "plane", "message", "result"):
            self.timers["work"].start()
        self._render()

    def _render(self) -> None:
        if self._closed:
            return
        session = self.session()
        model = session.describe() if session.has_model else "weights: loading the model…"
        if not session.has_model and self._model_worker is None and not self.encoder.busy:
            model = session.describe()
        lines = status_lines(model, self.state, self.default_positive, self._work)
        self.status_label.show_lines(lines)

    def _update_work(self) -> None:
        self._work = self._work_text()
        self._render()

    def _work_text(self) -> str:
        """Which slices of a stack hold accepted labels or prompts, so the user finds their work again."""
        state = self.state
        if state is None or state.plane is None or all(step is None for step in state.plane.steps):
            return ""
        steps = state.plane.steps
        labels = []
        data = None if state.labels is None or state.labels not in self.viewer.layers else state.labels.data
        if data is not None and data.size <= WORK_SCAN_LIMIT:
            labels = _slices_with(np.asarray(data), steps)
        prompts = set()
        for layer in (state.points, state.boxes):
            if layer is not None and len(layer.data) and layer.ndim == len(steps):
                coords = np.concatenate([np.atleast_2d(np.asarray(d)) for d in layer.data])
                for row in np.round(coords).astype(int):
                    prompts.add(tuple(v if s is not None else None for v, s in zip(row, steps, strict=True)))
        prompt_names = [slicing.describe_steps(p) for p in sorted(prompts, key=lambda p: tuple(v or 0 for v in p))]
        return work_summary(labels, prompt_names)

    # -- closing ---------------------------------------------------------------------------------------

    def event(self, event) -> bool:
        # napari's dock close button takes the widget out of its dock (no close event): stop then.
        if event.type() == QEvent.Type.ParentChange and not self._closed:
            if self.parent() is None:
                self.close_widget(tidy_layers=True)
            else:
                self._watch_window()
        return super().event(event)

    def showEvent(self, event) -> None:
        if not self._closed:
            self._watch_window()  # docked now: the top-level is napari's window
        super().showEvent(event)

    def closeEvent(self, event) -> None:
        self.close_widget(tidy_layers=False)
        super().closeEvent(event)

    def close_widget(self, tidy_layers: bool = True) -> None:
        """Stop everything: events, workers (an encode under way stops between the encoder's stages), timers;
        with ``tidy_layers``, remove the widget's empty helper layers and previews (the panel closed, the
        viewer stays)."""
        if self._closed:
            return
        self._closed = True
        if RUNS.widgets.get(id(self.viewer)) is self:
            del RUNS.widgets[id(self.viewer)]
        top = self._top() if self._top is not None else None
        if top is not None:
            top.removeEventFilter(self)
        for timer in self.timers.values():
            timer.stop()
        for emitter, callback in self._viewer_events:
            emitter.disconnect(callback)
        if self.state is not None:
            self._watch_image(self.state.image, connect=False)
            self.state.changed.disconnect(self._on_state_changed)
        self.image_layers.close()
        self.tools.close()
        for picker in self.layers_section.pickers():
            picker.disconnect_viewer()
        self.encoder.stop()
        self.decoder.stop()
        self.prefetcher.close()
        self.everything_section.close_section()
        self._wait_for_workers()
        if tidy_layers:
            for state in list(self.image_layers.states.values()):
                self.image_layers.remove_helpers(state, only_empty=True)
        self.state = None

    def _wait_for_workers(self, timeout: float = 3.0) -> None:
        """Let the workers told to stop finish, so none outlives napari's window (they stop within a stage)."""
        deadline = time.monotonic() + timeout
        app = QApplication.instance()
        while time.monotonic() < deadline and (
            self.encoder.busy or self.decoder.busy or self.prefetcher.busy or self._model_worker is not None
            or self.everything_section.busy_here
        ):
            app.processEvents()
            time.sleep(0.005)


def _warm_up(session, layers_made: threading.Event):
    """Worker generator: import what napari's Points layers need, yield, then load the model.

    A Points layer keeps its features in pandas, whose first import takes seconds;
    made on the UI thread, the prompt layers would freeze the viewer that long. The
    model (torch's import) waits until the UI thread has made the layers: the two
    would share the interpreter and each take twice as long.
    """
    try:
        import pandas  # noqa: F401

        yield "layers"
        layers_made.wait(10)
        session.model()
    except Exception as error:  # reported on the UI thread as a notification
        return Failed(error)
    return None


def _is_own(layer) -> bool:
    return layer is None or layer.metadata.get(prompt_layers.OWNER_KEY) is not None


def _slices_with(data: np.ndarray, steps: tuple) -> list[str]:
    """Names (``"z=3"``) of the planes of ``data`` along the axes not displayed that hold a label."""
    leading = [axis for axis, step in enumerate(steps) if step is not None]
    displayed = [axis for axis, step in enumerate(steps) if step is None]
    moved = np.moveaxis(data, leading + displayed, list(range(data.ndim)))
    flat = moved.reshape(int(np.prod([data.shape[a] for a in leading])), -1)
    found = np.flatnonzero(flat.any(axis=1))
    names = []
    for index in found:
        position = np.unravel_index(int(index), [data.shape[a] for a in leading])
        full = [None] * len(steps)
        for axis, value in zip(leading, position, strict=True):
            full[axis] = int(value)
        names.append(slicing.describe_steps(tuple(full)))
    return names
