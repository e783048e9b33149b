"""Stopping an encode between the encoder's stages, when whoever asked for it has gone (a closed window).

An encode is one call into the model that takes about a second on a laptop
CPU (much longer on a slow one) and cannot be cancelled from outside. The GUI
runs it in a worker thread; when napari closes meanwhile, that thread would
keep the process alive until it ends. :func:`interruptible` gives the running
thread a stop check, and hooks on the encoder's stages (:func:`install`)
consult it before each stage: when it says stop, the encode raises
:class:`Interrupted` within a fraction of a second. Without a stop check (every
other caller) the hooks only serve :func:`~napari_mobilesam.engine.compute_thread.checkpoint`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .compute_thread import checkpoint

_local = threading.local()
_MARK = "_napari_mobilesam_interruptible"


class Interrupted(Exception):
    """The encode was stopped because its stop check said so."""


@contextmanager
def interruptible(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Within this block, this thread's encodes stop (raise :class:`Interrupted`) once ``should_stop()`` is true."""
    previous = getattr(_local, "check", None)
    _local.check = should_stop
    try:
        yield
    finally:
        _local.check = previous


def install(model) -> None:
    """Add the stop check before each stage of ``model``'s image encoder (once per model)."""
    if getattr(model, _MARK, False):
        return
    encoder = model.image_encoder
    stages = [*getattr(encoder, "layers", []), getattr(encoder, "neck", None)]
    for stage in stages:
        if stage is not None:
            stage.register_forward_pre_hook(_check)
    setattr(model, _MARK, True)


def _check(module, inputs) -> None:
    checkpoint()  # urgent work waiting for the compute thread (a click's decode) runs between stages
    check = getattr(_local, "check", None)
    if check is not None and check():
        raise Interrupted("the encode was stopped")
