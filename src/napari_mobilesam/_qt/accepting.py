"""Accepting the preview: write it into the output Labels layer (made on first accept), undo and redo.

A mixin of :class:`~napari_mobilesam._qt.widget.MobileSAMWidget`.
"""

from __future__ import annotations

from napari.utils.notifications import show_info, show_warning

from ..errors import MobileSAMError
from . import labels_output


class Accepting:
    """Accept, the output Labels layer and its undo history; state lives on the widget."""

    def accept(self) -> list[int]:
        """Write the preview into the output Labels layer on the plane shown (key ``Enter``).

        Each object gets a new id (max + 1, ...); without :attr:`overwrite` only
        background is painted. One undo step (Ctrl+Z). The prompts on the plane
        are cleared. Returns the new ids.
        """
        plane = self._current_plane_or_warn()
        if plane is None:
            return []
        masks = self.segment()
        if masks is None:
            show_info("MobileSAM: nothing to accept; click on an object or draw a box first.")
            return []
        labels = self._output_labels()
        if labels is None:
            return []
        ids = labels_output.write_masks(labels, masks, plane, self.overwrite)
        self.clear_prompts()
        self._plane_text = f"{plane.describe()}: accepted {_ids_text(ids)} into {labels.name!r}"
        self._set_status()
        if not ids:
            show_info("MobileSAM: the mask covers only existing labels; nothing painted (tick 'Overwrite').")
        return ids

    def _output_labels(self):
        labels = self.labels_layer
        if labels is not None:
            try:
                labels_output.check_labels_fit(labels, self._image)
            except MobileSAMError as error:
                show_warning(str(error))
                return None
            return labels
        labels = labels_output.new_labels_layer(self._image)
        active = self.viewer.layers.selection.active
        index = min(
            (
                self.viewer.layers.index(lay)
                for lay in (self._preview_layer, self._points, self._boxes)
                if lay is not None and lay in self.viewer.layers
            ),
            default=len(self.viewer.layers),
        )
        self.viewer.layers.insert(index, labels)
        self.set_labels_layer(labels)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return labels

    def undo(self) -> None:
        """Undo the last change of the output Labels layer (Ctrl+Z), e.g. an accept."""
        if self.labels_layer is not None:
            self.labels_layer.undo()

    def redo(self) -> None:
        """Redo what :meth:`undo` undid (Ctrl+Shift+Z)."""
        if self.labels_layer is not None:
            self.labels_layer.redo()


def _ids_text(ids: list[int]) -> str:
    if not ids:
        return "nothing"
    return f"label {ids[0]}" if len(ids) == 1 else f"labels {ids[0]}–{ids[-1]}"
