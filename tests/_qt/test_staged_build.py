"""Building a widget over several event-loop turns, from modules imported in a background thread."""

from __future__ import annotations

import sys
import textwrap
import threading

import pytest

from support.gui import needs_display, open_widget

pytestmark = needs_display


@pytest.fixture
def stages_module(tmp_path, monkeypatch):
    """A module ``staged_parts`` whose import records its thread and whose stages record their turns."""
    (tmp_path / "staged_parts.py").write_text(
        textwrap.dedent(
            """
            import threading
            IMPORTED_ON = threading.current_thread().name
            RAN = []

            def first(log):
                RAN.append("first"); log.append("first")

            def second(log):
                RAN.append("second"); log.append("second")

            def third(log):
                RAN.append("third"); log.append("third")

            STAGES = (first, second, third)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "staged_parts"
    sys.modules.pop("staged_parts", None)


def _turns_between(qtbot, build, log):
    """Run the event loop until ``build`` is done; ``log`` gets a "tick" per turn of a zero-delay heartbeat."""
    from qtpy.QtCore import QTimer

    heartbeat = QTimer(interval=0)
    heartbeat.timeout.connect(lambda: log.append("tick"))
    heartbeat.start()
    qtbot.waitUntil(lambda: build.done, timeout=10_000)
    heartbeat.stop()


def test_stages_run_one_per_turn_after_a_background_import(qapp, qtbot, stages_module):
    from qtpy.QtCore import QObject

    from napari_mobilesam._qt.staged_build import StagedBuild

    parent, log, errors = QObject(), [], []
    build = StagedBuild(parent, stages_module, (log,), errors.append)
    assert not build.done
    _turns_between(qtbot, build, log)
    module = sys.modules[stages_module]
    assert module.IMPORTED_ON != threading.main_thread().name
    assert module.RAN == ["first", "second", "third"] and not errors
    stages = [entry for entry in log if entry != "tick"]
    assert stages == ["first", "second", "third"]
    between = log[log.index("first") : log.index("third")]
    assert between.count("tick") >= 2  # the event loop turned between one stage and the next


def test_finish_runs_the_stages_left_at_once(qapp, stages_module):
    from qtpy.QtCore import QObject

    from napari_mobilesam._qt.staged_build import StagedBuild

    parent, log, errors = QObject(), [], []  # the build lives as long as its parent
    build = StagedBuild(parent, stages_module, (log,), errors.append)
    build.finish()  # no event loop turn: waits for the import, runs all three
    assert build.done and log == ["first", "second", "third"] and not errors


def test_a_failing_import_is_reported_once_and_nothing_runs(qapp, qtbot, tmp_path, monkeypatch):
    from qtpy.QtCore import QObject

    from napari_mobilesam._qt.staged_build import StagedBuild

    (tmp_path / "broken_parts.py").write_text("raise ImportError('a dependency is missing')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    parent, errors = QObject(), []
    build = StagedBuild(parent, "broken_parts", (), errors.append)
    qtbot.waitUntil(lambda: build.done, timeout=10_000)
    assert [str(e) for e in errors] == ["a dependency is missing"]


def test_turns_stop_at_an_error(qapp, qtbot):
    from qtpy.QtCore import QObject

    from napari_mobilesam._qt.staged_build import Turns

    parent, ran, errors = QObject(), [], []

    def fail():
        raise RuntimeError("no")

    Turns(parent, [lambda: ran.append(1), fail, lambda: ran.append(3)], errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5_000)
    qtbot.wait(20)
    assert ran == [1] and [str(e) for e in errors] == ["no"]


def test_the_widget_docks_empty_and_builds_its_parts_in_later_turns(make_napari_viewer, qtbot, session):
    """napari docks the widget while it holds one line; its parts come in later turns, or at once when a
    script needs one."""
    import numpy as np

    from napari_mobilesam._qt.widget import PARTS

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 80), np.uint16), name="cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    assert not any(name in widget.__dict__ for name in PARTS)  # docked empty
    before = set(widget.__dict__)
    assert widget.everything_section is not None  # a script's first use builds the rest now
    made = set(widget.__dict__) - before
    assert made == PARTS  # the list the widget builds on use is every part the stages make
    from qtpy.QtWidgets import QLabel

    shown = [label.text() for label in widget.findChildren(QLabel) if label.isVisibleTo(widget)]
    assert not [text for text in shown if "opening" in text]  # the placeholder line is gone (not only later)
    qtbot.waitUntil(lambda: widget.wait(timeout=0), timeout=60_000)
    assert widget.state is not None and widget.state.points is not None and widget.state.boxes is not None


def test_a_script_uses_the_widget_right_after_opening_it(make_napari_viewer, qtbot, session):
    import numpy as np

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 80), np.uint16), name="cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.overwrite = True  # a setting, before the controls are built: they are built for it
    widget.default_positive = False
    widget.add_point((20, 30), positive=True)  # before the first image is taken: it is taken for it
    widget.add_point((40, 50))
    masks = widget.segment()
    assert masks is not None and masks.shape == (1, 64, 80)
    assert widget.overwrite and not widget.default_positive
    assert widget.points_layer.features["positive"].tolist() == [True, False]
    assert widget.image_layer is viewer.layers["cells"]


def test_closing_the_widget_while_it_opens_leaves_nothing_running(make_napari_viewer, qtbot, session):
    import gc

    import numpy as np

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 80), np.uint16), name="cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.close_widget()
    qtbot.wait(50)
    assert widget.closed and gc.get_freeze_count() == 0
    assert [layer.name for layer in viewer.layers] == ["cells"]


def test_open_widget_helper_still_gives_a_ready_widget(make_napari_viewer, qtbot, session):
    import numpy as np

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 80), np.uint16), name="cells")
    widget = open_widget(viewer, qtbot)
    assert widget.state is not None and widget.state.embedding_ready
    import gc

    assert gc.get_freeze_count() == 0  # opening is over: napari's objects are given back to the collector
