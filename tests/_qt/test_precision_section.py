"""The widget's Encoder section: the precision, remembered for the process, applied to the session."""

from __future__ import annotations

import numpy as np
import pytest

from support.gui import needs_display, open_widget, wait_idle


@pytest.fixture
def remembered():
    from napari_mobilesam.engine.precision import EncoderSettings
    from napari_mobilesam.interactive.settings import last_encoder, remember_encoder

    before = last_encoder()
    yield
    remember_encoder(before if isinstance(before, EncoderSettings) else EncoderSettings())


@needs_display
def test_a_precision_chosen_is_remembered_and_the_plane_encoded_again(make_napari_viewer, qtbot, session, remembered):
    from napari_mobilesam.interactive.settings import last_encoder

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).integers(0, 4000, (64, 80), dtype=np.uint16), name="cells")
    widget = open_widget(viewer, qtbot)
    section = widget.precision_section
    assert section.form.value().precision == "float32" and session.precision == "float32"
    first = widget.state.embedding
    assert first is not None
    # "auto" is float32 on a CPU without native bfloat16 (this one), so the new encode is a cache hit
    section.form.widgets["precision"].value = "auto"
    assert session.precision == "auto" and last_encoder().precision == "auto"
    wait_idle(widget, qtbot)
    assert widget.state.embedding is not None and widget.state.embedding is not first
    assert "auto" in section.note.text()
    np.testing.assert_array_equal(widget.state.embedding.embedding.features, first.embedding.features)
    # a new widget (another viewer of the process) starts with the remembered precision
    other = open_widget(make_napari_viewer(), qtbot)
    assert other.precision_section.form.value().precision == "auto"
