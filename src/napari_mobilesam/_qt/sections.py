"""The sections the dock widget is made of: layers, prompts and output, cache.

Each section only builds its controls; :class:`~napari_mobilesam._qt.widget.MobileSAMWidget`
connects them. Other sections (e.g. "Segment everything") are added with
``MobileSAMWidget.add_section``.
"""

from __future__ import annotations

from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGridLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout

from .layer_picker import LayerPicker


class LayersSection(QGroupBox):
    """Which image to segment and which layers hold the prompts and the output labels."""

    def __init__(self, viewer, parent=None) -> None:
        super().__init__("Layers", parent)
        self.image = LayerPicker(viewer, Image)
        # "(new)": the widget makes its own prompt layers rather than take over the user's annotations.
        self.points = LayerPicker(viewer, Points, none_text="(new)")
        self.boxes = LayerPicker(viewer, Shapes, none_text="(new)")
        self.labels = LayerPicker(viewer, Labels, none_text="(new on accept)", exclude_roles=("preview",))
        self.image.setToolTip("The image to segment: the plane shown in the viewer is segmented.")
        self.points.setToolTip("Point prompts: left click positive, right click or Alt+click negative.")
        self.boxes.setToolTip("Box prompts: each rectangle is one object.")
        self.labels.setToolTip("Accepted objects are written here; a new layer is made on the first accept.")
        form = QFormLayout(self)
        form.addRow("Image", self.image)
        form.addRow("Points", self.points)
        form.addRow("Boxes", self.boxes)
        form.addRow("Labels", self.labels)

    def pickers(self) -> list[LayerPicker]:
        return [self.image, self.points, self.boxes, self.labels]


class PromptSection(QGroupBox):
    """Buttons for drawing prompts, choosing the mask and accepting it."""

    def __init__(self, parent=None) -> None:
        super().__init__("Prompts", parent)
        self.add_points = QPushButton("Click points")
        self.add_points.setToolTip("Left click: positive point; right click or Alt+click: negative point.")
        self.draw_box = QPushButton("Draw boxes")
        self.draw_box.setToolTip("Drag rectangles; each is one object, decoded together.")
        self.positive = QCheckBox("Clicks are positive (T)")
        self.positive.setChecked(True)
        self.next_mask = QPushButton("Next mask (M)")
        self.next_mask.setToolTip("Cycle the three candidate masks of a single object.")
        self.accept = QPushButton("Accept (Enter)")
        self.clear = QPushButton("Clear (Esc)")
        self.overwrite = QCheckBox("Overwrite existing labels")
        self.overwrite.setToolTip("Off: only background pixels are painted.")
        grid = QGridLayout(self)
        grid.addWidget(self.add_points, 0, 0)
        grid.addWidget(self.draw_box, 0, 1)
        grid.addWidget(self.positive, 1, 0)
        grid.addWidget(self.next_mask, 1, 1)
        grid.addWidget(self.accept, 2, 0)
        grid.addWidget(self.clear, 2, 1)
        grid.addWidget(self.overwrite, 3, 0, 1, 2)


class CacheSection(QGroupBox):
    """How much the embedding cache holds, and a button to empty it."""

    def __init__(self, parent=None) -> None:
        super().__init__("Embedding cache", parent)
        self.size = QLabel("")
        self.size.setWordWrap(True)
        self.clear = QPushButton("Clear cache")
        self.clear.setToolTip("Forget every stored embedding, in memory and on disk.")
        layout = QVBoxLayout(self)
        layout.addWidget(self.size)
        layout.addWidget(self.clear)
