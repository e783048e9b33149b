"""The "Segment everything" screenshot for docs/usage.md (run under an X server, like make_screenshots.py).

    xvfb-run -a python docs/make_screenshot_everything.py

Uses the recipe test weights of tests/recipe.py (no download). Random weights
predict poor IoUs, so the thresholds are set to 0 here: the labels show where
the result appears, not what the official weights would find.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_screenshots import IMAGES, settle  # noqa: E402  (also puts tests/ on sys.path, asks for a real window)

NAME = "08-segment-everything.png"


def main() -> None:
    import napari

    from napari_mobilesam._qt import session as session_module
    from napari_mobilesam._sample_data import nuclei_2d
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.interactive.settings import EverythingSettings
    from napari_mobilesam.model import build_mobile_sam
    from recipe import recipe_state_dict

    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0), strict=True)
    session = session_module.Session(cache=EmbeddingCache(directory=Path(tempfile.mkdtemp()) / "embeddings"))
    session.set_model(model.eval(), source="test weights (tests/recipe.py)")
    session_module._SESSION = session
    IMAGES.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-mobilesam")
    viewer.window._qt_window.resize(1500, 1000)
    [(image, kwargs)] = nuclei_2d()
    viewer.add_image(image, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-mobilesam", "MobileSAM")
    widget.prefetch = False
    settle(widget, 1.0)

    section = widget.everything_section
    section.set_settings(
        EverythingSettings(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.7)
    )
    section.segment_slice()
    section.wait(300)
    widget.viewer.layers.selection.active = widget.labels_layer
    viewer.window._qt_window.activateWindow()  # no window manager: otherwise Qt draws inactive colours
    settle(widget)
    viewer.window.screenshot(str(IMAGES / NAME), canvas_only=False, flash=False)
    print("wrote", IMAGES / NAME)
    viewer.close()


if __name__ == "__main__":
    main()
