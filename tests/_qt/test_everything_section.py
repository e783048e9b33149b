"""Segment everything in napari: the widget's section ("This slice", "All slices") and the menu command.

The recipe test weights are random: thresholds are 0 so that masks survive,
and results are compared with the core functions run on the same model.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.gui import (
    needs_display,
    notification_count,
    notifications_since,
    open_widget,
)

COMMAND = "napari-mobilesam.segment_stack"
# Lean and permissive: 16 prompts per slice, every mask kept.
LEAN = {
    "points_per_side": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
    "box_nms_thresh": 0.7,
    "min_mask_region_area": 0,
}


def blobs(shape, seed=0):
    """A small uint16 image (or stack) with bright rectangles on a dark background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, size=shape).astype(np.uint16)
    image[..., 10:30, 12:40] += 2000
    image[..., 30:45, 30:44] += 1500
    return image


def small_stack(slices=3):
    stack = blobs((slices, 48, 48), seed=3)
    for z in range(1, slices):
        stack[z] = np.roll(stack[z - 1], 2, axis=1)  # every slice different, objects continue in z
    return stack


@pytest.fixture
def lean_settings():
    """The section's last-used settings set to LEAN for the test, restored afterwards."""
    from napari_mobilesam.interactive.settings import last_used, remember
    from napari_mobilesam.segment.params import EverythingParams

    before = last_used()
    yield EverythingParams(sampler="grid", **LEAN)
    remember(before)


def expected_stack(stack, model, session, contrast_limits):
    from napari_mobilesam.segment.stack import segment_stack

    return segment_stack(stack, model, cache=session.cache, contrast_limits=contrast_limits, **LEAN)


def assert_ids_1_to_n(data):
    ids = np.unique(data)
    ids = ids[ids > 0]
    assert len(ids) >= 1
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))


@needs_display
def test_this_slice_2d_is_one_undo_step(make_napari_viewer, qtbot, session, recipe_model, lean_settings):
    from qtpy.QtCore import QTimer

    from napari_mobilesam import segment_everything
    from napari_mobilesam.interactive.settings import last_used

    viewer = make_napari_viewer()
    image = viewer.add_image(blobs((64, 80)), name="cells")
    widget = open_widget(viewer, qtbot)
    section = widget.everything_section
    section.set_settings(lean_settings)
    assert last_used() == lean_settings

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    section.this_slice.click()
    assert section.busy and not section.this_slice.isEnabled()
    assert section.wait(120)
    timer.stop()
    assert len(ticks) >= 5, "the UI thread was blocked while segmenting"

    labels = viewer.layers["cells labels"]
    assert labels is widget.labels_layer and labels.data.shape == (64, 80)
    np.testing.assert_allclose(labels.scale, image.scale)
    expected = segment_everything(image.data, recipe_model, contrast_limits=tuple(image.contrast_limits), **LEAN)
    assert expected.max() >= 1
    np.testing.assert_array_equal(labels.data, expected)
    assert_ids_1_to_n(labels.data)
    assert "into 'cells labels'" in section.status.text()

    labels.undo()  # Ctrl+Z on the Labels layer
    assert not labels.data.any()
    labels.redo()
    np.testing.assert_array_equal(labels.data, expected)


@needs_display
def test_this_slice_respects_the_overwrite_policy(make_napari_viewer, qtbot, session, lean_settings):
    viewer = make_napari_viewer()
    stack = small_stack(2)
    viewer.add_image(stack, name="cells")
    viewer.dims.set_current_step(0, 1)
    existing = np.zeros(stack.shape, dtype=np.uint16)
    existing[1, 5:25, 5:25] = 7
    existing[0, 30:40, 30:40] = 3  # another slice: never touched
    painted = viewer.add_labels(existing.copy(), name="mine")
    widget = open_widget(viewer, qtbot)
    widget.set_labels_layer(painted)
    section = widget.everything_section
    section.set_settings(lean_settings)

    # Without overwrite: only background of the slice shown is painted, new ids start above 7.
    section.segment_slice()
    assert section.wait(120)
    after = painted.data.copy()
    np.testing.assert_array_equal(after[0], existing[0])
    np.testing.assert_array_equal(after[1][existing[1] == 7], 7)
    new = after[1][existing[1] == 0]
    assert new.max() > 7 and set(np.unique(new)) - {0} == set(range(8, int(new.max()) + 1))

    # With overwrite: objects paint over existing labels too; one undo step reverts it.
    widget.overwrite = True
    section.segment_slice()
    assert section.wait(120)
    overwritten = painted.data
    assert (overwritten[1][existing[1] == 7] != 7).any()
    assert overwritten.min() == 0 and overwritten[1].max() > after.max()
    np.testing.assert_array_equal(overwritten[0], existing[0])
    painted.undo()
    np.testing.assert_array_equal(painted.data, after)
    painted.undo()
    np.testing.assert_array_equal(painted.data, existing)


@needs_display
def test_all_slices_new_layer_with_scale_and_translate(make_napari_viewer, qtbot, session, recipe_model, lean_settings):
    stack = small_stack(3)
    viewer = make_napari_viewer()
    image = viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5), translate=(10.0, -3.0, 4.0))
    widget = open_widget(viewer, qtbot)
    section = widget.everything_section
    section.set_settings(lean_settings)

    run = section.segment_all_slices()
    assert run is not None and section.busy
    assert section.wait(300)
    labels = viewer.layers["stack everything"]
    assert labels is run.layer and labels.data.shape == (3, 48, 48)
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert run.slices_done == 3 and not run.cancelled
    # The same as the core's whole-stack function (linked across z, ids 1..N); the embeddings are cache hits.
    misses = session.cache.stats["misses"]
    expected = expected_stack(stack, recipe_model, session, tuple(image.contrast_limits))
    assert session.cache.stats["misses"] == misses
    np.testing.assert_array_equal(labels.data, expected)
    assert_ids_1_to_n(labels.data)
    assert widget.labels_layer is None  # the picked output layer is left alone


@needs_display
def test_all_slices_into_the_picked_layer(make_napari_viewer, qtbot, session, lean_settings):
    stack = small_stack(2)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    existing = np.zeros(stack.shape, dtype=np.uint32)
    existing[:, 0:12, 0:12] = 5
    picked = viewer.add_labels(existing.copy(), name="picked")
    widget = open_widget(viewer, qtbot)
    widget.set_labels_layer(picked)
    section = widget.everything_section
    section.set_settings(lean_settings)

    section.segment_all_slices()
    assert section.wait(300)
    assert "stack everything" not in viewer.layers  # the temporary layer is gone
    np.testing.assert_array_equal(picked.data[existing == 5], 5)
    assert picked.data.max() > 5
    picked.undo()  # one undo step for the whole stack
    np.testing.assert_array_equal(picked.data, existing)


def _action_title():
    from napari._app_model import get_app_model

    return get_app_model().commands[COMMAND].title


@needs_display
def test_menu_command_uses_last_used_settings(make_napari_viewer, qtbot, session, recipe_model, lean_settings):
    from napari._app_model import get_app_model
    from qtpy.QtCore import QTimer

    stack = small_stack(3)
    viewer = make_napari_viewer()
    image = viewer.add_image(stack, name="stack", scale=(3.0, 1.0, 1.0), translate=(1.0, 2.0, 3.0))
    widget = open_widget(viewer, qtbot)
    widget.everything_section.set_settings(lean_settings)  # the user tunes the section...
    viewer.layers.selection.active = image  # ...and selects the image

    app = get_app_model()
    assert _action_title() == "Segment whole stack (MobileSAM)"
    menu_ids = [item.command.id for item in app.menus.get_menu("napari/layers/segment") if hasattr(item, "command")]
    assert COMMAND in menu_ids

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(5)
    run = app.commands.execute_command(COMMAND).result()  # napari injects the viewer
    assert run is not None and run.settings == lean_settings
    assert run.wait(300)
    timer.stop()
    assert len(ticks) >= 10, "the UI thread was blocked during the run"

    labels = viewer.layers["stack everything"]
    assert labels is run.layer and labels.data.shape == stack.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    np.testing.assert_array_equal(
        labels.data, expected_stack(stack, recipe_model, session, tuple(image.contrast_limits))
    )
    assert labels.data.max() >= 1  # SAM's default thresholds would keep nothing of the random weights


@needs_display
def test_cancel_keeps_finished_slices(make_napari_viewer, qtbot, session, lean_settings):
    from napari_mobilesam._qt.stack_command import FinishedSlice, segment_stack
    from napari_mobilesam.interactive.settings import remember
    from napari_mobilesam.segment.linking import link_stack

    remember(lean_settings)
    stack = small_stack(4)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    run = segment_stack(viewer)
    arrived = []

    def first_slice(finished):
        if not isinstance(finished, FinishedSlice):
            return  # progress within a slice
        arrived.append(finished.slice_index)
        if len(arrived) == 1:
            run.progress.cancel()  # the progress bar's Cancel button

    run.worker.yielded.connect(first_slice)
    assert run.wait(300)
    assert run.cancelled and not run.failed
    assert 1 <= run.slices_done < 4 and arrived == list(range(run.slices_done))
    data = run.layer.data
    assert all(data[z].any() for z in arrived)
    assert not data[run.slices_done :].any()
    np.testing.assert_array_equal(data, link_stack(data))  # linked and numbered


@needs_display
def test_command_without_an_image_is_a_notification(make_napari_viewer, session):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), dtype=np.uint8), name="not an image")
    start = notification_count()
    assert get_app_model().commands.execute_command(COMMAND).result() is None
    assert any("select the Image layer" in message for message in notifications_since(start))
    assert len(viewer.layers) == 1


@needs_display
def test_errors_are_notifications(make_napari_viewer, qtbot, session, lean_settings, monkeypatch):
    from napari_mobilesam.segment.everything import EverythingSegmenter

    def failing_steps(self, *args, **kwargs):
        yield 0, 1
        raise RuntimeError("no masks today")

    viewer = make_napari_viewer()
    viewer.add_image(blobs((32, 32)), name="cells")
    widget = open_widget(viewer, qtbot)
    section = widget.everything_section
    section.set_settings(lean_settings)
    monkeypatch.setattr(EverythingSegmenter, "steps", failing_steps)
    start = notification_count()
    section.segment_slice()
    assert section.wait(120)
    assert any("no masks today" in message for message in notifications_since(start))
    assert widget.labels_layer is None and section.this_slice.isEnabled()

    # The same in the whole-stack command: a notification, and no empty layer left behind.
    start = notification_count()
    run = section.segment_all_slices()
    assert section.wait(120)
    assert isinstance(run.failed, RuntimeError) and run.layer not in viewer.layers
    assert any("no masks today" in message for message in notifications_since(start))
