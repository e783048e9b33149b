"""A per-channel affine map (an instance or batch norm) followed by a zero-padded 3x3 conv, as one conv.

``conv(x * scale + shift)`` with zero padding equals ``conv'(x)`` with the
scale folded into the weights (``weight * scale`` per input channel) plus the
conv's response to the constant image ``shift``. Away from the border that
response is one number per output channel (the bias absorbs it); on the
border, where the padding zeros replace some of the shifted pixels, it is
less. The border is eight regions (four edges, four corners), each with its
own constant, read off the conv of a constant 3x3 image. So the normalised
tensor is never formed: one pass over the largest maps fewer, and none of
their copies. Exact algebra; only the rounding changes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .winograd_conv import conv3x3

# Sums run over chunks of this many pixels of a channel, then the chunks' sums are added in float64:
# each float32 sum stays short (accurate to ~1e-7), and torch's plain sum and norm kernels are
# vectorised (torch.var_mean's Welford update is 7x slower on 1024x1024 maps).
_CHUNK = 1024


def channel_sums(x: torch.Tensor, squares: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per channel of ``(1, C, ...)`` contiguous ``x``: the sum and (``squares``) the sum of squares, float64."""
    channels = x.shape[1]
    x = x.reshape(channels, -1)
    count = x.shape[1]
    whole = count - count % _CHUNK
    chunks = x.as_strided((channels, whole // _CHUNK, _CHUNK), (count, _CHUNK, 1))
    rest = x[:, whole:].double()
    total = chunks.sum(2).double().sum(1) + rest.sum(1)
    if not squares:
        return total, None
    return total, torch.linalg.vector_norm(chunks, dim=2).double().square().sum(1) + rest.square().sum(1)


def instance_statistics(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel, ``(C,)`` each, with ``x * scale + shift`` normalised over each channel.

    ``x``: ``(1, C, ...)`` contiguous (a map, or its phases). Population
    variance, as instance norm and batch norm's training mode use (for one
    image they are the same statistics). From the sums of values and of
    squares, so the variance's relative error is ~1e-7 times
    ``(mean / std) ** 2``: negligible for the decoder's maps (conv and ReLU
    outputs, whose means are within a few standard deviations of 0).
    """
    total, squares = channel_sums(x)
    count = x[0, 0].numel()
    return normalizing_affine(total / count, squares / count, eps, x.dtype)


def normalizing_affine(mean: torch.Tensor, mean_square: torch.Tensor, eps: float, dtype: torch.dtype):
    """``(scale, shift)`` in ``dtype`` that normalise values of this mean and mean square (population variance)."""
    variance = (mean_square - mean.square()).clamp_min(0.0)
    scale = torch.rsqrt(variance + eps)
    return scale.to(dtype), (-mean * scale).to(dtype)


def _border_slices(size: int) -> list[slice]:
    """First, middle and last rows (or columns): the regions of the constant response; all rows if fewer than 3."""
    if size < 3:
        return [slice(i, i + 1) for i in range(size)]
    return [slice(0, 1), slice(1, size - 1), slice(size - 1, size)]


class ShiftResponse:
    """The zero-padded 3x3 conv's response to the constant image ``shift``: a value per border region.

    ``inner`` ``(O,)`` belongs in the conv's bias (the value away from the
    border); :meth:`add_border` adds the rest to the conv's output.
    """

    def __init__(self, weight: torch.Tensor, shift: torch.Tensor, height: int, width: int) -> None:
        self.rows, self.cols = _border_slices(height), _border_slices(width)
        constant = shift.to(weight.dtype).expand(1, len(self.rows), len(self.cols), -1).permute(0, 3, 1, 2)
        self.table = F.conv2d(constant, weight, None, padding=1)[0]
        self.has_inner = len(self.rows) == len(self.cols) == 3
        self.inner = self.table[:, 1, 1] if self.has_inner else torch.zeros_like(self.table[:, 0, 0])

    def add_border(self, out: torch.Tensor) -> torch.Tensor:
        """Add the border regions' response (less ``inner``, which the bias holds) to ``out`` in place."""
        for r, row in enumerate(self.rows):
            for c, col in enumerate(self.cols):
                if not (self.has_inner and r == c == 1):
                    out[:, :, row, col] += (self.table[:, r, c] - self.inner)[:, None, None]
        return out


def affine_conv3x3(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    winograd: bool = True,
) -> torch.Tensor:
    """``F.conv2d(x * scale + shift, weight, bias, padding=1)`` without forming ``x * scale + shift``.

    Args:
        x: ``(B, C, H, W)``.
        weight: ``(O, C, 3, 3)``; bias: ``(O,)``.
        scale, shift: ``(C,)``, the per-channel affine map applied to ``x`` first.
        winograd: see :func:`~napari_mobilesam.model.winograd_conv.conv3x3`.
    """
    response = ShiftResponse(weight, shift, *x.shape[-2:])
    out = conv3x3(x, weight * scale[None, :, None, None], bias + response.inner, winograd=winograd)
    return response.add_border(out)
