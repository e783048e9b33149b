"""Writing accepted masks into the output Labels layer, one undo step per accept."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.labels_painter import masks_to_label_image, plan_painting
from .layer_plane import LayerPlane, spatial_shape
from .prompt_layers import OWNER_KEY, owner_id


def new_labels_layer(image) -> Labels:
    """An empty ``"<image> labels"`` layer with the image's spatial shape and placement in the world.

    Its metadata names the image it belongs to (the menu command finds the image from it).
    """
    return Labels(
        np.zeros(spatial_shape(image), dtype=np.uint32),
        name=f"{image.name} labels",
        scale=image.scale,
        translate=image.translate,
        rotate=image.rotate,
        shear=image.shear,
        affine=image.affine,
        metadata={OWNER_KEY: owner_id(image)},
    )


def check_labels_fit(labels, image) -> None:
    """Raise :class:`MobileSAMError` unless ``labels`` can receive masks of ``image``: same shape, scale and translate."""
    if labels.multiscale:
        raise MobileSAMError(f"Labels layer {labels.name!r} is multiscale; pick a single-scale Labels layer.")
    expected = spatial_shape(image)
    if tuple(labels.data.shape) != expected:
        raise MobileSAMError(
            f"Labels layer {labels.name!r} has shape {tuple(labels.data.shape)}, but image {image.name!r} has "
            f"spatial shape {expected}. Pick a Labels layer of the image's shape, or '(new on accept)' to have one made."
        )
    if not (np.allclose(labels.scale, image.scale) and np.allclose(labels.translate, image.translate)):
        raise MobileSAMError(
            f"Labels layer {labels.name!r} lies elsewhere in the world than image {image.name!r} (scale "
            f"{tuple(labels.scale)} vs {tuple(image.scale)}, translate {tuple(labels.translate)} vs "
            f"{tuple(image.translate)}): its pixels are not the image's. Pick a Labels layer placed like the image, "
            "or '(new on accept)' to have one made."
        )


def paint_into_layer(layer, labels: np.ndarray, where: tuple = (), overwrite: bool = False) -> list[int]:
    """Write the label image ``labels`` into ``layer.data[where]`` as one undo step; returns the new ids.

    ``where`` indexes the part written: an int per axis that is fixed and
    ``slice(None)`` per axis that ``labels`` spans (``()``: the whole layer).
    The rule (new ids, background only unless ``overwrite``) is
    :func:`~napari_mobilesam.interactive.labels_painter.plan_painting`'s.
    """
    current = np.asarray(layer.data[where])
    first_id = int(np.max(layer.data)) + 1 if layer.data.size else 1
    painting = plan_painting(
        current,
        labels,
        first_id=first_id,
        dtype=layer.data.dtype,
        overwrite=overwrite,
        target_name=f"Labels layer {layer.name!r}",
    )
    if not painting.ids:
        return []
    spanned = iter(painting.indices)
    indices = []
    for axis in range(layer.data.ndim):
        fixed = where[axis] if axis < len(where) else slice(None)
        if isinstance(fixed, slice):
            indices.append(next(spanned))
        else:
            indices.append(np.full(len(painting.values), int(fixed), dtype=np.intp))
    layer.data_setitem(tuple(indices), painting.values)
    return painting.ids


def write_masks(labels, masks: np.ndarray, plane: LayerPlane, overwrite: bool = False) -> list[int]:
    """Paint ``(N, h, w)`` bool masks of ``plane`` into the Labels layer ``labels`` (later masks on top).

    Masks of a multiscale level are resized to full resolution; see
    :func:`paint_into_layer` for the ids and the overwrite rule.
    """
    masks = slicing.upsample_mask(np.asarray(masks, dtype=bool), plane.full_plane_shape)
    return paint_into_layer(labels, masks_to_label_image(masks), slicing.plane_index(plane.steps), overwrite)


def replace_object(labels, label_id: int, mask: np.ndarray, plane: LayerPlane, overwrite: bool = False) -> list[int]:
    """Replace object ``label_id`` on ``plane`` by ``(h, w)`` bool ``mask`` (one undo step); returns ``[label_id]``.

    Its pixels outside ``mask`` become background; ``mask`` is painted over
    background and the object itself, and over other objects only with ``overwrite``.
    """
    mask = slicing.upsample_mask(np.asarray(mask, dtype=bool), plane.full_plane_shape)
    index = slicing.plane_index(plane.steps)
    current = np.asarray(labels.data[index])
    old = current == label_id
    paint = mask & (old | (current == 0) | bool(overwrite))
    clear = old & ~mask
    rows, columns = np.nonzero(paint | clear)
    values = np.where(paint[rows, columns], label_id, 0).astype(labels.data.dtype)
    row_axis, column_axis = plane.displayed
    indices = []
    for axis, step in enumerate(plane.steps):
        if axis == row_axis:
            indices.append(rows)
        elif axis == column_axis:
            indices.append(columns)
        else:
            indices.append(np.full(len(rows), step, dtype=np.intp))
    labels.data_setitem(tuple(indices), values)
    return [int(label_id)]
