"""Low-res mask logits (256x256) to the original image size, as two small matrix products.

The official code upsamples bilinearly to 1024x1024, crops the padding, then
resizes bilinearly to the original size. Both steps are linear and separable,
so each axis collapses into one ``(out, 256)`` matrix, built by running
torch's own bilinear kernel on an identity matrix (the same weights). The
result equals the official logits up to float rounding, without the
1024x1024 intermediate.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

LOW_RES = 256
MODEL_SIZE = 1024


def _axis_weights(size_in: int, size_out: int) -> torch.Tensor:
    """``(size_out, size_in)`` weights of a bilinear (align_corners=False) resize along one axis."""
    eye = torch.eye(size_in, dtype=torch.float64)[None, None]
    return F.interpolate(eye, size=(size_out, size_in), mode="bilinear", align_corners=False)[0, 0]


@lru_cache(maxsize=32)
def _axis_matrix(input_length: int, original_length: int) -> torch.Tensor:
    to_model = _axis_weights(LOW_RES, MODEL_SIZE)[:input_length]
    to_original = _axis_weights(input_length, original_length)
    return (to_original @ to_model).to(torch.float32)


def resize_logits(
    low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """``(..., 256, 256)`` logits -> ``(..., H, W)`` logits of the original image."""
    rows = _axis_matrix(input_size[0], original_size[0]).to(low_res.device)
    cols = _axis_matrix(input_size[1], original_size[1]).to(low_res.device)
    return rows @ low_res @ cols.T
