"""A 3x3 conv of a bilinear x2 upsample, computed at the low resolution (four phase kernels).

torch_em's decoder blocks upsample a map bilinearly (x2, ``align_corners=False``)
and then convolve it (3x3, zero padding). Along one axis, the upsample is
``u[2i] = y[i-1]/4 + 3 y[i]/4`` and ``u[2i+1] = 3 y[i]/4 + y[i+1]/4`` (the
index clamped at the ends), so output pixel ``2i + p`` of the conv reads
``y[i-1], y[i], y[i+1]`` only, with weights that depend on its phase ``p``:
the conv of the upsample is a 3x3 conv of ``y`` with four kernels (one per
phase pair), whose outputs interleave (``pixel_shuffle``). The clamp is a
replicate padding of ``y``; only the conv's zero padding differs from it: on
the outermost rows and columns of the output, the share of that ring of
replicated values is subtracted again (a one-row conv per side).

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
        y: ``(B, C, h, w)``.
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
    phase_weight, phase_bias = phases
    out = conv3x3(F.pad(y, (1, 1, 1, 1), mode="replicate"), phase_weight, phase_bias, 0, winograd)
    out = out.view(y.shape[0], -1, 2, 2, height, width)
    image = as_image(out)
    # The phases read a ring of replicated upsample values around the image where the conv reads zero
    # padding: subtract the ring's share from the outermost rows and columns. On the top and bottom
    # rows that is the kernel's first (last) row on the image's first (last) row, replicated one pixel
    # sideways (the corners); on the left and right columns, the kernel's first (last) column on the
    # image's first (last) column, the corners excluded (zero padding) as the rows already took them.
    # In the (h, 2, w, 2) view, row 0 is [i = 0, p = 0], the last row [i = h - 1, p = 1], and so on.
    rows = (2 * height, 2 * width)
    top = F.pad(_upsample(y[..., :1, :], pre_weight, pre_bias, (1, rows[1])), (1, 1, 0, 0), mode="replicate")
    bottom = F.pad(_upsample(y[..., -1:, :], pre_weight, pre_bias, (1, rows[1])), (1, 1, 0, 0), mode="replicate")
    left = _upsample(y[..., :1], pre_weight, pre_bias, (rows[0], 1))
    right = _upsample(y[..., -1:], pre_weight, pre_bias, (rows[0], 1))
    ring = (
        (F.conv2d(top, weight[..., :1, :]), (0, 0, slice(None), slice(None))),
        (F.conv2d(bottom, weight[..., 2:, :]), (-1, 1, slice(None), slice(None))),
        (F.conv2d(left, weight[..., :1], padding=(1, 0)), (slice(None), slice(None), 0, 0)),
        (F.conv2d(right, weight[..., 2:], padding=(1, 0)), (slice(None), slice(None), -1, 1)),
    )
    for share, target in ring:
        destination = image[(slice(None), slice(None), *target)]
        destination.sub_(share.reshape(destination.shape))
    return out


def as_image(phases: torch.Tensor) -> torch.Tensor:
    """``(B, O, h, 2, w, 2)`` view of :func:`upsampled_conv3x3`'s phases: ``[:, :, i, p, j, q]`` is pixel ``(2i + p, 2j + q)``.

    Its ``reshape(B, O, 2h, 2w)`` is the image; as an ``out=`` target shaped like
    this view, an image buffer ``.view(B, O, h, 2, w, 2)`` receives it in one pass.
    """
    return phases.permute(0, 1, 4, 2, 5, 3)
