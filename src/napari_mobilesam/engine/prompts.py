"""Checking prompts before they reach the model: one clear error per mistake.

Everything is normalised to a batch of ``N`` objects: points ``(N, K, 2)``
``(x, y)`` pixels, labels ``(N, K)``, boxes ``(N, 4)`` ``(x0, y0, x1, y1)``,
mask inputs ``(N, 1, 256, 256)`` low-res logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MobileSAMError

LOW_RES_SHAPE = (256, 256)


@dataclass(frozen=True)
class Prompts:
    """Checked prompts for ``N`` objects (see the module doc for shapes)."""

    point_coords: np.ndarray | None
    point_labels: np.ndarray | None
    boxes: np.ndarray | None
    mask_input: np.ndarray | None
    batched: bool

    @property
    def count(self) -> int:
        for value in (self.point_coords, self.boxes, self.mask_input):
            if value is not None:
                return len(value)
        return 0


def _as_float_array(value, name: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise MobileSAMError(f"{name} must be numbers, got {value!r}.") from None
    if not np.all(np.isfinite(array)):
        raise MobileSAMError(f"{name} contains NaN or infinite values; give finite pixel coordinates.")
    return array


def points_inside(xy, original_size: tuple[int, int]) -> np.ndarray:
    """``(K,)`` bool: which ``(x, y)`` pixel coordinates fall on an image of ``(h, w)`` pixels (edges included)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    height, width = original_size
    return (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= height - 0.5)


def boxes_outside(boxes, original_size: tuple[int, int]) -> np.ndarray:
    """``(N,)`` bool: which ``(x0, y0, x1, y1)`` boxes lie entirely off an image of ``(h, w)`` pixels.

    Such a box holds no pixel to segment: the decoder would make a mask of whatever it reaches.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = original_size
    return (boxes[:, 2] < -0.5) | (boxes[:, 3] < -0.5) | (boxes[:, 0] > width - 0.5) | (boxes[:, 1] > height - 0.5)


def _named_box(box) -> str:
    return "(" + ", ".join(f"{name}={value:g}" for name, value in zip(("x0", "y0", "x1", "y1"), box, strict=True)) + ")"


def _check_points(point_coords, point_labels, original_size):
    if point_coords is None and point_labels is None:
        return None, None, None
    if point_coords is None or point_labels is None:
        raise MobileSAMError("point_coords and point_labels go together: give both (one label, 1 or 0, per point).")
    coords = _as_float_array(point_coords, "point_coords")
    if coords.ndim not in (2, 3) or coords.shape[-1] != 2:
        raise MobileSAMError(
            f"point_coords must have shape (K, 2) of (x, y) pixels, or (N, K, 2) for N objects; got {coords.shape}."
        )
    labels = np.asarray(point_labels)
    if labels.shape != coords.shape[:-1]:
        raise MobileSAMError(
            f"point_labels must have one label per point: shape {coords.shape[:-1]} for point_coords of shape "
            f"{coords.shape}, got {labels.shape}."
        )
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise MobileSAMError(f"point_labels must be 1 (foreground) or 0 (background), got {np.unique(labels)}.")
    height, width = original_size
    outside = ~points_inside(coords, original_size)
    if outside.any():
        first = coords.reshape(-1, 2)[outside][0]
        raise MobileSAMError(
            f"Point (x={first[0]:g}, y={first[1]:g}) lies outside the {width}x{height} image; "
            "points are (x, y) pixel coordinates with 0 <= x <= width-1 and 0 <= y <= height-1."
        )
    batched = coords.ndim == 3
    if not batched:
        coords, labels = coords[None], labels[None]
    if coords.shape[1] == 0:
        return None, None, batched
    return coords, labels.astype(np.int64), batched


def _check_boxes(box, original_size):
    if box is None:
        return None, None
    boxes = _as_float_array(box, "box")
    if boxes.shape == (4,):
        batched, boxes = False, boxes[None]
    elif boxes.ndim == 2 and boxes.shape[1] == 4:
        batched = True
    else:
        raise MobileSAMError(
            f"box must have shape (4,) as (x0, y0, x1, y1), or (N, 4) for N objects; got {boxes.shape}."
        )
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise MobileSAMError(
            f"Box {_named_box(boxes[bad][0])} has x1 < x0 or y1 < y0; boxes are (x0, y0, x1, y1) with the "
            "top-left corner first."
        )
    outside = boxes_outside(boxes, original_size)
    if outside.any():
        height, width = original_size
        raise MobileSAMError(
            f"Box {_named_box(boxes[outside][0])} lies entirely outside the {width}x{height} image; boxes are "
            "(x0, y0, x1, y1) pixel coordinates, x from 0 to width-1 and y from 0 to height-1."
        )
    return boxes, batched


def _check_mask_input(mask_input):
    if mask_input is None:
        return None, None
    masks = _as_float_array(mask_input, "mask_input").astype(np.float32)
    if masks.shape == LOW_RES_SHAPE:
        return masks[None, None], False
    if masks.shape == (1, *LOW_RES_SHAPE):
        return masks[None], False
    if masks.ndim == 4 and masks.shape[1:] == (1, *LOW_RES_SHAPE):
        return masks, True
    raise MobileSAMError(
        f"mask_input must be the (1, 256, 256) low-res logits of an earlier predict call "
        f"(or (N, 1, 256, 256) batched); got {masks.shape}."
    )


def check_prompts(point_coords, point_labels, box, mask_input, original_size: tuple[int, int]) -> Prompts:
    """Validate and normalise prompts for an image of ``original_size`` ``(h, w)``."""
    coords, labels, points_batched = _check_points(point_coords, point_labels, original_size)
    boxes, boxes_batched = _check_boxes(box, original_size)
    masks, masks_batched = _check_mask_input(mask_input)
    if coords is None and boxes is None and masks is None:
        raise MobileSAMError(
            "No prompt given: pass point_coords with point_labels, a box, or a mask_input from an earlier call."
        )
    flags = {f for f in (points_batched, boxes_batched, masks_batched) if f is not None}
    given = [(n, len(a)) for n, a in (("point_coords", coords), ("box", boxes), ("mask_input", masks)) if a is not None]
    counts = {count for _, count in given}
    if len(flags) > 1 or len(counts) > 1:
        described = ", ".join(f"{name} for {count} object(s)" for name, count in given)
        raise MobileSAMError(
            f"Prompts disagree on the number of objects ({described}). For N objects pass boxes (N, 4), "
            "points (N, K, 2) with labels (N, K) and mask_input (N, 1, 256, 256); for one object, "
            "box (4,), points (K, 2), labels (K,)."
        )
    return Prompts(coords, labels, boxes, masks, batched=flags.pop())
