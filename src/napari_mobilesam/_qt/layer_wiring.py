"""Which layers the widget works with: the image, the prompt layers it makes or is given, the output labels.

A mixin of :class:`~napari_mobilesam._qt.widget.MobileSAMWidget` (the widget's layer half).
"""

from __future__ import annotations

import weakref

from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer

from ..errors import MobileSAMError
from . import labels_output, prompt_layers
from .layer_picker import ROLE_KEY

_KEYS = {
    "Enter": "accept",
    "Escape": "clear_prompts",
    "M": "next_candidate",
    "Control-Z": "undo",
    "Control-Shift-Z": "redo",
}


class LayerWiring:
    """Picking, making and configuring layers; the widget provides ``viewer`` and the sections."""

    @property
    def image_layer(self):
        """The image being segmented (None if there is none)."""
        return self._image

    @property
    def points_layer(self):
        return self._points

    @property
    def boxes_layer(self):
        return self._boxes

    @property
    def labels_layer(self):
        """The output Labels layer, or None until the first accept makes one."""
        return self.layers_section.labels.layer()

    def set_image_layer(self, layer) -> None:
        """Segment ``layer`` (an Image layer of the viewer)."""
        self.layers_section.image.set_layer(layer)
        if self._image is not layer:
            self._set_image(layer)

    def set_points_layer(self, layer) -> None:
        """Take point prompts from ``layer`` (a Points layer of the viewer)."""
        self.layers_section.points.set_layer(layer)

    def set_boxes_layer(self, layer) -> None:
        """Take box prompts from ``layer`` (a Shapes layer of the viewer)."""
        self.layers_section.boxes.set_layer(layer)

    def set_labels_layer(self, layer) -> None:
        """Write accepted objects into ``layer`` (None: make ``"<image> labels"`` on the next accept)."""
        self.layers_section.labels.set_layer(layer)

    def _set_image(self, layer) -> None:
        old = self._image
        if old is not None:
            self._watch_image(old, connect=False)
        self._image = layer
        self._plane = self._encoded = self._result = None
        if layer is None:
            self.encoder.request(None)
            self._set_status()
            return
        self._watch_image(layer, connect=True)
        self._ensure_prompt_layers()
        labels = self.labels_layer
        if labels is not None:
            try:
                labels_output.check_labels_fit(labels, layer)
            except MobileSAMError:
                self.set_labels_layer(None)
        self._update_plane()

    def _watch_image(self, layer, connect: bool) -> None:
        events = layer.events
        pairs = [(events.contrast_limits, self._on_contrast_limits), (events.data, self._on_image_data)]
        pairs += [
            (getattr(events, name), self._on_view_event) for name in ("scale", "translate", "rotate", "shear", "affine")
        ]
        for emitter, callback in pairs:
            emitter.connect(callback) if connect else emitter.disconnect(callback)

    def _on_contrast_limits(self, event=None) -> None:
        self._touch()
        self._contrast_timer.start()

    def _on_image_data(self, event=None) -> None:
        self._plane = self._encoded = None  # same layer, new pixels: encode again
        self._view_timer.start()

    def _ensure_prompt_layers(self) -> None:
        image = self._image
        active = self.viewer.layers.selection.active
        # The widget's own prompt layers follow the image's dimensionality; layers the user picked stay.
        if self._boxes is None or (_is_own(self._boxes) and self._boxes.ndim != image.ndim):
            boxes = prompt_layers.new_boxes_layer(image)
            self.viewer.add_layer(boxes)
            self.set_boxes_layer(boxes)
        if self._points is None or (_is_own(self._points) and self._points.ndim != image.ndim):
            points = prompt_layers.new_points_layer(image)
            self.viewer.add_layer(points)
            self.set_points_layer(points)
            points.mode = "add"
            active = points
        self._select_later(active)

    def _select_later(self, layer) -> None:
        # napari selects a newly added layer after its "inserted" event, in which this may run: select afterwards.
        self._select(layer)
        QTimer.singleShot(0, lambda: self._select(layer))

    def _select(self, layer) -> None:
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.selection.active = layer

    def _set_points(self, layer) -> None:
        old, self._points = self._points, layer
        if old is not None:
            self._configure_prompt_layer(old, connect=False)
            callback = getattr(self, "_polarity_callback", None)
            if callback in old.mouse_drag_callbacks:
                old.mouse_drag_callbacks.remove(callback)
        if layer is not None:
            prompt_layers.ensure_polarity_feature(layer)
            layer.feature_defaults[prompt_layers.POLARITY] = self.default_positive
            this = weakref.ref(self)
            self._polarity_callback = prompt_layers.make_polarity_callback(
                lambda: this().default_positive if this() is not None else True
            )
            layer.mouse_drag_callbacks.insert(0, self._polarity_callback)
            self._configure_prompt_layer(layer, connect=True)
            layer.bind_key("T", _forward(self, "toggle_polarity"), overwrite=True)
        self._requested_signature = None
        self._schedule_predict()

    def _set_boxes(self, layer) -> None:
        old, self._boxes = self._boxes, layer
        if old is not None:
            self._configure_prompt_layer(old, connect=False)
        if layer is not None:
            self._configure_prompt_layer(layer, connect=True)
        self._requested_signature = None
        self._schedule_predict()

    def _configure_prompt_layer(self, layer, connect: bool) -> None:
        if connect:
            layer.events.data.connect(self._on_prompts_changed)
            layer.events.features.connect(self._on_prompts_changed)
        else:
            layer.events.data.disconnect(self._on_prompts_changed)
            layer.events.features.disconnect(self._on_prompts_changed)
        for key, method in _KEYS.items():
            layer.bind_key(key, _forward(self, method) if connect else None, overwrite=True)

    def _on_labels_picked(self, layer) -> None:
        if layer is None or self._image is None:
            return
        try:
            labels_output.check_labels_fit(layer, self._image)
        except MobileSAMError as error:
            show_warning(str(error))
            QTimer.singleShot(0, lambda: self.set_labels_layer(None))

    def _activate_points(self) -> None:
        if self._require_image():
            self._ensure_prompt_layers()
            self.viewer.layers.selection.active = self._points
            self._points.mode = "add"

    def _activate_boxes(self) -> None:
        if self._require_image():
            self._ensure_prompt_layers()
            self.viewer.layers.selection.active = self._boxes
            self._boxes.mode = "add_rectangle"

    def _require_image(self) -> bool:
        if self._image is None:
            show_warning("MobileSAM: open an image first (File › Open, or File › Open Sample › napari-mobilesam).")
            return False
        return True


def _forward(widget, method: str):
    """A key-binding callback calling ``widget.method()`` without keeping the widget alive."""
    ref = weakref.ref(widget)

    def callback(layer):
        target = ref()
        if target is not None:
            getattr(target, method)()

    callback.__name__ = method
    callback.__doc__ = getattr(type(widget), method).__doc__
    return callback


def _is_own(layer) -> bool:
    return layer.metadata.get(ROLE_KEY) in ("prompts", "boxes")
