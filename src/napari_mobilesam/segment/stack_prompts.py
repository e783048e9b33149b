"""Prompts placed on a stack (napari coordinates) to a label image.

The rules -- coordinates in napari's axis order, which prompts form which
object, what is refused -- are :mod:`napari_mobilesam.segment.prompt_groups`'s;
every prompt is checked there before any slice is encoded.

Ids run ``1..N`` in slice order (C order), then box objects before point
objects, each in input order. A later object paints only background, so
objects never overwrite one another.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from ..engine.mask_resize import resize_logits
from ..engine.prompts import check_prompts
from ..errors import MobileSAMError
from .prompt_groups import group_prompts
from .stack import is_rgb, leading_shape, plane_shape


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
    rgb = is_rgb(stack, rgb)
    leading = leading_shape(stack, rgb)
    spatial = plane_shape(stack, rgb)
    groups = group_prompts((*leading, *spatial), points_zyx, labels, boxes)  # every prompt checked before any work
    out = np.zeros((*leading, *spatial), dtype=np.int32)
    if not groups:
        warnings.warn("No prompts were given (points_zyx and boxes are empty): the labels are all 0.", stacklevel=2)
        return out
    predictor = resolve_predictor(model, predictor)
    cache = resolve_cache(cache)
    n_slices = int(np.prod(leading)) if leading else 1
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
        negatives, positives = objects.negatives, objects.positives
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
