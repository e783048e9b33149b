"""The prompt layers: a Points layer of positive/negative clicks and a Shapes layer of boxes.

Positive points are green and negative ones red; the polarity is the point
feature ``positive``. Left click adds a point of the default polarity, right
click or Alt+click one of the other; ``T`` toggles the default.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Points, Shapes

from .layer_picker import ROLE_KEY

POLARITY = "positive"
POSITIVE_COLOR = "#33e633"
NEGATIVE_COLOR = "#ff3333"
BOX_COLOR = "#ffd700"


def _spatial_kwargs(image) -> dict:
    """Placed like the image: a prompt's data coordinates are the image's pixels."""
    geometry = ("scale", "translate", "rotate", "shear", "affine")
    return {"ndim": image.ndim, **{name: getattr(image, name) for name in geometry}}


def new_points_layer(image) -> Points:
    """An empty prompt Points layer in ``image``'s coordinates (not yet added to a viewer)."""
    layer = Points(
        name=f"{image.name} prompts",
        features={POLARITY: np.zeros(0, dtype=bool)},
        face_color=POLARITY,
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_color="white",
        border_width=0.1,
        size=max(3.0, 0.012 * max(image.data[0].shape[-2:] if image.multiscale else image.data.shape[-2:])),
        metadata={ROLE_KEY: "prompts"},
        **_spatial_kwargs(image),
    )
    layer.feature_defaults[POLARITY] = True
    return layer


def new_boxes_layer(image) -> Shapes:
    """An empty Shapes layer for box prompts, in ``image``'s coordinates."""
    return Shapes(
        name=f"{image.name} boxes",
        edge_color=BOX_COLOR,
        face_color="transparent",
        edge_width=max(1.0, 0.004 * max(image.data[0].shape[-2:] if image.multiscale else image.data.shape[-2:])),
        metadata={ROLE_KEY: "boxes"},
        **_spatial_kwargs(image),
    )


def ensure_polarity_feature(layer: Points) -> None:
    """Give a user-chosen Points layer the ``positive`` feature (existing points count as positive) and colours."""
    if POLARITY not in layer.features:
        features = layer.features.copy()
        features[POLARITY] = np.ones(len(layer.data), dtype=bool)
        layer.features = features
        layer.face_color_cycle = {True: POSITIVE_COLOR, False: NEGATIVE_COLOR}
        layer.face_color = POLARITY
    layer.feature_defaults[POLARITY] = True


def polarities(layer: Points) -> np.ndarray:
    """``(K,)`` bool: which points are positive."""
    if POLARITY not in layer.features:
        return np.ones(len(layer.data), dtype=bool)
    return layer.features[POLARITY].to_numpy(dtype=bool)


def make_polarity_callback(default_positive):
    """A mouse-drag callback that sets the polarity of the point about to be added.

    ``default_positive()`` returns the current default. Runs on press, before
    napari's own add-point callback (which adds on release).
    """

    def set_polarity(layer, event):
        negative_click = event.button == 2 or "Alt" in event.modifiers
        layer.feature_defaults[POLARITY] = bool(default_positive()) != negative_click

    return set_polarity


def box_corners(layer: Shapes) -> list[np.ndarray]:
    """Each shape's vertices ``(V, D)`` in the Shapes layer's data coordinates (a shape counts by its bounding box)."""
    return [np.asarray(vertices, dtype=float) for vertices in layer.data]
