"""Accepting the preview into the image's Labels layer (never blocking: it waits for the result), undo, and
refining an existing label.

Enter before the result is ready (the slice still encoding, the prompts still
decoding) is remembered and carried out when the result arrives; the status
says so meanwhile. Editing an existing label feeds its mask to the model as
the prompt's ``mask_input``; accepting then replaces that object, in one undo step.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info, show_warning

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.decoding import Decoded
from . import labels_output
from .notify import report


class Acceptor:
    """Accept, undo/redo and label editing for the current image; ``widget`` provides viewer, state, controllers."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self._pick_layer = None

    # -- accepting -----------------------------------------------------------------------------

    def accept(self) -> list[int]:
        """Write the preview into the image's Labels layer now, or as soon as it is ready; returns the new ids.

        Returns the ids written now; ``[]`` when nothing was written yet (the accept
        waits for the embedding or the mask and happens by itself; the status says so).
        """
        widget = self.widget
        if not widget.require_image():
            return []
        state = widget.state
        widget.planes.update()
        if state.plane is None:
            show_warning(f"MobileSAM: {state.plane_problem}")
            return []
        objects, signature, _, _ = widget.prompts.read(state.plane)
        if not objects:
            show_info("MobileSAM: nothing to accept; click on an object or draw a box first.")
            return []
        if state.result is not None and state.result[0].signature == signature:
            return self.write(state)
        state.set_accept_waiting(True)
        widget.prompts.schedule()
        return []

    def accept_waiting_result(self) -> None:
        """The result arrived (or the prompts went away) while an accept was waiting."""
        state = self.widget.state
        if state is None or not state.accept_waiting:
            return
        state.set_accept_waiting(False)
        if state.result is not None and state.result[0].objects:  # not the edited label shown as it is
            self.write(state)

    def write(self, state) -> list[int]:
        widget = self.widget
        plane = state.plane
        try:
            labels = widget.image_layers.output_labels(state)
            masks = state.result[1].masks
            if state.editing is not None:
                ids = labels_output.replace_object(labels, state.editing, masks[0], plane, widget.overwrite)
            else:
                ids = labels_output.write_masks(labels, masks, plane, widget.overwrite)
        except MobileSAMError as error:
            report(error, "accepting")
            return []
        edited = state.editing
        widget.prompts.clear()
        if edited is not None:
            state.set_message(f"label {edited} replaced in {labels.name!r}")
        elif ids:
            state.set_message(f"accepted {_ids_text(ids)} into {labels.name!r}")
        else:
            state.set_message("nothing painted: the mask covers only existing labels")
            show_info("MobileSAM: the mask covers only existing labels; nothing painted (tick 'Overwrite').")
        return ids

    def undo(self) -> None:
        """Take back the last prompt of the plane shown; without prompts, undo the last change of the labels."""
        widget = self.widget
        state = widget.state
        if state is None:
            return
        if widget.prompts.take_back_last():
            state.set_message("took back the last prompt")
            return
        if state.labels is not None:
            state.labels.undo()
            state.set_message(f"undid the last change of {state.labels.name!r}")

    def redo(self) -> None:
        """Redo what :meth:`undo` undid in the Labels layer (Ctrl+Shift+Z)."""
        state = self.widget.state
        if state is not None and state.labels is not None:
            state.labels.redo()
            state.set_message(f"redid the last change of {state.labels.name!r}")

    # -- editing an existing label ---------------------------------------------------------------

    def watch_picks(self, labels) -> None:
        """While the edit tool is on, a click on ``labels`` picks the object to edit."""
        self.stop_watching_picks()
        if labels is not None:
            labels.mouse_drag_callbacks.append(self._on_press)
            self._pick_layer = labels

    def stop_watching_picks(self) -> None:
        if self._pick_layer is not None and self._on_press in self._pick_layer.mouse_drag_callbacks:
            self._pick_layer.mouse_drag_callbacks.remove(self._on_press)
        self._pick_layer = None

    def _on_press(self, layer, event) -> None:
        if self.widget.tools.current != "edit":
            return
        value = layer.get_value(event.position, view_direction=event.view_direction,
                                dims_displayed=event.dims_displayed, world=True)
        if value is None or int(value) == 0:
            show_info("MobileSAM: that is background; click inside the object to edit.")
            return
        self.edit(int(value))

    def edit(self, label_id: int) -> None:
        """Refine label ``label_id`` of the image's Labels layer on the plane shown: click points, then accept."""
        widget = self.widget
        if not widget.require_image():
            return
        state = widget.state
        widget.planes.update()
        if state.labels is None or state.plane is None:
            show_warning("MobileSAM: pick a Labels layer of this image and show a 2D plane to edit a label.")
            return
        if not (self._edited_mask(state, label_id)).any():
            show_info(f"MobileSAM: label {label_id} is not on the plane shown.")
            return
        widget.prompts.clear()
        state.set_editing(label_id)
        widget.tools.set("points")
        widget.prompts.schedule()

    def _edited_mask(self, state, label_id: int) -> np.ndarray:
        """``(h, w)`` bool: the label on the plane shown, at the resolution the plane is read (its level)."""
        plane = state.plane
        full = np.asarray(state.labels.data[slicing.plane_index(plane.steps)]) == label_id
        height, width = plane.plane_shape
        rows = np.minimum(((np.arange(height) + 0.5) * full.shape[0] / height).astype(int), full.shape[0] - 1)
        cols = np.minimum(((np.arange(width) + 0.5) * full.shape[1] / width).astype(int), full.shape[1] - 1)
        return full[rows[:, None], cols[None, :]]

    def edited_mask_input(self, state) -> np.ndarray:
        """``(1, 256, 256)`` logits of the label being edited: the prompt's ``mask_input``."""
        from ..engine.mask_prompt import logits_from_mask

        return logits_from_mask(self._edited_mask(state, state.editing))

    def edited_as_result(self, state):
        """The label being edited as a result with one exact mask, so the preview shows it before any click."""
        from .decode_scheduler import DecodeJob

        mask = self._edited_mask(state, state.editing)
        decoded = Decoded(
            self.edited_mask_input(state), np.ones((1, 1), np.float32), np.zeros(1, int),
            state.plane.plane_shape, state.plane.plane_shape,
        )
        decoded._full[(0, 0)] = mask
        job = DecodeJob(state, state.generation, state.plane, None, [], None, None)
        return job, decoded


def _ids_text(ids: list[int]) -> str:
    if not ids:
        return "nothing"
    return f"label {ids[0]}" if len(ids) == 1 else f"labels {ids[0]}–{ids[-1]}"
