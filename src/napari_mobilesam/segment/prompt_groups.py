"""Prompts placed on a stack (napari coordinates), checked and grouped into the objects of each slice.

Coordinates follow napari's axis order: a point is ``(..., y, x)`` with one
value per axis of the labels (``(z, y, x)`` for a z-stack, ``(y, x)`` for an
image), e.g. the ``data`` of a napari Points layer; a box is the slice's
leading coordinates followed by ``(y0, x0, y1, x1)``, top-left corner first.
Coordinates are in pixels (data coordinates), rounded to the nearest slice on
leading axes.

Objects, per slice:

- every box is one object; points inside a box refine that object;
- every positive point outside all boxes is one object (with
  ``one_object_per_point=False`` they all form a single object instead);
- negative points outside all boxes apply to every point object of that slice.

:func:`group_prompts` applies the same rules as the Python API's
:func:`~napari_mobilesam.engine.prompts.check_prompts` (through it, for every
object, before any slice is encoded) plus those of a stack: one coordinate
per axis, slices inside the stack, and on each prompted slice something
that makes an object (negative points alone do not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..engine.prompts import check_prompts
from ..errors import MobileSAMError


@dataclass
class SliceObjects:
    """The prompts of one slice, grouped into objects: ``(x, y)`` pixels, boxes ``(x0, y0, x1, y1)``."""

    boxes: list[np.ndarray] = field(default_factory=list)
    box_points: list[list[tuple[float, float, int]]] = field(default_factory=list)  # (x, y, label) per box
    points: list[tuple[float, float, int]] = field(default_factory=list)  # outside every box

    @property
    def positives(self) -> list[tuple[float, float, int]]:
        return [p for p in self.points if p[2] == 1]

    @property
    def negatives(self) -> list[tuple[float, float, int]]:
        return [p for p in self.points if p[2] == 0]


def axis_names(ndim: int) -> list[str]:
    """Names of the axes of an ``ndim``-D label image in napari order: ``y, x``; ``z, y, x``; ``t, z, y, x``."""
    names = {2: ["y", "x"], 3: ["z", "y", "x"], 4: ["t", "z", "y", "x"]}.get(ndim)
    return names or [*(f"axis-{axis}" for axis in range(ndim - 2)), "y", "x"]


def _rows(values, width: int, name: str, columns: list[str], shape: tuple[int, ...]) -> np.ndarray:
    """``values`` as ``(N, width)`` finite float rows (one row may come alone), or one clear error."""
    try:
        rows = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MobileSAMError(f"{name} must be numbers, got {values!r}.") from None
    if rows.ndim == 1 and rows.size == width:
        rows = rows[None]
    if rows.size == 0:
        return np.zeros((0, width))
    if rows.ndim != 2 or rows.shape[1] != width:
        raise MobileSAMError(
            f"{name} must have {width} coordinates per row, ({', '.join(columns)}), for labels of shape {shape}; "
            f"got an array of shape {rows.shape}. Give one row per prompt, in the stack's axis order."
        )
    if not np.isfinite(rows).all():
        raise MobileSAMError(f"{name} contain NaN or infinite values; give finite pixel coordinates.")
    return rows


def _slice_of(coords: np.ndarray, leading: tuple[int, ...], what: str) -> tuple[int, ...]:
    index = tuple(int(round(float(c))) for c in coords)
    if any(not 0 <= i < n for i, n in zip(index, leading, strict=True)):
        raise MobileSAMError(f"A {what} lies on slice {index}, outside the stack's leading shape {leading}.")
    return index


def _where(index: tuple[int, ...], names: list[str]) -> str:
    """``"slice z=3"`` (``"the image"`` for a 2D one), for messages."""
    if not index:
        return "the image"
    return "slice " + ", ".join(f"{name}={i}" for name, i in zip(names, index, strict=False))


def group_prompts(shape, points=None, labels=None, boxes=None) -> dict[tuple[int, ...], SliceObjects]:
    """The objects of every prompted slice of labels of ``shape`` ``(..., Y, X)``, checked (see the module doc).

    ``points`` ``(N, ndim)``, ``labels`` ``(N,)`` 1/0 (default: all 1), ``boxes``
    ``(M, ndim + 2)``, all in napari order. Raises :class:`MobileSAMError`
    for the first prompt that breaks a rule; returns ``{slice index: SliceObjects}``.
    """
    shape = tuple(int(s) for s in shape)
    leading, plane = shape[:-2], shape[-2:]
    lead, names = len(leading), axis_names(len(shape))
    groups: dict[tuple[int, ...], SliceObjects] = {}
    if boxes is not None:
        columns = [*names[:lead], "y0", "x0", "y1", "x1"]
        for number, row in enumerate(_rows(boxes, lead + 4, "boxes", columns, shape), start=1):
            y0, x0, y1, x1 = row[lead:]
            if y1 < y0 or x1 < x0:
                given = ", ".join(f"{c}={v:g}" for c, v in zip(columns, row, strict=True))
                raise MobileSAMError(
                    f"Box {number} ({given}) has y1 < y0 or x1 < x0; give the top-left corner (y0, x0) first."
                )
            objects = groups.setdefault(_slice_of(row[:lead], leading, "box"), SliceObjects())
            objects.boxes.append(np.array([x0, y0, x1, y1]))
            objects.box_points.append([])
    if points is not None:
        rows = _rows(points, lead + 2, "points", names, shape)
        polarity = np.ones(len(rows), dtype=np.int64) if labels is None else np.asarray(labels).astype(np.int64).ravel()
        if len(polarity) != len(rows):
            raise MobileSAMError(f"Got {len(rows)} points but {len(polarity)} labels; give one label (1 or 0) per point.")
        if not np.isin(polarity, (0, 1)).all():
            raise MobileSAMError(f"Point labels must be 1 (positive) or 0 (negative), got {np.unique(polarity)}.")
        for row, label in zip(rows, polarity, strict=True):
            objects = groups.setdefault(_slice_of(row[:lead], leading, "point"), SliceObjects())
            y, x = row[lead:]
            inside = [i for i, b in enumerate(objects.boxes) if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
            if inside:
                objects.box_points[inside[0]].append((x, y, int(label)))
            else:
                objects.points.append((x, y, int(label)))
    for index, objects in groups.items():
        _check_slice(objects, plane, _where(index, names))
    return groups


def _check_slice(objects: SliceObjects, plane: tuple[int, int], where: str) -> None:
    """Every object of one slice through the API's prompt check; negative points alone are refused."""
    if objects.negatives and not objects.positives:
        # They would refine nothing: a typo in a polarity column, or points left on the wrong slice.
        count = len(objects.negatives)
        if not objects.boxes:
            raise MobileSAMError(
                f"On {where} there are only negative points ({count}): a negative point says where an object is "
                "not, so it needs a positive point or a box on its slice. Add one, or remove those points."
            )
        raise MobileSAMError(
            f"On {where}, {count} negative point(s) lie outside every box and no positive point is there for them "
            "to refine. Move them into a box, add a positive point, or remove them."
        )
    try:
        for box, refining in zip(objects.boxes, objects.box_points, strict=True):
            coords, labels = _as_prompt(refining)
            check_prompts(coords, labels, box, None, plane)
        if objects.points:
            check_prompts(*_as_prompt(objects.points), None, None, plane)
    except MobileSAMError as error:
        raise MobileSAMError(f"On {where}: {error}") from None


def _as_prompt(points: list[tuple[float, float, int]]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``[(x, y, label)]`` as ``(point_coords, point_labels)`` for :func:`check_prompts` (``None`` when empty)."""
    if not points:
        return None, None
    return np.array([(x, y) for x, y, _ in points]), np.array([label for _, _, label in points])
