"""The upscaling head's first layer as the image's share plus a low-rank share per prompt.

The head starts with a linear map ``y = x W^T + c`` of the decoder's image
tokens ``x``, which the two two-way blocks made from the image tokens ``k``
(one image, shared by every prompt) by two steps of the same form,
``x_{i+1} = norm_i(x_i + A_i V_i)``: a layer norm after an update of rank
``R`` (= heads x tokens, 56 for a box; :class:`.transformer.ImageUpdate`).
A layer norm is, per pixel, a shift by the mean and a scale by ``rstd``
before a fixed per-channel affine map, so with ``r = rstd_1 rstd_2``::

    y = r * (k N)                                 # the image's share: once per image
        + [r A_1 | r mu_1 | rstd_2 | rstd_2 A_2 | rstd_2 mu_2]
          @ [V_1 N; -1 N; b_1 M; V_2 M; -1 M]     # R + R + 3 columns per prompt
        + b_2 W^T + c

where ``M = diag(g_2) W^T`` and ``N = diag(g_1) M`` fold the norms' weights
``g`` (biases ``b``) into the head. Per prompt this is a product with
``2R + 3`` inner columns instead of 256: about 2.2x fewer operations for
the head's largest layer, the same arithmetic up to rounding. A mask prompt
adds ``f D^T`` to the image tokens (its ``r + 1`` dense features ``f``, see
:meth:`.transformer.TwoWayTransformer.add_dense`): ``r + 1`` more columns,
``[r f]`` and ``D^T N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .transformer import ImageUpdate


@dataclass(frozen=True)
class HeadInputs:
    """What the low-rank head needs for a batch of ``B`` prompts.

    ``base``: the image's share ``(1, HW, out)``; ``first``/``second``: the
    two blocks' updates; ``dense_features`` ``(B, HW, r+1)`` and ``dense_map``
    ``(C, r+1)``: the mask prompts' addition to the image tokens, or None.
    """

    base: torch.Tensor
    first: ImageUpdate
    second: ImageUpdate
    dense_features: torch.Tensor | None = None
    dense_map: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> HeadInputs:
        """The inputs of the prompts ``index``."""
        dense = self.dense_features
        if dense is not None and dense.shape[0] > 1:  # one mask per prompt (else one for all)
            dense = dense[index]
        return HeadInputs(self.base, self.first.select(index), self.second.select(index), dense, self.dense_map)


@dataclass(frozen=True)
class FoldedHead:
    """The norms' weights folded into the head's first layer (``weight`` ``(out, C)``, ``bias`` ``(out,)``)."""

    after_first: torch.Tensor  # N = diag(g1) diag(g2) W^T, (C, out): maps the image tokens
    after_second: torch.Tensor  # M = diag(g2) W^T, (C, out)
    first_bias: torch.Tensor  # b1 M, (out,)
    bias: torch.Tensor  # b2 W^T + c, (out,)
    first_mean_row: torch.Tensor  # -1 N, (out,): what a norm's mean takes away
    second_mean_row: torch.Tensor  # -1 M, (out,)

    @classmethod
    def fold(cls, first: nn.LayerNorm, second: nn.LayerNorm, weight: torch.Tensor, bias: torch.Tensor) -> FoldedHead:
        after_second = second.weight[:, None] * weight.t()
        after_first = first.weight[:, None] * after_second
        return cls(
            after_first,
            after_second,
            first.bias @ after_second,
            second.bias @ weight.t() + bias,
            -after_first.sum(0),
            -after_second.sum(0),
        )

    def image_share(self, keys: torch.Tensor) -> torch.Tensor:
        """``k N`` for image tokens ``(1, HW, C)``: made once per image."""
        return keys @ self.after_first

    def prompt_factors(self, inputs: HeadInputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per prompt: the image share's scale ``(B, HW, 1)``, the left ``(B, HW, K)`` and right ``(B, K, out)`` factors.

        The left factor is a transposed view of a ``(B, K, HW)`` tensor: the
        attention weights are stored that way (one row per head and token), so
        filling it copies whole rows.
        """
        first, second, dense = inputs.first, inputs.second, inputs.dense_features
        rank1, rank2 = first.weights.shape[-1], second.weights.shape[-1]
        extra = 0 if dense is None else dense.shape[-1]
        scale = first.rstd * second.rstd
        batch, pixels, _ = first.weights.shape
        left = torch.empty((batch, rank1 + rank2 + 3 + extra, pixels), dtype=scale.dtype, device=scale.device)
        end = rank1 + rank2 + 3
        left[:, :rank1] = first.weights.transpose(1, 2)
        left[:, rank1] = first.mean[..., 0]
        left[:, rank1 + 1] = 1.0
        left[:, rank1 + 2 : end - 1] = second.weights.transpose(1, 2)
        left[:, end - 1] = second.mean[..., 0]
        left[:, rank1 + 1 : end] *= second.rstd.transpose(1, 2)
        if dense is not None:
            left[:, end:] = dense.transpose(1, 2)
            left[:, end:] *= scale.transpose(1, 2)
        left[:, : rank1 + 1] *= scale.transpose(1, 2)
        n, m = self.after_first, self.after_second
        parts = [
            first.values @ n,
            self.first_mean_row.expand(batch, 1, -1),
            self.first_bias.expand(batch, 1, -1),
            second.values @ m,
            self.second_mean_row.expand(batch, 1, -1),
        ]
        if dense is not None:
            parts.append((inputs.dense_map.t() @ n).expand(batch, -1, -1))
        return scale, left.transpose(1, 2), torch.cat(parts, dim=1)
