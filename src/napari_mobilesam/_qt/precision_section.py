"""The "Encoder" section of the MobileSAM widget: the precision embeddings are computed in.

A magicgui form built from :class:`~napari_mobilesam.engine.precision.EncoderSettings`
(auto, float32, bfloat16, float16). A change is remembered for the process
(:mod:`napari_mobilesam.interactive.settings`), applied to the session (its
predictors; the model stays loaded and its weights are cast on the next
encode, which runs in the encode worker), and the plane shown is encoded
again in the new precision: embeddings of different precisions are cached
apart, so switching back finds the earlier ones.
"""

from __future__ import annotations

from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from ..engine.precision import EncoderSettings
from ..interactive.settings import last_encoder, remember_encoder
from .notify import reporting
from .params_form import ParamsForm


class PrecisionSection(QGroupBox):
    """The precision form; added to ``widget`` (a MobileSAMWidget) below its other sections."""

    def __init__(self, widget) -> None:
        super().__init__("Encoder", widget)
        self._widget = widget
        self.form = ParamsForm(EncoderSettings, parent=self)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addWidget(self.note)
        remembered = last_encoder()
        self.form.set_value(remembered)
        widget.session().set_precision(remembered.precision)
        self.form.changed.connect(reporting("changing the precision")(self.set_settings))
        widget.add_section(self)

    def set_settings(self, settings: EncoderSettings) -> None:
        """Encode in ``settings.precision`` from now on; the plane shown is encoded again."""
        widget = self._widget
        if settings.precision == widget.session().precision:
            return
        remember_encoder(settings)
        widget.session().set_precision(settings.precision)
        for state in widget.image_layers.states.values():
            state.set_plane(None)
            state.embedding = None
        widget.planes.update()
        widget.render()
        self.note.setText(self.describe())

    def describe(self) -> str:
        """What the precision chosen means on the model's device (e.g. what auto picked), once the model is loaded."""
        session = self._widget.session()
        if not session.has_model:
            return ""
        from ..engine.precision import choose_precision

        choice = choose_precision(session.model().device, session.precision)
        return f"{choice.name}: {choice.reason}"
