"""An existing mask as SAM's third kind of prompt: low-res logits ``(1, 256, 256)`` in the model's frame.

SAM takes a previous low-res prediction as ``mask_input``. An object that did
not come from the model (a label drawn by hand, or another tool's result) is
turned into such logits the way micro-sam does it for its mask prompts: a
confident logit inside and outside (``log((1 - eps) / eps)``), resized so the
longest side is 256 like the image's longest side is 1024, then padded at the
bottom and right with "outside".
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import MobileSAMError
from .prompts import LOW_RES_SHAPE

EPS = 1e-3  # probability of the wrong side: logits of +-6.9


def logits_from_mask(mask: np.ndarray) -> np.ndarray:
    """``(1, 256, 256)`` float32 logits of an ``(H, W)`` boolean mask of the original image.

    NumPy only (no torch): a GUI computes it on its own thread when the user
    picks a label to edit (see :mod:`~napari_mobilesam.engine.compute_thread`).
    The resize is torch's ``interpolate(mode="bilinear", align_corners=False)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or 0 in mask.shape:
        raise MobileSAMError(f"A mask prompt is one 2D mask (H, W), got shape {mask.shape}.")
    confident = np.float32(math.log((1 - EPS) / EPS))
    logits = np.where(mask, confident, -confident).astype(np.float32)
    height, width = mask.shape
    scale = LOW_RES_SHAPE[0] / max(height, width)
    size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
    resized = _bilinear(_bilinear(logits, size[0], axis=0), size[1], axis=1)
    out = np.full(LOW_RES_SHAPE, -confident, dtype=np.float32)
    rows, cols = min(size[0], LOW_RES_SHAPE[0]), min(size[1], LOW_RES_SHAPE[1])
    out[:rows, :cols] = resized[:rows, :cols]
    return out[None]


def _bilinear(values: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear resampling of ``values`` along ``axis`` to ``size`` samples, pixel centres aligned (half-pixel)."""
    length = values.shape[axis]
    source = np.maximum((np.arange(size, dtype=np.float32) + 0.5) * np.float32(length / size) - 0.5, 0)
    low = np.minimum(source.astype(np.int64), length - 1)
    high = np.minimum(low + 1, length - 1)
    weight = (source - low).astype(np.float32)
    shape = [1, 1]
    shape[axis] = size
    weight = weight.reshape(shape)
    return np.take(values, low, axis=axis) * (1 - weight) + np.take(values, high, axis=axis) * weight
