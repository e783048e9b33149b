"""Writing accepted masks into the output Labels layer, one undo step per accept."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from .. import slicing
from ..errors import MobileSAMError
from .layer_plane import LayerPlane, spatial_shape


def new_labels_layer(image) -> Labels:
    """An empty ``"<image> labels"`` layer with the image's spatial shape and placement in the world."""
    return Labels(
        np.zeros(spatial_shape(image), dtype=np.uint32),
        name=f"{image.name} labels",
        scale=image.scale,
        translate=image.translate,
        rotate=image.rotate,
        shear=image.shear,
        affine=image.affine,
    )


def check_labels_fit(labels, image) -> None:
    """Raise :class:`MobileSAMError` unless ``labels`` can receive masks of ``image``."""
    if labels.multiscale:
        raise MobileSAMError(f"Labels layer {labels.name!r} is multiscale; pick a single-scale Labels layer.")
    expected = spatial_shape(image)
    if tuple(labels.data.shape) != expected:
        raise MobileSAMError(
            f"Labels layer {labels.name!r} has shape {tuple(labels.data.shape)}, but image {image.name!r} has "
            f"spatial shape {expected}. Pick a Labels layer of the image's shape, or '(new on accept)' to have one made."
        )


def write_masks(labels, masks: np.ndarray, plane: LayerPlane, overwrite: bool = False) -> list[int]:
    """Paint ``(N, h, w)`` bool masks of ``plane`` into ``labels`` with new ids ``max + 1, max + 2, ...``.

    Without ``overwrite`` only background (0) pixels are painted, and an object
    does not paint over an earlier object of the same accept. Masks of a
    multiscale level are resized to full resolution. All objects are one step
    of the layer's undo history. Returns the ids used (empty masks use none).
    """
    masks = slicing.upsample_mask(np.asarray(masks, dtype=bool), plane.full_plane_shape)
    index = slicing.plane_index(plane.steps)
    current = np.asarray(labels.data[index])
    next_id = int(np.max(labels.data)) + 1 if labels.data.size else 1
    painted = np.zeros(current.shape, dtype=np.int64)
    ids = []
    for mask in masks:
        region = mask.copy()
        if not overwrite:
            region &= (current == 0) & (painted == 0)
        if not region.any():
            continue
        painted[region] = next_id
        ids.append(next_id)
        next_id += 1
    if not ids:
        return ids
    rows, columns = np.nonzero(painted)
    row_axis, column_axis = plane.displayed
    indices = []
    for axis, step in enumerate(plane.steps):
        if axis == row_axis:
            indices.append(rows)
        elif axis == column_axis:
            indices.append(columns)
        else:
            indices.append(np.full(len(rows), step, dtype=np.intp))
    labels.data_setitem(tuple(indices), painted[rows, columns].astype(labels.data.dtype))
    return ids
