"""Decoding the prompts of the current object in a worker: latest request wins, stale results are dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.qt.threading import create_worker

from ..engine import compute_thread
from ..interactive.decoding import Decoded, decode_objects
from .encode_scheduler import Failed, safely
from .layer_plane import LayerPlane


@dataclass(frozen=True, eq=False)
class DecodeJob:
    """Everything one prediction needs, captured on the UI thread."""

    state: object  # the ImageState it was made for
    generation: int | None  # None: decoded at a press, for the click it may become (see PromptLoop.on_press)
    plane: LayerPlane
    embedding: object
    objects: list
    mask_input: np.ndarray | None
    signature: tuple


def run_job(session, job: DecodeJob) -> tuple[DecodeJob, Decoded]:
    """Decode ``job`` on the compute thread, before any encode under way goes on (see
    :mod:`~napari_mobilesam.engine.compute_thread`)."""
    return compute_thread.call(_decode_job, session, job, urgent=True)


def _decode_job(session, job: DecodeJob) -> tuple[DecodeJob, Decoded]:
    """Thread-safe: the predictor's current image is guarded by the session's lock."""
    predictor = session.predictor()
    with session.predict_lock:
        if predictor.embedding is not job.embedding:
            predictor.set_embedding(job.embedding)
        return job, decode_objects(predictor, job.objects, job.mask_input)


class PromptDecoder:
    """Runs decode jobs one at a time; a job submitted while one runs replaces any waiting job.

    ``is_current(job)`` (UI thread) decides whether a finished job is still
    wanted; ``on_ready(job, decoded)`` shows it; ``on_error(exception)`` reports.
    """

    def __init__(self, session_getter, is_current, on_ready, on_error) -> None:
        self._session = session_getter
        self._is_current = is_current
        self._on_ready = on_ready
        self._on_error = on_error
        self._worker = None
        self._waiting: DecodeJob | None = None
        self._stopped = False

    @property
    def busy(self) -> bool:
        return self._worker is not None or self._waiting is not None

    def submit(self, job: DecodeJob) -> None:
        if self._stopped:
            return
        if self._worker is None:
            self._start(job)
        else:
            self._waiting = job

    def cancel_waiting(self) -> None:
        self._waiting = None

    def stop(self) -> None:
        """No more decodes and no more callbacks (the widget closed)."""
        self._stopped = True
        self._waiting = None

    def _start(self, job: DecodeJob) -> None:
        worker = create_worker(safely(run_job), self._session(), job)
        worker.returned.connect(self._returned)
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _returned(self, result) -> None:
        if self._stopped:
            return
        if isinstance(result, Failed):
            self._on_error(result.error)
            return
        job, decoded = result
        # A newer job waiting makes this one stale, unless it is only a press's guess at the next click.
        newer = self._waiting is not None and self._waiting.generation is not None
        if not newer and self._is_current(job):
            self._on_ready(job, decoded)

    def _finished(self) -> None:
        self._worker = None
        job, self._waiting = self._waiting, None
        if job is not None and self._is_current(job):
            self._start(job)
