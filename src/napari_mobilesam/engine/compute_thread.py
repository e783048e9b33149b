"""One long-lived thread for the model's interactive work (loading, encoding, decoding).

PyTorch's CPU operations run in OpenMP parallel regions, and every OS thread
that enters one gets its own team of helper threads. GNU OpenMP keeps a
team's helpers spinning between regions only while the process has no more
such threads than cores; with a second team on a laptop's 2-4 cores it
throttles them (100 spins), and each of a click's few hundred regions then
wakes its helpers through the kernel. Measured on 2 cores, a one-point
decode took 21-22 ms when only one thread had ever run torch and 33-34 ms
once a second thread had (any order); a GUI that encodes in one worker
thread, decodes in another and loads the model in a third pays that on every
click. Callers in any thread hand their work to :func:`call`, which runs it
here and returns its result, so the process keeps a single team.

A decode must not wait a whole encode (about a second) for the thread: the
encoder's stages are checkpoints (:mod:`napari_mobilesam.engine.interrupt`'s
hooks call :func:`checkpoint`), where urgent work queued meanwhile runs
before the encode goes on. Urgent work must not depend on the state of the
work it interrupts (a decode sets the predictor's current image; an encode
does not read it).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_URGENT, _NORMAL = 0, 1
_jobs: queue.PriorityQueue = queue.PriorityQueue()
_order = itertools.count()  # first in, first out within a priority
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def call(function: Callable[..., T], *args: Any, urgent: bool = False, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` run on the compute thread; its result, or the exception it raised.

    Blocks the calling thread until it is done (call it from a worker thread,
    never from a GUI's event loop). ``urgent``: run it at the next checkpoint
    of the work under way instead of after it. Called on the compute thread
    itself, it runs at once.
    """
    if is_compute_thread():
        return function(*args, **kwargs)
    future: Future = Future()
    _jobs.put((_URGENT if urgent else _NORMAL, next(_order), function, args, kwargs, future))
    _ensure_started()
    return future.result()


def on_compute_thread(function: Callable[..., T]) -> Callable[..., T]:
    """``function`` made to run on the compute thread (:func:`call`) whoever calls it."""

    def run(*args: Any, **kwargs: Any) -> T:
        return call(function, *args, **kwargs)

    run.__name__ = getattr(function, "__name__", "run")
    run.__doc__ = function.__doc__
    return run


def checkpoint() -> None:
    """On the compute thread, run the urgent work waiting (elsewhere: nothing)."""
    if not is_compute_thread():
        return
    while True:
        try:
            job = _jobs.get_nowait()
        except queue.Empty:
            return
        if job[0] != _URGENT:
            _jobs.put(job)  # back in its place (its order number keeps it there)
            return
        _run(job)


def is_compute_thread() -> bool:
    """Whether the calling thread is the compute thread."""
    return threading.current_thread() is _thread


def _ensure_started() -> None:
    global _thread
    if _thread is not None:
        return
    with _start_lock:
        if _thread is None:
            thread = threading.Thread(target=_serve, name="napari-mobilesam compute", daemon=True)
            _thread = thread
            thread.start()


def _serve() -> None:
    while True:
        _run(_jobs.get())


def _run(job) -> None:
    _priority, _number, function, args, kwargs, future = job
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001  handed to the caller, which raises it
        future.set_exception(error)
    else:
        future.set_result(result)
