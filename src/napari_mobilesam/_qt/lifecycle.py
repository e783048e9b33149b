"""The widget's life: warming up when it opens, stopping everything when its panel or napari closes.

Opening: a worker imports the table library napari's Points layers need, so
the prompt layers are made without a stall, then loads the model (torch's
import), so the first click does not wait. Closing -- the dock's close button
(which only takes the widget out of its dock), napari's window closing, or the
application quitting, none of which sends a docked widget a close event --
disconnects every event, stops the workers (an encode under way stops between
the encoder's stages, :mod:`napari_mobilesam.engine.interrupt`) and waits for
them briefly, so none outlives napari's window.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref

from napari.qt.threading import create_worker
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication

from ..engine import compute_thread
from .encode_scheduler import Failed
from .notify import report


class Lifecycle(QObject):
    """Watches the widget and its window; ``widget`` provides the workers, controllers and ``close_widget``."""

    def __init__(self, widget) -> None:
        super().__init__(widget)
        self.widget = widget
        self.layers_made = threading.Event()  # the first image's prompt layers exist: the model may load
        self.model_worker = None
        self._top = None
        widget.installEventFilter(self)
        app = QApplication.instance()
        if app is not None:
            this = weakref.ref(widget)  # the application must not keep a closed viewer's widget alive
            app.aboutToQuit.connect(lambda: this() is not None and this().close_widget(tidy_layers=False))

    # -- opening ----------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Start the warm-up worker; the first image is picked once the prompt layers can be made."""
        widget = self.widget
        session = widget.session()
        if session.has_model and "pandas" in sys.modules:
            widget.timers["start"].start()
            return
        worker = create_worker(
            _warm_up,
            session,
            self.layers_made,
            _progress={"total": 0, "desc": "MobileSAM: loading the model"},
            _ignore_errors=True,
        )
        worker.yielded.connect(lambda _: widget.timers["start"].start())
        worker.returned.connect(self._on_model_loaded)
        worker.finished.connect(self._on_worker_done)
        self.model_worker = worker
        worker.start()

    def _on_model_loaded(self, result) -> None:
        if isinstance(result, Failed) and not self.widget.closed:
            if not self.layers_made.is_set():
                self.widget.timers["start"].start()
            report(result.error, "loading the model")
        self.widget.render()

    def _on_worker_done(self) -> None:
        self.model_worker = None

    # -- closing -----------------------------------------------------------------------------------------

    def eventFilter(self, watched, event) -> bool:
        widget = self.widget
        if widget.closed:
            return False
        kind = event.type()
        if watched is widget:
            if kind == QEvent.Type.ParentChange:
                if widget.parent() is None:  # napari's dock close button: the viewer stays, tidy its layers
                    widget.close_widget(tidy_layers=True)
                else:
                    self._watch_window()
            elif kind == QEvent.Type.Show:
                self._watch_window()  # docked now: the top-level is napari's window
            elif kind == QEvent.Type.Close:
                widget.close_widget(tidy_layers=False)
        elif kind == QEvent.Type.Close and watched is self._window():
            widget.close_widget(tidy_layers=False)  # the window goes, its layers with it
        return False

    def _window(self):
        return self._top() if self._top is not None else None

    def _watch_window(self) -> None:
        top, current = self.widget.window(), self._window()
        if top is self.widget or top is current:
            return
        if current is not None:
            current.removeEventFilter(self)
        self._top = weakref.ref(top)  # weak: the widget must not keep napari's window alive
        top.installEventFilter(self)

    def stop_watching(self) -> None:
        window = self._window()
        if window is not None:
            window.removeEventFilter(self)
        self.widget.removeEventFilter(self)

    def wait_for_workers(self, timeout: float = 10.0) -> None:
        """Let the workers told to stop finish, so none outlives napari's window (they stop within a stage)."""
        widget = self.widget
        deadline = time.monotonic() + timeout
        app = QApplication.instance()
        while time.monotonic() < deadline and (
            widget.encoder.busy
            or widget.decoder.busy
            or widget.prefetcher.busy
            or self.model_worker is not None
            or widget.model_picker.worker is not None
            or widget.everything_section.busy_here
        ):
            app.processEvents()
            time.sleep(0.005)


def _warm_up(session, layers_made: threading.Event):
    """Worker generator: import what napari's Points layers need, yield, then load the model.

    A Points layer keeps its features in pandas, whose first import takes seconds;
    made on the UI thread, the prompt layers would freeze the viewer that long. The
    model (torch's import) waits until the UI thread has made the layers: the two
    would share the interpreter and each take twice as long.
    """
    try:
        import pandas  # noqa: F401

        yield "layers"
        layers_made.wait(10)
        compute_thread.call(session.model)  # where the model's work runs: one OpenMP team
    except Exception as error:  # reported on the UI thread as a notification
        return Failed(error)
    return None
