"""3x3 convolutions by Winograd's minimal filtering (NNPACK) where PyTorch has it.

A direct 3x3 convolution costs 9 multiply-adds per output pixel and channel
pair. NNPACK, built into PyTorch's CPU wheels for Linux and macOS, computes it
as Winograd's F(6x6, 3x3): an 8x8 input tile and the kernel are transformed,
multiplied element-wise (summed over input channels: one matrix product per
tile position) and transformed back into 6x6 outputs, i.e. 64 products for
36 outputs instead of 324 -- 5x fewer. It is the same convolution; only the
rounding changes (about 1e-5 relative to the largest output, against 1e-6
for oneDNN's direct method). PyTorch itself uses NNPACK only for batches of
16 or more, so the instance decoder (one image at a time) calls it directly.

Where NNPACK is missing (Windows builds), disabled
(``torch.backends.nnpack.set_flags(False)``), or the tensors are not float32
on the CPU, or gradients are wanted, this is ``F.conv2d``.

NNPACK keeps its own thread pool, sized by ``torch.get_num_threads()`` at its
first use in the process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_nnpack_ready: bool | None = None


def nnpack_usable() -> bool:
    """Whether this PyTorch has NNPACK and it is enabled (asking also initialises it, which it needs)."""
    global _nnpack_ready
    if _nnpack_ready is None:
        available = getattr(torch, "_nnpack_available", None)
        _nnpack_ready = bool(available is not None and available())
    return _nnpack_ready and torch._C._get_nnpack_enabled()


def winograd_applies(x: torch.Tensor, weight: torch.Tensor, winograd: bool = True) -> bool:
    """Whether :func:`conv3x3` would use NNPACK for ``x`` and ``weight`` (NNPACK has no backward here)."""
    wants_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return (
        winograd
        and not wants_grad
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and nnpack_usable()
    )


def conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, padding: int = 1, winograd: bool = True
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` for a 3x3 ``weight``, by Winograd where it applies.

    ``winograd=False`` forces the direct method (tests compare the two).
    """
    if winograd_applies(x, weight, winograd):
        return torch._nnpack_spatial_convolution(
            x.contiguous(), weight.contiguous(), bias.contiguous(), [padding, padding]
        )
    return F.conv2d(x, weight, bias, padding=padding)
