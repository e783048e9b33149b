"""Building a widget in stages, one per turn of Qt's event loop, from modules imported in a background thread.

A napari dock widget is built inside one call (``add_plugin_dock_widget``):
importing the plugin's modules, constructing the widget and docking it freeze
the window for as long as they take together (0.4-0.5 s measured for ours on
a 2-core machine). Docking an empty widget takes ~20 ms; so the widget starts
empty, a background thread imports the modules its parts come from (Python's
lock changes hands every few milliseconds while it runs Python code), and
each part is then built in its own event-loop turn, the window drawing and
taking input in between.

Code that needs the whole widget at once (a script right after opening it)
calls :meth:`StagedBuild.finish`, which waits for the import and runs the
remaining stages there and then.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from types import ModuleType

from qtpy.QtCore import QObject, QTimer

#: Between two stages: long enough that each runs in an event-loop turn of its own (a zero-delay timer
#: set during a turn may run within that same turn), short enough not to be noticed.
TICK_MS = 2


class StagedBuild(QObject):
    """Imports ``module`` in a background thread, then runs each of its ``STAGES`` (functions called with
    ``args``), one per event-loop turn.

    A stage's exception (or the import's) stops the build and goes to
    ``on_error``; the stages left are not run.
    """

    def __init__(self, parent: QObject, module: str, args: tuple, on_error: Callable[[Exception], None]) -> None:
        super().__init__(parent)  # dies with its widget, and its timer with it
        self._args = args
        self._on_error = on_error
        self._stages: list[Callable] | None = None  # known once the module is imported
        self._module: ModuleType | None = None
        self._import_error: BaseException | None = None
        self._running = False
        self._imported = threading.Event()
        self._timer = QTimer(self, singleShot=True, interval=TICK_MS)
        self._timer.timeout.connect(self._next)
        threading.Thread(target=self._import, args=(module,), name="napari-mobilesam import", daemon=True).start()
        self._timer.start()

    @property
    def done(self) -> bool:
        """Every stage has run (or the build stopped)."""
        return self._stages is not None and not self._stages

    @property
    def running(self) -> bool:
        """A stage is running now."""
        return self._running

    def finish(self) -> None:
        """Run every stage left now, after the import (waited for); errors are raised."""
        self._timer.stop()
        self._imported.wait()
        while not self.done:
            self._run_one()

    def cancel(self) -> None:
        """Run no more stages."""
        self._timer.stop()
        self._stages = []

    def _import(self, module: str) -> None:
        try:
            self._module = importlib.import_module(module)
        except BaseException as error:  # noqa: BLE001 - raised on the GUI thread by the next stage
            self._import_error = error
        finally:
            self._imported.set()

    def _next(self) -> None:
        if self.done:
            return
        if not self._imported.is_set():
            self._timer.start()  # look again in a moment
            return
        try:
            self._run_one()
        except Exception as error:  # noqa: BLE001 - reported as the widget reports any failure
            self.cancel()
            self._on_error(error)
            return
        if not self.done:
            self._timer.start()

    def _run_one(self) -> None:
        if self._stages is None:
            if self._import_error is not None:
                self._stages = []
                raise self._import_error
            self._stages = list(self._module.STAGES)
        stage = self._stages.pop(0)
        self._running = True
        try:
            stage(*self._args)
        finally:
            self._running = False


def run_in_turns(parent: QObject, steps: list[Callable[[], None]], on_error: Callable[[Exception], None]) -> None:
    """Run ``steps`` one per event-loop turn (a timer of ``parent``'s: none runs once it is gone); an exception
    stops them and goes to ``on_error``."""
    steps = list(steps)
    timer = QTimer(parent, singleShot=True, interval=TICK_MS)

    def step() -> None:
        try:
            steps.pop(0)()
        except Exception as error:  # noqa: BLE001 - reported as the widget reports any failure
            steps.clear()
            on_error(error)
        if steps:
            timer.start()
        else:
            timer.deleteLater()

    timer.timeout.connect(step)
    timer.start()
