"""APG's prompts: one point per seed object of micro-sam's decoder maps, and boxes around masks.

micro-sam 1.8.14's ``_derive_point_prompts`` and ``_derive_box_prompts``
(``micro_sam/instance_segmentation.py``), step by step:

- seeds: pixels where the centre distance < ``center_distance_threshold``
  and the boundary distance < ``boundary_distance_threshold``, minus those
  whose foreground < ``foreground_threshold`` (the maps as the decoder gave
  them, no smoothing; note ``<``, so a foreground equal to the threshold
  counts, unlike AIS's ``>``); 4-connected groups of seed pixels are seed objects;
- each seed object's point is its most central pixel: the maximum, inside the
  object, of the Euclidean distance to the nearest pixel just outside any seed
  object (skimage's ``find_boundaries(mode="outer")``) or to the image's
  outermost rows and columns; ties go to the first pixel in raster order
  within the object's bounding box;
- a box around a mask is extended by 1 % of its width and height on each
  side and clipped to the image.

Two differences, both deliberate: micro-sam takes the distance blockwise
(512x512 blocks, 16 px halo), exact only near block borders up to the halo;
here it is exact everywhere (the same for images up to 512x512). And
micro-sam clips a box's right edge to the image height and its bottom edge
to the width (the axes swapped); here x is clipped to the width and y to the
height, which is the same for square images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

# 4-connectivity: elf.parallel.label's only connectivity, which micro-sam uses for the seed objects.
_FOUR = ndi.generate_binary_structure(2, 1)
# micro-sam's _derive_box_prompts: box_extension.
BOX_EXTENSION = 0.01


def seed_objects(maps: np.ndarray, foreground_threshold: float, center_threshold: float, boundary_threshold: float):
    """``(H, W)`` int32 labels of the seed objects of ``(3, H, W)`` maps, and their count."""
    foreground, center_distances, boundary_distances = maps
    seeds = (center_distances < center_threshold) & (boundary_distances < boundary_threshold)
    seeds &= ~(foreground < foreground_threshold)
    return ndi.label(seeds, structure=_FOUR, output=np.int32)


def central_points(objects: np.ndarray, count: int) -> np.ndarray:
    """``(count, 2)`` ``(x, y)`` pixel coordinates: the most central pixel of each object ``1..count``."""
    from skimage.segmentation import find_boundaries

    if count == 0:
        return np.zeros((0, 2), dtype=np.float64)
    free = ~find_boundaries(objects, mode="outer")
    free[0, :] = free[-1, :] = free[:, 0] = free[:, -1] = False
    distances = ndi.distance_transform_edt(free)
    points = np.zeros((count, 2), dtype=np.float64)
    for index, window in enumerate(ndi.find_objects(objects, max_label=count)):
        inside = objects[window] == index + 1
        # np.argmax: the first maximum in raster order of the bounding box, as micro-sam's.
        row, col = np.unravel_index(np.argmax(np.where(inside, distances[window], 0.0)), inside.shape)
        points[index] = (window[1].start + col, window[0].start + row)
    return points


def point_prompts(maps: np.ndarray, foreground_threshold: float, center_threshold: float, boundary_threshold: float):
    """``(N, 2)`` ``(x, y)`` points, one per seed object of the maps (see the module doc), in label order."""
    objects, count = seed_objects(maps, foreground_threshold, center_threshold, boundary_threshold)
    return central_points(objects, count)


def extended_boxes(boxes: np.ndarray, shape: tuple[int, int], extension: float = BOX_EXTENSION) -> np.ndarray:
    """Box prompts around masks: ``(N, 4)`` ``(x0, y0, x1, y1)`` float pixels.

    Args:
        boxes: ``(N, 4)`` integer boxes of the masks with exclusive ends (an empty mask: all zeros).
        shape: ``(height, width)`` of the image.
        extension: grow each side by this fraction of the width or height.

    micro-sam measures a mask's box with inclusive ends (``x1 = last column``)
    and its width as ``x1 - x0``; so does this, hence the ``- 1``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    height, width = shape
    x0, y0 = boxes[:, 0], boxes[:, 1]
    empty = boxes[:, 2] <= boxes[:, 0]
    x1 = np.where(empty, 0.0, boxes[:, 2] - 1)
    y1 = np.where(empty, 0.0, boxes[:, 3] - 1)
    w, h = x1 - x0, y1 - y0
    return np.stack(
        [
            np.maximum(x0 - w * extension, 0.0),
            np.maximum(y0 - h * extension, 0.0),
            np.minimum(x1 + w * extension, width),
            np.minimum(y1 + h * extension, height),
        ],
        axis=1,
    )
