"""Writing accepted masks into the output Labels layer, one undo step per accept."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from ..errors import MobileSAMError
from ..interactive import planes as slicing
from ..interactive.labels_painter import masks_to_label_image, plan_painting
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
