"""Loading the model without full garbage collections of the host's objects, so a GUI's thread never waits for one.

Importing torch and building the model make hundreds of thousands of Python
objects, which triggers Python's cyclic garbage collector several times,
among them full collections of the oldest generation. A full collection
visits every object of the process and holds Python's lock while it runs: in
napari (a large heap of Qt wrappers, layers, settings) each took 0.17-0.19 s
measured on a 2-core machine, the window frozen meanwhile. Inside
:func:`host_objects_frozen` the objects that existed before it are set aside
(:func:`gc.freeze`), so the collections the load triggers visit only the new
objects (0.03-0.08 s); afterwards they are given back to the collector
(:func:`gc.unfreeze`), so nothing is kept alive for longer than one load:
garbage among them is collected by the next full collection, as without it.
The dock widget holds it too while it opens (its layers, and the load it
starts). Nested and concurrent uses share one freeze, undone by the last to
leave.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_inside = 0


@contextmanager
def host_objects_frozen() -> Iterator[None]:
    """Run the body with the objects that exist now left out of garbage collections."""
    global _inside
    with _lock:
        if _inside == 0:
            gc.freeze()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                gc.unfreeze()
