"""The plane on screen and its embedding: follow the viewer, encode the plane shown, prefetch its neighbours.

A mixin of :class:`~napari_mobilesam._qt.widget.MobileSAMWidget`. Encoding runs
in workers; a result is used only while it still matches the plane on screen.
"""

from __future__ import annotations

import time

from napari.utils.notifications import show_warning

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from .encode_scheduler import Encoded, encode_plane
from .layer_plane import LayerPlane, current_plane
from .notify import report

USER_IDLE_SECONDS = 0.5


class PlaneTracking:
    """Which plane is shown, its embedding and the user's idleness; state lives on the widget."""

    # -- the plane on screen -------------------------------------------------------

    def _current_plane_or_warn(self) -> LayerPlane | None:
        if not self._require_image():
            return None
        self._view_timer.stop()
        self._update_plane()
        if self._plane is None:
            show_warning(f"MobileSAM: {self._plane_text}")
        return self._plane

    @property
    def plane(self) -> LayerPlane | None:
        """The plane being segmented (layer, steps per axis, multiscale level), or None."""
        return self._plane

    def _on_view_event(self, event=None) -> None:
        self._touch()
        self._view_timer.start()

    def _update_plane(self) -> None:
        if self._image is None:
            return
        try:
            plane = current_plane(self.viewer, self._image)
        except MobileSAMError as error:
            self._plane = None
            self.encoder.request(None)
            self._plane_text = str(error)
            self._set_status()
            return
        if self._plane is not None and plane.key == self._plane.key:
            return
        self._plane = plane
        self._result = None
        self._requested_signature = None
        self._generation += 1
        self.decoder.cancel_waiting()
        self.prefetcher.stop()
        self._prefetch_timer.stop()
        self._show_preview(None)
        if self._encoded is not None and self._encoded.plane.key != plane.key:
            self._encoded = None
        if self._encoded is None:
            self._plane_text = f"{plane.describe()}: waiting to encode"
            self.encoder.request(plane)
        self._set_status()
        self._schedule_predict()

    # -- encoding ----------------------------------------------------------------

    def _on_encode_start(self, plane: LayerPlane) -> None:
        self._plane_text = f"{plane.describe()}: encoding…"
        self._set_status()

    def _on_encoded(self, result: Encoded) -> None:
        self._encoded = result
        what = {"memory": "cache hit (memory)", "disk": "cache hit (disk)", "computed": "cache miss, encoded"}
        self._plane_text = f"{result.plane.describe()}: {what[result.source]} in {result.seconds * 1000:.0f} ms"
        self._update_cache_text(result.cache_text)
        self._set_status()
        self._schedule_predict(touch=False)
        if self.prefetch:
            self._prefetch_timer.start()

    def _on_encode_error(self, error: Exception) -> None:
        self._plane_text = "not encoded (see the notification)"
        self._set_status()
        report(error, "encoding")

    def encode(self) -> str | None:
        """Encode the plane shown now, waiting for it (scripts). Returns the source: "memory", "disk" or "computed"."""
        plane = self._current_plane_or_warn()
        if plane is None:
            return None
        result = self._encode_now(plane)
        return None if result is None else result.source

    def _encode_now(self, plane: LayerPlane) -> Encoded | None:
        if self._encoded is not None and self._encoded.plane.key == plane.key:
            return self._encoded
        try:
            result = encode_plane(self._session(), plane)
        except Exception as error:
            report(error, "encoding")
            return None
        self._on_encoded(result)
        return result

    def _start_prefetch(self) -> None:
        plane = self._plane
        if not self.prefetch or plane is None or self._encoded is None:
            return
        steps = slicing.neighbour_steps(plane.steps, plane.full_shape)
        self.prefetcher.start([plane.at(s) for s in steps])

    def _on_prefetched(self, result: Encoded) -> None:
        self._update_cache_text(result.cache_text)

    def _user_is_busy(self) -> bool:
        # Read from the prefetch thread: plain attribute reads only.
        recent = time.monotonic() - self._last_action < USER_IDLE_SECONDS
        return recent or self.encoder.busy or self.decoder.busy

    def _touch(self) -> None:
        self._last_action = time.monotonic()
