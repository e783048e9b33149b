"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

Decoding is split in two so that many prompts share the work that depends on
the image alone: :meth:`TwoWayTransformer.prepare` computes it once per image
embedding (an :class:`ImageContext`), :meth:`TwoWayTransformer.decode` runs
the rest per batch of prompts. The image side has batch 1 (or ``B`` with
mask prompts) while prompts have batch ``B``; every operation broadcasts, so
``B`` prompts never copy the image embedding.
The attention itself, with its token-side projections, is :mod:`.attention`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .attention import Attention, heads_first
from .layers import MLPBlock, tensor_versions


@dataclass(frozen=True)
class ImageContext:
    """Image-only tensors of the first two-way block, shared by every prompt.

    ``keys`` are the image tokens ``(Bi, HW, C)``, ``key_pe`` their positional
    encoding ``(1, HW, C)``; ``token_to_image_k``/``_v`` (``(Bi, HW, internal)``) and
    ``image_to_token_q`` (by head, pixels last, ``(Bi, heads, head_dim, HW)``) are the first
    block's projections of them. ``pe_heads`` ``(2 * depth - 1, heads, head_dim,
    HW)``: the positional encoding through the image-side key and query
    projections of the later blocks and the key projection of the final
    attention (:meth:`TwoWayTransformer.pe_heads`). ``upscale_base``: the mask
    decoder's share of its upscaling head (see :mod:`.low_rank_upscale`), or None.
    With mask prompts (:meth:`TwoWayTransformer.add_dense`) the image tokens are
    those of the bare image plus ``dense_features @ dense_map.T`` (``(B, HW, r+1)``,
    ``(C, r+1)``), and ``upscale_base`` is the bare image's. ``low_rank``: the
    image's share of the later blocks' projections
    (:class:`.low_rank_transformer.LowRankImage`), or None. ``dense_in_keys``
    False: the mask prompts' addition is not in ``keys`` (nor in the
    projections) but pending, for the low-rank path to take into its factors
    (:meth:`.mask_decoder.MaskDecoder.prepare_with_masks`).
    """

    keys: torch.Tensor
    key_pe: torch.Tensor
    token_to_image_k: torch.Tensor
    token_to_image_v: torch.Tensor
    image_to_token_q: torch.Tensor
    pe_heads: torch.Tensor
    upscale_base: torch.Tensor | None = None
    dense_features: torch.Tensor | None = None
    dense_map: torch.Tensor | None = None
    low_rank: object | None = None
    dense_in_keys: bool = True


@dataclass(frozen=True)
class ImageUpdate:
    """What one two-way block did to the image tokens ``x`` of each prompt: ``norm(x + weights @ values)``.

    ``weights`` ``(B, HW, R)`` and ``values`` ``(B, R, C)`` (``R`` = heads x
    tokens) are the image->token attention's update; ``mean`` and ``rstd``
    ``(B, HW, 1)`` the statistics of the norm that followed it.
    """

    weights: torch.Tensor
    values: torch.Tensor
    mean: torch.Tensor
    rstd: torch.Tensor

    def select(self, index: torch.Tensor) -> ImageUpdate:
        """The updates of the prompts ``index``."""
        return ImageUpdate(self.weights[index], self.values[index], self.mean[index], self.rstd[index])


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of tokens, token->image, MLP, image->token cross-attention."""

    def __init__(self, embedding_dim, num_heads, mlp_dim=2048, attention_downsample_rate=2, skip_first_layer_pe=False):
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def image_projections(self, keys: torch.Tensor, key_pe: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The projections of the image tokens this block needs: k, v (token->image), q (image->token)."""
        keys_with_pe = keys + key_pe
        return (
            self.cross_attn_token_to_image.k_proj(keys_with_pe),
            self.cross_attn_token_to_image.v_proj(keys),
            heads_first(self.cross_attn_image_to_token.q_proj(keys_with_pe), self.cross_attn_image_to_token.num_heads)
            .transpose(2, 3)
            .contiguous(),
        )

    def dense_projections(self, weight: torch.Tensor, bias: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """How :meth:`image_projections` change when ``x @ weight.T + bias`` is added to the keys.

        ``weight`` ``(C, r)``. Returns ``(weight, bias)`` of the increments of
        k, v and q as maps of ``x`` (``r`` features): projections are linear, so
        a rank-``r`` addition needs only ``r``-wide products, not 4096 x C ones.
        """
        layers = (self.cross_attn_token_to_image.k_proj, self.cross_attn_token_to_image.v_proj)
        layers += (self.cross_attn_image_to_token.q_proj,)
        return [(layer.weight @ weight, layer.weight @ bias) for layer in layers]

    def pe_projections(self, key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image's positional encoding ``(1, HW, C)`` through this block's image-side key and query projections."""
        return (
            self.cross_attn_token_to_image.project_heads(key_pe, "k"),
            self.cross_attn_image_to_token.project_heads(key_pe, "q"),
        )

    def token_side(self, queries: torch.Tensor, query_pe: torch.Tensor, token_to_image) -> torch.Tensor:
        """The block's work on the prompt tokens: self-attention, the token->image attention's
        update ``token_to_image(queries + query_pe)``, the MLP, each with its norm."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        queries = self.norm2(queries + token_to_image(queries + query_pe))
        return self.norm3(queries + self.mlp(queries))

    def forward(
        self, queries, keys, query_pe, key_pe, projections=None, keys_are_temporary=False, updates=None, pe_heads=None
    ):
        """One block. ``projections``: the image side prepared by :meth:`image_projections`;
        ``keys_are_temporary``: ``keys`` may be overwritten (a previous block's output);
        ``updates``: a list that receives this block's :class:`ImageUpdate`; ``pe_heads``:
        :meth:`pe_projections` of ``key_pe``, if made already."""
        token_to_image = self.cross_attn_token_to_image
        image_to_token = self.cross_attn_image_to_token
        if projections is not None:  # the image side was prepared once for all prompts
            k, v, image_q = projections
            queries = self.token_side(
                queries, query_pe, lambda q: token_to_image.attend(token_to_image.q_proj(q), k, v)
            )
        else:
            pe_keys, pe_queries = self.pe_projections(key_pe) if pe_heads is None else pe_heads
            queries = self.token_side(queries, query_pe, lambda q: token_to_image.tokens_to_image(q, keys, pe_keys))

        q = queries + query_pe
        factors = None if updates is None else []
        if projections is not None:
            keys = image_to_token.image_to_tokens(image_q, q, queries, projected=True, residual=keys, factors=factors)
        else:
            keys = image_to_token.image_to_tokens(
                keys,
                q,
                queries,
                residual=keys,
                residual_is_temporary=keys_are_temporary,
                factors=factors,
                pe_queries=pe_queries,
            )
        if updates is None:
            return queries, self.norm4(keys)
        norm = self.norm4
        keys, mean, rstd = torch.native_layer_norm(keys, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        updates.append(ImageUpdate(*factors, mean, rstd))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks and a final token->image attention."""

    def __init__(self, depth=2, embedding_dim=256, num_heads=8, mlp_dim=2048, attention_downsample_rate=2):
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)
        self._pe_heads = None  # (tensor_versions key, positional encoding, its projections)

    def prepare(self, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> ImageContext:
        """Image-only work: ``image_embedding`` ``(Bi, C, H, W)``, ``image_pe`` ``(1, C, H, W)``."""
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        return ImageContext(keys, key_pe, *self.layers[0].image_projections(keys, key_pe), self.pe_heads(key_pe))

    def pe_heads(self, key_pe: torch.Tensor) -> torch.Tensor:
        """The positional encoding ``(1, HW, C)`` through the image-side projections after the first block.

        Scores against ``image + pe`` are then scores against ``image`` plus
        these in the heads' 16 dimensions, and no ``image + pe`` is formed per
        prompt. They depend on the weights and the encoding alone (the same
        for every image), so they are kept while both stay the same.
        """
        final = self.final_attn_token_to_image
        later = self.layers[1:]
        weights = [
            a.weight
            for layer in later
            for a in (layer.cross_attn_token_to_image.k_proj, layer.cross_attn_image_to_token.q_proj)
        ]
        key = tensor_versions(*weights, final.k_proj.weight)
        cached = self._pe_heads
        if torch.is_grad_enabled() or cached is None or cached[0] != key or not torch.equal(cached[1], key_pe):
            parts = [part for layer in later for part in layer.pe_projections(key_pe)]
            cached = (key, key_pe.clone(), torch.stack([*parts, final.project_heads(key_pe, "k")]))
            if not torch.is_grad_enabled():
                self._pe_heads = cached
        return cached[2]

    def add_dense(self, context: ImageContext, features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        """The context of ``image + features @ weight.T + bias`` from the context of the image alone.

        For mask prompts: their dense embedding ends in a 1x1 convolution from
        ``r`` = 16 channels (``features`` ``(B, r, H, W)``, ``weight`` ``(C, r)``), so
        the first block's projections of the sum are the image's plus ``r``-wide
        products: about a tenth of :meth:`prepare`'s work, the same arithmetic up
        to rounding. Returns batch ``B`` (one image side per mask).
        """
        x = features.flatten(2).transpose(1, 2)  # (B, HW, r)
        batch = x.shape[0]

        def plus(base: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.baddbmm((base + b).expand(batch, -1, -1), x, w.t().expand(batch, -1, -1))

        (k_weight, k_bias), (v_weight, v_bias), (q_weight, q_bias) = self.layers[0].dense_projections(weight, bias)
        heads = self.layers[0].cross_attn_image_to_token.num_heads
        q_increment = heads_first(torch.matmul(x, q_weight.t()) + q_bias, heads).transpose(2, 3)
        return ImageContext(
            plus(context.keys, weight, bias),
            context.key_pe,
            plus(context.token_to_image_k, k_weight, k_bias),
            plus(context.token_to_image_v, v_weight, v_bias),
            (context.image_to_token_q + q_increment).contiguous(),
            context.pe_heads,
            context.upscale_base,
            torch.cat((x, x.new_ones(()).expand(*x.shape[:2], 1)), dim=-1),
            torch.cat((weight, bias[:, None]), dim=1),
        )

    def decode(
        self, context: ImageContext, point_embedding: torch.Tensor, outputs: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, N, C)`` against a prepared image -> tokens ``(B, N, C)``, image ``(B, HW, C)``.

        ``outputs``: the indices of the tokens wanted back (``(B, len(outputs), C)``).
        """
        queries, keys = self.blocks(context, point_embedding)
        return self.final(context, queries, keys, point_embedding, outputs), keys

    def blocks(
        self, context: ImageContext, point_embedding: torch.Tensor, updates: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The two-way blocks: tokens ``(B, N, C)`` and image tokens ``(B, HW, C)`` before the last attention.

        ``updates``: a list that receives each block's :class:`ImageUpdate`.
        """
        queries, keys = point_embedding, context.keys
        first = (context.token_to_image_k, context.token_to_image_v, context.image_to_token_q)
        for i, layer in enumerate(self.layers):
            queries, keys = layer(
                queries,
                keys,
                point_embedding,
                context.key_pe,
                first if i == 0 else None,
                keys_are_temporary=i > 0,
                updates=updates,
                pe_heads=None if i == 0 else context.pe_heads[2 * i - 2 : 2 * i],
            )
        return queries, keys

    def final(
        self,
        context: ImageContext,
        queries: torch.Tensor,
        keys: torch.Tensor,
        point_embedding: torch.Tensor,
        outputs: list[int] | None = None,
    ) -> torch.Tensor:
        """The last token -> image attention and norm, for the tokens ``outputs`` (all if None).

        It treats each token on its own, so tokens nobody reads are left out,
        and tokens can be finished in separate calls.
        """
        if outputs is not None:
            queries, point_embedding = queries[:, outputs], point_embedding[:, outputs]
        update = self.final_attn_token_to_image.tokens_to_image(queries + point_embedding, keys, context.pe_heads[-1])
        return self.norm_final_attn(queries + update)

    def forward(self, image_embedding, image_pe, point_embedding):
        """``image_embedding`` ``(1 or B, C, H, W)``, ``image_pe`` ``(1, C, H, W)``,
        ``point_embedding`` ``(B, N, C)`` -> tokens ``(B, N, C)``, image ``(B, HW, C)``."""
        return self.decode(self.prepare(image_embedding, image_pe), point_embedding)
