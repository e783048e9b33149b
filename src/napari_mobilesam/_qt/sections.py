"""The sections the dock widget is made of: layers, prompts and output, cache, and the status.

Each section only builds its controls; :class:`~napari_mobilesam._qt.widget.MobileSAMWidget`
connects them. Other sections (e.g. "Segment everything") are added with
``MobileSAMWidget.add_section``.
"""

from __future__ import annotations

from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
)

from ..interactive.status import STATUS_LINES
from .layer_picker import ROLE_KEY, LayerPicker


class LayersSection(QGroupBox):
    """Which image to segment and which layers hold its prompts and output labels.

    ``eligible_helper(layer)`` says whether a Points/Shapes layer may be picked
    for the current image (the widget's helper layers of other images may not).
    """

    def __init__(self, viewer, eligible_helper=None, parent=None) -> None:
        super().__init__("Layers", parent)
        self.image = LayerPicker(viewer, Image)
        # "(new)": the widget makes its own prompt layers rather than take over the user's annotations.
        self.points = LayerPicker(viewer, Points, none_text="(new)", eligible=eligible_helper)
        self.boxes = LayerPicker(viewer, Shapes, none_text="(new)", eligible=eligible_helper)
        self.labels = LayerPicker(
            viewer, Labels, none_text="(new on accept)", eligible=lambda layer: layer.metadata.get(ROLE_KEY) is None
        )
        self.image.setToolTip("The image to segment: the plane shown in the viewer is segmented.")
        self.points.setToolTip("Point prompts: left click positive, right click or Alt+click negative.")
        self.boxes.setToolTip("Box prompts: each rectangle is one object.")
        self.labels.setToolTip(
            "Accepted objects are written here (its shape, scale and translate must be the image's); "
            "a new layer is made on the first accept."
        )
        self.form = form = QFormLayout(self)
        form.addRow("Image", self.image)
        form.addRow("Points", self.points)
        form.addRow("Boxes", self.boxes)
        form.addRow("Labels", self.labels)

    def pickers(self) -> list[LayerPicker]:
        return [self.image, self.points, self.boxes, self.labels]


class PromptSection(QGroupBox):
    """The tools (checkable, one at a time), the polarity, and the buttons to choose and accept the mask."""

    def __init__(self, parent=None) -> None:
        super().__init__("Prompts", parent)
        self.add_points = QPushButton("Click points")
        self.add_points.setToolTip("Left click: positive point; right click or Alt+click: negative point.")
        self.draw_box = QPushButton("Draw boxes")
        self.draw_box.setToolTip("Drag rectangles; each is one object, decoded together.")
        self.edit_label = QPushButton("Edit label")
        self.edit_label.setToolTip(
            "Click an object of the Labels layer, then click points to refine it; Enter replaces it (one undo step)."
        )
        self.tools = QButtonGroup(self)
        self.tools.setExclusive(False)  # the widget keeps one checked at most, and allows none (pan and zoom)
        for button in (self.add_points, self.draw_box, self.edit_label):
            button.setCheckable(True)
            self.tools.addButton(button)
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
        grid.addWidget(self.edit_label, 0, 2)
        grid.addWidget(self.positive, 1, 0, 1, 2)
        grid.addWidget(self.next_mask, 1, 2)
        grid.addWidget(self.accept, 2, 0, 1, 2)
        grid.addWidget(self.clear, 2, 2)
        grid.addWidget(self.overwrite, 3, 0, 1, 3)

    def tool_buttons(self) -> dict[str, QPushButton]:
        return {"points": self.add_points, "boxes": self.draw_box, "edit": self.edit_label}


class StatusLabel(QLabel):
    """The status: a fixed height (room for its lines, some of them wrapped), so nothing below it ever jumps."""

    def __init__(self, parent=None) -> None:
        super().__init__("", parent)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self.fontMetrics().lineSpacing() * (STATUS_LINES + 3) + 4)

    def show_lines(self, lines: list[str]) -> None:
        self.setText("\n".join(lines))
        self.setToolTip("\n".join(line for line in lines if line))


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
