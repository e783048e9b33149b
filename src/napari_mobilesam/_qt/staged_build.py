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
from functools import partial
from types import ModuleType

from qtpy.QtCore import QObject, QTimer

#: Between two stages: long enough that each runs in an event-loop turn of its own (a zero-delay timer
#: set during a turn may run within that same turn), short enough not to be noticed.
TICK_MS = 2


class Turns(QObject):
    """Runs ``steps`` one per event-loop turn (a child of ``parent``'s: none runs once it is gone).

    A step's exception stops the steps left and goes to ``on_error``;
    :meth:`finish` runs those left now.
    """

    def __init__(self, parent: QObject, steps: list[Callable[[], None]], on_error: Callable[[Exception], None]) -> None:
        super().__init__(parent)
        self._steps = list(steps)
        self._on_error = on_error
        self._running = False
        self._timer = QTimer(self, singleShot=True, interval=TICK_MS)
        self._timer.timeout.connect(self._next)
        self._timer.start()

    @property
    def done(self) -> bool:
        """Every step has run (or they stopped)."""
        return not self._steps

    @property
    def running(self) -> bool:
        """A step is running now."""
        return self._running

    def finish(self) -> None:
        """Run every step left now; errors are raised."""
        self._timer.stop()
        while not self.done:
            self._run_one()

    def cancel(self) -> None:
        """Run no more steps."""
        self._timer.stop()
        self._steps = []

    def _ready(self) -> bool:
        """Whether the next step may run in this turn (else it is looked at again a moment later)."""
        return True

    def _next(self) -> None:
        if self.done:
            return
        if self._ready():
            try:
                self._run_one()
            except Exception as error:  # noqa: BLE001 - reported as the widget reports any failure
                self.cancel()
                self._on_error(error)
                return
        if not self.done:
            self._timer.start()

    def _run_one(self) -> None:
        step = self._steps.pop(0)
        self._running = True
        try:
            step()
        finally:
            self._running = False


class StagedBuild(Turns):
    """Imports ``module`` in a background thread, then runs each of its ``STAGES`` (functions called with
    ``args``), one per event-loop turn.

    A stage's exception (or the import's) stops the build and goes to
    ``on_error``; the stages left are not run.
    """

    def __init__(self, parent: QObject, module: str, args: tuple, on_error: Callable[[Exception], None]) -> None:
        self._args = args
        self._module: ModuleType | None = None
        self._import_error: BaseException | None = None
        self._imported = threading.Event()
        super().__init__(parent, [self._load_stages], on_error)  # dies with its widget, and its timer with it
        threading.Thread(target=self._import, args=(module,), name="napari-mobilesam import", daemon=True).start()

    def finish(self) -> None:
        """Run every stage left now, after the import (waited for); errors are raised."""
        self._imported.wait()
        super().finish()

    def _ready(self) -> bool:
        return self._imported.is_set()

    def _import(self, module: str) -> None:
        try:
            self._module = importlib.import_module(module)
        except BaseException as error:  # noqa: BLE001 - raised on the GUI thread by the next step
            self._import_error = error
        finally:
            self._imported.set()

    def _load_stages(self) -> None:
        """The first step: the module's stages become the steps that follow."""
        if self._import_error is not None:
            raise self._import_error
        self._steps[:0] = [partial(stage, *self._args) for stage in self._module.STAGES]
