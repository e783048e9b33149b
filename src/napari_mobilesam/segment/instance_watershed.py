"""AIS: every object in one pass, by a seeded watershed on micro-sam's decoder maps.

The maps (:func:`napari_mobilesam.segment.instance_maps.instance_maps`) are a
foreground probability and two distances normalised per object to 0..1: to
the object's centre and to its boundary (both 0 in the middle of an object,
1 at its rim and in the background). micro-sam's post-processing
(``InstanceSegmentationWithDecoder.generate`` calling torch_em's
``watershed_from_center_and_boundary_distances``), step by step:

1. smooth the foreground with a Gaussian of sigma ``foreground_smoothing``
   and both distances with sigma ``distance_smoothing`` (0 = no smoothing);
2. foreground = smoothed foreground > ``foreground_threshold``;
3. seeds = foreground pixels where the centre distance < ``center_distance_threshold``
   and the boundary distance < ``boundary_distance_threshold``; each
   8-connected group of seed pixels seeds one object;
4. watershed on the smoothed boundary distance from those seeds, 4-connected,
   inside the foreground only (foreground no seed can reach stays background);
5. ``min_size`` > 0: objects with fewer pixels are removed.

Labels are ``1..N`` in raster order of each object's first seed pixel (top
row first, then left to right); removing small objects keeps that order.

Written with scipy and scikit-image. The Gaussian is micro-sam's exactly:
radius ``ceil(3 * sigma)`` and mirrored borders (scipy's ``mode="mirror"``),
which is what its library (bioimage-cpp, like vigra before it) computes.
The watershed may differ from micro-sam's at a few pixels: bioimage-cpp floods
heights quantised to 65,536 levels in an unspecified order within a level,
scikit-image floods the float heights in order (ties: first come, first
served). Both give the same seeds, so the same objects.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..errors import MobileSAMError
from .instance_params import WatershedParams

# 8-connectivity for the seeds (bioimage-cpp's label default, like skimage.measure.label).
_SEED_STRUCTURE = np.ones((3, 3), dtype=bool)
# Kernel radius in sigmas (vigra / fastfilters / bioimage-cpp: ceil(3 * sigma)).
_GAUSSIAN_RADIUS_SIGMAS = 3.0


def gaussian_smoothing(image: np.ndarray, sigma: float) -> np.ndarray:
    """micro-sam's Gaussian smoothing of a 2D float map (float32 out; radius ``ceil(3 sigma)``, mirrored borders)."""
    radius = math.ceil(_GAUSSIAN_RADIUS_SIGMAS * sigma)
    return ndi.gaussian_filter(np.asarray(image, dtype=np.float32), sigma, mode="mirror", radius=radius)


def check_maps(maps) -> np.ndarray:
    """``(3, H, W)`` float maps (foreground, centre distance, boundary distance) as float32, or a clear error."""
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[0] != 3 or min(maps.shape[1:]) < 1:
        raise MobileSAMError(
            f"The instance maps must have shape (3, H, W) (foreground, centre distance, boundary distance), "
            f"got {maps.shape}; compute them with instance_maps(embedding, decoder)."
        )
    maps = maps.astype(np.float32, copy=False)
    if not np.isfinite(maps).all():
        raise MobileSAMError("The instance maps contain NaN or infinite values; compute them again from the embedding.")
    return maps


def watershed_from_maps(maps, params: WatershedParams | None = None, **kwargs) -> np.ndarray:
    """AIS: the ``(H, W)`` int32 labels of every object the maps show (0 = background, objects ``1..N``).

    Args:
        maps: ``(3, H, W)`` foreground, centre distance, boundary distance (each 0..1).
        params: the settings; or give them as keyword arguments (micro-sam's
            names: ``center_distance_threshold=0.5``, ``boundary_distance_threshold=0.5``,
            ``foreground_threshold=0.5``, ``foreground_smoothing=1.0``,
            ``distance_smoothing=1.6``, ``min_size=0``), not both.

    Returns:
        Labels numbered in raster order of each object's first seed pixel (see the module doc).
    """
    from skimage.segmentation import watershed

    if params is not None and kwargs:
        raise MobileSAMError("Give the AIS settings either as params=WatershedParams(...) or as keywords, not both.")
    params = params if params is not None else WatershedParams.from_kwargs(**kwargs)
    foreground, center_distances, boundary_distances = check_maps(maps)

    if params.foreground_smoothing > 0:
        foreground = gaussian_smoothing(foreground, params.foreground_smoothing)
    if params.distance_smoothing > 0:
        center_distances = gaussian_smoothing(center_distances, params.distance_smoothing)
        boundary_distances = gaussian_smoothing(boundary_distances, params.distance_smoothing)

    inside = foreground > params.foreground_threshold
    seeds = (
        (center_distances < params.center_distance_threshold)
        & (boundary_distances < params.boundary_distance_threshold)
        & inside
    )
    markers, _count = ndi.label(seeds, structure=_SEED_STRUCTURE, output=np.int32)
    labels = watershed(boundary_distances, markers, mask=inside).astype(np.int32, copy=False)
    return remove_small_objects(labels, params.min_size)


def remove_small_objects(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects with fewer than ``min_size`` pixels to 0 and renumber the rest ``1..N``, keeping their order."""
    if min_size <= 0 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    lookup = np.zeros(sizes.size, dtype=np.int32)
    lookup[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    return lookup[labels]
