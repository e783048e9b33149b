"""The interactive loop: the prompts on the plane shown -> decoding -> preview.

A mixin of :class:`~napari_mobilesam._qt.widget.MobileSAMWidget`; the plane and
its embedding come from :class:`~napari_mobilesam._qt.plane_tracking.PlaneTracking`,
accepting the preview is :class:`~napari_mobilesam._qt.accepting.Accepting`.
Decoding runs in workers; its results are used only while they still match the
plane and prompts on screen.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from ..errors import MobileSAMError
from ..interactive.decoding import Decoded
from ..interactive.prompt_objects import objects_from_prompts
from . import preview, prompt_layers
from .decode_scheduler import DecodeJob, run_job
from .layer_plane import LayerPlane
from .notify import report
from .prompt_reading import boxes_on_plane, points_on_plane, prompt_signature


class Interaction:
    """Prompting, decoding and previewing; state lives on the widget."""

    # -- prompts -------------------------------------------------------------------

    def add_point(self, position, positive: bool | None = None) -> None:
        """Add a point prompt at world ``position``: ``(y, x)`` on the plane shown, or one value per viewer axis.

        ``positive`` defaults to :attr:`default_positive`. The preview updates in
        the background; :meth:`segment` or :meth:`accept` wait for it.
        """
        if not self._require_image():
            return
        self._ensure_prompt_layers()
        layer = self._points
        coords = layer.world_to_data(self._world_position(position))
        polarity = self.default_positive if positive is None else bool(positive)
        previous = layer.feature_defaults[prompt_layers.POLARITY].iloc[0]
        layer.feature_defaults[prompt_layers.POLARITY] = polarity
        try:
            layer.add(np.asarray(coords, dtype=float)[None])
        finally:
            layer.feature_defaults[prompt_layers.POLARITY] = previous

    def add_box(self, corner, opposite_corner) -> None:
        """Add a box prompt between two world corners, each ``(y, x)`` on the plane shown or one value per axis."""
        if not self._require_image():
            return
        self._ensure_prompt_layers()
        layer = self._boxes
        a = np.asarray(layer.world_to_data(self._world_position(corner)), dtype=float)
        b = np.asarray(layer.world_to_data(self._world_position(opposite_corner)), dtype=float)
        row, column = layer.ndim - 2, layer.ndim - 1
        if self._plane is not None and layer.ndim == self._image.ndim:
            row, column = self._plane.displayed
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
        plane = self._plane
        if plane is not None:
            self._remove_prompts(plane)
        self._result = None
        self._show_preview(None)

    def _remove_prompts(self, plane: LayerPlane) -> None:
        point = self.viewer.dims.point
        points, boxes = points_on_plane(self._points, plane, point), boxes_on_plane(self._boxes, plane, point)
        for layer, indices in (
            (self._points, np.concatenate([points.used, points.outside])),
            (self._boxes, np.concatenate([boxes.used, boxes.outside])),
        ):
            if layer is not None and len(indices):
                layer.selected_data = set(int(i) for i in indices)
                layer.remove_selected()

    def _on_prompts_changed(self, event=None) -> None:
        action = getattr(event, "action", None)
        if action is not None and str(action) in ("adding", "removing", "changing"):
            return
        self._schedule_predict()

    def _schedule_predict(self, touch: bool = True) -> None:
        if touch:
            self._touch()
        self._predict_timer.start()

    def _read_prompts(self, plane: LayerPlane):
        """``(objects, signature)`` of the prompts on ``plane``; drops points placed outside the image."""
        point = self.viewer.dims.point
        points, boxes = points_on_plane(self._points, plane, point), boxes_on_plane(self._boxes, plane, point)
        if len(points.outside):
            self._drop_points([int(i) for i in points.outside])
        if len(boxes.outside):
            show_info("MobileSAM: a box outside the image is ignored.")
        objects = objects_from_prompts(points.xy, points.positive, boxes.boxes)
        return objects, prompt_signature(plane, points, boxes)

    def _drop_points(self, indices: list[int]) -> None:
        new = [i for i in indices if i not in self._dropping]
        if not new:
            return
        self._dropping.update(new)
        show_info(f"MobileSAM: ignored {len(new)} point(s) outside the image {self._image.name!r}.")
        layer = self._points

        def remove():
            self._dropping.clear()
            if layer is self._points and all(i < len(layer.data) for i in new):
                layer.selected_data = set(new)
                layer.remove_selected()

        QTimer.singleShot(0, remove)

    # -- predicting ----------------------------------------------------------------

    def _predict_now(self) -> None:
        plane = self._plane
        if plane is None:
            return
        objects, signature = self._read_prompts(plane)
        if not objects:
            self._requested_signature = signature
            self._generation += 1
            self.decoder.cancel_waiting()
            self._result = None
            self._show_preview(None)
            return
        if self._encoded is None or self._encoded.plane.key != plane.key:
            return  # _on_encoded schedules the prediction
        if signature == self._requested_signature:
            return
        self._requested_signature = signature
        self._generation += 1
        self.decoder.submit(self._job(plane, objects, signature))

    def _job(self, plane, objects, signature) -> DecodeJob:
        return DecodeJob(
            self._generation, plane, self._encoded.embedding, objects, self._refinement(plane, objects), signature
        )

    def _refinement(self, plane, objects) -> np.ndarray | None:
        """The previous low-res mask of the same single object, fed back as ``mask_input``."""
        if self._result is None or len(objects) != 1:
            return None
        job, decoded = self._result
        if job.plane.key != plane.key or len(job.objects) != 1:
            return None
        before, now = job.objects[0], objects[0]
        if before.signature() != now.signature() or now.n_points < before.n_points:
            return None  # another object, or points removed: start afresh
        return decoded.chosen_low_res[0]

    def _is_current_job(self, job: DecodeJob) -> bool:
        return job.generation == self._generation and self._plane is not None and job.plane.key == self._plane.key

    def _on_decoded(self, job: DecodeJob, decoded: Decoded) -> None:
        self._result = (job, decoded)
        self._show_preview(decoded)

    def _on_decode_error(self, error: Exception) -> None:
        report(error, "predicting")

    def segment(self) -> np.ndarray | None:
        """Segment the prompts on the plane shown now, waiting for the result (scripts).

        Returns ``(N, H, W)`` bool masks, one per object, on the plane's pixels
        (of the multiscale level read), or None without prompts; the preview shows them.
        """
        plane = self._current_plane_or_warn()
        if plane is None:
            return None
        objects, signature = self._read_prompts(plane)
        if not objects:
            self._result = None
            self._show_preview(None)
            return None
        if self._encode_now(plane) is None:
            return None
        if self._result is not None and self._result[0].signature == signature:
            return self._result[1].masks
        self._generation += 1
        self._requested_signature = signature
        self.decoder.cancel_waiting()
        try:
            job, decoded = run_job(self._session(), self._job(plane, objects, signature))
        except Exception as error:
            report(error, "predicting")
            return None
        self._on_decoded(job, decoded)
        return decoded.masks

    def next_candidate(self) -> None:
        """Show the next of the three candidate masks of a single object (key ``M``)."""
        if self._result is None:
            return
        job, decoded = self._result
        if decoded.iou.shape[1] < 2:
            show_info("MobileSAM: several objects have one mask each; there is nothing to cycle.")
            return
        decoded = decoded.cycled()
        self._result = (job, decoded)
        self._show_preview(decoded)

    @property
    def preview(self) -> np.ndarray | None:
        """``(N, H, W)`` bool masks shown in the preview layer, or None."""
        return None if self._result is None else self._result[1].masks

    def _show_preview(self, decoded: Decoded | None) -> None:
        layer = self._preview_layer
        if layer is not None and layer not in self.viewer.layers:
            layer = self._preview_layer = None
        self._set_status()
        if decoded is None or self._plane is None:
            if layer is not None and layer.data.any():
                layer.data = np.zeros_like(layer.data)  # emptied in place: moving it costs a redraw
            return
        if layer is None:
            layer = self._preview_layer = self._add_preview_layer(self._plane)
        preview.show_on(layer, self._plane, decoded.label_image())

    def _add_preview_layer(self, plane: LayerPlane):
        layer = preview.new_preview_layer(plane)
        active = self.viewer.layers.selection.active
        below = [self._points, self._boxes]
        index = min(
            (self.viewer.layers.index(lay) for lay in below if lay in self.viewer.layers),
            default=len(self.viewer.layers),
        )
        self.viewer.layers.insert(index, layer)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        return layer
