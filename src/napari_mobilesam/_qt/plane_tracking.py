"""The plane on screen and its embedding: follow the viewer, encode the plane shown, prefetch its neighbours.

Encoding runs in workers (the model loads in the first one); a result is used
only while it still matches the plane the current image shows. What happens
is written into the image's state, and the widget redraws from there.
"""

from __future__ import annotations

import time

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from .encode_scheduler import Encoded
from .layer_plane import LayerPlane, current_plane
from .notify import report

USER_IDLE_SECONDS = 0.5
_SOURCE_TEXT = {"memory": "cache hit (memory)", "disk": "cache hit (disk)", "computed": "cache miss, encoded"}


class PlaneFollower:
    """Keeps the current image's plane and embedding up to date; ``widget`` provides viewer, state and workers."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self.last_action = time.monotonic()

    def touch(self) -> None:
        """The user did something: background work waits a little."""
        self.last_action = time.monotonic()

    def user_is_busy(self) -> bool:
        # Read from the prefetch thread: plain attribute reads only.
        widget = self.widget
        recent = time.monotonic() - self.last_action < USER_IDLE_SECONDS
        return recent or widget.encoder.busy or widget.decoder.busy

    def update(self) -> None:
        """Recompute the plane shown for the current image; a new plane is encoded (or taken from the cache)."""
        widget = self.widget
        state = widget.state
        if state is None:
            return
        try:
            plane = current_plane(widget.viewer, state.image)
        except MobileSAMError as error:
            if state.set_plane(None, str(error)):
                widget.encoder.request(None)
            return
        if not state.set_plane(plane):
            return
        widget.decoder.cancel_waiting()
        widget.prefetcher.stop()
        widget.timers["prefetch"].stop()
        if state.embedding_ready:
            widget.prompts.schedule(touch=False)
            return
        widget.encoder.request(plane)
        widget.prompts.schedule()

    # -- encoding (callbacks of the encode scheduler, UI thread) -------------------------------

    def on_encode_start(self, plane: LayerPlane) -> None:
        state = self._state_of(plane)
        if state is not None:
            loading = not self.widget.session().has_model
            state.set_embedding_state("loading" if loading else "encoding", "loading the model…" if loading else "encoding…")

    def on_encoded(self, result: Encoded) -> None:
        state = self._state_of(result.plane)
        self.widget.update_cache_text(result.cache_text)
        if state is None:
            return
        state.set_embedding(result, f"{_SOURCE_TEXT[result.source]} in {result.seconds * 1000:.0f} ms")
        if state is self.widget.state:
            self.widget.prompts.schedule(touch=False)
            if self.widget.prefetch:
                self.widget.timers["prefetch"].start()

    def on_encode_error(self, error: Exception) -> None:
        state = self.widget.state
        if state is not None:
            state.set_embedding_state("failed", "not encoded (see the notification)")
            if state.accept_waiting:
                state.set_accept_waiting(False)
        report(error, "encoding")

    def _state_of(self, plane: LayerPlane):
        state = self.widget.state
        if state is None or state.image is not plane.layer or state.plane is None or state.plane.key != plane.key:
            return None  # the user has moved on: the cache keeps the result
        return state

    def encode_now(self) -> str | None:
        """Encode the plane shown, waiting for it (scripts). Returns the source: "memory", "disk" or "computed"."""
        widget = self.widget
        state = widget.state
        if not widget.require_image():
            return None
        self.update()
        if state.plane is None:
            report(MobileSAMError(state.plane_problem or "no plane to encode"), "encoding")
            return None
        if not state.embedding_ready:
            if not widget.encoder.busy:
                widget.encoder.request(state.plane)
            if not widget.wait() or not state.embedding_ready:
                return None
        return state.embedding.source

    # -- prefetching the neighbours ---------------------------------------------------------------

    def start_prefetch(self) -> None:
        widget = self.widget
        state = widget.state
        if not widget.prefetch or state is None or not state.embedding_ready:
            return
        plane = state.plane
        steps = slicing.neighbour_steps(plane.steps, plane.full_shape)
        widget.prefetcher.start([plane.at(s) for s in steps])

    def on_prefetched(self, result: Encoded) -> None:
        self.widget.update_cache_text(result.cache_text)

