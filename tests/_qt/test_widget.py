"""Whole flows through the MobileSAM dock widget in a real (offscreen) napari viewer.

The recipe test weights are random, so masks are checked for shape, place
and bookkeeping, not for what they outline.
"""

from __future__ import annotations

import numpy as np

from support.gui import (
    needs_display,
    notification_count,
    notifications_since,
    open_widget,
    wait_idle,
)

pytestmark = needs_display


def blobs(shape, seed=0):
    """A small uint16 image (or stack) with bright rectangles on a dark background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 200, size=shape).astype(np.uint16)
    image[..., 10:30, 12:40] += 2000
    image[..., 40:55, 45:60] += 1500
    return image


def test_2d_click_preview_accept_undo(make_napari_viewer, qtbot, session):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    widget = open_widget(viewer, qtbot)
    assert widget.image_layer is None
    image = viewer.add_image(blobs((64, 80)), name="cells")

    # The encode runs in a worker: the event loop keeps turning meanwhile.
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: widget.encoder.busy, timeout=5000)
    wait_idle(widget, qtbot)
    timer.stop()
    assert len(ticks) >= 10, "the UI thread was blocked during encoding"
    assert widget.image_layer is image
    assert "cache miss" in widget.status and "recipe test weights" in widget.status and "cpu" in widget.status
    assert [layer.name for layer in viewer.layers] == ["cells", "cells boxes", "cells prompts"]
    assert viewer.layers.selection.active is widget.points_layer and widget.points_layer.mode == "add"

    widget.add_point((20, 25))
    wait_idle(widget, qtbot)
    preview_layer = viewer.layers[f"{widget.image_layer.name} preview"]
    masks = widget.preview
    assert masks.shape == (1, 64, 80) and masks.dtype == bool
    np.testing.assert_array_equal(preview_layer.data, masks[0].astype(np.uint8))
    assert preview_layer.data.shape == (64, 80)

    # Cycling the three candidates keeps the prediction, changes the mask shown.
    decoded = widget.state.result[1]
    redrawn = []
    preview_layer.events.set_data.connect(redrawn.append)  # napari's signal to its canvas to redraw the layer
    widget.next_candidate()
    assert widget.state.result[1].chosen[0] == (decoded.chosen[0] + 1) % 3
    np.testing.assert_array_equal(preview_layer.data, decoded.candidates[0, widget.state.result[1].chosen[0]])
    # The preview is updated in place: napari is told to redraw it.
    assert redrawn

    # A second point refines the first result: the previous low-res mask is fed back.
    widget.add_point((22, 30))
    wait_idle(widget, qtbot)
    assert widget.state.result[0].mask_input is not None and widget.state.result[0].mask_input.shape == (1, 256, 256)

    expected = widget.preview[0]
    ids = widget.accept()
    assert ids == [1]
    labels = viewer.layers["cells labels"]
    assert labels is widget.labels_layer and labels.data.shape == (64, 80)
    np.testing.assert_array_equal(labels.data == 1, expected)
    assert len(widget.points_layer.data) == 0 and widget.preview is None
    assert not preview_layer.data.any()

    labels.undo()  # what Ctrl+Z on the Labels layer does
    assert not labels.data.any()
    labels.redo()  # Ctrl+Shift+Z
    np.testing.assert_array_equal(labels.data == 1, expected)


def test_keys_on_the_prompt_layer(make_napari_viewer, qtbot, session):
    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 80)), name="cells")
    widget = open_widget(viewer, qtbot)
    points = widget.points_layer
    viewer.layers["cells"].name = "nuclei"  # the picker follows renames
    assert widget.layers_section.image.currentText() == "nuclei"

    def press(key):
        # the layer's own key bindings, as napari's key handler calls them
        from app_model.types import KeyBinding

        binding = points.keymap[KeyBinding.from_str(key)]
        result = binding(points)
        if hasattr(result, "__next__"):
            next(result, None)

    assert widget.default_positive
    press("T")
    assert not widget.default_positive
    press("T")

    widget.add_point((20, 25))
    wait_idle(widget, qtbot)
    press("Enter")
    assert widget.labels_layer.data.max() == 1
    press("Control-Z")
    assert widget.labels_layer.data.max() == 0
    press("Control-Shift-Z")
    assert widget.labels_layer.data.max() == 1

    widget.add_point((45, 50))
    wait_idle(widget, qtbot)
    press("Escape")
    assert len(points.data) == 0 and widget.preview is None


def test_clicks_polarity_and_colours(make_napari_viewer, qtbot, session):
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    from napari_mobilesam._qt.prompt_layers import NEGATIVE_COLOR, POSITIVE_COLOR

    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 80)), name="cells")
    widget = open_widget(viewer, qtbot)
    points = widget.points_layer

    class Click:
        def __init__(self, button, modifiers=()):
            self.button, self.modifiers = button, list(modifiers)
            self.position, self.pos = (20.0, 30.0), np.array([100.0, 100.0])
            self.view_direction, self.dims_displayed, self.dims_point = None, [0, 1], [20.0, 30.0]
            self.type, self.handled = "mouse_press", False

    for button, modifiers in ((1, ()), (2, ()), (1, ("Alt",))):
        event = Click(button, modifiers)
        mouse_press_callbacks(points, event)
        event.type = "mouse_release"
        mouse_release_callbacks(points, event)
    assert points.features["positive"].tolist() == [True, False, False]
    np.testing.assert_allclose(points.face_color[0], _rgba(POSITIVE_COLOR))
    np.testing.assert_allclose(points.face_color[1], _rgba(NEGATIVE_COLOR))
    wait_idle(widget, qtbot)
    assert widget.preview is not None


def _rgba(color):
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(color)[0]


def test_boxes_batch_and_overwrite_policy(make_napari_viewer, qtbot, session):
    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 80)), name="cells")
    widget = open_widget(viewer, qtbot)

    widget.add_box((8, 10), (32, 42))
    widget.add_box((38, 43), (57, 62))
    widget.add_point((20, 25))  # inside the first box: the same object
    wait_idle(widget, qtbot)
    assert widget.preview.shape == (2, 64, 80)
    assert widget.state.result[0].objects[0].n_points == 1
    preview_layer = viewer.layers[f"{widget.image_layer.name} preview"]
    assert set(np.unique(preview_layer.data)) <= {0, 1, 2}
    masks = widget.preview
    ids = widget.accept()
    labels = widget.labels_layer
    assert ids == [1, 2][: len(ids)] and len(ids) >= 1
    assert len(widget.boxes_layer.data) == 0

    # The same box again, without overwrite: only background is painted.
    before = labels.data.copy()
    widget.add_box((8, 10), (32, 42))
    new = widget.segment()[0]
    ids = widget.accept()
    painted = labels.data != before
    assert not (painted & (before != 0)).any()
    np.testing.assert_array_equal(painted, new & (before == 0))
    assert ids == ([3] if painted.any() else [])

    # With overwrite, existing labels are painted over too; one undo step reverts it.
    widget.overwrite = True
    before = labels.data.copy()
    widget.add_box((8, 10), (32, 42))
    new = widget.segment()[0]
    widget.accept()
    assert (labels.data[new] == labels.data.max()).all()
    labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    assert masks.shape[0] == 2


def test_3d_scroll_encodes_once_and_cache_hits(make_napari_viewer, qtbot, session, tmp_path):
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine.session import Session, set_default_session

    stack = blobs((4, 64, 64), seed=3)
    stack[1] = stack[1][::-1]  # every slice different
    stack[2] = stack[2][:, ::-1]
    viewer = make_napari_viewer()
    viewer.dims.set_current_step(0, 0)
    viewer.add_image(stack, name="stack")
    widget = open_widget(viewer, qtbot)

    # Moving on before the encode finished: the stale result is never shown on the new slice.
    viewer.dims.set_current_step(0, 1)
    wait_idle(widget, qtbot)
    assert widget.state.embedding.plane.steps == (1, None, None)
    assert "z=1" in widget.status
    misses = session.cache.stats["misses"]
    assert misses <= 2

    widget.add_point((20, 25))
    wait_idle(widget, qtbot)
    assert widget.preview is not None
    assert widget.points_layer.data[0][0] == 1  # the point lies on z=1
    preview_layer = viewer.layers[f"{widget.image_layer.name} preview"]
    assert preview_layer.data.shape == (1, 64, 64)
    np.testing.assert_allclose(preview_layer.translate[0], 1.0)

    viewer.dims.set_current_step(0, 2)
    wait_idle(widget, qtbot)
    assert session.cache.stats["misses"] == misses + 1 and "cache miss" in widget.status
    assert widget.preview is None  # the point on z=1 does not prompt z=2

    viewer.dims.set_current_step(0, 1)
    wait_idle(widget, qtbot)
    assert "cache hit (memory)" in widget.status
    assert session.cache.stats["misses"] == misses + 1
    assert widget.preview is not None
    ids = widget.accept()
    labels = widget.labels_layer
    assert ids == [1] and labels.data.shape == (4, 64, 64)
    assert labels.data[1].any() and not labels.data[[0, 2, 3]].any()

    # Changing the contrast invalidates the slice's embedding.
    image = viewer.layers["stack"]
    image.contrast_limits = (0, 1000)
    wait_idle(widget, qtbot)
    assert session.cache.stats["misses"] == misses + 2 and "cache miss" in widget.status

    # A new viewer and widget (new session, same disk cache) on the same data: a disk hit.
    fresh = Session(cache=EmbeddingCache(directory=tmp_path / "embeddings"))
    fresh.set_model(session.model(), source="recipe test weights")
    set_default_session(fresh)  # the session fixture puts the one before back
    other = make_napari_viewer()
    other.dims.set_current_step(0, 2)
    other.add_image(stack, name="stack")
    other.dims.set_current_step(0, 2)
    second = open_widget(other, qtbot)
    assert second.state.embedding.plane.steps == (2, None, None)
    assert "cache hit (disk)" in second.status
    assert fresh.cache.stats["misses"] == 0


def test_prefetch_neighbours_when_idle(make_napari_viewer, qtbot, session):
    stack = blobs((3, 48, 48), seed=5)
    stack[0] //= 2
    stack[2] //= 3
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    viewer.dims.set_current_step(0, 1)
    widget = open_widget(viewer, qtbot, prefetch=True)
    wait_idle(widget, qtbot, prefetch=True)
    qtbot.waitUntil(lambda: session.cache.stats["misses"] == 3, timeout=60_000)
    wait_idle(widget, qtbot, prefetch=True)
    viewer.dims.set_current_step(0, 2)
    wait_idle(widget, qtbot)
    assert "cache hit (memory)" in widget.status
    widget.prefetch = False
    wait_idle(widget, qtbot, prefetch=True)


def test_prefetch_yields_to_the_user(session):
    from napari_mobilesam._qt.prefetch import prefetch_planes

    busy = [True]
    steps = prefetch_planes(session, ["plane-that-is-never-read"], lambda: busy[0])
    assert next(steps) is None and next(steps) is None  # waits while the user works, encodes nothing


def test_scale_translate_prompts_land_on_the_right_pixels(make_napari_viewer, qtbot, session):
    from napari_mobilesam._qt.prompt_reading import points_on_plane

    viewer = make_napari_viewer()
    image = viewer.add_image(blobs((64, 80)), name="cells", scale=(0.5, 2.0), translate=(100.0, -40.0))
    widget = open_widget(viewer, qtbot)
    np.testing.assert_allclose(widget.points_layer.scale, image.scale)

    widget.add_point((110.0, 10.0))  # world (y, x) = data row 20, column 25
    read = points_on_plane(widget.points_layer, widget.plane, viewer.dims.point)
    np.testing.assert_allclose(read.xy, [[25.0, 20.0]])

    # A prompt layer with other transforms: converted through world coordinates.
    other = viewer.add_points([[10.0, 100.0]], name="raw points", scale=(1.0, 1.0))
    widget.set_points_layer(other)
    read = points_on_plane(other, widget.plane, viewer.dims.point)
    assert len(read.xy) == 0 and read.outside.tolist() == [0]  # data row -180: outside the image
    other.data = [[110.0, 10.0]]
    read = points_on_plane(other, widget.plane, viewer.dims.point)
    np.testing.assert_allclose(read.xy, [[25.0, 20.0]])
    widget.set_points_layer(viewer.layers["cells prompts"])

    wait_idle(widget, qtbot)
    ids = widget.accept()
    labels = widget.labels_layer
    assert ids == [1]
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    np.testing.assert_allclose(viewer.layers[f"{widget.image_layer.name} preview"].scale, image.scale)


def test_rotated_sheared_layers_prompts_and_outputs_follow_napari(make_napari_viewer, qtbot, session):
    """rotate/shear/affine on the image: clicks map to the pixels napari draws under them, outputs lie on the image."""
    from napari_mobilesam._qt.prompt_reading import points_on_plane

    viewer = make_napari_viewer()
    image = viewer.add_image(
        blobs((64, 80)),
        name="cells",
        scale=(0.5, 2.0),
        translate=(100.0, -40.0),
        rotate=30.0,
        shear=[0.2],
        affine=[[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]],
    )
    widget = open_widget(viewer, qtbot)
    world = np.asarray(image.data_to_world([20.0, 25.0]))  # where napari draws data row 20, column 25
    widget.add_point(tuple(world))
    read = points_on_plane(widget.points_layer, widget.plane, viewer.dims.point)
    np.testing.assert_allclose(read.xy, [[25.0, 20.0]], atol=1e-6)
    # A prompt layer placed differently: converted through world coordinates all the same.
    other = viewer.add_points([world], name="plain points")
    read = points_on_plane(other, widget.plane, viewer.dims.point)
    np.testing.assert_allclose(read.xy, [[25.0, 20.0]], atol=1e-6)

    wait_idle(widget, qtbot)
    preview_layer = viewer.layers[f"{widget.image_layer.name} preview"]
    assert widget.accept() == [1]
    labels = widget.labels_layer
    for pixel in ([20.0, 25.0], [0.0, 0.0], [63.0, 79.0]):
        np.testing.assert_allclose(labels.data_to_world(pixel), image.data_to_world(pixel), atol=1e-9)
        np.testing.assert_allclose(preview_layer.data_to_world(pixel), image.data_to_world(pixel), atol=1e-9)


def test_dask_layer_reads_only_the_slice_shown(make_napari_viewer, qtbot, session):
    import dask
    import dask.array as da

    reads = []
    base = blobs((64, 64))

    def load(z):
        reads.append(z)
        return (base // (z + 1)).astype(np.uint16)

    stack = da.stack([da.from_delayed(dask.delayed(load)(z), (64, 64), np.uint16) for z in range(5)])
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="lazy", contrast_limits=(0, 2500))
    viewer.dims.set_current_step(0, 3)
    reads.clear()
    widget = open_widget(viewer, qtbot)
    assert widget.state.embedding.plane.steps == (3, None, None)
    assert set(reads) == {3}  # napari draws z=3 and the widget reads z=3 only
    widget.add_point((20, 25))
    wait_idle(widget, qtbot)
    assert widget.accept() == [1]
    assert widget.labels_layer.data[3].any() and widget.labels_layer.data.shape == (5, 64, 64)


def test_rgb_layer(make_napari_viewer, qtbot, session):
    rgb = np.zeros((48, 64, 3), dtype=np.uint8)
    rgb[10:30, 10:40] = (200, 40, 40)
    viewer = make_napari_viewer()
    viewer.add_image(rgb, name="rgb")
    widget = open_widget(viewer, qtbot)
    assert widget.plane.rgb and widget.plane.plane_shape == (48, 64)
    widget.add_point((20, 20))
    masks = widget.segment()
    assert masks.shape == (1, 48, 64)
    assert widget.accept() == [1]
    assert widget.labels_layer.data.shape == (48, 64)


def test_multiscale_segments_the_level_nearest_1024(make_napari_viewer, qtbot, session):
    full = np.zeros((2100, 1300), dtype=np.uint16)
    full[500:900, 300:700] = 1000
    levels = [full, full[::2, ::2], full[::4, ::4]]
    viewer = make_napari_viewer()
    viewer.add_image(levels, name="pyramid", multiscale=True, contrast_limits=(0, 1000))
    widget = open_widget(viewer, qtbot)
    assert widget.plane.level == 1 and widget.plane.plane_shape == (1050, 650)
    widget.add_point((700, 500))  # world = level-0 pixels
    masks = widget.segment()
    assert masks.shape == (1, 1050, 650)
    assert widget.accept() == [1]
    labels = widget.labels_layer
    assert labels.data.shape == (2100, 1300)
    np.testing.assert_array_equal(labels.data[::2, ::2] == 1, masks[0])


def test_bad_input_is_a_notification(make_napari_viewer, qtbot, session):
    viewer = make_napari_viewer()
    widget = open_widget(viewer, qtbot)
    start = notification_count()
    assert widget.accept() == []
    assert any("open an image first" in m for m in notifications_since(start))

    viewer.add_image(blobs((64, 80)), name="cells")
    wait_idle(widget, qtbot)

    start = notification_count()
    widget.add_point((20, 500))  # outside the image
    wait_idle(widget, qtbot)
    qtbot.waitUntil(lambda: len(widget.points_layer.data) == 0, timeout=5000)
    assert any("outside the image" in m for m in notifications_since(start))
    assert widget.preview is None

    wrong = viewer.add_labels(np.zeros((10, 10), dtype=np.uint8), name="wrong shape")
    start = notification_count()
    widget.set_labels_layer(wrong)
    qtbot.waitUntil(lambda: widget.labels_layer is None, timeout=5000)
    assert any("shape" in m for m in notifications_since(start))


def test_missing_weights_say_how_to_get_them(make_napari_viewer, qtbot, tmp_path, monkeypatch, request):
    from napari_mobilesam.cache.embedding_cache import EmbeddingCache
    from napari_mobilesam.engine.session import Session, set_default_session

    monkeypatch.setenv("NAPARI_MOBILESAM_WEIGHTS", str(tmp_path / "nowhere" / "mobile_sam.pt"))
    previous = set_default_session(Session(cache=EmbeddingCache(directory=None)))
    request.addfinalizer(lambda: set_default_session(previous))
    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 80)), name="cells")
    start = notification_count()
    widget = open_widget(viewer, qtbot)
    messages = notifications_since(start)
    assert any("NAPARI_MOBILESAM_WEIGHTS" in m for m in messages), messages
    assert "not encoded" in widget.status


def test_menu_layers_segment_opens_the_widget(make_napari_viewer, qtbot, session):
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    menu = get_app_model().menus.get_menu("napari/layers/segment")
    command = "napari-mobilesam.make_widget"
    assert command in [item.command.id for item in menu]
    get_app_model().commands.execute_command(command).result()
    docks = [name for name in viewer.window.dock_widgets if "MobileSAM" in name]
    assert docks
    widget = viewer.window.dock_widgets[docks[0]]
    if hasattr(widget, "inner_widget"):
        widget = widget.inner_widget()
    wait_idle(widget, qtbot)


def test_add_section_leaves_room_for_more(make_napari_viewer, qtbot, session):
    from qtpy.QtWidgets import QGroupBox

    viewer = make_napari_viewer()
    widget = open_widget(viewer, qtbot)
    section = QGroupBox("Segment everything")
    widget.add_section(section)
    assert section.parent() is widget


def test_layers_from_a_file_share_the_command_line_cache_name(tmp_path):
    from napari.layers import Image
    from napari.layers._source import layer_source

    from napari_mobilesam._qt.layer_plane import image_id
    from napari_mobilesam.io.images import file_image_id

    stack = np.zeros((3, 16, 20), dtype=np.uint16)
    path = str(tmp_path / "stack.tif")
    with layer_source(path=path):
        layer = Image(stack)
    assert image_id(layer, 0, (1, 2)) == file_image_id(path, stack.shape, stack.dtype, rgb=False)
    assert image_id(Image(stack), 0, (1, 2)) is None  # not from a file: stores named by content


def test_user_points_layers_are_not_taken_over(make_napari_viewer, qtbot, session):
    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 80)), name="cells")
    annotations = viewer.add_points([[5.0, 5.0], [60.0, 70.0]], name="annotations")
    widget = open_widget(viewer, qtbot)
    assert widget.points_layer is not annotations and widget.points_layer.name == "cells prompts"
    widget.add_point((20, 25))
    widget.segment()
    assert widget.accept() == [1]
    assert len(annotations.data) == 2 and "positive" not in annotations.features
