"""The maps micro-sam trains its instance decoder to predict, made from ground-truth labels (an oracle decoder).

torch_em's ``PerObjectDistanceTransform(distances=True, boundary_distances=True,
directed_distances=False, foreground=True)``, as micro-sam's training uses it:

- labels are split into 8-connected pieces first (``apply_label``);
- an object's centre is its rounded centroid, or, if that lies outside the
  object, its pixel farthest from the boundaries;
- boundaries are skimage's ``find_boundaries(mode="inner")`` of all objects;
  the boundary distance of an object is its distance transform to the nearest
  boundary pixel inside the object's bounding box, inverted (maximum minus it);
- the centre distance is the Euclidean distance to the centre;
- both are set to 0 outside the object and divided by their maximum (+1e-7)
  over it, so each lies in 0..1 on the object; outside every object both are 1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

_EPS = 1e-7


def training_targets(labels: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` float32: foreground, centre distance, boundary distance of ``(H, W)`` labels."""
    from skimage.measure import label, regionprops
    from skimage.segmentation import find_boundaries

    labels = label(labels, background=0, connectivity=2)
    boundaries = find_boundaries(labels, mode="inner")
    distances = np.ones((2, *labels.shape), dtype=np.float32)
    for region in regionprops(labels):
        window = region.slice
        mask = labels[window] == region.label
        to_boundary = ndi.distance_transform_edt(~boundaries[window])
        to_boundary[~mask] = 0
        farthest = np.unravel_index(np.argmax(to_boundary), mask.shape)
        centre = tuple(int(c) - s.start for c, s in zip(np.round(region.centroid), window, strict=True))
        if not mask[centre]:
            centre = farthest
        rows, cols = np.indices(mask.shape)
        maps = np.stack([np.hypot(rows - centre[0], cols - centre[1]), to_boundary[farthest] - to_boundary])
        maps[:, ~mask] = 0
        maps /= np.abs(maps).max(axis=(1, 2), keepdims=True) + _EPS
        distances[(slice(None), *window)][:, mask] = maps[:, mask]
    return np.concatenate([(labels > 0)[None].astype(np.float32), distances])
