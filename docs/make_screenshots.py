"""Screenshots for docs/usage.md, taken from a real napari window (run under an X server).

    xvfb-run -a python docs/make_screenshots.py

Uses the recipe test weights of tests/recipe.py (no download), so the masks
are those of random weights: they show where the preview, prompts and labels
appear, not what the official weights would outline.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "tests"))
if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
    del os.environ["QT_QPA_PLATFORM"]  # a real window


def settle(widget, seconds=0.3):
    from qtpy.QtWidgets import QApplication

    widget.wait(120)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def main() -> None:
    import napari

    from napari_mobilesam._qt import session as session_module
    from napari_mobilesam._sample_data import nuclei_2d, nuclei_3d
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.model import build_mobile_sam
    from recipe import recipe_state_dict

    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0), strict=True)
    session = session_module.Session(cache=EmbeddingCache(directory=Path(tempfile.mkdtemp()) / "embeddings"))
    session.set_model(model.eval(), source="test weights (tests/recipe.py)")
    session_module._SESSION = session
    IMAGES.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-mobilesam")
    viewer.window._qt_window.resize(1500, 950)
    [(image, kwargs)] = nuclei_2d()
    viewer.add_image(image, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.prefetch = False
    settle(widget, 1.0)

    def shot(name):
        # Without a window manager the window is never "active"; Qt then draws inactive colours.
        viewer.window._qt_window.activateWindow()
        settle(widget)
        viewer.window.screenshot(str(IMAGES / name), canvas_only=False, flash=False)
        print("wrote", IMAGES / name)

    shot("01-widget-open.png")
    widget.add_point((233, 291))
    shot("02-positive-click-preview.png")
    widget.add_point((250, 318), positive=False)
    shot("03-negative-click-refines.png")
    widget.accept()
    shot("04-accepted-into-labels.png")
    widget.add_box((60, 40), (130, 110))
    widget.add_box((300, 380), (370, 450))
    widget.add_box((400, 150), (470, 220))
    widget._activate_boxes()
    shot("05-boxes-batch-preview.png")
    widget.accept()
    widget.viewer.layers.selection.active = widget.labels_layer
    shot("06-boxes-accepted.png")

    viewer.layers.clear()
    [(stack, kwargs)] = nuclei_3d()
    viewer.add_image(stack, **kwargs)
    viewer.dims.set_current_step(0, 12)
    settle(widget, 1.0)
    widget.add_point((120, 130))
    settle(widget)
    viewer.dims.set_current_step(0, 13)
    settle(widget)
    viewer.dims.set_current_step(0, 12)
    shot("07-stack-revisit-cache-hit.png")
    viewer.close()


if __name__ == "__main__":
    main()
