"""The widget's model picker: the registry's models by name; choosing one loads it in a worker.

The choice is the session's (:meth:`~napari_mobilesam.engine.session.Session.switch_model`),
so the menu command and napari's console use the same model. Loading runs in
a worker (a download the first time, with napari's activity dock showing it);
the viewer stays usable and the old model serves until the new one is ready.
Embeddings of the other model stay in the cache: their keys differ, so each
model only ever sees its own.
"""

from __future__ import annotations

from napari.qt.threading import create_worker
from qtpy.QtCore import QSignalBlocker, Qt
from qtpy.QtWidgets import QComboBox

from ..engine import compute_thread
from ..engine.model_registry import MODELS
from .encode_scheduler import Failed, safely
from .notify import report


class ModelPicker(QComboBox):
    """A combo box of the registered models; ``widget`` provides ``session()``, its image states and sections."""

    def __init__(self, widget) -> None:
        super().__init__()
        self._widget = widget
        #: The worker loading a model, or None.
        self.worker = None
        for name, spec in MODELS.items():
            self.addItem(name, name)
            self.setItemData(self.count() - 1, spec.description, Qt.ItemDataRole.ToolTipRole)
        self.setToolTip("The model: MobileSAM, or micro-sam's models for light or electron microscopy with AIS/APG.")
        self.setPlaceholderText("custom (given as a module)")  # shown for a model without a registered name
        self.show_current()
        self.activated.connect(lambda index: self.choose(self.itemData(index)))

    def show_current(self) -> None:
        """Show the session's model (the placeholder for a model given without a registered name)."""
        with QSignalBlocker(self):
            self.setCurrentIndex(self.findData(self._widget.session().model_name))

    def choose(self, name: str):
        """Load the registered model ``name`` in a worker and segment with it; returns the worker (None: nothing to do)."""
        session = self._widget.session()
        if self.worker is not None or (session.has_model and session.model_name == name):
            self.show_current()
            return None
        worker = create_worker(
            safely(compute_thread.on_compute_thread(session.switch_model)),
            name,
            _progress={"total": 0, "desc": f"MobileSAM: loading {name}"},
        )
        worker.returned.connect(self._on_loaded)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.setEnabled(False)
        worker.start()
        return worker

    def model_changed(self) -> None:
        """The session's model changed: every plane is encoded again (other keys), AIS/APG follow the decoder."""
        widget = self._widget
        for state in widget.image_layers.states.values():
            state.set_plane(None)
            state.embedding = None
        widget.planes.update()
        self.show_current()
        widget.everything_section.follow_model()
        widget.render()

    def _on_loaded(self, result) -> None:
        if isinstance(result, Failed):
            report(result.error, "loading the model")
        if not self._widget.closed:
            self.model_changed()

    def _on_finished(self) -> None:
        self.worker = None
        self.setEnabled(True)
        self.show_current()
