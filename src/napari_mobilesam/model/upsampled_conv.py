"""A 3x3 conv of a bilinear x2 upsample, computed at the low resolution (four phase kernels).

torch_em's decoder blocks upsample a map bilinearly (x2, ``align_corners=False``)
and then convolve it (3x3, zero padding). Along one axis, the upsample is
``u[2i] = y[i-1]/4 + 3 y[i]/4`` and ``u[2i+1] = 3 y[i]/4 + y[i+1]/4`` (the
index clamped at the ends), so output pixel ``2i + p`` of the conv reads
``y[i-1], y[i], y[i+1]`` only, with weights that depend on its phase ``p``:
the conv of the upsample is a 3x3 conv of ``y`` with four kernels (one per
phase pair), whose outputs interleave (``pixel_shuffle``). The clamp is a
replicate padding of ``y``; only the conv's zero padding differs from it, on
the outermost rows and columns of the output, which are recomputed directly
from a two-pixel strip of the upsample.

Same arithmetic up to rounding. What it buys:

- the upsampled map (4x the pixels) is never formed, and the conv runs on
  4x fewer pixels with 4x more output channels, where Winograd's matrix
  products are far more efficient (at 1024 px and 64 channels, half the time);
- a 1x1 conv before the upsample (torch_em's ``Upsampler2d``) folds into the
  phase kernels; when it widens the channels (256 -> 512 in the first
  deconv block), the folded conv does half the multiply-adds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .winograd_conv import conv3x3

# _PHASE_TAPS[p, e, d]: weight of the high-resolution tap d (-1, 0, 1) on the low-resolution
# pixel i + e (e = -1, 0, 1) for output pixel 2i + p.
_PHASE_TAPS = torch.tensor(
    [
        [[0.75, 0.25, 0.0], [0.25, 0.75, 0.75], [0.0, 0.0, 0.25]],
        [[0.25, 0.0, 0.0], [0.75, 0.75, 0.25], [0.0, 0.25, 0.75]],
    ],
    dtype=torch.float64,
)


def phase_kernels(
    weight: torch.Tensor,
    bias: torch.Tensor,
    pre_weight: torch.Tensor | None = None,
    pre_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(4 O, C, 3, 3)`` phase kernels and ``(4 O,)`` bias of :func:`upsampled_conv3x3`.

    ``weight`` ``(O, M, 3, 3)``, ``bias`` ``(O,)``: the conv after the upsample.
    ``pre_weight`` ``(M, C, 1, 1)``, ``pre_bias`` ``(M,)``: an optional 1x1 conv
    before it (its bias passes the upsample unchanged, as bilinear weights sum to 1).
    Channel ``4 o + 2 p + q`` is output channel ``o`` at phase ``(p, q)``, the order
    of ``pixel_shuffle``. Made in float64, returned in ``weight``'s dtype.
    """
    taps = _PHASE_TAPS.to(weight.device)
    kernel = weight.double()
    out_bias = bias.double()
    if pre_weight is not None:
        out_bias = out_bias + torch.einsum("omab,m->o", kernel, pre_bias.double())
        kernel = torch.einsum("omab,mc->ocab", kernel, pre_weight.double()[:, :, 0, 0])
    phases = torch.einsum("pea,qfb,ocab->opqcef", taps, taps, kernel)
    out_channels, in_channels = kernel.shape[:2]
    return (
        phases.reshape(4 * out_channels, in_channels, 3, 3).to(weight.dtype).contiguous(),
        out_bias.repeat_interleave(4).to(weight.dtype),
    )


def _upsample(y: torch.Tensor, pre_weight: torch.Tensor | None, pre_bias: torch.Tensor | None, size) -> torch.Tensor:
    if pre_weight is not None:
        y = F.conv2d(y, pre_weight, pre_bias)
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def upsampled_conv3x3(
    y: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    phases: tuple[torch.Tensor, torch.Tensor],
    pre_weight: torch.Tensor | None = None,
    pre_bias: torch.Tensor | None = None,
    winograd: bool = True,
) -> torch.Tensor:
    """``conv3x3(upsample_x2(pre(y)))`` (zero padding; bilinear, ``align_corners=False``) at ``y``'s resolution.

    Args:
        y: ``(B, C, h, w)``, ``h, w >= 2``.
        weight, bias: the 3x3 conv, ``(O, M, 3, 3)`` and ``(O,)``.
        phases: :func:`phase_kernels` of the same weights (cached by the caller).
        pre_weight, pre_bias: the optional 1x1 conv ``pre``, ``(M, C, 1, 1)`` and ``(M,)``.
        winograd: see :func:`~napari_mobilesam.model.winograd_conv.conv3x3`.

    Returns:
        ``(B, O, 2, 2, h, w)`` contiguous: output pixel ``(2i + p, 2j + q)`` at
        ``[:, :, p, q, i, j]``. :func:`as_image` views it as ``(B, O, 2h, 2w)``
        without copying, for writing it into an image (or ``.reshape`` copies it).
    """
    height, width = y.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"upsampled_conv3x3 needs a map of at least 2x2 pixels, got {height}x{width}.")
    phase_weight, phase_bias = phases
    out = conv3x3(F.pad(y, (1, 1, 1, 1), mode="replicate"), phase_weight, phase_bias, 0, winograd)
    out = out.view(y.shape[0], -1, 2, 2, height, width)
    image = as_image(out)
    # The outermost rows and columns saw the replicated border where the conv pads with zeros: redo them
    # from a two-row (two-column) strip of the upsample, which the strip's two low-res rows determine.
    # In the (h, 2, w, 2) view, row 0 is [i = 0, p = 0], the last row [i = h - 1, p = 1], and so on.
    rows, cols = (4, 2 * width), (2 * height, 4)
    edges = (
        (y[..., :2, :], rows, (slice(0, 2), slice(None)), (slice(0, 1), slice(None)), (0, 0, slice(None), slice(None))),
        (
            y[..., -2:, :],
            rows,
            (slice(2, 4), slice(None)),
            (slice(1, 2), slice(None)),
            (-1, 1, slice(None), slice(None)),
        ),
        (y[..., :2], cols, (slice(None), slice(0, 2)), (slice(None), slice(0, 1)), (slice(None), slice(None), 0, 0)),
        (y[..., -2:], cols, (slice(None), slice(2, 4)), (slice(None), slice(1, 2)), (slice(None), slice(None), -1, 1)),
    )
    for strip, size, keep, edge, target in edges:
        upsampled = _upsample(strip, pre_weight, pre_bias, size)[(..., *keep)]
        exact = F.conv2d(upsampled, weight, bias, padding=1)[(..., *edge)]
        destination = image[(slice(None), slice(None), *target)]
        destination.copy_(exact.reshape(destination.shape))
    return out


def as_image(phases: torch.Tensor) -> torch.Tensor:
    """``(B, O, h, 2, w, 2)`` view of :func:`upsampled_conv3x3`'s phases: ``[:, :, i, p, j, q]`` is pixel ``(2i + p, 2j + q)``.

    Its ``reshape(B, O, 2h, 2w)`` is the image; as an ``out=`` target shaped like
    this view, an image buffer ``.view(B, O, h, 2, w, 2)`` receives it in one pass.
    """
    return phases.permute(0, 1, 4, 2, 5, 3)
