"""The interactive loop: the prompts on the plane shown -> decoding -> preview.

Decoding runs in workers; a result is used only while it still matches the
image, plane and prompts on screen (the image state's generation). Results
and previews are the current image's: each image keeps its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from ..errors import MobileSAMError
from ..interactive.decoding import Decoded
from ..interactive.prompt_objects import objects_from_prompts
from . import preview, prompt_layers
from .decode_scheduler import DecodeJob
from .layer_plane import LayerPlane
from .notify import report
from .prompt_reading import boxes_on_plane, points_on_plane, prompt_signature


@dataclass(eq=False)
class Speculation:
    """A click decoded at its press: the job, its result once back, and the generation it became once the
    click's point was added with the same prompts."""

    job: DecodeJob
    decoded: Decoded | None = None
    generation: int | None = None


class PromptLoop:
    """Reading prompts, decoding them and showing the preview; ``widget`` provides viewer, state and workers."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self._dropping: set[int] = set()
        self.prompt_order: list[str] = []  # "points"/"boxes", one per prompt added: what Ctrl+Z takes back first
        self._speculation: Speculation | None = None

    # -- prompts ---------------------------------------------------------------------------

    def read(self, plane: LayerPlane):
        """``(objects, signature, points, boxes)`` of the prompts on ``plane``; drops points placed outside the image."""
        state, point = self.widget.state, self.widget.viewer.dims.point
        points, boxes = points_on_plane(state.points, plane, point), boxes_on_plane(state.boxes, plane, point)
        if len(points.outside):
            self._drop_points([int(i) for i in points.outside])
        if len(boxes.outside):
            show_info("MobileSAM: a box outside the image is ignored.")
        # Refining an existing label, negative points alone make sense: they cut away from its mask.
        objects = objects_from_prompts(points.xy, points.positive, boxes.boxes, require_positive=state.editing is None)
        return objects, prompt_signature(plane, points, boxes), points, boxes

    def add_point(self, position, positive: bool | None = None) -> None:
        """Add a point at world ``position`` (see ``MobileSAMWidget.add_point``)."""
        if not self.widget.require_image():
            return
        self.widget.image_layers.ensure_prompt_layers(self.widget.state)
        layer = self.widget.points_layer
        coords = layer.world_to_data(self._world_position(position))
        polarity = self.widget.default_positive if positive is None else bool(positive)
        previous = bool(layer.feature_defaults[prompt_layers.POLARITY].iloc[0])
        layer.feature_defaults[prompt_layers.POLARITY] = polarity
        try:
            layer.add(np.asarray(coords, dtype=float)[None])
        finally:
            layer.feature_defaults[prompt_layers.POLARITY] = previous

    def add_box(self, corner, opposite_corner) -> None:
        """Add a box between two world corners (see ``MobileSAMWidget.add_box``)."""
        if not self.widget.require_image():
            return
        self.widget.image_layers.ensure_prompt_layers(self.widget.state)
        layer = self.widget.boxes_layer
        a = np.asarray(layer.world_to_data(self._world_position(corner)), dtype=float)
        b = np.asarray(layer.world_to_data(self._world_position(opposite_corner)), dtype=float)
        row, column = layer.ndim - 2, layer.ndim - 1
        plane = self.widget.state.plane
        if plane is not None and layer.ndim == self.widget.state.image.ndim:
            row, column = plane.displayed
        corners = np.repeat(a[None], 4, axis=0)
        corners[1, column] = b[column]
        corners[2, [row, column]] = b[[row, column]]
        corners[3, row] = b[row]
        layer.add_rectangles(corners[None])

    def _world_position(self, position) -> np.ndarray:
        position = np.asarray(position, dtype=float)
        world = np.asarray(self.widget.viewer.dims.point, dtype=float).copy()
        if len(position) == len(world):
            return position
        if len(position) != 2:
            raise MobileSAMError(
                f"A position is (y, x) or has one value per viewer axis ({len(world)}); got {position}."
            )
        world[list(self.widget.viewer.dims.displayed)] = position
        return world

    def _drop_points(self, indices: list[int]) -> None:
        new = [i for i in indices if i not in self._dropping]
        if not new:
            return
        self._dropping.update(new)
        state = self.widget.state
        show_info(f"MobileSAM: ignored {len(new)} point(s) outside the image {state.image.name!r}.")
        layer = state.points

        def remove():
            self._dropping.clear()
            if layer is not None and layer is state.points and all(i < len(layer.data) for i in new):
                layer.selected_data = set(new)
                layer.remove_selected()

        QTimer.singleShot(0, remove)

    def on_prompts_changed(self, event=None) -> None:
        action = str(getattr(event, "action", "") or "")
        if action in ("adding", "removing", "changing"):
            return
        if action == "added" and event is not None:
            source = getattr(event, "source", None)
            state = self.widget.state
            if state is not None and source is not None:
                kind = "points" if source is state.points else "boxes"
                self.prompt_order.extend([kind] * max(1, len(getattr(event, "data_indices", ()) or ())))
                if kind == "points":  # a right click made this point negative: the next one is the default again
                    prompt_layers.set_default_polarity(source, self.widget.default_positive)
            # A click: decode at once. napari's ``add`` goes on for a while after this event (selection,
            # refreshes); the decode runs beside it on the compute thread instead of after it.
            self.widget.planes.touch()
            self.predict_now()
            return
        self.schedule()

    def schedule(self, touch: bool = True) -> None:
        if touch:
            self.widget.planes.touch()
        self.widget.timers["predict"].start()

    def clear(self) -> None:
        """Remove the prompts on the plane shown, the preview, and any label being edited."""
        state = self.widget.state
        if state is None:
            return
        if state.plane is not None:
            point = self.widget.viewer.dims.point
            points = points_on_plane(state.points, state.plane, point)
            boxes = boxes_on_plane(state.boxes, state.plane, point)
            for layer, indices in (
                (state.points, np.concatenate([points.used, points.outside])),
                (state.boxes, np.concatenate([boxes.used, boxes.outside])),
            ):
                if layer is not None and len(indices):
                    layer.selected_data = {int(i) for i in indices}
                    layer.remove_selected()
        if state.editing is not None:
            state.set_editing(None)
        state.invalidate_result()
        state.set_accept_waiting(False)
        state.set_result(None)

    def take_back_last(self) -> bool:
        """Remove the last prompt added on the plane shown (Ctrl+Z with prompts pending); False if there is none."""
        state = self.widget.state
        if state is None or state.plane is None:
            return False
        point = self.widget.viewer.dims.point
        on_plane = {
            "points": points_on_plane(state.points, state.plane, point).used,
            "boxes": boxes_on_plane(state.boxes, state.plane, point).used,
        }
        order = [kind for kind in self.prompt_order if len(on_plane[kind])] or [k for k in on_plane if len(on_plane[k])]
        if not order:
            return False
        kind = order[-1]
        if kind in self.prompt_order:
            del self.prompt_order[len(self.prompt_order) - 1 - self.prompt_order[::-1].index(kind)]
        layer = state.points if kind == "points" else state.boxes
        layer.selected_data = {int(max(on_plane[kind]))}
        layer.remove_selected()
        return True

    # -- predicting ------------------------------------------------------------------------

    def predict_now(self) -> None:
        widget = self.widget
        state = widget.state
        if state is None or state.plane is None:
            return
        plane = state.plane
        objects, signature, _, _ = self.read(plane)
        if not objects:
            state.invalidate_result()
            state.requested = signature
            widget.decoder.cancel_waiting()
            state.set_result(self.editing_result(state))
            if state.accept_waiting:
                widget.acceptor.accept_waiting_result()
            return
        if not state.embedding_ready:
            return  # the encode's end schedules the prediction
        if signature == state.requested:
            return
        state.requested = signature
        state.generation += 1
        mask_input = self.refinement(state, objects)
        if self._adopt(state, signature, mask_input):
            return
        widget.decoder.submit(self.job(state, objects, signature, state.generation, mask_input))

    # -- a click decoded at its press ---------------------------------------------------------

    def on_press(self, layer, event) -> None:
        """A press on the prompts layer in add mode: decode the prompts with the point it is about to add.

        napari adds a click's point on release, if the mouse stayed within a few
        pixels; a click's press comes some 0.1 s before. The decode runs in that
        time; its result is held, and shown as soon as the point added makes the
        same prompts (:meth:`_adopt`), or dropped (the mouse moved, or the press
        began a drag).
        """
        state = self.widget.state
        if state is None or layer is not state.points or layer.mode != "add" or state.plane is None:
            return
        if not state.embedding_ready or event.position is None:
            return
        plane, point = state.plane, self.widget.viewer.dims.point
        positive = bool(layer.feature_defaults[prompt_layers.POLARITY].iloc[0])  # set on this press already
        points = points_on_plane(layer, plane, point, extra=(layer.world_to_data(event.position), positive))
        if len(points.outside):
            return  # a point outside the image: the click's own path reports it
        boxes = boxes_on_plane(state.boxes, plane, point)
        objects = objects_from_prompts(points.xy, points.positive, boxes.boxes, require_positive=state.editing is None)
        signature = prompt_signature(plane, points, boxes)
        if not objects or signature == state.requested:
            return
        job = self.job(state, objects, signature, None, self.refinement(state, objects))
        self._speculation = Speculation(job)
        self.widget.decoder.submit(job)

    def _adopt(self, state, signature, mask_input) -> bool:
        """The prompts just read are those decoded at the last press: use that decode (shown now if it is
        back, else when it is); False if they are not."""
        speculation = self._speculation
        if speculation is None:
            return False
        job = speculation.job
        if not (
            job.state is state
            and job.signature == signature
            and job.plane.key == state.plane.key
            and job.embedding is state.embedding.embedding
            and _same_mask(job.mask_input, mask_input)
        ):
            return False
        speculation.generation = state.generation
        if speculation.decoded is not None:
            self.on_decoded(job, speculation.decoded)
        return True

    @staticmethod
    def job(state, objects, signature, generation: int | None, mask_input) -> DecodeJob:
        """A decode of ``objects`` on ``state``'s plane and embedding (``generation`` None: at a press)."""
        return DecodeJob(state, generation, state.plane, state.embedding.embedding, objects, mask_input, signature)

    def refinement(self, state, objects) -> np.ndarray | None:
        """The low-res mask fed back as ``mask_input``: the previous result of the same single object, or the
        label being edited."""
        if len(objects) != 1:
            return None
        if state.result is not None:
            job, decoded = state.result
            if job.plane.key == state.plane.key and len(job.objects) == 1:
                before, now = job.objects[0], objects[0]
                if before.signature() == now.signature() and now.n_points >= before.n_points:
                    return decoded.chosen_low_res[0]
        if state.editing is not None:
            return self.widget.acceptor.edited_mask_input(state)
        return None

    def editing_result(self, state):
        """While editing a label with no prompts yet: the label itself, as the preview."""
        return None if state.editing is None else self.widget.acceptor.edited_as_result(state)

    def is_current(self, job: DecodeJob) -> bool:
        """Whether ``job`` is still wanted: made for the prompts on screen, or the last press's decode."""
        state = self.widget.state
        if state is None or job.state is not state:
            return False
        generation = job.generation
        if generation is None:  # decoded at a press: wanted while it is the last press's
            speculation = self._speculation
            if speculation is None or speculation.job is not job:
                return False
            generation = state.generation if speculation.generation is None else speculation.generation
        return generation == state.generation and state.plane is not None and job.plane.key == state.plane.key

    def on_decoded(self, job: DecodeJob, decoded: Decoded) -> None:
        if job.generation is None:  # decoded at a press
            speculation = self._speculation
            if speculation is None or speculation.job is not job:
                return
            if speculation.generation is None:
                speculation.decoded = decoded  # held until the click's point is added
                return
            self._speculation = None
            job = replace(job, generation=speculation.generation)
            if not self.is_current(job):
                return
        state = job.state
        state.set_result((job, decoded))
        if state.accept_waiting:
            self.widget.acceptor.accept_waiting_result()

    def on_decode_error(self, error: Exception) -> None:
        self._speculation = None
        state = self.widget.state
        if state is not None and state.accept_waiting:
            state.set_accept_waiting(False)
        report(error, "predicting")

    def segment(self) -> np.ndarray | None:
        """Wait for the result of the prompts on the plane shown (scripts); its masks, or None without prompts."""
        widget = self.widget
        state = widget.state
        if not widget.require_image():
            return None
        widget.planes.update()
        if state.plane is None:
            report(MobileSAMError(state.plane_problem or "no plane to segment"), "segmenting")
            return None
        self.schedule()
        if not widget.wait():
            return None
        objects, signature, _, _ = self.read(state.plane)
        if not objects or state.result is None or state.result[0].signature != signature:
            return None
        return state.result[1].masks

    def next_candidate(self) -> None:
        """Show the next of the three candidate masks of a single object (key ``M``)."""
        state = self.widget.state
        if state is None or state.result is None:
            return
        job, decoded = state.result
        if decoded.iou.shape[1] < 2:
            show_info("MobileSAM: several objects have one mask each; there is nothing to cycle.")
            return
        state.set_result((job, decoded.cycled()))

    # -- the preview -------------------------------------------------------------------------

    def show(self, state) -> None:
        """Draw ``state``'s result (or nothing) in its preview layer, made on the first result.

        The widget calls it whenever the current image's result changes.
        """
        layer = state.preview
        if layer is not None and layer not in self.widget.viewer.layers:
            layer = None
            state.set_layers(preview=None)
        decoded = None if state.result is None else state.result[1]
        if decoded is None or state.plane is None:
            if layer is not None and layer.data.any():
                layer.data = np.zeros_like(layer.data)  # emptied in place: moving it costs a redraw
            return
        if layer is None:
            if state.accept_waiting:
                return  # accepted at once: a new preview layer would only cost a stall (a Labels layer's visuals)
            layer = preview.new_preview_layer(state.plane)
            self.widget.image_layers.add_preview(state, layer)
        preview.show_on(layer, state.plane, decoded.label_image())


def _same_mask(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
