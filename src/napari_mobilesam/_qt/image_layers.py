"""The layers the widget works with for each image: helper layers made once and reused, removed with their image.

Each image the widget works on has an :class:`~napari_mobilesam.interactive.image_state.ImageState`
holding its prompt layers, preview and output labels. Helper layers are made
the first time an image is used (or found again by their metadata, never made
twice), keep their prompts while another image is worked on, and are removed
with their image. Only the current image's prompt layers are wired to the
widget (events, keys, the polarity of clicks).
"""

from __future__ import annotations

import weakref

from napari.layers import Image, Labels

from ..interactive.image_state import ImageState
from . import labels_output, prompt_layers
from .layer_picker import ROLE_KEY
from .notify import reporting

_KEYS = {
    "Enter": "accept",
    "Escape": "clear_prompts",
    "M": "next_candidate",
    "T": "toggle_polarity",
    "Control-Z": "undo",
    "Control-Shift-Z": "redo",
}


#: The prompt layers of an image: its state's slot -> the helper role in the layer's metadata.
PROMPT_ROLES = {"boxes": "boxes", "points": "prompts"}


class ImageLayers:
    """Per-image states and their layers; ``widget`` provides ``viewer`` and the callbacks layers are wired to."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self.states: dict[str, ImageState] = {}
        self._wired: ImageState | None = None
        self._polarity_callback = self._press_callback = None
        widget.viewer.layers.events.removed.connect(self._on_layer_removed)

    @property
    def viewer(self):
        return self.widget.viewer

    def state_for(self, image) -> ImageState:
        """The state of ``image`` (an Image layer), made on first use."""
        key = prompt_layers.owner_id(image)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = ImageState(image)
        return state

    # -- helper layers -------------------------------------------------------------

    def ensure_prompt_layers(
        self, state: ImageState, slots: tuple[str, ...] = ("boxes", "points"), made: dict | None = None
    ) -> None:
        """Give ``state`` its prompt layers (``slots``): those it has, its own found in the viewer, or new ones
        (those in ``made``, from :meth:`new_prompt_layer`, if given)."""
        layers = {}
        for slot, role in PROMPT_ROLES.items():
            if slot not in slots:
                continue
            layer = getattr(state, slot)
            if layer is not None and layer in self.viewer.layers:
                continue
            layer = self._find(state.image, role)
            if layer is None:
                layer = (made or {}).get(slot) or self.new_prompt_layer(state, slot)
                self._insert_above(layer, [state.image, *layers.values(), state.boxes, state.points])
            layers[slot] = layer
        if layers:
            state.set_layers(**layers)
            if state is self._wired:
                self.wire(state)  # new layers of the current image: wire them

    @staticmethod
    def new_prompt_layer(state: ImageState, slot: str):
        """A new prompt layer (``"points"`` or ``"boxes"``) for ``state``'s image, not in the viewer yet."""
        make = prompt_layers.new_points_layer if slot == "points" else prompt_layers.new_boxes_layer
        return make(state.image)

    def _find(self, image, role: str):
        for layer in self.viewer.layers:
            if prompt_layers.is_helper_of(layer, image, role):
                return layer
        return None

    def _insert_above(self, layer, below) -> None:
        """Add ``layer`` just above the highest of ``below`` (the image, its helpers), the selection kept."""
        layers = self.viewer.layers
        present = [layers.index(other) for other in below if other is not None and other in layers]
        self._insert(layer, max(present) + 1 if present else len(layers))

    def _insert_below(self, layer, above) -> None:
        """Add ``layer`` just below the lowest of ``above`` (the helpers it goes under), the selection kept."""
        layers = self.viewer.layers
        present = [layers.index(other) for other in above if other is not None and other in layers]
        self._insert(layer, min(present, default=len(layers)))

    def _insert(self, layer, index: int) -> None:
        # napari selects a layer it inserts, and builds that layer's controls: a click must go on prompting,
        # so the selection stays as it is (napari's list has a switch for that; where it has not, it is put back).
        layers = self.viewer.layers
        active = layers.selection.active
        activates = getattr(layers, "_activate_on_insert", None)
        if activates is not None:
            layers._activate_on_insert = False
        try:
            layers.insert(index, layer)
        finally:
            if activates is not None:
                layers._activate_on_insert = activates
        if active is not None and active in layers and layers.selection.active is not active:
            layers.selection.active = active

    def add_preview(self, state: ImageState, layer) -> None:
        """Insert ``state``'s preview layer below its prompt layers, the selection kept."""
        self._insert_below(layer, (state.points, state.boxes))
        state.set_layers(preview=layer)

    def remove_helpers(self, state: ImageState, only_empty: bool) -> None:
        """Remove the helper layers the widget made for ``state`` (the preview always, prompts when empty or asked)."""
        for slot in ("preview", "points", "boxes"):
            layer = getattr(state, slot)
            if layer is None or layer not in self.viewer.layers or layer.metadata.get(ROLE_KEY) is None:
                continue
            if slot != "preview" and only_empty and len(layer.data):
                continue
            self.viewer.layers.remove(layer)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        for key, state in list(self.states.items()):
            if layer is state.image:
                if state is self._wired:
                    self.unwire()
                self.remove_helpers(state, only_empty=False)
                del self.states[key]
                continue
            gone = {slot: None for slot in ("points", "boxes", "labels", "preview") if getattr(state, slot) is layer}
            if gone:
                if state is self._wired and ("points" in gone or "boxes" in gone):
                    self._configure(layer, connect=False)
                state.set_layers(**gone)

    # -- the output labels -----------------------------------------------------------

    def check_labels_fit(self, labels, image) -> None:
        """Raise :class:`MobileSAMError` unless ``labels`` can receive masks of ``image`` (same shape and place)."""
        labels_output.check_labels_fit(labels, image)

    def output_labels(self, state: ImageState) -> Labels:
        """The state's output Labels layer, made now (``"<image> labels"``, below its helper layers) if it has none."""
        if state.labels is not None and state.labels in self.viewer.layers:
            self.check_labels_fit(state.labels, state.image)
            return state.labels
        labels = labels_output.new_labels_layer(state.image)
        self._insert_below(labels, (state.preview, state.points, state.boxes))
        state.set_layers(labels=labels)
        return labels

    # -- wiring the current image's prompt layers -------------------------------------

    def wire(self, state: ImageState | None) -> None:
        """Connect ``state``'s prompt layers to the widget (and disconnect the previous image's)."""
        if self._wired is not None:
            self.unwire()
        self._wired = state
        if state is None:
            return
        for layer in (state.points, state.boxes):
            if layer is not None:
                self._configure(layer, connect=True)
        points = state.points
        if points is not None:
            prompt_layers.ensure_polarity_feature(points)
            prompt_layers.set_default_polarity(points, self.widget.default_positive)
            this = weakref.ref(self.widget)
            self._polarity_callback = prompt_layers.make_polarity_callback(
                lambda: this().default_positive if this() is not None else True
            )
            points.mouse_drag_callbacks.insert(0, self._polarity_callback)
            self._press_callback = reporting("decoding a click")(self.widget.prompts.on_press)
            points.mouse_drag_callbacks.insert(1, self._press_callback)  # once the polarity is set

    def unwire(self) -> None:
        state, self._wired = self._wired, None
        if state is None:
            return
        for layer in (state.points, state.boxes):
            if layer is not None:
                self._configure(layer, connect=False)
        points = state.points
        if points is not None:
            for callback in (self._polarity_callback, self._press_callback):
                if callback in points.mouse_drag_callbacks:
                    points.mouse_drag_callbacks.remove(callback)
        self._polarity_callback = self._press_callback = None

    def _configure(self, layer, connect: bool) -> None:
        widget = self.widget
        pairs = [
            (layer.events.data, widget.prompts.on_prompts_changed),
            (layer.events.mode, widget.tools.reflect),
        ]
        if hasattr(layer.events, "features"):
            pairs.append((layer.events.features, widget.prompts.on_prompts_changed))
        for emitter, callback in pairs:
            emitter.connect(callback) if connect else emitter.disconnect(callback)
        for key, method in _KEYS.items():
            layer.bind_key(key, _forward(widget, method) if connect else None, overwrite=True)

    def close(self) -> None:
        """Stop listening to the viewer (the widget closes)."""
        self.unwire()
        self.viewer.layers.events.removed.disconnect(self._on_layer_removed)

    # -- pickers -------------------------------------------------------------------------

    def pickable_helper(self, layer) -> bool:
        """A Points or Shapes layer may prompt the current image unless it is another image's helper layer."""
        owner = layer.metadata.get(prompt_layers.OWNER_KEY)
        state = self.widget.state
        return owner is None or (state is not None and owner == prompt_layers.owner_id(state.image))

    def images(self) -> list[Image]:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]


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
