"""Painting new objects into an existing label image: new ids above the largest, existing labels kept.

The one rule for every way the widget writes into a Labels layer (accepting a
preview, segment everything on a slice or on all slices): objects get new ids
``first_id, first_id + 1, ...`` in the order of their ids in the new label
image; without ``overwrite`` only background (0) is painted, and an object
left without pixels gets no id. Pure numpy: the napari side
(:mod:`napari_mobilesam._qt.labels_output`) reads the layer and writes the
result as one undo step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MobileSAMError


@dataclass(frozen=True)
class Painting:
    """What to write: ``values`` at ``indices`` (one index array per axis of the painted region), and the new ids."""

    indices: tuple[np.ndarray, ...]
    values: np.ndarray
    ids: list[int]


def plan_painting(
    current: np.ndarray,
    labels: np.ndarray,
    *,
    first_id: int,
    dtype,
    overwrite: bool = False,
    target_name: str = "the labels",
) -> Painting:
    """The pixels and ids that paint ``labels`` (0 background, objects > 0) over ``current`` (same shape).

    ``first_id`` is the first new id (the target's largest + 1); ``dtype`` the
    target's, checked to hold the last new id.
    """
    current, labels = np.asarray(current), np.asarray(labels)
    if current.shape != labels.shape:
        raise MobileSAMError(
            f"Labels of shape {labels.shape} do not fit {current.shape} of {target_name}; pick a Labels "
            "layer of the image's shape, or none to have one made."
        )
    region = labels > 0
    if not overwrite:
        region &= current == 0
    old_ids, inverse = np.unique(labels[region], return_inverse=True)
    dtype = np.dtype(dtype)
    if not len(old_ids):
        return Painting(tuple(np.zeros(0, dtype=np.intp) for _ in range(labels.ndim)), np.zeros(0, dtype), [])
    last = int(first_id) + len(old_ids) - 1
    if np.issubdtype(dtype, np.integer) and last > np.iinfo(dtype).max:
        raise MobileSAMError(
            f"{target_name} stores {dtype} ids (at most {np.iinfo(dtype).max}) but needs ids up to {last}; "
            "pick another Labels layer, or none to have one made."
        )
    values = (int(first_id) + inverse.ravel()).astype(dtype)
    return Painting(np.nonzero(region), values, list(range(int(first_id), last + 1)))


def masks_to_label_image(masks: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool masks to one ``(H, W)`` image: object ``i`` painted as ``i + 1``, later objects on top."""
    masks = np.asarray(masks, dtype=bool)
    dtype = np.uint8 if len(masks) < 255 else np.uint32
    image = np.zeros(masks.shape[1:], dtype=dtype)
    for index, mask in enumerate(masks):
        image[mask] = index + 1
    return image
