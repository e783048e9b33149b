"""The MobileSAM dock widget: click on an object, see its mask, accept it into a Labels layer.

Open it from Plugins › napari-mobilesam › MobileSAM (or Layers › Segment), or
from napari's console::

    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.add_point((120, 80))          # world (y, x) on the plane shown
    widget.accept()                      # -> [1]: the new label id

Every button has a public method, so a script can do what a user does.
"""

from __future__ import annotations

import time

from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

from ..engine.session import default_session
from ..interactive.decoding import Decoded
from . import prompt_layers
from .accepting import Accepting
from .decode_scheduler import DecodeJob, PromptDecoder
from .encode_scheduler import Encoded, PlaneEncoder
from .everything_section import EverythingSection
from .interaction import Interaction
from .layer_plane import LayerPlane
from .layer_wiring import LayerWiring
from .plane_tracking import PlaneTracking
from .prefetch import Prefetcher
from .sections import CacheSection, LayersSection, PromptSection

PREDICT_DEBOUNCE_MS = 0  # the end of the event-loop turn: merges the bursts of events one click or drag emits
VIEW_DEBOUNCE_MS = 20
CONTRAST_DEBOUNCE_MS = 300  # dragging the contrast slider: encode once it rests
PREFETCH_IDLE_MS = 500


class MobileSAMWidget(LayerWiring, PlaneTracking, Interaction, Accepting, QWidget):
    """Interactive MobileSAM segmentation of the plane shown in the viewer.

    Public methods (for napari's console and scripts); coordinates are world
    coordinates, ``(y, x)`` on the plane shown or one per viewer axis:

    - layers: :meth:`set_image_layer`, :meth:`set_points_layer`, :meth:`set_boxes_layer`,
      :meth:`set_labels_layer` (and the ``*_layer`` properties);
    - prompts: :meth:`add_point`, :meth:`add_box`, :meth:`toggle_polarity`, :meth:`clear_prompts`;
    - results: :meth:`segment`, :meth:`next_candidate`, :meth:`accept`, :meth:`undo`, :meth:`redo`;
    - engine: :meth:`set_model`, :meth:`set_cache`, :meth:`encode`, :meth:`clear_cache`, :meth:`wait`;
    - settings: :attr:`overwrite`, :attr:`default_positive`, :attr:`prefetch`;
    - layout: :meth:`add_section` (for further sections such as "Segment everything").
    """

    def __init__(self, napari_viewer, session=None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._session_obj = session
        #: Encode the neighbouring slices (z +- 1) in the background when the user is idle.
        self.prefetch = True
        self._plane: LayerPlane | None = None
        self._encoded: Encoded | None = None
        self._result: tuple[DecodeJob, Decoded] | None = None
        self._requested_signature = None
        self._generation = 0
        self._last_action = time.monotonic()
        self._image = self._points = self._boxes = None
        self._preview_layer = None
        self._dropping: set[int] = set()
        self._plane_text = ""

        self.layers_section = LayersSection(napari_viewer)
        self.prompt_section = PromptSection()
        self.cache_section = CacheSection()
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.layers_section)
        layout.addWidget(self.status_label)
        layout.addWidget(self.prompt_section)
        self._extra_sections = QVBoxLayout()
        layout.addLayout(self._extra_sections)
        layout.addWidget(self.cache_section)
        layout.addStretch(1)
        #: "Segment everything": every object on the slice shown, or on all slices.
        self.everything_section = EverythingSection(self)
        self.add_section(self.everything_section)

        self._view_timer = self._timer(VIEW_DEBOUNCE_MS, self._update_plane)
        self._contrast_timer = self._timer(CONTRAST_DEBOUNCE_MS, self._update_plane)
        self._predict_timer = self._timer(PREDICT_DEBOUNCE_MS, self._predict_now)
        self._prefetch_timer = self._timer(PREFETCH_IDLE_MS, self._start_prefetch)

        self.encoder = PlaneEncoder(self._session, self._on_encoded, self._on_encode_error, self._on_encode_start)
        self.decoder = PromptDecoder(self._session, self._is_current_job, self._on_decoded, self._on_decode_error)
        self.prefetcher = Prefetcher(self._session, self._user_is_busy, self._on_prefetched)

        self._connect_controls()
        for emitter in (
            napari_viewer.dims.events.current_step,
            napari_viewer.dims.events.ndisplay,
            napari_viewer.dims.events.order,
        ):
            emitter.connect(self._on_view_event)
        self._update_cache_text()
        self._set_status()
        # Deferred, so a script can call set_model() right after creating the widget, before any encode.
        self._start_timer = self._timer(0, lambda: self._set_image(self.layers_section.image.layer()))
        self._start_timer.start()

    # -- construction helpers ----------------------------------------------------

    def _timer(self, interval: int, slot) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(interval)
        timer.timeout.connect(slot)
        return timer

    def _connect_controls(self) -> None:
        layers, prompts = self.layers_section, self.prompt_section
        layers.image.changed.connect(self._set_image)
        layers.points.changed.connect(self._set_points)
        layers.boxes.changed.connect(self._set_boxes)
        layers.labels.changed.connect(self._on_labels_picked)
        prompts.add_points.clicked.connect(self._activate_points)
        prompts.draw_box.clicked.connect(self._activate_boxes)
        prompts.positive.toggled.connect(self._on_polarity_toggled)
        prompts.next_mask.clicked.connect(self.next_candidate)
        prompts.accept.clicked.connect(self.accept)
        prompts.clear.clicked.connect(self.clear_prompts)
        self.cache_section.clear.clicked.connect(self.clear_cache)

    def _session(self):
        return self._session_obj if self._session_obj is not None else default_session()

    def add_section(self, section: QWidget) -> None:
        """Add a section (a QWidget, e.g. a QGroupBox) below the prompt controls."""
        self._extra_sections.addWidget(section)

    # -- settings ----------------------------------------------------------------

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
        if self._points is not None:
            self._points.feature_defaults[prompt_layers.POLARITY] = positive
        self._set_status()

    # -- model and cache ---------------------------------------------------------

    def set_model(self, model, source: str | None = None) -> None:
        """Segment with ``model`` (a MobileSAM, e.g. from ``load_model(path)``) instead of the default weights."""
        self._session().set_model(model, source)
        self._set_status()
        if self._plane is not None and self._encoded is None:
            self.encoder.request(self._plane)

    def set_cache(self, cache) -> None:
        """Use ``cache`` (an :class:`~napari_mobilesam.cache.embedding_cache.EmbeddingCache`) for every widget of this session."""
        self._session().set_cache(cache)
        self._update_cache_text()

    def clear_cache(self) -> None:
        """Forget every stored embedding (memory and disk); the plane shown keeps its embedding."""
        self._session().cache.clear()
        self._update_cache_text()
        show_info("MobileSAM: embedding cache cleared.")

    def _update_cache_text(self, text: str | None = None) -> None:
        self.cache_section.size.setText(text if text is not None else self._session().cache.describe())

    # -- status and waiting ------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether an encode, a prediction or a prefetch is running or scheduled."""
        timers = (self._start_timer, self._view_timer, self._contrast_timer, self._predict_timer)
        return any(t.isActive() for t in timers) or self.encoder.busy or self.decoder.busy or self.prefetcher.busy

    def wait(self, timeout: float = 60.0, include_prefetch: bool = False) -> bool:
        """Process events until encoding and prediction are done (scripts). Returns False on timeout."""
        deadline = time.monotonic() + timeout
        app = QApplication.instance()
        while True:
            timers = (self._start_timer, self._view_timer, self._contrast_timer, self._predict_timer)
            pending = any(t.isActive() for t in timers) or self.encoder.busy or self.decoder.busy
            if not pending and not (include_prefetch and self.prefetcher.busy):
                return True
            if time.monotonic() >= deadline:
                return False
            app.processEvents()
            time.sleep(0.002)

    @property
    def status(self) -> str:
        """The status line: weights, device, plane, cache hit or miss."""
        return self.status_label.text()

    def _set_status(self) -> None:
        lines = [self._session().describe()]
        if self._image is None:
            lines.append("No image: open one (File › Open Sample › napari-mobilesam).")
        else:
            lines.append(f"{self._image.name} · {self._plane_text}")
        if self._result is not None:
            decoded = self._result[1]
            if len(decoded.chosen) == 1:
                chosen = int(decoded.chosen[0])
                count = decoded.iou.shape[1]
                lines.append(f"mask {chosen + 1}/{count}, predicted IoU {decoded.iou[0, chosen]:.2f}")
            else:
                lines.append(f"{len(decoded.chosen)} objects")
        polarity = "positive" if self.default_positive else "negative"
        lines.append(
            f"left click: {polarity} point · right/Alt click: {'negative' if polarity == 'positive' else 'positive'}"
        )
        self.status_label.setText("\n".join(lines))

    def closeEvent(self, event) -> None:
        self.prefetcher.stop()
        super().closeEvent(event)
