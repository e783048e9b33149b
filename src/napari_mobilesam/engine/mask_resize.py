"""Low-res mask logits (256x256) to the original image size, without the 1024x1024 detour.

The official code upsamples bilinearly to 1024x1024, crops the padding, then
resizes bilinearly to the original size. Both steps are linear and separable,
so along each axis they collapse into one ``(out, 256)`` matrix, built by
running torch's own bilinear kernel on an identity matrix (the same weights).
Each output row or column mixes at most a few of the 256 inputs, so the
matrix is applied as a handful of weighted gathers ("taps"): the result
equals the official logits up to float rounding, at a cost proportional to
the output size.
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
def axis_matrix(input_length: int, original_length: int) -> torch.Tensor:
    """``(original_length, 256)`` float64: low-res axis -> model input (1024) -> crop -> original axis."""
    to_model = _axis_weights(LOW_RES, MODEL_SIZE)[:input_length]
    to_original = _axis_weights(input_length, original_length)
    return to_original @ to_model


@lru_cache(maxsize=32)
def _axis_taps(input_length: int, original_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero entries of :func:`axis_matrix` as ``(out, K)`` indices and float32 weights."""
    matrix = axis_matrix(input_length, original_length)
    taps = int((matrix != 0).sum(dim=1).max())
    weights, index = matrix.abs().topk(taps, dim=1)  # zero weights pad rows with fewer taps
    return index, matrix.gather(1, index).to(torch.float32)


def _resize_rows(x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Apply one axis's taps along dim -2: whole rows are gathered, the fast direction."""
    index, weights = index.to(x.device), weights.to(x.device)
    out = x.index_select(-2, index[:, 0]).mul_(weights[:, 0, None])
    for k in range(1, index.shape[1]):
        out.addcmul_(x.index_select(-2, index[:, k]), weights[:, k, None])
    return out


def resize_logits(low_res: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]) -> torch.Tensor:
    """``(..., 256, 256)`` logits -> ``(..., H, W)`` logits of the original image.

    Columns first, on the transposed input: the transposed copies are then of
    the 256x256 input and a ``W x 256`` intermediate, and the final pass writes
    the output in place (transposing the full-size output was half the time).
    """
    columns = _resize_rows(low_res.transpose(-1, -2).contiguous(), *_axis_taps(input_size[1], original_size[1]))
    return _resize_rows(columns.transpose(-1, -2).contiguous(), *_axis_taps(input_size[0], original_size[0]))
