"""Which image the widget works on: the pickers, switching the current image's state, following its events.

Picking an image (in the widget's picker, or the first one when the widget
opens) makes its :class:`~napari_mobilesam.interactive.image_state.ImageState`
current: its prompt layers are wired to the widget, the pickers show its
layers, its plane is followed, and the tool in use moves to it.
"""

from __future__ import annotations

from functools import partial

from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer

from ..errors import MobileSAMError
from . import prompt_layers
from .notify import report
from .staged_build import Turns


class ImageChoice:
    """Switches the widget between images; ``widget`` provides viewer, sections, controllers and workers."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self._tool_before_3d = None

    def first_image(self) -> None:
        """The widget opened (and napari's table library is loaded): take the selected image, or the first.

        Its prompt layers are made one per event-loop turn (napari builds each
        layer's visuals and controls at once: 0.1-0.25 s), then it becomes the
        current image, unless one was picked meanwhile.
        """
        widget = self.widget
        if widget.closed:
            return
        image = self._initial_image()
        steps, made = [], {}
        if image is not None and widget.state is None:
            state = widget.image_layers.state_for(image)
            for slot in ("boxes", "points"):  # each layer made in one turn, inserted (napari's visuals) in the next
                steps += [partial(self._make_prompt_layer, state, slot, made), partial(self._insert, state, slot, made)]
        Turns(widget, [*steps, self.first_image_now], partial(report, doing="opening the widget"))

    def first_image_now(self) -> None:
        """Take the first image now, unless one is taken already (a script calling the widget as it opens)."""
        widget = self.widget
        QTimer.singleShot(0, widget.lifecycle.layers_made.set)  # once this turn (wiring the prompt layers) is over
        try:
            if not widget.closed and widget.state is None:
                self.set_image(self._initial_image())
        finally:
            widget.opened()

    def _initial_image(self):
        widget = self.widget
        active = widget.viewer.layers.selection.active
        image = active if active in widget.image_layers.images() else widget.layers_section.image.layer()
        if image is not None:
            widget.layers_section.image.show_layer(image)
        return image

    def _opening_on(self, state) -> bool:
        """Still opening on ``state``'s image: not closed, no image taken meanwhile, the image still there."""
        widget = self.widget
        return not widget.closed and widget.state is None and state.image in widget.viewer.layers

    def _make_prompt_layer(self, state, slot: str, made: dict) -> None:
        if self._opening_on(state) and getattr(state, slot) is None:
            made[slot] = self.widget.image_layers.new_prompt_layer(state, slot)

    def _insert(self, state, slot: str, made: dict) -> None:
        if self._opening_on(state):
            self.widget.image_layers.ensure_prompt_layers(state, (slot,), made)

    def set_image(self, layer) -> None:
        """Make ``layer`` (an Image layer, or None) the image the widget works on."""
        widget = self.widget
        old = widget.state
        if old is not None and old.image is layer:
            return
        if old is not None:
            self.watch_image(old.image, connect=False)
            old.changed.disconnect(widget.on_state_changed)
        widget.image_layers.unwire()
        widget.decoder.cancel_waiting()
        widget.prefetcher.stop()
        widget.everything_section.on_image_changed()
        if layer is None:
            widget.state = None
            widget.encoder.request(None)
            self.show_pickers()
            widget.render()
            return
        widget.tools.hold()
        state = widget.state = widget.image_layers.state_for(layer)
        state.changed.connect(widget.on_state_changed)
        self.watch_image(layer, connect=True)
        widget.image_layers.ensure_prompt_layers(state)
        widget.image_layers.wire(state)
        if state.labels is not None and state.labels not in widget.viewer.layers:
            state.set_layers(labels=None)
        self.show_pickers()
        state.plane = None  # recomputed: the view may have changed while another image was worked on
        widget.planes.update()
        widget.tools.set(widget.tools.current)  # the tool stays in effect on the new image
        widget.prompts.show(state)
        widget.render()

    def show_pickers(self) -> None:
        section, state = self.widget.layers_section, self.widget.state
        for picker in (section.points, section.boxes, section.labels):
            picker.refresh()
        section.points.show_layer(None if state is None or _is_own(state.points) else state.points)
        section.boxes.show_layer(None if state is None or _is_own(state.boxes) else state.boxes)
        section.labels.show_layer(None if state is None else state.labels)

    # -- the image's events and the view --------------------------------------------------------------

    def watch_image(self, layer, connect: bool) -> None:
        events = layer.events
        pairs = [(events.contrast_limits, self.on_contrast_limits), (events.data, self.on_image_data)]
        pairs += [
            (getattr(events, name), self.on_view_event) for name in ("scale", "translate", "rotate", "shear", "affine")
        ]
        for emitter, callback in pairs:
            emitter.connect(callback) if connect else emitter.disconnect(callback)

    def on_contrast_limits(self, event=None) -> None:
        self.widget.planes.touch()
        self.widget.timers["contrast"].start()

    def on_image_data(self, event=None) -> None:
        state = self.widget.state
        if state is not None:
            state.set_plane(None)  # same layer, new pixels: encode again
            state.embedding = None
        self.widget.timers["view"].start()

    def on_view_event(self, event=None) -> None:
        self.widget.planes.touch()
        self.widget.timers["view"].start()

    def on_ndisplay(self, event=None) -> None:
        """3D: clicks cannot prompt (the tool is kept aside); back in 2D the same tool is on again."""
        tools = self.widget.tools
        if self.widget.viewer.dims.ndisplay == 3:
            self._tool_before_3d = tools.current if tools.current is not None else self._tool_before_3d
        elif self._tool_before_3d is not None:
            tools.set(self._tool_before_3d)
            self._tool_before_3d = None
        self.on_view_event()

    # -- the pickers of the prompt and labels layers -----------------------------------------------------

    def on_points_picked(self, layer) -> None:
        self._use_prompt_layer("points", layer)

    def on_boxes_picked(self, layer) -> None:
        self._use_prompt_layer("boxes", layer)

    def _use_prompt_layer(self, slot: str, layer) -> None:
        widget = self.widget
        state = widget.state
        if state is None:
            return
        widget.image_layers.unwire()
        if layer is None:
            state.set_layers(**{slot: None})
            widget.image_layers.ensure_prompt_layers(state)  # the widget's own, found again or made
        else:
            state.set_layers(**{slot: layer})
        widget.image_layers.wire(state)
        state.invalidate_result()
        widget.prompts.schedule()

    def on_labels_picked(self, layer) -> None:
        widget = self.widget
        state = widget.state
        if state is None:
            return
        if layer is not None:
            try:
                widget.image_layers.check_labels_fit(layer, state.image)
            except MobileSAMError as error:
                show_warning(str(error))
                widget.layers_section.labels.show_layer(state.labels)
                return
        state.set_layers(labels=layer)


def _is_own(layer) -> bool:
    return layer is None or layer.metadata.get(prompt_layers.OWNER_KEY) is not None
