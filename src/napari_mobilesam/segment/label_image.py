"""From low-res masks to one label image: full size inside each mask's box, cleanup, overlap rule.

Full-size masks are kept cropped to their box: ``boxes`` ``(K, 4)`` integer
``(x0, y0, x1, y1)`` pixels of the image, exclusive ends, and ``crops`` a list
of ``K`` boolean arrays of shape ``(y1 - y0, x1 - x0)``. A mask of a large
image then costs the size of its object, not of the image.
:class:`LowResFrame` makes them from the decoder's 256x256 logits, exactly
as the full-size upsampling would, computing only the rows and columns that
can be inside the mask; :func:`remove_small_regions` is SAM's cleanup.

The overlap rule (:func:`paint_labels`) is deterministic:

1. Smaller masks lie on top of larger ones: a pixel claimed by several masks
   takes the label of the one with the fewest pixels (what SAM's own
   display does, and it keeps a nucleus visible inside the cell or clump
   that also came out as a mask). Equal areas: the higher score wins, then
   the mask listed first.
2. A mask left with fewer than ``min_area`` visible pixels is dropped
   (at least 1: a fully covered mask gets no label).
3. Labels are numbered ``1..N`` in raster order of each object's first
   visible pixel (top row first, then left to right), so ids do not depend
   on the order the masks were found in.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage as ndi

from ..engine.mask_resize import axis_matrix
from ..engine.prompts import LOW_RES_SHAPE

MASK_THRESHOLD = 0.0
# One low-res pixel spans this many model-input pixels.
LOW_RES_STRIDE = 4
# 8-connectivity, as in SAM's cleanup (OpenCV's connectedComponents with connectivity 8).
_EIGHT = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and remove islands smaller than ``min_area`` pixels; return the mask and whether it changed.

    Holes are background regions the mask encloses (regions touching the
    edge of ``mask``'s array are not holes). If every island is small, the
    largest one stays, so a mask never disappears.
    """
    mask = np.asarray(mask, dtype=bool)
    if min_area <= 0 or not mask.any():
        return mask, False
    changed = False

    holes, count = ndi.label(~mask, structure=_EIGHT)
    if count:
        sizes = np.bincount(holes.ravel(), minlength=count + 1)
        small = sizes < min_area
        small[0] = False
        border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
        small[border] = False
        if small.any():
            mask = mask | small[holes]
            changed = True

    islands, count = ndi.label(mask, structure=_EIGHT)
    sizes = np.bincount(islands.ravel(), minlength=count + 1)
    sizes[0] = 0
    small = sizes < min_area
    small[0] = False
    if small.any():
        if small[1:].all():
            small[int(np.argmax(sizes))] = False
        mask = mask & ~small[islands]
        changed = True
    return mask, changed


def tighten(box: np.ndarray, crop: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Shrink ``box`` and ``crop`` to the mask's own bounding box; ``None`` for an empty mask."""
    rows = np.flatnonzero(crop.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(crop.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    x0, y0 = int(box[0]), int(box[1])
    return np.array([x0 + c0, y0 + r0, x0 + c1, y0 + r1], dtype=np.int64), crop[r0:r1, c0:c1]


class LowResFrame:
    """Where the image lies in the 256x256 logits, and exact upsampling of one mask inside its box."""

    def __init__(self, input_size: tuple[int, int], original_size: tuple[int, int]) -> None:
        self.original_size = original_size
        # Low-res pixels covering the image; bilinear upsampling also reads one more row and column.
        self.valid = tuple(math.ceil(n / LOW_RES_STRIDE) for n in input_size)
        self.stored = tuple(min(n + 1, side) for n, side in zip(self.valid, LOW_RES_SHAPE, strict=True))
        # (original, stored) weights of "upsample to 1024, crop, resize to the original size", per axis.
        self.rows = axis_matrix(input_size[0], original_size[0])[:, : self.stored[0]].float()
        self.cols = axis_matrix(input_size[1], original_size[1])[:, : self.stored[1]].float()
        self.row_support = _support(self.rows)
        self.col_support = _support(self.cols)
        # Low-res pixels -> original pixels, for boxes.
        scale = [original / inp * LOW_RES_STRIDE for original, inp in zip(original_size, input_size, strict=True)]
        self.box_scale = torch.tensor([scale[1], scale[0], scale[1], scale[0]])

    def to(self, device: torch.device) -> LowResFrame:
        self.rows, self.cols = self.rows.to(device), self.cols.to(device)
        return self

    def upsample(self, logits: torch.Tensor, box: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
        """Full-size mask of ``(h, w)`` low-res logits whose positive pixels lie in ``box`` (low-res pixels).

        Every full-size pixel is a convex mix of a few low-res pixels, so it can
        only be positive next to a positive one: those rows and columns are
        computed and nothing else. Returns ``(box, crop)`` in original pixels,
        ``box`` as ``(x0, y0, x1, y1)``, or ``None`` if the mask is empty at full size.
        """
        x0, y0, x1, y1 = (int(v) for v in box.tolist())
        rows = _span(self.row_support, y0, y1)
        cols = _span(self.col_support, x0, x1)
        if rows is None or cols is None:
            return None
        (r0, r1, in_r0, in_r1), (c0, c1, in_c0, in_c1) = rows, cols
        # Logits stored in float16 may have overflowed to +-inf, and inf times a zero weight is NaN.
        low = torch.nan_to_num(logits[in_r0:in_r1, in_c0:in_c1].float(), posinf=6e4, neginf=-6e4)
        full = self.rows[r0:r1, in_r0:in_r1] @ low @ self.cols[c0:c1, in_c0:in_c1].T
        crop = (full > MASK_THRESHOLD).cpu().numpy()
        return tighten(np.array([c0, r0, c1, r1]), crop)


def _support(weights: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """First and last low-res index with a nonzero weight, for each output pixel (both non-decreasing)."""
    nonzero = (weights != 0).numpy()
    first = nonzero.argmax(axis=1)
    last = nonzero.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
    return first, last


def _span(support: tuple[np.ndarray, np.ndarray], start: int, stop: int) -> tuple[int, int, int, int] | None:
    """Output pixels ``[out0, out1)`` that read low-res pixels in ``[start, stop)``, and the low-res pixels they read.

    ``None`` when no output pixel reads them (an image smaller than the low-res frame skips some).
    """
    first, last = support
    out0 = int(np.searchsorted(last, start, side="left"))
    out1 = int(np.searchsorted(first, stop, side="left"))
    if out1 <= out0:
        return None
    return out0, out1, int(first[out0]), int(last[out1 - 1]) + 1


def paint_labels(
    shape: tuple[int, int],
    boxes: np.ndarray,
    crops: list[np.ndarray],
    scores: np.ndarray | None = None,
    min_area: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Paint cropped masks into one ``(H, W)`` int32 label image by the module's overlap rule.

    Args:
        shape: ``(height, width)`` of the label image.
        boxes: ``(K, 4)`` ``(x0, y0, x1, y1)`` integer pixel boxes of the crops (exclusive ends).
        crops: ``K`` boolean masks, each of its box's shape.
        scores: ``(K,)`` quality of each mask, to break ties between equal areas.
        min_area: a mask needs at least this many visible pixels to keep a label.

    Returns:
        ``labels`` ``(H, W)`` int32 (0 = background, objects ``1..N``) and
        ``source`` ``(N,)``: the index of the mask behind each label, ``source[id - 1]``.
    """
    height, width = shape
    labels = np.zeros((height, width), dtype=np.int32)
    count = len(crops)
    if count == 0:
        return labels, np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(count, 4)
    scores = np.zeros(count) if scores is None else np.asarray(scores, dtype=np.float64)
    areas = np.array([np.count_nonzero(crop) for crop in crops])
    # Painted in this order, so later (smaller) masks overwrite earlier ones; lexsort's last key is the primary one.
    order = np.lexsort((-np.arange(count), scores, -areas))
    for index in order:
        x0, y0, x1, y1 = boxes[index]
        labels[y0:y1, x0:x1][crops[index]] = index + 1

    # Visible area and first visible pixel (raster order) of each mask.
    visible = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    first = np.full(count, np.iinfo(np.int64).max)
    for index in np.flatnonzero(visible >= max(min_area, 1)):
        x0, y0, x1, y1 = boxes[index]
        local = np.argmax(labels[y0:y1, x0:x1] == index + 1)
        row, col = divmod(int(local), x1 - x0)
        first[index] = (y0 + row) * width + (x0 + col)
    source = np.argsort(first, kind="stable")[: np.count_nonzero(first < np.iinfo(np.int64).max)]

    lookup = np.zeros(count + 1, dtype=np.int32)
    lookup[source + 1] = np.arange(1, source.size + 1, dtype=np.int32)
    return lookup[labels], source.astype(np.int64)
