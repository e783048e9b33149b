"""Encoding the plane on screen in a worker, one at a time, discarding results for planes the user has left."""

from __future__ import annotations

import time
from dataclasses import dataclass

from napari.qt.threading import create_worker

from ..engine import compute_thread
from .layer_plane import LayerPlane


@dataclass(frozen=True, eq=False)
class Encoded:
    """An embedding for ``plane``; ``source``: "memory", "disk" or "computed"; ``seconds``: wall time;
    ``model``: the model that encoded it (a result of a model switched away from meanwhile is stale)."""

    plane: LayerPlane
    embedding: object
    source: str
    seconds: float
    cache_text: str
    model: object = None


def encode_plane(session, plane: LayerPlane, should_stop=None) -> Encoded:
    """Load the model if needed, read the plane, and take its embedding from the cache or the encoder.

    ``should_stop()`` true (the widget closed) stops the encode between two of the
    encoder's stages: :class:`~napari_mobilesam.engine.interrupt.Interrupted` is raised.
    """
    from ..engine.interrupt import install, interruptible

    predictor = session.predictor()
    install(predictor.model)
    start = time.perf_counter()
    with interruptible(should_stop or _never):
        _pixels, embedding, source = plane.embedding(session.cache, predictor)
    seconds = time.perf_counter() - start
    return Encoded(plane, embedding, source, seconds, session.cache.describe(), predictor.model)


def encode_planes(session, planes: list[LayerPlane], should_stop=None) -> list[Encoded]:
    """:func:`encode_plane` for several planes of one image, their misses encoded together (one batch)."""
    first = planes[0]
    if len(planes) == 1 or any(
        (p.image_id, p.contrast_limits, p.n_slices) != (first.image_id, first.contrast_limits, first.n_slices)
        for p in planes
    ):
        return [encode_plane(session, plane, should_stop) for plane in planes]
    from ..engine.interrupt import install, interruptible

    predictor = session.predictor()
    install(predictor.model)
    start = time.perf_counter()
    with interruptible(should_stop or _never):
        found = session.cache.embeddings(
            predictor,
            [plane.read() for plane in planes],
            contrast_limits=first.contrast_limits,
            image_id=first.image_id,
            slice_indices=[plane.slice_index for plane in planes],
            n_slices=first.n_slices,
            batch_size=len(planes),
        )
    seconds = (time.perf_counter() - start) / len(planes)
    text = session.cache.describe()
    return [Encoded(plane, e, source, seconds, text) for plane, (e, source) in zip(planes, found, strict=True)]


def _never() -> bool:
    return False


@dataclass(frozen=True, eq=False)
class Failed:
    """What a worker returns instead of raising (napari would show a raised error with its traceback)."""

    error: Exception


def safely(function):
    """``function``'s result, or :class:`Failed` with the exception it raised."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as error:  # reported by the widget as a notification
            return Failed(error)

    call.__name__ = getattr(function, "__name__", "call")
    return call


class PlaneEncoder:
    """Runs :func:`encode_plane` for the latest requested plane.

    At most one encode runs at a time (two would share the CPU and both be
    late); a plane requested meanwhile is encoded when it finishes, and a
    result for a plane that is no longer the target is dropped (the cache
    keeps it). ``on_ready(Encoded)`` and ``on_error(Exception)`` run on the UI thread.
    """

    def __init__(self, session_getter, on_ready, on_error, on_start=None) -> None:
        self._session = session_getter
        self._on_ready = on_ready
        self._on_error = on_error
        self._on_start = on_start
        self._target: LayerPlane | None = None
        self._worker = None
        self._running: LayerPlane | None = None
        self._stopped = False

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def stop(self) -> None:
        """No more encodes and no more callbacks (the widget closed); an encode under way finishes unseen."""
        self._stopped = True
        self._target = None

    @property
    def target(self) -> LayerPlane | None:
        return self._target

    def request(self, plane: LayerPlane | None) -> None:
        """Make ``plane`` the target (None: nothing) and encode it unless already under way."""
        self._target = plane
        if plane is not None and self._worker is None and not self._stopped:
            self._start(plane)

    def _start(self, plane: LayerPlane) -> None:
        worker = create_worker(
            safely(compute_thread.on_compute_thread(encode_plane)),
            self._session(),
            plane,
            lambda: self._stopped,
            _progress={"total": 0, "desc": f"MobileSAM: encoding {plane.layer.name} {plane.describe()}"},
        )
        worker.returned.connect(self._returned)
        worker.finished.connect(self._finished)
        self._worker, self._running = worker, plane
        if self._on_start is not None:
            self._on_start(plane)
        worker.start()

    def _returned(self, result) -> None:
        if self._stopped:
            return
        if isinstance(result, Failed):
            if self._target is not None and self._running is not None and self._running.key == self._target.key:
                self._target = None  # do not retry the same failure in a loop
                self._on_error(result.error)
        elif result.model is not None and result.model is not self._session().model():
            self._running = None  # the model was switched while it encoded: encode the target again
        elif self._target is not None and result.plane.key == self._target.key:
            self._on_ready(result)

    def _finished(self) -> None:
        ran = self._running
        self._worker = self._running = None
        target = self._target
        if target is not None and not self._stopped and (ran is None or ran.key != target.key):
            self._start(target)
