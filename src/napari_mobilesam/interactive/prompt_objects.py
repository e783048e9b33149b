"""From the prompts on a plane to the objects to segment (pure numpy, no napari).

- Points alone are one object.
- Each box is one object; the points inside a box belong to it (to the first
  such box when boxes overlap).
- With boxes, points outside every box form one more object if one of them is positive.

All coordinates are ``(x, y)`` pixels of the plane; boxes are ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class ObjectPrompt:
    """The prompts of one object: ``(K, 2)`` points with ``(K,)`` labels (1 positive, 0 negative), and a box or None."""

    point_coords: np.ndarray
    point_labels: np.ndarray
    box: np.ndarray | None

    @property
    def n_points(self) -> int:
        return len(self.point_coords)

    def signature(self) -> tuple:
        """What identifies this object between two prompt changes (its box, or that it has none)."""
        return ("box", tuple(np.round(self.box, 3))) if self.box is not None else ("points",)


def objects_from_prompts(points_xy, positive, boxes, require_positive: bool = True) -> list[ObjectPrompt]:
    """Group ``(K, 2)`` points with ``(K,)`` bool polarity and ``(N, 4)`` boxes into objects (module doc).

    ``require_positive=False``: points outside every box are one object even if all are
    negative (refining an existing mask, which the negative points cut away from).
    """
    points_xy = np.asarray(points_xy, dtype=float).reshape(-1, 2)
    labels = np.asarray(positive, dtype=bool).reshape(-1).astype(np.int64)
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if len(boxes) == 0:
        if len(points_xy) == 0 or (require_positive and not labels.any()):
            return []
        return [ObjectPrompt(points_xy, labels, None)]
    owner = np.full(len(points_xy), -1)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        inside = (points_xy[:, 0] >= x0) & (points_xy[:, 0] <= x1) & (points_xy[:, 1] >= y0) & (points_xy[:, 1] <= y1)
        owner[(owner == -1) & inside] = index
    objects = [ObjectPrompt(points_xy[owner == i], labels[owner == i], box) for i, box in enumerate(boxes)]
    free = owner == -1
    if labels[free].any() or (not require_positive and free.any()):
        objects.append(ObjectPrompt(points_xy[free], labels[free], None))
    return objects


def decode_groups(objects: list[ObjectPrompt]) -> list[list[int]]:
    """Indices of objects that can be decoded as one batch: same number of points, all with or all without a box."""
    groups: dict[tuple[int, bool], list[int]] = {}
    for index, obj in enumerate(objects):
        groups.setdefault((obj.n_points, obj.box is not None), []).append(index)
    return list(groups.values())
