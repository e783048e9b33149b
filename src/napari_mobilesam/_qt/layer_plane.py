"""Which plane of an image layer is on screen: from napari's layer and dims to :mod:`napari_mobilesam.interactive.planes`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import MobileSAMError
from ..interactive import planes as slicing


@dataclass(frozen=True, eq=False)
class LayerPlane:
    """The 2D plane of ``layer`` that is segmented, and where it lies.

    ``steps``: per spatial axis of the layer, the plane's index or ``None`` on the
    two displayed axes (see :mod:`napari_mobilesam.interactive.planes`). ``level``: the
    multiscale level read (0 otherwise), ``factors`` its downsampling per axis.
    ``plane_shape``: ``(H, W)`` pixels of the plane as read; ``full_plane_shape``: at level 0.
    """

    layer: object
    level: int
    steps: tuple
    factors: np.ndarray
    plane_shape: tuple[int, int]
    full_plane_shape: tuple[int, int]
    full_shape: tuple[int, ...]
    rgb: bool
    contrast_limits: tuple[float, float]
    image_id: str | None
    slice_index: int
    n_slices: int

    @property
    def key(self) -> tuple:
        """Equal for two requests about the same pixels, contrast and level."""
        return (id(self.layer), self.level, self.steps, self.contrast_limits)

    @property
    def displayed(self) -> tuple[int, int]:
        return slicing.displayed_axes(self.steps)

    def describe(self) -> str:
        """E.g. ``"z=12"``, ``"t=3, z=12"`` or ``"2D"`` (axis names from the end: x, y, z, t)."""
        return slicing.describe_steps(self.steps)

    def read(self) -> np.ndarray:
        """The plane's pixels (reads only this plane of lazy data); call from a worker."""
        data = self.layer.data[self.level] if self.layer.multiscale else self.layer.data
        return slicing.read_plane(data, self.steps, self.factors, self.rgb)

    def embedding(self, cache, predictor):
        """``(pixels, embedding, source)``: read the plane, then take its embedding from ``cache``
        (encoding it with ``predictor`` on a miss); call from a worker."""
        pixels = self.read()
        embedding, source = cache.embedding(
            predictor,
            pixels,
            contrast_limits=self.contrast_limits,
            image_id=self.image_id,
            slice_index=self.slice_index,
            n_slices=self.n_slices,
        )
        return pixels, embedding, source

    def at(self, steps: tuple) -> LayerPlane:
        """The same view at other steps (for prefetching neighbours)."""
        index, count = slicing.slice_number(steps, self.full_shape)
        return LayerPlane(
            self.layer,
            self.level,
            steps,
            self.factors,
            self.plane_shape,
            self.full_plane_shape,
            self.full_shape,
            self.rgb,
            self.contrast_limits,
            self.image_id,
            index,
            count,
        )


def spatial_shape(layer) -> tuple[int, ...]:
    """Full-resolution shape of an image layer without its RGB axis."""
    shape = layer.data[0].shape if layer.multiscale else layer.data.shape
    return tuple(int(s) for s in (shape[:-1] if layer.rgb else shape))


def layer_displayed_axes(viewer, layer) -> tuple[int, int]:
    """The layer's two data axes shown by the viewer, in data order."""
    if viewer.dims.ndisplay != 2:
        raise MobileSAMError("MobileSAM segments 2D planes: switch the viewer to 2D (the 2D/3D button) first.")
    offset = viewer.dims.ndim - layer.ndim
    axes = sorted(axis - offset for axis in viewer.dims.displayed if axis - offset >= 0)
    if len(axes) != 2:
        raise MobileSAMError(f"Layer {layer.name!r} has fewer than two displayed axes; it cannot be segmented here.")
    return axes[0], axes[1]


def world_affine(layer) -> np.ndarray:
    """The ``(D+1, D+1)`` matrix ``A`` with world = ``A(scale * data + translate)`` for ``layer``.

    The convention of :func:`napari_mobilesam.interactive.planes.world_to_data`. napari
    also applies the layer's ``rotate`` and ``shear`` (between scaling and
    translating) before its ``affine``; they are folded in here, so that
    rotated or sheared layers map exactly as napari draws them.
    """
    from napari.utils.transforms import Affine

    ndim = layer.ndim
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    data_to_physical = Affine(scale=scale, translate=translate, rotate=layer.rotate, shear=layer.shear, ndim=ndim)
    data_to_world = np.asarray(layer.affine.affine_matrix, dtype=float) @ data_to_physical.affine_matrix
    scale_translate = np.eye(ndim + 1)
    scale_translate[:ndim, :ndim] = np.diag(scale)
    scale_translate[:ndim, ndim] = translate
    return data_to_world @ np.linalg.inv(scale_translate)


def world_point_to_layer(viewer_point, layer) -> np.ndarray:
    """The viewer's world point to ``layer``'s data coordinates (layers align on trailing axes)."""
    world = np.asarray(viewer_point, dtype=float)[-layer.ndim :]
    return slicing.world_to_data(world, layer.scale, layer.translate, world_affine(layer))


def image_id(layer, level: int, displayed: tuple[int, int]) -> str | None:
    """A name for the layer's disk-cache store that survives a restart, or None (stores named by content).

    Only layers opened from a file get one: its absolute path, shape, dtype, the
    displayed axes and the level (each combination is a different stack of planes),
    the same name :func:`napari_mobilesam.io.file_image_id` gives the file.
    """
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        return None
    if "://" not in str(path):
        path = os.path.abspath(path)  # as napari_mobilesam.io.file_image_id names files: the command's embeddings hit
    data = layer.data[level] if layer.multiscale else layer.data
    return f"{path}|{tuple(data.shape)}|{np.dtype(data.dtype).str}|axes{displayed}|level{level}"


def current_plane(viewer, layer) -> LayerPlane:
    """The plane of ``layer`` that ``viewer`` shows now."""
    displayed = layer_displayed_axes(viewer, layer)
    full_shape = spatial_shape(layer)
    if layer.multiscale:
        level_shapes = [tuple(d.shape[:-1] if layer.rgb else d.shape) for d in layer.data]
        level = slicing.choose_level(level_shapes, displayed)
        level_shape = level_shapes[level]
    else:
        level, level_shape = 0, full_shape
    factors = slicing.downsample_factors(full_shape, level_shape)
    steps = slicing.plane_steps(world_point_to_layer(viewer.dims.point, layer), displayed, full_shape)
    index, count = slicing.slice_number(steps, full_shape)
    limits = tuple(float(v) for v in layer.contrast_limits)
    return LayerPlane(
        layer=layer,
        level=level,
        steps=steps,
        factors=factors,
        plane_shape=(int(level_shape[displayed[0]]), int(level_shape[displayed[1]])),
        full_plane_shape=(full_shape[displayed[0]], full_shape[displayed[1]]),
        full_shape=full_shape,
        rgb=bool(layer.rgb),
        contrast_limits=limits,
        image_id=image_id(layer, level, displayed),
        slice_index=index,
        n_slices=count,
    )
