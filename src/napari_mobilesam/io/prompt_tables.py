"""napari's Points and Shapes CSV files (``File > Save Selected Layers``) as prompts.

Points: one row per point with napari's ``axis-0 ... axis-N`` columns (or the
bare coordinate columns), and an optional polarity column (``label``,
``positive``, ``polarity`` ...: 1/0, true/false, positive/negative). Boxes: a
Shapes CSV of rectangles, one box per shape. Coordinates stay in napari's
axis order (``(z, y, x)``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import MobileSAMError

_POSITIVE = {"1", "1.0", "true", "t", "yes", "y", "positive", "foreground", "fg", "+", "+1", "include"}
_NEGATIVE = {"0", "0.0", "-1", "-1.0", "false", "f", "no", "n", "negative", "background", "bg", "-", "exclude"}


def read_points_csv(path: str | os.PathLike, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and their polarity from a CSV: napari's Points format, or named axes.

    Columns ``axis-0 .. axis-{ndim-1}`` (what napari writes for a Points
    layer: data coordinates, the stack's axis order, e.g. ``(z, y, x)``), or
    ``z, y, x`` / ``y, x``. A ``label`` or ``positive`` column gives each
    point's polarity (1/0, true/false, positive/negative, foreground/background);
    without one every point is positive. Other columns (``index``, features) are ignored.

    Returns ``(points (N, ndim) float, labels (N,) int: 1 positive, 0 negative)``.

    Example:

    >>> _ = (tmp / "points.csv").write_text("index,axis-0,axis-1,axis-2,positive\\n0,1,20,30,True\\n1,1,5,5,False\\n")
    >>> points, labels = read_points_csv(tmp / "points.csv", ndim=3)
    >>> points.tolist(), labels.tolist()
    ([[1.0, 20.0, 30.0], [1.0, 5.0, 5.0]], [1, 0])
    """
    header, rows = _read_table(path, "points")
    columns = _coordinate_columns(header, ndim, path)
    polarity = next((header.index(name) for name in ("label", "positive", "polarity") if name in header), None)
    points = np.empty((len(rows), ndim), dtype=np.float64)
    labels = np.ones(len(rows), dtype=np.int64)
    for number, row in enumerate(rows):
        try:
            points[number] = [float(row[column]) for column in columns]
        except (ValueError, IndexError):
            raise MobileSAMError(f"{path}, row {number + 2}: the coordinates are not numbers: {row}.") from None
        if polarity is not None:
            labels[number] = _polarity(row[polarity] if polarity < len(row) else "", path, number)
    if not np.isfinite(points).all():
        raise MobileSAMError(f"{path} has coordinates that are not finite numbers.")
    return points, labels


def read_boxes_csv(path: str | os.PathLike, ndim: int) -> np.ndarray:
    """Boxes from a CSV: napari's Shapes format (rectangles), or one box per row.

    napari's Shapes CSV (``index, shape-type, vertex-index, axis-0, ...``)
    gives each shape's bounding box in ``(y, x)`` on the slice of its first
    vertex. A plain table has one box per row: the slice's leading
    coordinates (``z``, or ``axis-0 .. axis-{ndim-3}``) and ``y0, x0, y1, x1``.

    Returns ``(N, ndim + 2)`` float: leading coordinates (e.g. ``z``) then
    ``y0, x0, y1, x1`` (pixels, corners of the box).
    """
    header, rows = _read_table(path, "boxes")
    if {"index", "shape-type", "vertex-index"} <= set(header):
        columns = _coordinate_columns(header, ndim, path)
        shapes: dict[str, list[list[float]]] = {}
        for number, row in enumerate(rows):
            try:
                shapes.setdefault(row[header.index("index")], []).append([float(row[c]) for c in columns])
            except (ValueError, IndexError):
                raise MobileSAMError(f"{path}, row {number + 2}: the coordinates are not numbers: {row}.") from None
        boxes = []
        for vertices in shapes.values():
            vertices = np.asarray(vertices)
            lead = vertices[0, : ndim - 2]
            low, high = vertices[:, -2:].min(axis=0), vertices[:, -2:].max(axis=0)
            boxes.append([*lead, low[0], low[1], high[0], high[1]])
        return np.asarray(boxes, dtype=np.float64).reshape(-1, ndim + 2)
    lead_names = _lead_names(header, ndim - 2, path)
    missing = [name for name in ("y0", "x0", "y1", "x1") if name not in header]
    if missing:
        raise MobileSAMError(
            f"{path} is not a boxes table: expected napari's Shapes CSV or columns "
            f"{', '.join([*lead_names, 'y0', 'x0', 'y1', 'x1'])} (missing {', '.join(missing)})."
        )
    columns = [header.index(name) for name in (*lead_names, "y0", "x0", "y1", "x1")]
    try:
        return np.asarray([[float(row[c]) for c in columns] for row in rows], dtype=np.float64).reshape(-1, ndim + 2)
    except (ValueError, IndexError):
        raise MobileSAMError(f"{path} has box coordinates that are not numbers.") from None


def _read_table(path, what: str) -> tuple[list[str], list[list[str]]]:
    path = Path(path).expanduser()
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            table = [row for row in csv.reader(file) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise MobileSAMError(f"The {what} file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise MobileSAMError(f"Cannot read the {what} file {path} as CSV ({error}).") from None
    if not table:
        raise MobileSAMError(f"The {what} file {path} is empty.")
    header = [name.strip().lower() for name in table[0]]
    return header, [[cell.strip() for cell in row] for row in table[1:]]


def _coordinate_columns(header: list[str], ndim: int, path) -> list[int]:
    napari_axes = [name for name in header if name.startswith("axis-")]
    if napari_axes:
        if len(napari_axes) != ndim:
            raise MobileSAMError(
                f"{path} has {len(napari_axes)} coordinate columns ({', '.join(napari_axes)}) but the image has "
                f"{ndim} axes; save the layer from a viewer showing this image (its points then have {ndim} coordinates)."
            )
        return [header.index(f"axis-{axis}") for axis in range(ndim)]
    names = [*_lead_names(header, ndim - 2, path), "y", "x"]
    missing = [name for name in names if name not in header]
    if missing:
        raise MobileSAMError(
            f"{path} has no coordinate columns: expected napari's axis-0 .. axis-{ndim - 1}, or {', '.join(names)}."
        )
    return [header.index(name) for name in names]


def _lead_names(header: list[str], count: int, path) -> list[str]:
    """Names of the leading (slice) coordinates: ``z`` for a 3D stack, ``t, z`` for 4D, else ``axis-k``."""
    if count == 0:
        return []
    guesses = {1: ["z"], 2: ["t", "z"]}.get(count)
    if guesses and all(name in header for name in guesses):
        return guesses
    return [f"axis-{axis}" for axis in range(count)]


def _polarity(value: str, path, number: int) -> int:
    value = value.strip().lower()
    if value in _POSITIVE:
        return 1
    if value in _NEGATIVE:
        return 0
    raise MobileSAMError(
        f"{path}, row {number + 2}: cannot tell whether {value!r} is a positive or a negative point; "
        "use 1/0, true/false or positive/negative."
    )
