"""The widget's status line, drawn from the session and the current image's state after every change.

Four lines that keep their places: the model (or that it is loading), the
image and plane with its embedding, the result or the last action, and the
hints with where the user's work is on a stack (:mod:`napari_mobilesam.interactive.work_places`).
"""

from __future__ import annotations

import numpy as np

from ..interactive.status import status_lines, work_summary
from ..interactive.work_places import slices_with_labels, slices_with_prompts

WORK_SCAN_LIMIT = 200_000_000  # labels scanned for the slices they cover (larger stacks are not: the UI would stall)


class StatusView:
    """Renders the status label; ``widget`` provides the session, state, workers and the label."""

    def __init__(self, widget) -> None:
        self.widget = widget
        self.work = ""

    def render(self) -> None:
        widget = self.widget
        session = widget.session()
        loading = not session.has_model and (widget.lifecycle.model_worker is not None or widget.encoder.busy)
        model = "weights: loading the model…" if loading else session.describe()
        lines = status_lines(model, widget.state, widget.default_positive, self.work)
        widget.status_label.show_lines(lines)

    def on_layers_changed(self, event=None) -> None:
        self.widget.timers["work"].start()

    def update_work(self) -> None:
        self.work = self.work_text()
        self.widget.render()

    def work_text(self) -> str:
        """Which slices of a stack hold accepted labels or prompts, so the user finds their work again."""
        widget = self.widget
        state = widget.state
        if state is None or state.plane is None or all(step is None for step in state.plane.steps):
            return ""  # a 2D image: everything is on the plane shown
        steps = state.plane.steps
        labels = []
        data = None if state.labels is None or state.labels not in widget.viewer.layers else state.labels.data
        if data is not None and data.ndim == len(steps) and data.size <= WORK_SCAN_LIMIT:
            labels = slices_with_labels(np.asarray(data), steps)
        coordinates = []
        for layer in (state.points, state.boxes):
            if layer is not None and len(layer.data):
                coordinates.append(np.concatenate([np.atleast_2d(np.asarray(d, dtype=float)) for d in layer.data]))
        return work_summary(labels, slices_with_prompts(coordinates, steps))
