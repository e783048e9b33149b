"""The widget's tools: click points, draw boxes, or pick a label to edit; the buttons show which one is on.

A tool is a layer and its mode: the current image's prompts layer in ``add``
mode, its boxes layer in ``add_rectangle`` mode, or its output Labels layer in
``pick`` mode. Pressing a button selects that layer and mode (pressing it
again goes back to pan and zoom); whatever the user selects by hand in the
layer list or the layer controls is reflected by the buttons. The tool stays
in effect when the widget switches images and after the widget or the
whole-stack command adds a layer (napari selects new layers).
"""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from ..errors import MobileSAMError

TOOL_MODES = {"points": "add", "boxes": "add_rectangle", "edit": "pick"}


class Tools:
    """Which tool is on; ``widget`` provides ``viewer``, ``state``, the prompt section and the layers controller."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self.current: str | None = "points"  # clicking points is what a user does first
        self._applying = False
        self._settling = False
        buttons = widget.prompt_section.tool_buttons()
        for name, button in buttons.items():
            button.clicked.connect(lambda checked, name=name: self.press(name, checked))
        # Adding a layer passes the selection through None and the new layer before it settles:
        # look at it once the event-loop turn is over.
        self._reflect_timer = QTimer(widget)  # dies with the widget
        self._reflect_timer.setSingleShot(True)
        self._reflect_timer.setInterval(0)
        self._reflect_timer.timeout.connect(self._reflect_now)
        self._settle_timer = QTimer(widget)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(0)
        self._settle_timer.timeout.connect(self._settle)
        widget.viewer.layers.selection.events.active.connect(self.reflect)

    def layer_for(self, tool: str):
        state = self.widget.state
        if state is None:
            return None
        if tool == "edit":
            return state.labels if state.labels is not None and state.labels in self.widget.viewer.layers else None
        self.widget.image_layers.ensure_prompt_layers(state)
        return state.points if tool == "points" else state.boxes

    def choose(self, tool: str | None) -> None:
        """Turn ``tool`` on as its button does (None: back to pan and zoom)."""
        if tool is not None and tool not in TOOL_MODES:
            raise MobileSAMError(f"Unknown tool {tool!r}; choose 'points', 'boxes', 'edit' or None.")
        self.set(None) if tool is None else self.press(tool, True)

    def press(self, tool: str, checked: bool) -> None:
        """A tool button was clicked: turn ``tool`` on (or off, back to pan and zoom)."""
        if not checked:
            self.set(None)
            return
        if not self.widget.require_image():
            self.show()
            return
        if tool == "edit" and self.layer_for("edit") is None:
            show_info("MobileSAM: there is no Labels layer to edit yet: accept an object first, or pick one above.")
            self.show()
            return
        self.set(tool)

    def set(self, tool: str | None) -> None:
        """Make ``tool`` the one in effect (None: pan and zoom on the layer in use)."""
        self.current = tool
        self._settling = True  # napari selects a layer added in this event-loop turn afterwards: not the user's doing
        self.apply()
        self._settle_timer.start()

    def hold(self) -> None:
        """Layers are about to be added or selected by the widget, not the user: keep the tool until :meth:`set`."""
        self._settling = True

    def _settle(self) -> None:
        self.apply()
        self._settling = False

    def apply(self) -> None:
        """Select the current tool's layer and mode (after an image switch, a new layer, a run)."""
        tool = self.current
        if self.widget.state is None:
            self.show()
            return
        self._applying = True
        try:
            if tool is None:
                for layer in (self.layer_for("points"), self.layer_for("boxes")):
                    if layer is not None and layer.mode != "pan_zoom":
                        layer.mode = "pan_zoom"
            else:
                layer = self.layer_for(tool)
                if layer is None:
                    self.current = None
                else:
                    self.widget.viewer.layers.selection.active = layer
                    layer.mode = TOOL_MODES[tool]
                    if tool == "edit":
                        self.widget.acceptor.watch_picks(layer)
        finally:
            self._applying = False
        self.show()

    def reflect(self, event=None) -> None:
        """The selected layer or its mode changed: show which tool that is, once things settle."""
        if not self._applying and not self._settling:
            self._reflect_timer.start()

    def _reflect_now(self) -> None:
        if self._applying or self._settling:
            return
        active = self.widget.viewer.layers.selection.active
        state = self.widget.state
        tool = None
        if state is not None and active is not None:
            for name in TOOL_MODES:
                layer = {"points": state.points, "boxes": state.boxes, "edit": state.labels}[name]
                if active is layer and getattr(layer, "mode", None) == TOOL_MODES[name]:
                    tool = name
        self.current = tool
        self.show()

    def show(self) -> None:
        for name, button in self.widget.prompt_section.tool_buttons().items():
            button.blockSignals(True)
            button.setChecked(name == self.current)
            button.blockSignals(False)

    def close(self) -> None:
        self._reflect_timer.stop()
        self._settle_timer.stop()
        self.widget.viewer.layers.selection.events.active.disconnect(self.reflect)
        self.widget.acceptor.stop_watching_picks()
