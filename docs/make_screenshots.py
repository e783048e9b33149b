"""Screenshots for docs/usage.md, taken from a real napari window driven by real mouse and key events.

    QT_QPA_PLATFORM=xcb xvfb-run -a python docs/make_screenshots.py

Uses the recipe test weights of tests/recipe.py (no download), so the masks
are those of random weights: they show where the preview, prompts and labels
appear, not what the official weights would outline. The clicks, drags, keys
and button presses go through Qt as a user's do (``tests/support/gui.py::User``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "tests"))


class _Bot:
    """The two things ``User`` asks of pytest-qt's qtbot, for a script."""

    def wait(self, ms: int) -> None:
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.005)

    def mouseClick(self, widget, button, pos=None) -> None:  # noqa: N802  (qtbot's name)
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        if pos is None:
            QTest.mouseClick(widget, button)
        else:
            QTest.mouseClick(widget, button, Qt.KeyboardModifier.NoModifier, pos)


def main() -> None:
    import napari
    import numpy as np

    from napari_mobilesam._sample_data import nuclei_2d, nuclei_3d
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine.session import Session, set_default_session
    from napari_mobilesam.engine.weights import load_model
    from napari_mobilesam.interactive.settings import remember
    from napari_mobilesam.segment.params import EverythingParams
    from recipe import save_recipe_weights
    from support.gui import User

    # The recipe weights as a file, loaded as users load mobile_sam.pt (the Model row shows mobile_sam).
    model = load_model(save_recipe_weights(tempfile.mkdtemp()), device="cpu")
    session = Session(cache=EmbeddingCache(directory=Path(tempfile.mkdtemp()) / "embeddings"))
    session.set_model(model, source="test weights (tests/recipe.py)")
    set_default_session(session)
    # Random weights predict poor IoUs: no quality filter, so segment everything shows labels.
    remember(EverythingParams(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0))
    IMAGES.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-mobilesam")
    viewer.window._qt_window.resize(1500, 1050)
    for dock in (viewer.window._qt_viewer.dockLayerControls, viewer.window._qt_viewer.dockLayerList):
        dock.setMaximumWidth(330)  # the Shapes controls would widen the left docks over the canvas
    bot = _Bot()
    user = User(viewer, bot)
    [(image, kwargs)] = nuclei_2d()
    viewer.add_image(image, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.prefetch = False
    widget.wait(120)
    bot.wait(500)

    def shot(name: str) -> None:
        widget.wait(120)
        # Without a window manager the window is never "active"; Qt then draws inactive colours.
        viewer.window._qt_window.activateWindow()
        bot.wait(400)
        viewer.window.screenshot(str(IMAGES / name), canvas_only=False, flash=False)
        print("wrote", IMAGES / name)

    shot("01-widget-open.png")
    user.click((233, 291))
    shot("02-positive-click-preview.png")
    user.click((250, 318), button="right")
    shot("03-negative-click-refines.png")
    user.key("Enter")
    shot("04-accepted-into-labels.png")
    user.press(widget.prompt_section.draw_box)
    for corner, opposite in (((60, 40), (130, 110)), ((300, 380), (370, 450)), ((400, 150), (470, 220))):
        user.drag(corner, opposite)
    shot("05-boxes-batch-preview.png")
    user.key("Enter")
    shot("06-boxes-accepted.png")

    # Editing an existing object: its mask is the prompt, a negative click cuts it.
    user.press(widget.prompt_section.edit_label)
    label = widget.labels_layer.data
    rows, columns = np.nonzero(label == label.max())
    user.click((float(np.median(rows)), float(np.median(columns))))  # inside the object accepted last
    user.click((float(np.median(rows)) + 6, float(np.median(columns)) + 6), button="right")
    shot("09-edit-existing-label.png")
    user.key("Escape")

    user.press(widget.everything_section.this_slice)
    widget.everything_section.wait(300)
    widget.everything_section.form.advanced.expand(animate=False)
    shot("08-segment-everything.png")
    widget.everything_section.form.advanced.collapse(animate=False)

    viewer.layers.clear()
    [(stack, kwargs)] = nuclei_3d()
    viewer.add_image(stack, **kwargs)
    viewer.dims.set_current_step(0, 12)
    widget.wait(120)
    if not widget.prompt_section.add_points.isChecked():
        user.press(widget.prompt_section.add_points)
    user.click((120, 130))
    widget.wait(120)
    user.key("Enter")
    viewer.dims.set_current_step(0, 14)
    widget.wait(120)
    user.click((60, 70))
    viewer.dims.set_current_step(0, 13)
    widget.wait(120)
    viewer.dims.set_current_step(0, 12)
    shot("07-stack-revisit-cache-hit.png")

    user.press(widget.everything_section.all_slices)
    deadline = time.monotonic() + 120
    while "slice 3 of" not in widget.everything_section.status.text() and time.monotonic() < deadline:
        bot.wait(50)
    shot("10-all-slices-running.png")
    user.press(widget.everything_section.cancel_button)
    widget.everything_section.wait(300)
    assert np.asarray(viewer.layers[0].data).ndim == 3
    viewer.close()


if __name__ == "__main__":
    main()
