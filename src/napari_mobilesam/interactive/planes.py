"""The 2D plane of an nD image that is on screen, and coordinates on it.

Pure numpy, no napari: the widget turns a layer and the viewer's dims into
these arguments, so every rule here is testable without a viewer.

Words used throughout:

- **spatial axes**: the data axes of an image without the RGB(A) channel axis,
  e.g. ``(t, z, y, x)``;
- **displayed**: the two data axes shown on screen, in data order ``(row_axis, column_axis)``;
- **steps**: one entry per spatial axis, the integer index of the plane on each
  axis that is not displayed and ``None`` on the two displayed axes, e.g.
  ``(3, 12, None, None)`` for ``t=3, z=12``;
- **plane coordinates**: ``(x, y)`` pixels of the 2D plane as the predictor
  expects them (x along the columns), on the multiscale level that was read.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MobileSAMError

# A multiscale level is read when its longest displayed side is at least this (the model input size).
TARGET_LEVEL_SIZE = 1024

Steps = tuple  # tuple[int | None, ...]


def plane_steps(data_point: Sequence[float], displayed: Sequence[int], shape: Sequence[int]) -> Steps:
    """The plane through ``data_point``: rounded, clipped index on each axis not in ``displayed``.

    ``data_point`` and ``shape`` cover the spatial axes (no channel axis);
    ``displayed`` names the two axes on screen. Returns the *steps* (see the module doc).
    """
    shape = tuple(int(s) for s in shape)
    displayed = _check_displayed(displayed, len(shape))
    if len(data_point) != len(shape):
        raise MobileSAMError(f"A point with {len(data_point)} coordinates does not fit a {len(shape)}D image.")
    steps = []
    for axis, (coordinate, size) in enumerate(zip(data_point, shape, strict=True)):
        if axis in displayed:
            steps.append(None)
        else:
            steps.append(int(np.clip(np.round(float(coordinate)), 0, size - 1)))
    return tuple(steps)


def _check_displayed(displayed: Sequence[int], ndim: int) -> tuple[int, int]:
    displayed = tuple(int(a) for a in displayed)
    if len(displayed) != 2 or len(set(displayed)) != 2 or not all(0 <= a < ndim for a in displayed):
        raise MobileSAMError(
            f"Segmentation works on a 2D view: expected two displayed axes of a {ndim}D image, got {displayed}. "
            "Switch the viewer to 2D (the 2D/3D button) first."
        )
    return displayed


def describe_steps(steps: Steps) -> str:
    """E.g. ``"z=12"``, ``"t=3, z=12"`` or ``"2D"`` (axis names counted from the end: x, y, z, t)."""
    names = ["x", "y", "z", "t"][: len(steps)][::-1]
    names = [f"axis {i}" for i in range(len(steps) - len(names))] + names
    parts = [f"{names[axis]}={step}" for axis, step in enumerate(steps) if step is not None]
    return ", ".join(parts) if parts else "2D"


def displayed_axes(steps: Steps) -> tuple[int, int]:
    """``(row_axis, column_axis)`` in data-axis order (the axes whose step is ``None``)."""
    axes = tuple(axis for axis, step in enumerate(steps) if step is None)
    if len(axes) != 2:
        raise MobileSAMError(f"Steps {steps} must leave exactly two axes displayed.")
    return axes


def plane_index(steps: Steps, factors: Sequence[float] | None = None, rgb: bool = False) -> tuple:
    """Index into the image data (or a multiscale level ``factors`` times smaller) that reads the plane."""
    index = []
    for axis, step in enumerate(steps):
        if step is None:
            index.append(slice(None))
        else:
            factor = 1.0 if factors is None else float(factors[axis])
            index.append(int(np.floor((step + 0.5) / factor)))
    if rgb:
        index.append(slice(None))
    return tuple(index)


def read_plane(data, steps: Steps, factors: Sequence[float] | None = None, rgb: bool = False) -> np.ndarray:
    """Read only the plane at ``steps`` from ``data`` (numpy, dask, zarr...) as a numpy array.

    Returns ``(H, W)``, or ``(H, W, C)`` for RGB(A): rows along the lower displayed axis. A transposed
    view (napari's Ctrl+T) changes only how the plane is drawn, not how it is read or written.
    """
    from ..engine.preprocessing import check_plane_size

    height, width = (int(data.shape[axis]) for axis in displayed_axes(steps))
    check_plane_size(height, width)  # a plane too large to segment is refused before it is read
    plane = np.asarray(data[plane_index(steps, factors, rgb)])
    if plane.ndim != (3 if rgb else 2):
        raise MobileSAMError(f"Reading one plane gave an array of shape {plane.shape}; expected a 2D plane.")
    return plane


def slice_number(steps: Steps, shape: Sequence[int]) -> tuple[int, int]:
    """``(slice_index, n_slices)``: the plane's position among all planes of this view, C order.

    E.g. ``t=1, z=2`` of a ``(2, 5, y, x)`` stack is slice 7 of 10. A 2D image is slice 0 of 1.
    """
    sizes = [int(size) for size, step in zip(shape, steps, strict=True) if step is not None]
    indices = [int(step) for step in steps if step is not None]
    if not sizes:
        return 0, 1
    return int(np.ravel_multi_index(indices, sizes)), int(np.prod(sizes))


def neighbour_steps(steps: Steps, shape: Sequence[int], distance: int = 1) -> list[Steps]:
    """Planes ``distance`` away on the last axis that is not displayed (``z +- 1`` of a ``(t, z, y, x)`` stack)."""
    moving = [axis for axis, step in enumerate(steps) if step is not None]
    if not moving:
        return []
    axis = moving[-1]
    neighbours = []
    for offset in (distance, -distance):
        step = steps[axis] + offset
        if 0 <= step < int(shape[axis]):
            neighbours.append(tuple(step if a == axis else s for a, s in enumerate(steps)))
    return neighbours


# -- multiscale ------------------------------------------------------------------


def choose_level(
    level_shapes: Sequence[Sequence[int]], displayed: Sequence[int], target: int = TARGET_LEVEL_SIZE
) -> int:
    """The multiscale level to segment: the smallest whose longest displayed side is still >= ``target``.

    ``level_shapes`` go from full resolution (level 0) to coarsest. When even
    level 0 is smaller than ``target``, level 0.
    """
    best, best_side = 0, None
    for level, shape in enumerate(level_shapes):
        side = max(int(shape[axis]) for axis in displayed)
        if side >= target and (best_side is None or side < best_side):
            best, best_side = level, side
    return best


def downsample_factors(full_shape: Sequence[int], level_shape: Sequence[int]) -> np.ndarray:
    """How many full-resolution pixels one pixel of a level covers, per axis (1.0 for level 0)."""
    return np.asarray(full_shape, dtype=float) / np.asarray(level_shape, dtype=float)


# -- coordinates -----------------------------------------------------------------


def world_to_data(world, scale: Sequence[float], translate: Sequence[float], affine=None) -> np.ndarray:
    """World coordinates ``(..., D)`` to data coordinates of a layer, axis order as the data.

    napari maps data to world as ``affine(scale * data + translate)``;
    ``affine`` is the layer's ``(D+1, D+1)`` homogeneous matrix (``layer.affine.affine_matrix``)
    or ``None`` for the identity. napari applies a layer's ``rotate`` and ``shear``
    too; ``napari_mobilesam._qt.layer_plane.world_affine`` folds them into ``affine``.
    """
    world = np.asarray(world, dtype=float)
    scale = np.asarray(scale, dtype=float)
    translate = np.asarray(translate, dtype=float)
    if affine is not None:
        matrix = np.linalg.inv(np.asarray(affine, dtype=float))
        world = world @ matrix[:-1, :-1].T + matrix[:-1, -1]
    return (world - translate) / scale


def data_to_world(data, scale: Sequence[float], translate: Sequence[float], affine=None) -> np.ndarray:
    """The inverse of :func:`world_to_data`."""
    world = np.asarray(data, dtype=float) * np.asarray(scale, dtype=float) + np.asarray(translate, dtype=float)
    if affine is not None:
        matrix = np.asarray(affine, dtype=float)
        world = world @ matrix[:-1, :-1].T + matrix[:-1, -1]
    return world


def on_plane(data_coords, steps: Steps) -> np.ndarray:
    """``(K,)`` bool: which of the ``(K, D)`` data coordinates lie on the plane (non-displayed axes rounded)."""
    coords = np.asarray(data_coords, dtype=float).reshape(-1, len(steps))
    keep = np.ones(len(coords), dtype=bool)
    for axis, step in enumerate(steps):
        if step is not None:
            keep &= np.round(coords[:, axis]) == step
    return keep


def to_plane_xy(data_coords, steps: Steps, factors: Sequence[float] | None = None) -> np.ndarray:
    """``(K, D)`` full-resolution data coordinates to ``(K, 2)`` ``(x, y)`` pixels of the plane (level) read."""
    coords = np.asarray(data_coords, dtype=float).reshape(-1, len(steps))
    row_axis, column_axis = displayed_axes(steps)
    row_factor = 1.0 if factors is None else float(factors[row_axis])
    column_factor = 1.0 if factors is None else float(factors[column_axis])
    # Pixel centres: level pixel i covers full-resolution pixels [i*f, (i+1)*f).
    x = (coords[:, column_axis] + 0.5) / column_factor - 0.5
    y = (coords[:, row_axis] + 0.5) / row_factor - 0.5
    return np.stack([x, y], axis=-1)


def inside_plane(xy, plane_shape: Sequence[int]) -> np.ndarray:
    """``(K,)`` bool: which ``(x, y)`` pixel coordinates fall on a plane of ``(H, W)`` pixels (the API's rule)."""
    from ..engine.prompts import points_inside

    return points_inside(xy, (int(plane_shape[0]), int(plane_shape[1])))


def upsample_mask(mask: np.ndarray, full_shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a ``(..., h, w)`` mask of a multiscale level to ``(..., H, W)`` full resolution."""
    mask = np.asarray(mask)
    height, width = int(full_shape[0]), int(full_shape[1])
    h, w = mask.shape[-2:]
    if (h, w) == (height, width):
        return mask
    rows = np.minimum((np.arange(height) * h) // height, h - 1)
    columns = np.minimum((np.arange(width) * w) // width, w - 1)
    return mask[..., rows[:, None], columns[None, :]]
