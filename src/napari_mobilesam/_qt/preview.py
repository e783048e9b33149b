"""The preview layer: the masks of the current prompts, drawn on the plane they belong to only."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels

from .layer_plane import LayerPlane, world_affine
from .prompt_layers import helper_metadata


def preview_geometry(plane: LayerPlane) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """``(shape, scale, translate)`` of a one-plane-thick layer lying exactly on ``plane``.

    Non-displayed axes have size 1 and are translated to the plane's step, so
    the preview is not drawn on any other slice; the displayed axes have the
    pixel size of the multiscale level that was segmented.
    """
    image = plane.layer
    scale = np.asarray(image.scale, dtype=float).copy()
    translate = np.asarray(image.translate, dtype=float).copy()
    shape = []
    row_axis, column_axis = plane.displayed
    for axis, step in enumerate(plane.steps):
        if step is None:
            factor = float(plane.factors[axis])
            shape.append(plane.plane_shape[0] if axis == row_axis else plane.plane_shape[1])
            translate[axis] += (factor - 1) / 2 * scale[axis]  # level pixel centres
            scale[axis] *= factor
        else:
            shape.append(1)
            translate[axis] += step * scale[axis]
    return tuple(shape), scale, translate


def new_preview_layer(plane: LayerPlane) -> Labels:
    """An empty preview layer ``"<image> preview"`` on ``plane``."""
    shape, scale, translate = preview_geometry(plane)
    layer = Labels(
        np.zeros(shape, dtype=np.uint8),
        name=f"{plane.layer.name} preview",
        scale=scale,
        translate=translate,
        affine=world_affine(plane.layer),  # the image's rotate and shear included
        opacity=0.6,
        metadata=helper_metadata("preview", plane.layer),
    )
    layer.editable = False
    return layer


def show_on(layer: Labels, plane: LayerPlane, label_image: np.ndarray | None) -> None:
    """Show ``(h, w)`` ``label_image`` (None: nothing) on ``plane`` in the preview ``layer``."""
    shape, scale, translate = preview_geometry(plane)
    dtype = np.dtype(np.uint8 if label_image is None else label_image.dtype)
    if not np.array_equal(layer.scale, scale):
        layer.scale = scale
    if not np.array_equal(layer.translate, translate):
        layer.translate = translate
    current = layer.data
    if (
        isinstance(current, np.ndarray)
        and current.shape == shape
        and current.dtype == dtype
        and current.flags.writeable
        and current.flags.c_contiguous  # so that _fill's reshape is a view of it
    ):
        # Same geometry: written in place and redrawn, half the cost of a new array
        # (which makes napari recompute the layer's dims and extent on every click).
        _fill(current, label_image)
        layer.refresh()
        return
    data = np.zeros(shape, dtype=dtype)
    _fill(data, label_image)
    layer.data = data


def _fill(data: np.ndarray, label_image: np.ndarray | None) -> None:
    """Write ``(h, w)`` ``label_image`` (None: zeros) into one-plane-thick ``data``."""
    if label_image is None:
        data[...] = 0
    else:
        data.reshape(label_image.shape)[...] = label_image
