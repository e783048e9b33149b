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
    """``(1, 256, 256)`` float32 logits of an ``(H, W)`` boolean mask of the original image."""
    import torch
    import torch.nn.functional as F

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2 or 0 in mask.shape:
        raise MobileSAMError(f"A mask prompt is one 2D mask (H, W), got shape {mask.shape}.")
    confident = math.log((1 - EPS) / EPS)
    logits = torch.from_numpy(np.where(mask, confident, -confident).astype(np.float32))[None, None]
    height, width = mask.shape
    scale = LOW_RES_SHAPE[0] / max(height, width)
    size = (max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5)))
    resized = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0]
    out = torch.full((1, *LOW_RES_SHAPE), -confident)
    out[:, : size[0], : size[1]] = resized[:, : LOW_RES_SHAPE[0], : LOW_RES_SHAPE[1]]
    return out.numpy()
