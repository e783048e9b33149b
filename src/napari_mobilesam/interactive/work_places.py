"""Where the user's work is on a stack: the slices that hold accepted labels or pending prompts.

Pure numpy: the widget reads its layers' arrays and shows the names in its
status (``"labels on z=1, 3 · prompts on z=7"``), so work left on another
slice is found again.
"""

from __future__ import annotations

import numpy as np

from .planes import describe_steps


def slices_with_labels(data: np.ndarray, steps: tuple) -> list[str]:
    """Names (``"z=3"``) of the planes of ``data`` along the axes not displayed that hold a label.

    ``steps``: the plane shown (see :mod:`napari_mobilesam.interactive.planes`);
    ``data`` has one axis per step.
    """
    leading = [axis for axis, step in enumerate(steps) if step is not None]
    if not leading:
        return []
    displayed = [axis for axis, step in enumerate(steps) if step is None]
    moved = np.moveaxis(data, leading + displayed, list(range(data.ndim)))
    sizes = [data.shape[axis] for axis in leading]
    flat = moved.reshape(int(np.prod(sizes)), -1)
    names = []
    for index in np.flatnonzero(flat.any(axis=1)):
        full = [None] * len(steps)
        for axis, value in zip(leading, np.unravel_index(int(index), sizes), strict=True):
            full[axis] = int(value)
        names.append(describe_steps(tuple(full)))
    return names


def slices_with_prompts(coordinate_sets, steps: tuple) -> list[str]:
    """Names of the planes that ``(K, D)`` prompt coordinates (data coordinates, one set per layer) lie on."""
    found = set()
    for coords in coordinate_sets:
        coords = np.asarray(coords, dtype=float)
        if coords.size == 0 or coords.shape[-1] != len(steps):
            continue
        for row in np.round(coords.reshape(-1, len(steps))).astype(int):
            found.add(tuple(int(v) if s is not None else None for v, s in zip(row, steps, strict=True)))
    ordered = sorted(found, key=lambda place: tuple(v if v is not None else -1 for v in place))
    return [describe_steps(place) for place in ordered]
