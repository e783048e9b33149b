"""Encoding the neighbours of the plane on screen (z +- 1) in the background while the user is idle."""

from __future__ import annotations

import time

from napari.qt.threading import create_worker

from ..engine import compute_thread
from .encode_scheduler import encode_planes

POLL_SECONDS = 0.05


def prefetch_planes(session, planes, user_is_busy, should_stop=None):
    """Generator: encode the planes of ``planes`` into the cache, pausing while ``user_is_busy()``.

    Planes are encoded in batches of the device's size
    (:func:`~napari_mobilesam.engine.batching.encode_batch_size`, 1 on a CPU).
    It yields between steps, so the worker can be stopped (``quit``) at any
    yield: while it waits, and after each batch (an encode itself takes about a
    second; ``should_stop()`` stops it within, when the widget closes).
    """
    planes, size = list(planes), None
    while planes:
        while user_is_busy():
            yield None
            time.sleep(POLL_SECONDS)
        try:
            if size is None:
                size = _batch_size(session) if len(planes) > 1 else 1
            batch, planes = planes[:size], planes[size:]
            encoded = compute_thread.call(encode_planes, session, batch, should_stop)
        except Exception:  # noqa: BLE001  a failed prefetch is retried when the user gets there
            return
        yield from encoded


def _batch_size(session) -> int:
    from ..engine.batching import encode_batch_size

    predictor = compute_thread.call(session.predictor)  # loads the model if needed
    return encode_batch_size(predictor.device, predictor.precision)


class Prefetcher:
    """Starts and stops :func:`prefetch_planes` workers; ``on_encoded(Encoded)`` runs on the UI thread."""

    def __init__(self, session_getter, user_is_busy, on_encoded=None) -> None:
        self._session = session_getter
        self._user_is_busy = user_is_busy
        self._on_encoded = on_encoded
        self._worker = None
        self._closed = False

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self, planes) -> None:
        self.stop()
        if not planes or self._closed:
            return
        worker = create_worker(
            prefetch_planes, self._session(), list(planes), self._user_is_busy, lambda: self._closed
        )
        worker.yielded.connect(self._yielded)
        worker.finished.connect(lambda: self._done(worker))
        self._worker = worker
        worker.start()

    def stop(self) -> None:
        """Stop after the plane being encoded (it goes into the cache: the user may want it next)."""
        if self._worker is not None:
            self._worker.quit()

    def close(self) -> None:
        """Stop now, within the encode under way (the widget closes)."""
        self._closed = True
        self.stop()

    @property
    def worker(self):
        return self._worker

    def _yielded(self, value) -> None:
        if value is not None and self._on_encoded is not None:
            self._on_encoded(value)

    def _done(self, worker) -> None:
        if self._worker is worker:
            self._worker = None
