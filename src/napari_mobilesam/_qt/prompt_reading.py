"""Reading the prompts that lie on the segmented plane out of the Points and Shapes layers.

Prompts are converted from their layer's data coordinates to world
coordinates and then to the image's data coordinates, so prompt layers with
another scale or translate than the image still land on the right pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.prompts import boxes_outside
from ..interactive import planes as slicing
from .layer_plane import LayerPlane, world_affine
from .prompt_layers import polarities


def _layer_to_image_data(coords: np.ndarray, layer, plane: LayerPlane, viewer_point) -> np.ndarray:
    """``(K, layer.ndim)`` layer data coordinates to ``(K, image.ndim)`` image data coordinates.

    Axes the prompt layer lacks (a 2D Points layer over a stack) take the viewer's current position.
    """
    image = plane.layer
    world = slicing.data_to_world(coords, layer.scale, layer.translate, world_affine(layer))
    full = np.tile(np.asarray(viewer_point, dtype=float)[-image.ndim :], (len(coords), 1))
    shared = min(layer.ndim, image.ndim)
    full[:, image.ndim - shared :] = world[:, layer.ndim - shared :]
    return slicing.world_to_data(full, image.scale, image.translate, world_affine(image))


@dataclass(frozen=True, eq=False)
class PlanePoints:
    """Points of the plane: ``xy`` ``(K, 2)`` pixels, ``positive`` ``(K,)``; indices into the layer of
    those used (``used``) and of those on the plane but outside the image (``outside``)."""

    xy: np.ndarray
    positive: np.ndarray
    used: np.ndarray
    outside: np.ndarray


def points_on_plane(layer, plane: LayerPlane, viewer_point, extra=None) -> PlanePoints:
    """The points of ``layer`` on ``plane`` (points on other slices are left out).

    ``extra``: ``(coords, positive)`` of one more point, in the layer's data
    coordinates, read as if it had been added last (a click about to add it).
    """
    empty = np.zeros(0, dtype=int)
    if layer is None or (len(layer.data) == 0 and extra is None):
        return PlanePoints(np.zeros((0, 2)), np.zeros(0, dtype=bool), empty, empty)
    data, positive = np.asarray(layer.data, dtype=float).reshape(-1, layer.ndim), polarities(layer)
    if extra is not None:
        data = np.concatenate([data, np.asarray(extra[0], dtype=float).reshape(1, layer.ndim)])
        positive = np.append(positive, bool(extra[1]))
    data = _layer_to_image_data(data, layer, plane, viewer_point)
    on = np.flatnonzero(slicing.on_plane(data, plane.steps))
    xy = slicing.to_plane_xy(data[on], plane.steps, plane.factors)
    inside = slicing.inside_plane(xy, plane.plane_shape)
    return PlanePoints(xy[inside], positive[on][inside], on[inside], on[~inside])


@dataclass(frozen=True, eq=False)
class PlaneBoxes:
    """Boxes of the plane: ``boxes`` ``(N, 4)`` ``(x0, y0, x1, y1)`` clipped to the image; layer indices
    of those used and of those entirely outside the image."""

    boxes: np.ndarray
    used: np.ndarray
    outside: np.ndarray


def boxes_on_plane(layer, plane: LayerPlane, viewer_point) -> PlaneBoxes:
    """The bounding boxes of the shapes of ``layer`` drawn on ``plane``."""
    boxes, used, outside = [], [], []
    if layer is not None:
        height, width = plane.plane_shape
        for index, vertices in enumerate(layer.data):
            data = _layer_to_image_data(np.asarray(vertices, dtype=float), layer, plane, viewer_point)
            if not slicing.on_plane(data.mean(axis=0, keepdims=True), plane.steps)[0]:
                continue
            xy = slicing.to_plane_xy(data, plane.steps, plane.factors)
            x0, y0 = xy.min(axis=0)
            x1, y1 = xy.max(axis=0)
            if boxes_outside([x0, y0, x1, y1], (height, width))[0]:  # the API refuses them; here they are skipped
                outside.append(index)
                continue
            boxes.append([max(x0, 0.0), max(y0, 0.0), min(x1, width - 1.0), min(y1, height - 1.0)])
            used.append(index)
    return PlaneBoxes(
        np.asarray(boxes, dtype=float).reshape(-1, 4), np.asarray(used, dtype=int), np.asarray(outside, dtype=int)
    )


def prompt_signature(plane: LayerPlane, points: PlanePoints, boxes: PlaneBoxes) -> tuple:
    """Equal when the prompts on a plane are the same (skips predicting twice for one state)."""
    return (plane.key, np.round(points.xy, 3).tobytes(), points.positive.tobytes(), np.round(boxes.boxes, 3).tobytes())
