"""Running a generator of progress steps to its end: how the long work of this package runs outside a GUI."""

from __future__ import annotations

from collections.abc import Callable, Generator


def run_steps(steps: Generator, progress: Callable[[int, int], object] | None = None):
    """Iterate ``steps`` (yielding ``(done, total)``) to its end, calling ``progress(done, total)``; its return value."""
    while True:
        try:
            step = next(steps)
        except StopIteration as finished:
            return finished.value
        if progress is not None:
            progress(*step)
