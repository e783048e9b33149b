"""What the widget knows about one image: its helper layers, the plane shown, its embedding, the preview, work waiting.

One :class:`ImageState` per image the widget has worked on; switching images
switches states, so two images never share prompts, previews or output labels.
The state is plain data with one event, :attr:`ImageState.changed`, emitted with
the name of what changed; the Qt widgets only call its setters and redraw on
that event (as napari-animation's widgets listen to its evented core). Layers
are held as opaque objects: nothing here imports napari or Qt.
"""

from __future__ import annotations

from psygnal import Signal

#: How far the plane shown is from being segmented.
EMBEDDING_STATES = ("none", "waiting", "loading", "encoding", "ready", "failed")


class ImageState:
    """The widget's state for one image layer.

    Attributes (read them; change them through the setters, which emit :attr:`changed`):

    - ``image``: the image layer; ``points``, ``boxes``: its prompt layers; ``labels``:
      its output Labels layer (None until the first accept makes one); ``preview``:
      its preview layer (made with the first result).
    - ``plane``: the plane shown (a ``LayerPlane``), or None with ``plane_problem``
      saying why (e.g. the viewer is in 3D).
    - ``embedding``: the encoded plane (an ``Encoded``) once ready; ``embedding_state``
      one of :data:`EMBEDDING_STATES` and ``embedding_text`` for the status line.
    - ``result``: ``(job, decoded)`` of the prompts on the plane, or None.
    - ``accept_waiting``: Enter was pressed before the result was ready: accept it when it arrives.
    - ``editing``: the id of the existing label being refined, or None.
    - ``message``: the outcome of the user's last action (e.g. "accepted label 1 into 'cells labels'").
    """

    changed = Signal(str)

    def __init__(self, image) -> None:
        self.image = image
        self.points = None
        self.boxes = None
        self.labels = None
        self.preview = None
        self.plane = None
        self.plane_problem: str | None = None
        self.embedding = None
        self.embedding_state = "none"
        self.embedding_text = ""
        self._ready_text = ""
        self.result = None
        self.requested = None  # the prompt signature last sent to the decoder
        self.generation = 0  # bumped whenever results in flight become stale
        self.accept_waiting = False
        self.editing: int | None = None
        self.message = ""

    # -- setters -------------------------------------------------------------------

    def set_layers(self, **layers) -> None:
        """Set any of ``points``, ``boxes``, ``labels``, ``preview``."""
        unknown = set(layers) - {"points", "boxes", "labels", "preview"}
        if unknown:
            raise TypeError(f"ImageState has no layer slot {sorted(unknown)}")
        for name, layer in layers.items():
            setattr(self, name, layer)
        self.changed.emit("layers")

    def set_plane(self, plane, problem: str | None = None) -> bool:
        """The plane shown (None with ``problem``); returns whether it is another plane than before.

        Another plane makes the embedding, the result and any waiting accept stale.
        """
        same = plane is not None and self.plane is not None and plane.key == self.plane.key
        self.plane_problem = problem
        if same:
            self.changed.emit("plane")
            return False
        self.plane = plane
        self.invalidate_result()
        self.accept_waiting = False
        if plane is None:
            self.embedding_state, self.embedding_text = "none", ""
        elif self.embedding is not None and self.embedding.plane.key == plane.key:
            self.embedding_state, self.embedding_text = "ready", self._ready_text  # back on the plane encoded last
        else:
            self.embedding = None
            self.embedding_state, self.embedding_text = "waiting", "waiting to encode"
        self.changed.emit("plane")
        return True

    def set_embedding_state(self, state: str, text: str = "") -> None:
        if state not in EMBEDDING_STATES:
            raise ValueError(f"embedding state {state!r} is not one of {EMBEDDING_STATES}")
        self.embedding_state, self.embedding_text = state, text
        self.changed.emit("embedding")

    def set_embedding(self, encoded, text: str) -> None:
        """The plane's embedding is ready."""
        self.embedding = encoded
        self.embedding_state, self.embedding_text = "ready", text
        self._ready_text = text
        self.changed.emit("embedding")

    @property
    def embedding_ready(self) -> bool:
        return (
            self.embedding is not None
            and self.plane is not None
            and self.embedding.plane.key == self.plane.key
        )

    def set_result(self, result) -> None:
        """``(job, decoded)`` of the prompts on the plane (None: no preview)."""
        self.result = result
        self.changed.emit("result")

    def invalidate_result(self) -> None:
        """Drop the result and make every decode in flight stale."""
        self.generation += 1
        self.requested = None
        self.result = None

    def set_message(self, text: str) -> None:
        self.message = text
        self.changed.emit("message")

    def set_accept_waiting(self, waiting: bool) -> None:
        self.accept_waiting = bool(waiting)
        self.changed.emit("accept")

    def set_editing(self, label_id: int | None) -> None:
        self.editing = None if label_id is None else int(label_id)
        self.invalidate_result()
        self.changed.emit("editing")

    def helper_layers(self) -> list:
        """The layers made or picked for this image (prompts, boxes, preview), present ones only."""
        return [layer for layer in (self.points, self.boxes, self.preview) if layer is not None]
