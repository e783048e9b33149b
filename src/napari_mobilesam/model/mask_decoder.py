"""SAM's mask decoder: tokens + image embedding -> low-res mask logits and IoU scores.

As in :mod:`.transformer`, decoding is split into :meth:`MaskDecoder.prepare`
(once per image embedding) and :meth:`MaskDecoder.decode` (per batch of
prompts). The two transposed convolutions of the upscaling head (kernel 2,
stride 2) are computed as matrix products on the token layout, and the pixel
order is restored only on the final low-res logits, a few small tensors
instead of several full feature maps. For a shared image, the head's first
layer is the image's share (made in :meth:`MaskDecoder.prepare`) plus a
low-rank share per prompt (:mod:`.low_rank_upscale`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MLP, LayerNorm2d, WeightDerived, gelu_
from .low_rank_transformer import LowRankImage, LowRankPrompts, low_rank_blocks
from .low_rank_upscale import FoldedHead, HeadInputs
from .transformer import ImageContext, TwoWayTransformer

# Prompts decoded together inside one call; see MaskDecoder.decode.
DECODE_CHUNK = 8
# Image tokens (summed over the prompts of a call) the upscaling head works on at a time:
# with its first layer in low rank, 2048 measured ~4 % faster per prompt than 1024 (and than 3072).
UPSCALE_TOKENS = 2048


def _transposed_conv_as_linear(conv: nn.ConvTranspose2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(kh*kw*out, in)`` and bias of a stride == kernel transposed conv, outputs ordered (a, b, out)."""
    weight = conv.weight  # (in, out, kh, kw)
    kh, kw = weight.shape[2:]
    return weight.permute(2, 3, 1, 0).reshape(kh * kw * weight.shape[1], weight.shape[0]), conv.bias.repeat(kh * kw)


def low_rank_pays_on(device: torch.device) -> bool:
    """Whether the low-rank blocks are faster than image tokens on ``device``.

    They trade ~720 MFLOP of large products per prompt for ~320 MFLOP in
    ~110 narrow ones: a gain where arithmetic is scarce (2 CPU cores: a
    click ~1.9 ms or 12 % faster, batches 8-20 %). On a GPU the products are
    cheap and the extra kernel launches are not: an H200 decoded 10-90 %
    slower in low rank over three runs (docs/benchmarks.md), so GPUs (and
    MPS, likewise launch-bound) keep image tokens.
    """
    return device.type == "cpu"


def _in_low_rank(context: ImageContext) -> bool:
    """Whether prompts on ``context`` decode from factors (:mod:`.low_rank_transformer`), not image tokens."""
    return context.low_rank is not None and context.upscale_base is not None and not torch.is_grad_enabled()


class MaskDecoder(nn.Module):
    """Predicts 1 + ``num_multimask_outputs`` masks (256x256 logits) and their IoU."""

    def __init__(
        self, transformer_dim=256, transformer=None, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256
    ):
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer()
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)
        self.decode_chunk = DECODE_CHUNK
        self._upscale_linear = WeightDerived()  # output_upscaling's convolutions as linear layers
        self._head_folding = WeightDerived()  # the norms folded into the first of them
        self._stacked_hypernetworks = WeightDerived()  # the mask tokens' MLPs, layer by layer

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``B`` prompts against one image (the official call signature).

        ``image_embeddings`` ``(1, C, 64, 64)`` (or ``(B, ...)``), ``image_pe``
        ``(1, C, 64, 64)``, sparse ``(B, N, C)``, dense ``(1 or B, C, 64, 64)``.
        Returns masks ``(B, M, 256, 256)`` logits and IoU ``(B, M)``, with
        ``M = 3`` for multimask output (tokens 1..3) and ``M = 1`` otherwise (token 0).
        """
        # The low-rank image share pays for itself over a dozen prompts or so, not in one call.
        many = sparse_prompt_embeddings.shape[0] >= 2 * self.decode_chunk
        context = self.prepare(image_embeddings, image_pe, dense_prompt_embeddings, low_rank=many)
        return self.decode(context, sparse_prompt_embeddings, multimask_output)

    def prepare(self, image_embeddings, image_pe, dense_prompt_embeddings, low_rank: bool = True) -> ImageContext:
        """Everything that does not depend on sparse prompts; reuse it across prompts.

        ``low_rank``: also the image's share of the later blocks
        (:class:`.low_rank_transformer.LowRankImage`, ~20 ms and ~26 MB), for
        decoding prompts (mask prompts included, :meth:`prepare_with_masks`)
        without image tokens of their own; worth it from a dozen prompts or so,
        and on the CPU only (see :func:`low_rank_pays_on`).
        """
        context = self.transformer.prepare(image_embeddings + dense_prompt_embeddings, image_pe)
        if context.keys.shape[0] != 1 or torch.is_grad_enabled():
            return context  # one image side per prompt, or training: the head runs directly
        transformer = self.transformer
        if low_rank and len(transformer.layers) == 2 and low_rank_pays_on(context.keys.device):
            low_rank = LowRankImage.build(transformer, context)
        else:
            low_rank = None
        return replace(context, upscale_base=self._folded_head().image_share(context.keys), low_rank=low_rank)

    def _folded_head(self) -> FoldedHead:
        first, second = (layer.norm4 for layer in self.transformer.layers)
        conv = self.output_upscaling[0]
        tensors = (first.weight, first.bias, second.weight, second.bias, conv.weight, conv.bias)
        return self._head_folding(tensors, lambda: FoldedHead.fold(first, second, *self._upscale_weights()[0]))

    def prepare_with_masks(self, image_context: ImageContext, mask_downscaling: nn.Sequential, masks: torch.Tensor):
        """:meth:`prepare` for mask prompts ``(B, 1, 256, 256)``, from the context of the bare image.

        ``image_context``: ``prepare(image_embeddings, image_pe, 0)``, made once
        per image; ``mask_downscaling``: the prompt encoder's, whose last layer
        is a 1x1 convolution. Equals ``prepare(image_embeddings, image_pe,
        mask_downscaling(masks))`` up to rounding (see
        :meth:`.TwoWayTransformer.add_dense`), about 5x faster.
        """
        *layers, last = mask_downscaling
        features = nn.Sequential(*layers)(masks)
        if image_context.low_rank is not None and not torch.is_grad_enabled():
            # Decoded in low rank: the mask's features join the first block's update (.low_rank_transformer).
            flat = features.flatten(2)  # (B, r, N)
            rows = torch.cat((flat, flat.new_ones(()).expand(flat.shape[0], 1, flat.shape[2])), dim=1)
            dense_map = torch.cat((last.weight.flatten(1), last.bias[:, None]), dim=1)
            return replace(image_context, dense_features=rows.transpose(1, 2), dense_map=dense_map, dense_in_keys=False)
        return self.transformer.add_dense(image_context, features, last.weight.flatten(1), last.bias)

    def _dense_into_keys(self, context: ImageContext) -> ImageContext:
        """A context whose mask addition is pending (``dense_in_keys`` False) with the addition made:
        one image side per mask, for the path on image tokens."""
        features = context.dense_features[..., :-1].transpose(1, 2)  # (B, r, N), without the ones column
        side = int(round(features.shape[-1] ** 0.5))
        features = features.reshape(features.shape[0], -1, side, side)
        dense_map = context.dense_map
        base = replace(context, dense_features=None, dense_map=None, low_rank=None, dense_in_keys=True)
        return self.transformer.add_dense(base, features, dense_map[:, :-1], dense_map[:, -1])

    def decode(
        self,
        context: ImageContext,
        sparse_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        min_iou: float | None = None,
    ):
        """Masks ``(B, M, 256, 256)`` and IoU ``(B, M)`` for ``(B, N, C)`` sparse prompts.

        ``min_iou``: a prompt whose masks all have a predicted IoU of at most
        this skips its mask tokens and the upscaling head (about half its
        cost); its masks come back as ``-inf`` logits (empty). For callers
        that drop such masks anyway, like SAM's automatic mask generator with
        ``pred_iou_thresh``.

        Large batches run in chunks of ``decode_chunk`` prompts: each prompt
        carries several 4-8 MB activations, and a few prompts' worth stays in
        the CPU's cache where 64 prompts' worth would stream through memory.
        """
        batch = sparse_prompt_embeddings.shape[0]
        if not context.dense_in_keys and not _in_low_rank(context):
            context = self._dense_into_keys(context)
        keys = context.keys
        count = self.num_multimask_outputs if multimask_output else 1
        side = 4 * int(round(keys.shape[1] ** 0.5))
        # Every chunk writes its rows of one output: no per-chunk results to concatenate.
        masks = torch.empty((batch, count, side, side), dtype=keys.dtype, device=keys.device)
        iou = torch.empty((batch, count), dtype=keys.dtype, device=keys.device)
        step = max(1, self.decode_chunk if keys.shape[0] == 1 else batch)  # one image side per mask prompt: one call
        dense = context.dense_features
        for start in range(0, batch, step):
            stop = min(batch, start + step)
            chunk = context
            if dense is not None and dense.shape[0] > 1 and stop - start < dense.shape[0]:  # one mask per prompt
                chunk = replace(context, dense_features=dense[start:stop])
            iou[start:stop] = self._decode(
                chunk, sparse_prompt_embeddings[start:stop], multimask_output, min_iou, masks[start:stop]
            )
        return masks, iou

    def _decode(
        self,
        context: ImageContext,
        sparse_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        min_iou,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        """Decode one chunk of prompts: their masks into ``masks`` ``(B, M, 256, 256)``; returns their IoU ``(B, M)``."""
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings), dim=1)
        selected = range(1, self.num_mask_tokens) if multimask_output else range(1)
        mask_tokens = [1 + i for i in selected]
        transformer = self.transformer
        low_rank = None
        if _in_low_rank(context):
            # A shared image prepared in low rank: no image tokens per prompt (see .low_rank_transformer).
            queries, src = low_rank_blocks(transformer, context, tokens)
            low_rank = HeadInputs(context.upscale_base, src.first, src.second)

            def final(queries, src, tokens, outputs):
                return src.final(transformer, context, queries, tokens, outputs)

        else:
            # With the image's share of the upscaling head prepared, the blocks' updates give the rest.
            updates = [] if context.upscale_base is not None and not torch.is_grad_enabled() else None
            queries, src = transformer.blocks(context, tokens, updates)
            if updates is not None:
                low_rank = HeadInputs(context.upscale_base, *updates, context.dense_features, context.dense_map)

            def final(queries, src, tokens, outputs):
                return transformer.final(context, queries, src, tokens, outputs)

        # The last attention treats tokens one by one, and only the IoU token and the selected
        # mask tokens are read. With min_iou, the IoU comes first, so that prompts failing
        # it need neither their mask tokens nor the upscaling head.
        if min_iou is None:
            hs = final(queries, src, tokens, [0] + mask_tokens)
            self._masks(hs[:, 1:], selected, masks, low_rank, src)
            return self.iou_prediction_head(hs[:, 0, :])[:, selected.start : selected.stop]
        iou_token = final(queries, src, tokens, [0])
        iou_pred = self.iou_prediction_head(iou_token[:, 0, :])[:, selected.start : selected.stop]
        keep = (iou_pred > min_iou).any(dim=1)
        if bool(keep.all()):
            hs = final(queries, src, tokens, mask_tokens)
            self._masks(hs, selected, masks, low_rank, src)
            return iou_pred
        masks[~keep] = float("-inf")
        if bool(keep.any()):
            index = keep.nonzero()[:, 0]
            if isinstance(src, LowRankPrompts):  # the head reads the selected factors: selected once
                src = src.select(index)
                low_rank = HeadInputs(context.upscale_base, src.first, src.second)
            else:
                src = src[index]
                low_rank = None if low_rank is None else low_rank.select(index)
            hs = final(queries[index], src, tokens[index], mask_tokens)
            kept = torch.empty((len(index), *masks.shape[1:]), dtype=masks.dtype, device=masks.device)
            self._masks(hs, selected, kept, low_rank, src)
            masks[index] = kept
        return iou_pred

    def _masks(
        self,
        hs: torch.Tensor,
        selected: range,
        out: torch.Tensor,
        low_rank: HeadInputs | None = None,
        src: torch.Tensor | None = None,
    ) -> None:
        """Mask logits of the ``selected`` mask tokens ``hs`` ``(B, M, C)`` into ``out`` ``(B, M, 4H, 4W)``.

        The upscaling head runs on a few token rows at a time, so that its
        wide intermediates (16 and 32 MB per prompt in full) stay in the CPU's
        cache; each part is written straight to its rows of ``out``. Its first
        layer comes from ``low_rank`` (the image's share and the blocks'
        updates) if given, else from the image tokens ``src`` ``(B, HW, C)``.
        """
        hyper_in = self._hypernetworks(hs, selected)
        batch, tokens = hs.shape[0], out.shape[-1] * out.shape[-2] // 16
        side = int(round(tokens**0.5))
        rows = max(1, UPSCALE_TOKENS // (batch * side))
        if low_rank is not None:
            folded = self._folded_head()
            base = low_rank.base
            scale, left, right = folded.prompt_factors(low_rank)
        for top in range(0, side, rows):
            bottom = min(side, top + rows)
            band = slice(top * side, bottom * side)
            if low_rank is None:
                part = self.upscale(src[:, band])  # (B, n * 16, 32), (i, j, a, b, a', b') order
            else:
                first = torch.addcmul(folded.bias, base[:, band], scale[:, band]).baddbmm_(left[:, band], right)
                part = self.upscale_rest(first)
            rows, masks = bottom - top, hyper_in.shape[1]
            logits = torch.matmul(hyper_in, part.transpose(1, 2))  # (B, M, n*16): (i, j, a, b, a', b') order
            # Pixel order in two moves with long runs (one 8-D move of single values was ~3x slower):
            # (i, j, a, [b a' b']) -> (i, a, j, [b a' b']), eight values at a time, then the rows'
            # (i, a, a') and the columns' (j, b, b') into place.
            moved = logits.view(batch, masks, rows, side, 2, 8).transpose(3, 4).contiguous()
            moved = moved.view(batch, masks, rows, 2, side, 2, 2, 2)
            band = out[:, :, 4 * top : 4 * bottom].view(batch, masks, rows, 2, 2, side, 2, 2)
            band.copy_(moved.permute(0, 1, 2, 3, 6, 4, 5, 7))

    def _hypernetworks(self, hs: torch.Tensor, selected: range) -> torch.Tensor:
        """The ``selected`` mask tokens ``hs`` ``(B, M, C)`` through their own MLPs: ``(B, M, C/8)``.

        Several tokens run as one batched product per layer (the MLPs' weights
        stacked once per set of weights), not one small product per token and layer.
        """
        mlps = [self.output_hypernetworks_mlps[i] for i in selected]
        if len(mlps) == 1 or torch.is_grad_enabled():
            return torch.stack([mlp(hs[:, k, :]) for k, mlp in enumerate(mlps)], dim=1)
        layers = list(zip(*(mlp.layers for mlp in mlps), strict=True))
        tensors = [t for group in layers for layer in group for t in (layer.weight, layer.bias)]
        stacked = self._stacked_hypernetworks(
            tensors,
            lambda: [
                (torch.stack([layer.weight.t() for layer in group]), torch.stack([layer.bias[None] for layer in group]))
                for group in layers
            ],
        )
        x = hs.transpose(0, 1)  # (M, B, C)
        last = len(stacked) - 1
        for i, (weight, bias) in enumerate(stacked):
            x = torch.baddbmm(bias, x, weight)
            if i < last:
                x = F.relu(x)
        return x.transpose(0, 1)

    def upscale(self, src: torch.Tensor) -> torch.Tensor:
        """The upscaling head on image tokens ``(B, n, C)`` -> ``(B, n*16, C/8)``.

        Output pixel ``(4i + 2a + a', 4j + 2b + b')`` of token ``(i, j)`` sits at
        flat index ``((i*W + j)*2 + a)*2 + b)*4 + a'*2 + b'``.
        """
        (weight1, bias1), _ = self._upscale_weights()
        return self.upscale_rest(F.linear(src, weight1, bias1))

    def upscale_rest(self, first: torch.Tensor) -> torch.Tensor:
        """The upscaling head after its first layer: ``(B, n, 4 * C/4)`` -> ``(B, n*16, C/8)``."""
        _, norm, _, _, _ = self.output_upscaling
        batch, tokens, _ = first.shape
        _, (weight2, bias2) = self._upscale_weights()
        x = first.view(batch, tokens * 4, -1)
        x = gelu_(F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
        x = gelu_(F.linear(x, weight2, bias2))
        return x.view(batch, tokens * 16, -1)

    def _upscale_weights(self):
        """The transposed convolutions' weights as linear layers, rebuilt only when the parameters change.

        :meth:`upscale` runs once per row band of every prompt chunk; rebuilding
        them there was a copy of 256 KB per call.
        """
        conv1, _, _, conv2, _ = self.output_upscaling
        return self._upscale_linear(
            (conv1.weight, conv1.bias, conv2.weight, conv2.bias),
            lambda: (_transposed_conv_as_linear(conv1), _transposed_conv_as_linear(conv2)),
        )
