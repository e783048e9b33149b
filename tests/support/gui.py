"""Support for the widget tests (no tests here): an X display for OpenGL, a fresh session, opening the widget.

napari draws with OpenGL even in tests; Qt's offscreen platform gets a GL
context only through an X server. Without ``DISPLAY``, an ``Xvfb`` is
started for the test session when one is installed (``apt-get install xvfb``);
otherwise the GUI tests are skipped with that advice.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import time

import pytest

_XVFB: subprocess.Popen | None = None  # the X server this test session started, if any


def _start_xvfb() -> bool:
    global _XVFB
    if os.environ.get("DISPLAY") or not sys.platform.startswith("linux"):
        return True
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return False
    # -displayfd: Xvfb picks a free display and writes its number once it accepts connections.
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    number = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not number.endswith(b"\n"):
        ready, _, _ = select.select([read_end], [], [], 0.2)
        if ready:
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            number += chunk
    os.close(read_end)
    if not number.strip().isdigit():
        process.terminate()
        return False
    os.environ["DISPLAY"] = f":{number.strip().decode()}"
    _XVFB = process
    # Stop Xvfb only once this process is gone: Qt still holds its X connection
    # during interpreter shutdown, and losing it then makes the process exit 1.
    subprocess.Popen(
        ["sh", "-c", f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 0.2; done; kill {process.pid}"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return True


def _xvfb_accepts_connections() -> bool:
    """Whether the X server this session started is still running and listening."""
    import socket

    if _XVFB is None or _XVFB.poll() is not None:
        return False
    path = f"/tmp/.X11-unix/X{os.environ['DISPLAY'].lstrip(':')}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


HAVE_DISPLAY = _start_xvfb()

# In CI the GUI tests must run: .ci/run installs xvfb, and a missing display fails loudly there.
needs_display = pytest.mark.skipif(
    not HAVE_DISPLAY and not os.environ.get("CI"),
    reason="napari needs OpenGL, here through an X server: install xvfb (apt-get install xvfb)",
)


@pytest.fixture(scope="session")
def live_display():
    """The X display, checked once before the first viewer exists (and so before Qt connects to it).

    The Xvfb started at collection serves the whole run; one that has gone away
    since (seen once in CI: every viewer then failed to get an OpenGL context)
    is replaced while that can still help.
    """
    global HAVE_DISPLAY
    if _XVFB is not None and not _xvfb_accepts_connections():
        _XVFB.kill()
        del os.environ["DISPLAY"]
        HAVE_DISPLAY = _start_xvfb()
    return HAVE_DISPLAY


@pytest.fixture
def session(live_display, recipe_model, tmp_path, monkeypatch):
    """A fresh shared session (recipe model, embedding cache in tmp_path) for the widgets of one test."""
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine.session import Session, set_default_session

    monkeypatch.setenv("NAPARI_MOBILESAM_CACHE", str(tmp_path / "cache"))
    fresh = Session(cache=EmbeddingCache(directory=tmp_path / "embeddings"))
    fresh.set_model(recipe_model, source="recipe test weights")
    previous = set_default_session(fresh)
    yield fresh
    set_default_session(previous)


def open_widget(viewer, qtbot, prefetch: bool = False):
    """The MobileSAM dock widget, opened the way a user does (by plugin and widget name)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.prefetch = prefetch
    qtbot.wait(5)  # the widget picks its image on the next event-loop turn
    wait_idle(widget, qtbot)
    return widget


def wait_idle(widget, qtbot, timeout: int = 60_000, prefetch: bool = False) -> None:
    """Wait until the widget's workers and timers are done."""
    if prefetch:
        qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    else:
        qtbot.waitUntil(lambda: widget.wait(timeout=0), timeout=timeout)


def notifications_since(start: int) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[start:]]


def notification_count() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


class User:
    """Real Qt events, as a user makes them: clicks and drags on napari's canvas, buttons, layer-list rows, keys.

    Positions are world ``(y, x)`` on the plane shown; they are mapped to canvas
    pixels through the canvas's own transform, so an event lands where napari
    draws that point.
    """

    def __init__(self, viewer, qtbot) -> None:
        self.viewer, self.qtbot = viewer, qtbot
        self.canvas = viewer.window._qt_viewer.canvas  # napari's own vispy canvas: where a user clicks

    def _pixel(self, world_yx):
        from qtpy.QtCore import QPoint

        view = self.canvas.view
        transform = view.transform * view.scene.transform
        x, y = transform.map([float(world_yx[1]), float(world_yx[0])])[:2]
        return QPoint(int(round(x)), int(round(y)))

    def settle(self, ms: int = 30) -> None:
        self.qtbot.wait(ms)

    def click(self, world_yx, button: str = "left", alt: bool = False) -> None:
        """Press and release a mouse button on the canvas at world ``(y, x)``."""
        self.mouse_down(world_yx, button, alt)
        self.settle(5)
        self.mouse_up(world_yx, button, alt=alt)

    def mouse_down(self, world_yx, button: str = "left", alt: bool = False) -> None:
        """Press a mouse button on the canvas at world ``(y, x)`` and keep it down."""
        from qtpy.QtTest import QTest

        at = self._pixel(world_yx)
        QTest.mouseMove(self.canvas.native, at)
        self.settle(5)
        QTest.mousePress(self.canvas.native, self._button(button), self._modifiers(alt), at)

    def mouse_up(self, world_yx, button: str = "left", shift_pixels: tuple[int, int] = (0, 0), alt: bool = False):
        """Release the button at world ``(y, x)``, moved by ``shift_pixels`` ``(dx, dy)`` on screen first."""
        from qtpy.QtCore import QPoint
        from qtpy.QtTest import QTest

        at = self._pixel(world_yx) + QPoint(*shift_pixels)
        if shift_pixels != (0, 0):
            QTest.mouseMove(self.canvas.native, at)
            self.settle(5)
        QTest.mouseRelease(self.canvas.native, self._button(button), self._modifiers(alt), at)
        self.settle()

    @staticmethod
    def _button(name: str):
        from qtpy.QtCore import Qt

        return {"left": Qt.MouseButton.LeftButton, "right": Qt.MouseButton.RightButton}[name]

    @staticmethod
    def _modifiers(alt: bool):
        from qtpy.QtCore import Qt

        return Qt.KeyboardModifier.AltModifier if alt else Qt.KeyboardModifier.NoModifier

    def drag(self, start_yx, end_yx, steps: int = 6) -> None:
        """Drag with the left button from ``start_yx`` to ``end_yx`` (world), through a few moves."""
        from qtpy.QtCore import QPoint, Qt
        from qtpy.QtTest import QTest

        native = self.canvas.native
        a, b = self._pixel(start_yx), self._pixel(end_yx)
        QTest.mouseMove(native, a)
        self.settle(5)
        QTest.mousePress(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for k in range(1, steps + 1):
            t = k / steps
            QTest.mouseMove(native, QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y()))))
            self.settle(5)
        QTest.mouseRelease(native, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        self.settle()

    def key(self, key: str, control: bool = False, shift: bool = False) -> None:
        """Press a key on the canvas (napari sends it to the selected layer's key bindings)."""
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        keys = {
            "Enter": Qt.Key.Key_Return,
            "Escape": Qt.Key.Key_Escape,
            "M": Qt.Key.Key_M,
            "T": Qt.Key.Key_T,
            "Z": Qt.Key.Key_Z,
        }
        modifiers = Qt.KeyboardModifier.NoModifier
        if control:
            modifiers |= Qt.KeyboardModifier.ControlModifier
        if shift:
            modifiers |= Qt.KeyboardModifier.ShiftModifier
        self.canvas.native.setFocus()
        QTest.keyClick(self.canvas.native, keys[key], modifiers)
        self.settle()

    def press(self, button) -> None:
        """Click a Qt button of the widget."""
        from qtpy.QtCore import Qt

        self.qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        self.settle()

    def select_row(self, layer) -> None:
        """Click ``layer``'s row in napari's layer list."""
        from napari._qt.containers._base_item_view import index_of
        from qtpy.QtCore import Qt

        view = self.viewer.window._qt_viewer.layers
        rect = view.visualRect(index_of(view.model(), layer))
        self.qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        self.settle()

    def pick(self, combo, text: str) -> None:
        """Choose the entry ``text`` in a combo box (a layer picker), as from its drop-down list."""
        index = combo.findText(text)
        assert index >= 0, f"{text!r} is not offered ({[combo.itemText(i) for i in range(combo.count())]})"
        combo.setCurrentIndex(index)
        combo.activated.emit(index)
        self.settle()


class StallMonitor:
    """The longest gap between turns of the event loop (a 5 ms timer): how long the UI froze."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.longest, self._last = 0.0, None
        self._timer = QTimer()
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.longest = max(self.longest, now - self._last)
        self._last = now

    def __enter__(self) -> StallMonitor:
        self._last = time.perf_counter()
        self._timer.start(5)
        return self

    def __exit__(self, *exc) -> None:
        self._tick()
        self._timer.stop()
