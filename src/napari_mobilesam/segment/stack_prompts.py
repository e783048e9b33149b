"""Prompts placed on a stack (napari coordinates) to a label image.

Coordinates follow napari's axis order: a point is ``(..., y, x)`` with one
value per axis of the labels (``(z, y, x)`` for a z-stack, ``(y, x)`` for an
image), e.g. the ``data`` of a napari Points layer; a box is the slice's
leading coordinates followed by ``(y0, x0, y1, x1)``. Coordinates are in
pixels (data coordinates), rounded to the nearest slice on leading axes.

Objects, per slice:

- every box is one object; points inside a box refine that object;
- every positive point outside all boxes is one object (with
  ``one_object_per_point=False`` they all form a single object instead);
- negative points outside all boxes apply to every point object of that slice.

Ids run ``1..N`` in slice order (C order), then box objects before point
objects, each in input order. A later object paints only background, so
objects never overwrite one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..engine.mask_resize import resize_logits
from ..engine.prompts import check_prompts
from ..errors import MobileSAMError
from .stack import is_rgb, leading_shape


@dataclass
class _SliceObjects:
    boxes: list[np.ndarray] = field(default_factory=list)  # (x0, y0, x1, y1)
    box_points: list[list[tuple[float, float, int]]] = field(default_factory=list)  # (x, y, label)
    points: list[tuple[float, float, int]] = field(default_factory=list)


def _slice_of(coords: np.ndarray, leading: tuple[int, ...], what: str) -> tuple[int, ...]:
    index = tuple(int(round(float(c))) for c in coords)
    if any(not 0 <= i < n for i, n in zip(index, leading, strict=True)):
        raise MobileSAMError(f"A {what} lies on slice {index}, outside the stack's leading shape {leading}.")
    return index


def _group(points, labels, boxes, leading: tuple[int, ...]) -> dict[tuple[int, ...], _SliceObjects]:
    lead = len(leading)
    groups: dict[tuple[int, ...], _SliceObjects] = {}
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, lead + 4)
        if not np.isfinite(boxes).all():
            raise MobileSAMError("boxes contain NaN or infinite values.")
        for row in boxes:
            y0, x0, y1, x1 = row[lead:]
            box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)])
            objects = groups.setdefault(_slice_of(row[:lead], leading, "box"), _SliceObjects())
            objects.boxes.append(box)
            objects.box_points.append([])
    if points is not None:
        points = np.asarray(points, dtype=np.float64).reshape(-1, lead + 2)
        if not np.isfinite(points).all():
            raise MobileSAMError("points contain NaN or infinite values.")
        polarity = (
            np.ones(len(points), dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64).ravel()
        )
        if len(polarity) != len(points):
            raise MobileSAMError(
                f"Got {len(points)} points but {len(polarity)} labels; give one label (1 or 0) per point."
            )
        for row, label in zip(points, polarity, strict=True):
            objects = groups.setdefault(_slice_of(row[:lead], leading, "point"), _SliceObjects())
            y, x = row[lead:]
            inside = [i for i, b in enumerate(objects.boxes) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
            if inside:
                objects.box_points[inside[0]].append((x, y, int(label)))
            else:
                objects.points.append((x, y, int(label)))
    return groups


def _decode(predictor, point_sets, box=None) -> np.ndarray:
    """Best mask of one object: its points ``[(x, y, label)]`` and optional box."""
    coords = np.array([(x, y) for x, y, _ in point_sets], dtype=np.float64).reshape(-1, 2)
    labels = np.array([label for _, _, label in point_sets], dtype=np.int64)
    kwargs = {"box": box}
    if len(coords):
        kwargs.update(point_coords=coords, point_labels=labels)
    # One positive click is ambiguous: take the best of SAM's three candidates,
    # and bring only that one to full size.
    multimask = box is None and int(labels.sum()) == 1 and len(labels) == 1
    prompts = check_prompts(kwargs.get("point_coords"), kwargs.get("point_labels"), box, None, predictor.original_size)
    low_res, scores = predictor.decode_low_res(prompts, multimask)
    best = low_res[0, int(scores[0].argmax())]
    return (resize_logits(best, predictor.input_size, predictor.original_size) > predictor.model.mask_threshold).numpy()


def segment_from_prompts(
    stack,
    points_zyx=None,
    labels=None,
    boxes=None,
    model=None,
    *,
    cache=None,
    rgb: bool | None = None,
    contrast_limits: tuple[float, float] | None = None,
    image_id: str | None = None,
    one_object_per_point: bool = True,
    progress: Callable[[int, int], bool | None] | None = None,
    predictor=None,
) -> np.ndarray:
    """Label image from points and boxes placed on a stack (see the module doc for the rules).

    Args:
        stack: ``(..., Y, X)`` grey or ``(..., Y, X, 3|4)`` colour; numpy, dask or zarr.
        points_zyx: ``(N, ndim)`` points in napari order, e.g. ``viewer.layers["points"].data``.
        labels: ``(N,)`` 1 = on the object, 0 = background (default: all 1).
        boxes: ``(M, ndim - 2 + 4)`` rows of leading coordinates then ``y0, x0, y1, x1``.
        model: a loaded MobileSAM (default: :func:`~napari_mobilesam.load_model`).
        cache: embedding cache (default: the shared one).
        progress: ``progress(done, total)`` after each prompted slice; return ``False`` to stop.

    Returns:
        ``int32`` labels of the stack's spatial shape; 0 is background.

    Example::

        labels = segment_from_prompts(zyx_stack, points_zyx=[[0, 30, 40], [1, 10, 12]], model=model)
        viewer.add_labels(labels)
    """
    from ..engine.session import resolve_cache, resolve_predictor

    if points_zyx is None and boxes is None:
        raise MobileSAMError("Give points_zyx and/or boxes to segment from prompts.")
    predictor = resolve_predictor(model, predictor)
    cache = resolve_cache(cache)
    rgb = is_rgb(stack, rgb)
    leading = leading_shape(stack, rgb)
    spatial = tuple(stack.shape[-3:-1]) if rgb else tuple(stack.shape[-2:])
    groups = _group(points_zyx, labels, boxes, leading)
    n_slices = int(np.prod(leading)) if leading else 1
    out = np.zeros((*leading, *spatial), dtype=np.int32)
    next_id = 1
    for done, index in enumerate(sorted(groups), start=1):
        objects = groups[index]
        plane = np.asarray(stack[index])
        flat = int(np.ravel_multi_index(index, leading)) if leading else 0
        embedding, _ = cache.embedding(
            predictor, plane, contrast_limits=contrast_limits, image_id=image_id, slice_index=flat, n_slices=n_slices
        )
        predictor.set_embedding(embedding)
        masks = [_decode(predictor, pts, box) for box, pts in zip(objects.boxes, objects.box_points, strict=True)]
        negatives = [p for p in objects.points if p[2] == 0]
        positives = [p for p in objects.points if p[2] == 1]
        if positives and one_object_per_point:
            masks += [_decode(predictor, [p, *negatives]) for p in positives]
        elif positives:
            masks.append(_decode(predictor, objects.points))
        target = out[index]
        for mask in masks:
            free = mask & (target == 0)
            if free.any():
                target[free] = next_id
                next_id += 1
        if progress is not None and progress(done, len(groups)) is False:
            break
    return out
