"""The helper layers the widget makes for an image: a Points layer of clicks, a Shapes layer of boxes.

Positive points are green and negative ones red; the polarity is the point
feature ``positive``. Left click adds a point of the default polarity, right
click or Alt+click one of the other; ``T`` toggles the default. Each helper
layer records in its metadata its role and the image it belongs to, so the
widget finds and reuses it instead of making another, and removes it with its image.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Points, Shapes

from .layer_picker import ROLE_KEY

OWNER_KEY = "napari_mobilesam_image"  # layer.metadata: the unique id of the image a helper layer belongs to
POLARITY = "positive"
POSITIVE_COLOR = "#33e633"
NEGATIVE_COLOR = "#ff3333"
BOX_COLOR = "#ffd700"
MIN_SCREEN_PIXELS = 5  # points stay visible when zoomed out


def owner_id(image) -> str:
    return str(image.unique_id)


def helper_metadata(role: str, image) -> dict:
    return {ROLE_KEY: role, OWNER_KEY: owner_id(image)}


def is_helper_of(layer, image, role: str | None = None) -> bool:
    """Whether ``layer`` is a helper layer the widget made for ``image`` (of ``role``, if given)."""
    meta = layer.metadata
    return meta.get(OWNER_KEY) == owner_id(image) and (role is None or meta.get(ROLE_KEY) == role)


def _spatial_kwargs(image) -> dict:
    """Placed like the image: a prompt's data coordinates are the image's pixels."""
    geometry = ("scale", "translate", "rotate", "shear", "affine")
    return {"ndim": image.ndim, **{name: getattr(image, name) for name in geometry}}


def plane_extent(image) -> int:
    """The longest side in pixels of the image's last two spatial axes (full resolution)."""
    shape = image.data[0].shape if image.multiscale else image.data.shape
    spatial = shape[:-1] if image.rgb else shape
    return int(max(spatial[-2:]))


def new_points_layer(image) -> Points:
    """An empty prompt Points layer in ``image``'s coordinates (not yet added to a viewer).

    Points are about 1 % of the image's extent and never below a few screen pixels;
    the layer's colour control shows green, the colour of the first click.
    """
    layer = Points(
        name=f"{image.name} prompts",
        features={POLARITY: np.zeros(0, dtype=bool)},
        face_color=POLARITY,
        face_color_cycle={True: POSITIVE_COLOR, False: NEGATIVE_COLOR},
        border_color="white",
        border_width=0.1,
        size=max(1.0, 0.01 * plane_extent(image)),
        canvas_size_limits=(MIN_SCREEN_PIXELS, 10000),
        metadata=helper_metadata("prompts", image),
        **_spatial_kwargs(image),
    )
    set_default_polarity(layer, True)
    return layer


def new_boxes_layer(image) -> Shapes:
    """An empty Shapes layer for box prompts, in ``image``'s coordinates."""
    return Shapes(
        name=f"{image.name} boxes",
        edge_color=BOX_COLOR,
        face_color="transparent",
        edge_width=max(1.0, 0.004 * plane_extent(image)),
        metadata=helper_metadata("boxes", image),
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
    set_default_polarity(layer, True)


def set_default_polarity(layer: Points, positive: bool) -> None:
    """The polarity (and the colour shown in the layer controls) of the next point added."""
    defaults = layer.feature_defaults.iloc[0].to_dict() if len(layer.feature_defaults.columns) else {}
    if defaults.get(POLARITY) is not None and bool(defaults[POLARITY]) == bool(positive):
        return  # already so (assigning costs napari a refresh of the layer: ~2 ms on every click)
    defaults[POLARITY] = bool(positive)
    layer.feature_defaults = defaults  # assigned whole, so the layer controls' colour follows


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
