"""A combo box of the viewer's layers of one kind that follows layers being added, removed and renamed."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox

ROLE_KEY = "napari_mobilesam_role"  # layer.metadata key marking layers the widget made for itself


class LayerPicker(QComboBox):
    """Pick a layer of ``layer_type`` from ``viewer.layers``.

    ``none_text``: the first entry, meaning "no layer" (e.g. "(new on accept)");
    ``None`` for no such entry. ``eligible(layer)``, when given, decides which
    layers of the type are listed. ``changed`` is emitted with the picked layer
    (or None) when the user picks another one, when :meth:`set_layer` is called,
    and when the picked layer is removed; :meth:`show_layer` changes what is
    shown without emitting.
    """

    changed = Signal(object)

    def __init__(
        self, viewer, layer_type, none_text: str | None = None, eligible: Callable | None = None, parent=None
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._layer_type = layer_type
        self._none_text = none_text
        self._eligible_extra = eligible
        self._layers: list = []
        self._current = None
        self._watched: set[int] = set()
        self.currentIndexChanged.connect(self._on_index_changed)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        viewer.layers.events.moved.connect(self._refresh)
        self._refresh()

    def disconnect_viewer(self) -> None:
        """Stop following the viewer (called when the widget closes)."""
        for emitter in (
            self._viewer.layers.events.inserted,
            self._viewer.layers.events.removed,
            self._viewer.layers.events.moved,
        ):
            emitter.disconnect(self._refresh)
        for layer in self._viewer.layers:
            layer.events.name.disconnect(self._refresh)

    def layer(self):
        """The picked layer, or None."""
        return self._current

    def set_layer(self, layer) -> None:
        """Pick ``layer`` (it must be listed), or the "none" entry for None; emits ``changed``."""
        position = self._position(layer)
        if self.currentIndex() == position:
            self._on_index_changed(position)
        else:
            self.setCurrentIndex(position)

    def show_layer(self, layer) -> None:
        """Show ``layer`` as picked (None: the "none" entry) without emitting ``changed``."""
        position = self._position(layer)
        self.blockSignals(True)
        try:
            self.setCurrentIndex(position)
        finally:
            self.blockSignals(False)
        self._current = layer

    def _position(self, layer) -> int:
        if layer is None:
            if self._none_text is None:
                raise ValueError("This picker has no empty choice.")
            return 0
        self._refresh()
        if layer not in self._layers:
            raise ValueError(f"Layer {getattr(layer, 'name', layer)!r} cannot be picked here.")
        return self._layers.index(layer) + self._offset

    @property
    def _offset(self) -> int:
        return 0 if self._none_text is None else 1

    def _eligible(self, layer) -> bool:
        if not isinstance(layer, self._layer_type):
            return False
        return self._eligible_extra is None or bool(self._eligible_extra(layer))

    def refresh(self) -> None:
        """List the viewer's layers again (e.g. after what is eligible changed)."""
        self._refresh()

    def _refresh(self, event=None) -> None:
        for layer in self._viewer.layers:
            if id(layer) not in self._watched:
                self._watched.add(id(layer))
                layer.events.name.connect(self._refresh)
        layers = [layer for layer in reversed(self._viewer.layers) if self._eligible(layer)]
        current = self._current if self._current in layers else None
        if current is None and self._none_text is None and layers:
            current = self._default(layers)
        self.blockSignals(True)
        try:
            self.clear()
            if self._none_text is not None:
                self.addItem(self._none_text)
            for layer in layers:
                self.addItem(layer.name)
            self._layers = layers
            self.setCurrentIndex(layers.index(current) + self._offset if current is not None else 0)
        finally:
            self.blockSignals(False)
        if current is not self._current:
            self._current = current
            self.changed.emit(current)

    def _default(self, layers):
        active = self._viewer.layers.selection.active
        return active if active in layers else layers[0]

    def _on_index_changed(self, index: int) -> None:
        position = index - self._offset
        layer = self._layers[position] if 0 <= position < len(self._layers) else None
        self._current = layer
        self.changed.emit(layer)
