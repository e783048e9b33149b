"""The model picker and AIS/APG in the widget, driven by real Qt events: picking vit_t_lm offers AIS (chosen)
with the model's settings, This slice segments with them, the menu command follows them, and going back to
mobile_sam takes AIS/APG away. The models are the recipe weights with the cheap stand-in decoder."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from support.gui import User, needs_display, open_widget, wait_idle
from support.instance_stand_in import StandInDecoder, blobs, with_decoder

pytestmark = needs_display


@pytest.fixture
def registry_models(recipe_model, monkeypatch, request):
    """load_model(model=name) gives the recipe weights, with the stand-in decoder for the micro-sam models."""
    from napari_mobilesam.engine import weights
    from napari_mobilesam.engine.model_registry import MODELS
    from napari_mobilesam.interactive import settings

    decoder = StandInDecoder()

    def fake_load(checkpoint=None, device=None, *, model=None, decoder_file=None, **_):
        spec = MODELS[model]
        return with_decoder(recipe_model, decoder if spec.has_decoder else None, model_name=model)

    monkeypatch.setattr(weights, "load_model", fake_load)
    monkeypatch.setattr(settings, "_INSTANCE", {})
    monkeypatch.setattr(settings, "_LAST_USED", settings.EverythingParams())
    monkeypatch.setattr(settings, "_CHOSEN", False)


def test_picking_a_model_with_a_decoder_offers_ais(make_napari_viewer, qtbot, session, recipe_model, registry_models):
    from napari._app_model import get_app_model

    from napari_mobilesam.segment.stack import segment_slice

    viewer = make_napari_viewer(show=True)
    image = viewer.add_image(blobs((64, 80)), name="cells")
    widget = open_widget(viewer, qtbot)
    user = User(viewer, qtbot)
    section = widget.everything_section
    sampler = section.form.widgets["sampler"]
    assert list(sampler.choices) == ["grid", "boxes"]  # the recipe model has no decoder

    user.pick(widget.model_picker, "vit_t_lm")
    qtbot.waitUntil(lambda: widget.model_picker.worker is None, timeout=60_000)
    wait_idle(widget, qtbot)
    assert session.model_name == "vit_t_lm" and "vit_t_lm" in widget.model_picker.currentText()
    assert list(sampler.choices) == ["grid", "boxes", "ais", "apg"] and sampler.value == "ais"
    ais_form = section.instance_forms["ais"]
    assert ais_form.isVisible() and not section.instance_forms["apg"].isVisible()
    assert (ais_form.value().min_size, ais_form.value().distance_smoothing) == (100, 2.0)  # vit_t_lm's

    # The user lowers the minimum size in the form, then segments the slice shown.
    spin = ais_form.widgets["min_size"].native
    spin.selectAll()
    qtbot.keyClicks(spin, "4")
    spin.editingFinished.emit()
    assert section.instance_settings().min_size == 4
    user.press(section.this_slice)
    assert section.wait(120)
    expected, _ = segment_slice(
        image.data,
        predictor=session.new_predictor(),
        cache=session.cache,
        contrast_limits=tuple(image.contrast_limits),
        sampler="ais",
        **asdict(section.instance_settings()),
    )
    assert expected.max() >= 1
    np.testing.assert_array_equal(viewer.layers["cells labels"].data, expected)

    # The menu command follows the section's last-used settings.
    stack = viewer.add_image(blobs((2, 64, 80), seed=1), name="stack")
    viewer.layers.selection.active = stack
    run = get_app_model().commands.execute_command("napari-mobilesam.segment_stack").result()
    assert run is not None and run.settings.sampler == "ais" and run.instance_settings.min_size == 4
    assert run.wait(120) and run.failed is None and run.layer.data.max() >= 1

    # Back to MobileSAM: no decoder, so AIS/APG go and the point grid is chosen.
    user.pick(widget.model_picker, "mobile_sam")
    qtbot.waitUntil(lambda: widget.model_picker.worker is None, timeout=60_000)
    assert session.model_name == "mobile_sam" and not session.has_instance_decoder
    assert list(sampler.choices) == ["grid", "boxes"] and sampler.value == "grid"
    assert not ais_form.isVisible()


def test_a_model_given_as_a_module_is_named_custom(make_napari_viewer, qtbot, session):
    """The session's model has no registered name (the tests' recipe module): the picker says so, not a blank."""
    viewer = make_napari_viewer()
    viewer.add_image(blobs((64, 64)), name="cells")
    widget = open_widget(viewer, qtbot)
    assert session.model_name == "custom"
    assert widget.model_picker.currentIndex() == -1
    assert widget.model_picker.placeholderText().startswith("custom")
