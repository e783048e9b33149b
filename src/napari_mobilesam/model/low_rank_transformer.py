"""The two-way blocks and the final attention for prompts on a shared image, without per-prompt image tokens.

Each two-way block changes the image tokens by ``x -> norm(x + A V)``: an
update of rank ``R`` (heads x tokens, 56 for a click) followed by a layer
norm, which per pixel is a shift and a scale (``rstd``) before a fixed
per-channel affine map. So, with ``k`` the image tokens centred per pixel
(one image, shared by every prompt) and ``s1``, ``s2`` the two norms' scales,
the image tokens each later step reads are, centred and before the norms'
weights ``g``::

    after block 1:  k + A1 V1c                             (V1c: V1, rows centred)
    after block 2:  s1 (k g1)c + [s1 A1 | A2] @ [Z1; Z2] + b1c

(``Z1`` = ``V1c g1`` and ``Z2`` = ``V2``, rows centred; ``b1c`` the first norm's
bias, centred). Every projection of them is then the projection of the
image's share (made once per image, :class:`LowRankImage`) plus products
with the ``R`` or ``2R`` attention weights per pixel, and the norms'
statistics are quadratic forms in the same terms: per prompt, products with
at most ``2R`` inner columns instead of 4096 x 256 image tokens through
projections of 256 inputs, and no image tokens are formed at all. The
arithmetic is the same up to rounding; :mod:`.low_rank_upscale` gives the
upscaling head from the same factors. The image's share costs two products
of 4096 x 256 x 512 once per image (~20 ms on two CPU cores) and ~26 MB.

Scores against image tokens take the share of the positional encoding from
:meth:`.transformer.TwoWayTransformer.pe_heads`; terms that add the same
value to every score of a softmax over image tokens (key biases, the norms'
biases through a key projection) are left out there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .attention import Attention
from .transformer import ImageContext, ImageUpdate, TwoWayTransformer


def _by_head(x: torch.Tensor, heads: int, pixels_last: bool = True) -> torch.Tensor:
    """``(N, H*D)`` -> contiguous ``(H, D, N)`` (``pixels_last``) or ``(H, N, D)``.

    Pixels last for maps that a few tokens multiply (the product then streams
    along the pixels), pixels first for maps that weights over pixels multiply.
    """
    x = x.view(x.shape[0], heads, -1)
    return (x.permute(1, 2, 0) if pixels_last else x.transpose(0, 1)).contiguous()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """Tokens by head ``(B, T, H, D)`` -> ``(H, B*T, D)``: each head's rows for one product with the image."""
    b, t, h, d = x.shape
    return x.permute(2, 0, 1, 3).reshape(h, b * t, d)


def _batch_first(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``(H, B*T, X)`` -> ``(B, H, T, X)`` (a view)."""
    h, bt, n = x.shape
    return x.view(h, batch, bt // batch, n).transpose(0, 1)


def _per_head(tokens: torch.Tensor, image_maps: torch.Tensor) -> torch.Tensor:
    """Tokens by head ``(B, T, H, D)`` against image maps ``(H, D, X)``: ``(B, H, T, X)`` (a view for ``B`` = 1)."""
    return _batch_first(torch.matmul(_rows(tokens), image_maps), tokens.shape[0])


def _project(linear: torch.nn.Linear, x: torch.Tensor, heads: int, scaled: bool = False) -> torch.Tensor:
    """Tokens ``(B, T, C)`` through ``linear``, by head ``(B, T, H, D)``; ``scaled``: times ``D ** -0.5``."""
    y = linear(x)
    y = y.view(*x.shape[:2], heads, -1)
    return y * y.shape[-1] ** -0.5 if scaled else y


def _lifted_values(attention: Attention, values: torch.Tensor) -> torch.Tensor:
    """Values by head ``(B, T, H, D)`` through the output projection: ``(B, H*T, C)``, each with ``bias / H``."""
    b, t, heads, d = values.shape
    out = attention.out_proj
    lifted = torch.einsum("bthd,chd->bhtc", values, out.weight.view(-1, heads, d)).reshape(b, heads * t, -1)
    return lifted + out.bias / heads


@dataclass(frozen=True)
class FoldedWeights:
    """The norms' weights folded into the projections that read their output (``W diag(g)``, transposed ``(C, I)``).

    ``g1``, ``b1``: the first block's last norm, ``g2``, ``b2`` the second's;
    ``b1c`` = ``b1`` centred. Biases by head ``(H, D)``.
    """

    key2: torch.Tensor  # block 2 token->image key
    value2: torch.Tensor  # block 2 token->image value
    query2: torch.Tensor  # block 2 image->token query
    value2_bias: torch.Tensor  # W_v b1 + b_v
    query2_bias: torch.Tensor  # W_q b1 + b_q
    final_key: torch.Tensor  # final attention key, through g2
    final_value: torch.Tensor  # final attention value, through g2
    final_key_bias: torch.Tensor  # W_k diag(g2) b1c
    final_value_bias: torch.Tensor  # W_v diag(g2) b1c
    final_value_const: torch.Tensor  # W_v b2 + b_v
    bias_c: torch.Tensor  # b1c
    bias_mean: torch.Tensor  # mean of b1
    bias_square: torch.Tensor  # |b1c|^2

    @classmethod
    def fold(cls, transformer: TwoWayTransformer) -> FoldedWeights:
        first, second = transformer.layers
        final = transformer.final_attn_token_to_image
        heads = final.num_heads
        g1, b1 = first.norm4.weight, first.norm4.bias
        g2, b2 = second.norm4.weight, second.norm4.bias
        to_image, to_tokens = second.cross_attn_token_to_image, second.cross_attn_image_to_token
        bias_c = b1 - b1.mean()
        final_key, final_value = final.k_proj.weight * g2, final.v_proj.weight * g2
        return cls(
            (to_image.k_proj.weight * g1).t(),
            (to_image.v_proj.weight * g1).t(),
            (to_tokens.q_proj.weight * g1).t(),
            (to_image.v_proj.weight @ b1 + to_image.v_proj.bias).view(heads, -1),
            (to_tokens.q_proj.weight @ b1 + to_tokens.q_proj.bias).view(heads, -1),
            final_key.t(),
            final_value.t(),
            (final_key @ bias_c).view(heads, -1),
            (final_value @ bias_c).view(heads, -1),
            (final.v_proj.weight @ b2 + final.v_proj.bias).view(heads, -1),
            bias_c,
            b1.mean(),
            bias_c @ bias_c,
        )


@dataclass(frozen=True)
class LowRankImage:
    """The image's share of every projection after the first block's attentions.

    With ``k`` the image tokens centred per pixel and ``kg`` = ``k g1``
    centred again: maps ``(H, D, N)`` (``(H, N, D)`` for values; ``_pe``: the
    positional encoding's share, :meth:`.transformer.TwoWayTransformer.pe_heads`,
    appended along the pixels) and vectors ``(N,)``.
    """

    weights: FoldedWeights
    key1: torch.Tensor  # the first block's token->image keys (image + pe, projected), (H, D, N)
    value1: torch.Tensor  # and values, (H, N, D)
    key_mean: torch.Tensor  # mean of the image tokens
    first_square: torch.Tensor  # |k|^2 + 2 k . b_out (block 1, image->token)
    out1: torch.Tensor  # k W_out (block 1)
    key2_pe: torch.Tensor  # k diag(g1) W_k^T | pe (block 2, token->image)
    value2: torch.Tensor  # k diag(g1) W_v^T (block 2, token->image), (H, N, D)
    query2_pe: torch.Tensor  # k diag(g1) W_q^T | pe (block 2, image->token)
    scaled_mean: torch.Tensor  # mean of k g1
    second_square: torch.Tensor  # |kg|^2 + 2 kg . (g1 b_out) (block 1)
    scaled_g1: torch.Tensor  # kg . g1
    scaled_bias: torch.Tensor  # kg . (b1 + b_out) (block 2)
    scaled_out1: torch.Tensor  # kg diag(g1) W_out (block 1)
    scaled_out2: torch.Tensor  # kg W_out (block 2)
    final_key_pe: torch.Tensor  # kg diag(g2) W_k^T | pe (final attention)
    final_value: torch.Tensor  # kg diag(g2) W_v^T (final attention), (H, N, D)

    @classmethod
    def build(cls, transformer: TwoWayTransformer, context: ImageContext) -> LowRankImage:
        """From the prepared context of one image (:meth:`.transformer.TwoWayTransformer.prepare`)."""
        keys, pe_heads = context.keys, context.pe_heads
        first, second = transformer.layers
        heads = transformer.final_attn_token_to_image.num_heads
        weights = FoldedWeights.fold(transformer)
        g1 = first.norm4.weight
        out1 = first.cross_attn_image_to_token.out_proj
        out2 = second.cross_attn_image_to_token.out_proj
        k = keys[0]
        key_mean = k.mean(dim=-1)
        centred = k - key_mean[:, None]
        width = out1.weight.shape[1]
        maps = torch.cat([out1.weight, weights.key2, weights.value2, weights.query2], dim=1)
        out1_map, key2, value2, query2 = (centred @ maps).split(width, dim=1)
        scaled = centred * g1
        scaled_mean = scaled.mean(dim=-1)
        scaled -= scaled_mean[:, None]
        maps = torch.cat([g1[:, None] * out1.weight, out2.weight, weights.final_key, weights.final_value], dim=1)
        scaled_out1, scaled_out2, final_key, final_value = (scaled @ maps).split(width, dim=1)
        vectors = scaled @ torch.stack([g1 * out1.bias, g1, first.norm4.bias + out2.bias], dim=1)

        def with_pe(image_share: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
            return torch.cat((_by_head(image_share, heads), pe), dim=-1)

        return cls(
            weights,
            _by_head(context.token_to_image_k[0], heads),
            _by_head(context.token_to_image_v[0], heads, pixels_last=False),
            key_mean,
            (centred * centred).sum(dim=-1) + 2 * centred @ out1.bias,
            _by_head(out1_map, heads),
            with_pe(key2, pe_heads[0]),
            _by_head(value2, heads, pixels_last=False),
            with_pe(query2, pe_heads[1]),
            scaled_mean,
            (scaled * scaled).sum(dim=-1) + 2 * vectors[:, 0],
            vectors[:, 1],
            vectors[:, 2],
            _by_head(scaled_out1, heads),
            _by_head(scaled_out2, heads),
            with_pe(final_key, pe_heads[2]),
            _by_head(final_value, heads, pixels_last=False),
        )


@dataclass(frozen=True)
class LowRankPrompts:
    """What the blocks did for a batch of ``B`` prompts, in low rank.

    ``first``/``second``: each block's :class:`.transformer.ImageUpdate` (the
    weights stored ``(B, R, N)``, passed transposed); ``rows`` ``[s1 A1; A2]``
    ``(B, 2R, N)`` and ``lift`` ``[Z1; Z2]`` ``(B, 2R, C)``: the image tokens after
    block 2 (see the module doc).
    """

    first: ImageUpdate
    second: ImageUpdate
    rows: torch.Tensor
    lift: torch.Tensor

    def select(self, index: torch.Tensor) -> LowRankPrompts:
        """The prompts ``index``."""
        return LowRankPrompts(self.first.select(index), self.second.select(index), self.rows[index], self.lift[index])

    def final(
        self,
        transformer: TwoWayTransformer,
        context: ImageContext,
        queries: torch.Tensor,
        point_embedding: torch.Tensor,
        outputs: list[int],
    ) -> torch.Tensor:
        """:meth:`.transformer.TwoWayTransformer.final` on these prompts, for the tokens ``outputs``."""
        image: LowRankImage = context.low_rank
        weights = image.weights
        attention = transformer.final_attn_token_to_image
        heads = attention.num_heads
        queries = queries[:, outputs]
        q = _project(attention.q_proj, queries + point_embedding[:, outputs], heads, scaled=True)
        batch, count, _, d = q.shape
        pixels = self.rows.shape[-1]
        s1 = self.first.rstd.transpose(1, 2)[:, None]  # (B, 1, 1, N)
        s2 = self.second.rstd.transpose(1, 2)[:, None]
        # scores = s2 (s1 (kg through the key) + [s1 A1; A2] (Z through the key) + b1c through the key) + pe
        lift = (self.lift @ weights.final_key).view(batch, -1, heads, d)
        through = torch.einsum("bfhd,brhd->bhfr", q, lift).reshape(batch, heads * count, -1)
        constant = torch.einsum("bfhd,hd->bhf", q, weights.final_key_bias).reshape(batch, -1, 1)
        direct = _per_head(q, image.final_key_pe)
        scores = torch.addcmul(constant, direct[..., :pixels].reshape(batch, -1, pixels), s1[:, 0])
        scores = scores.baddbmm_(through, self.rows).view(batch, heads, count, pixels)
        scores.mul_(s2).add_(direct[..., pixels:])
        attention_weights = torch.softmax(scores, dim=-1).mul_(s2)  # (B, H, F, N), times s2
        first = (attention_weights * s1).transpose(0, 1).reshape(heads, batch * count, pixels)
        mixed = torch.bmm(attention_weights.view(batch, heads * count, pixels), self.rows.transpose(1, 2))
        values = (self.lift @ weights.final_value).view(batch, -1, heads, d)
        out = torch.einsum("bhfr,brhd->bfhd", mixed.view(batch, heads, count, -1), values)
        out += _batch_first(torch.matmul(first, image.final_value), batch).transpose(1, 2)
        out += attention_weights.sum(dim=-1).transpose(1, 2)[..., None] * weights.final_value_bias
        out += weights.final_value_const
        update = attention.out_proj(out.reshape(batch, count, -1))
        return transformer.norm_final_attn(queries + update)


def _plus_dense(scores: torch.Tensor, tokens: torch.Tensor, weight: torch.Tensor, dense) -> torch.Tensor:
    """``scores`` ``(B, H, T, N)`` of tokens by head against image tokens, plus their share against the
    mask prompts' addition ``dense`` = ``(features (B, r, N), map (C, r))`` through ``weight`` (bias left out)."""
    if dense is None:
        return scores
    features, dense_map = dense
    batch, heads, count, pixels = scores.shape
    through = (weight @ dense_map).view(heads, tokens.shape[-1], -1)  # (H, D, r)
    lifted = torch.einsum("bthd,hdj->bhtj", tokens, through).reshape(batch, heads * count, -1)
    return torch.baddbmm(scores.reshape(batch, heads * count, pixels), lifted, features).view(scores.shape)


def _attend_first(attention: Attention, tokens: torch.Tensor, image: LowRankImage, dense=None) -> torch.Tensor:
    """The first block's token->image attention on its prepared keys and values, by head
    (``dense``: mask prompts' addition to the image tokens, see :func:`_plus_dense`)."""
    q = _project(attention.q_proj, tokens, attention.num_heads, scaled=True)
    weights = torch.softmax(_plus_dense(_per_head(q, image.key1), q, attention.k_proj.weight, dense), dim=-1)
    batch, heads, count, pixels = weights.shape
    out = torch.matmul(weights.transpose(0, 1).reshape(heads, batch * count, pixels), image.value1)
    out = _batch_first(out, batch).transpose(1, 2)  # (B, T, H, D)
    if dense is not None:
        features, dense_map = dense
        mixed = torch.bmm(weights.reshape(batch, heads * count, pixels), features.transpose(1, 2))
        values = (attention.v_proj.weight @ dense_map).view(heads, q.shape[-1], -1)  # (H, D, r)
        out = out + torch.einsum("bhtj,hdj->bthd", mixed.view(batch, heads, count, -1), values)
    return attention.out_proj(out.reshape(batch, count, -1))


def low_rank_blocks(
    transformer: TwoWayTransformer, context: ImageContext, point_embedding: torch.Tensor
) -> tuple[torch.Tensor, LowRankPrompts]:
    """The two two-way blocks for tokens ``(B, T, C)`` on the prepared image: tokens and the blocks' factors."""
    image: LowRankImage = context.low_rank
    weights = image.weights
    first, second = transformer.layers
    heads = first.cross_attn_image_to_token.num_heads
    batch, count, channels = point_embedding.shape
    pixels = image.key_mean.shape[0]
    rank = heads * count
    g1 = first.norm4.weight
    dense = None
    if context.dense_features is not None:  # mask prompts: image tokens k + features^T map^T
        dense = (context.dense_features.transpose(1, 2).expand(batch, -1, -1), context.dense_map)

    # Block 1: the image side of both attentions was projected once per image.
    to_image = first.cross_attn_token_to_image
    queries = first.token_side(point_embedding, point_embedding, lambda q: _attend_first(to_image, q, image, dense))
    to_tokens = first.cross_attn_image_to_token
    k = _project(to_tokens.k_proj, queries + point_embedding, heads, scaled=True)
    v_first = _project(to_tokens.v_proj, queries, heads)
    scores = _plus_dense(_per_head(k, context.image_to_token_q[0]), k, to_tokens.q_proj.weight, dense)
    a1_rows = torch.softmax(scores, dim=2).reshape(batch, rank, pixels)  # over each head's tokens
    v1 = _lifted_values(to_tokens, v_first)
    # |k + A1 V1c|^2 = |k|^2 + 2 A1 . (k V1^T) + A1 . (V1c V1c^T A1), the bias's share of k V1^T folded in
    # (``cross`` is a new tensor: the quadratic form is summed into it in place).
    cross = _per_head(v_first, image.out1).reshape(batch, rank, pixels)
    if dense is not None:
        # The mask's features join the first update as more rows: weights [A1; F], values [V1; map^T].
        features, dense_map = dense
        keys = context.keys[0]
        a1_rows = torch.cat((a1_rows, features), dim=1)
        v1 = torch.cat((v1, dense_map.t().expand(batch, -1, -1)), dim=1)
        centred = keys @ dense_map - image.key_mean[:, None] * dense_map.sum(dim=0)  # k D, (N, r)
        cross = torch.cat((cross, centred.t().expand(batch, -1, -1)), dim=1)
    first_rows = a1_rows.shape[1]
    v1_mean = v1.mean(dim=-1)
    v1c = v1 - v1_mean[..., None]
    shift1 = torch.bmm(v1_mean[:, None], a1_rows)[:, 0]  # the update's mean per pixel
    square = cross.baddbmm_(v1c @ v1c.transpose(1, 2), a1_rows, beta=2).mul_(a1_rows).sum(dim=1)
    s1 = torch.rsqrt((image.first_square + square) / channels + first.norm4.eps)  # (B, N)
    scale1 = s1[:, None, None]

    def through_first(tokens: torch.Tensor, weight: torch.Tensor, image_maps: torch.Tensor) -> torch.Tensor:
        """Scores ``(B, H, T, N)`` of tokens by head against block 1's image tokens (plus pe) through ``weight``."""
        lift = (v1c @ weight).view(batch, first_rows, heads, -1)
        low = torch.einsum("bthd,brhd->bhtr", tokens, lift).reshape(batch, -1, first_rows)
        direct = _per_head(tokens, image_maps)
        # In place (for one prompt a view into ``direct``): no copy of it into a new tensor.
        out = direct[..., :pixels].reshape(batch, -1, pixels).baddbmm_(low, a1_rows)
        return out.view(direct.shape[:3] + (pixels,)).mul_(scale1).add_(direct[..., pixels:])

    # Block 2, token -> image: scores and the weighted sum of values from the factors.
    to_image = second.cross_attn_token_to_image

    def attend_image(q_tokens: torch.Tensor) -> torch.Tensor:
        q = _project(to_image.q_proj, q_tokens, heads, scaled=True)
        attention_weights = torch.softmax(through_first(q, weights.key2, image.key2_pe), dim=-1).mul_(scale1)
        direct = torch.matmul(attention_weights.transpose(0, 1).reshape(heads, batch * count, pixels), image.value2)
        mixed = torch.bmm(attention_weights.view(batch, rank, pixels), a1_rows.transpose(1, 2))  # (B, H*T, R)
        values = (v1c @ weights.value2).view(batch, first_rows, heads, -1)
        out = torch.einsum("bhtr,brhd->bthd", mixed.view(batch, heads, count, first_rows), values)
        out += _batch_first(direct, batch).transpose(1, 2)
        out += weights.value2_bias
        return to_image.out_proj(out.reshape(batch, count, -1))

    queries = second.token_side(queries, point_embedding, attend_image)

    # Block 2, image -> token.
    to_tokens = second.cross_attn_image_to_token
    k = _project(to_tokens.k_proj, queries + point_embedding, heads, scaled=True)
    v = _project(to_tokens.v_proj, queries, heads)
    scores = through_first(k, weights.query2, image.query2_pe)
    scores += torch.einsum("bthd,hd->bht", k, weights.query2_bias)[..., None]
    a2_rows = torch.softmax(scores, dim=2).reshape(batch, rank, pixels)
    v2 = _lifted_values(to_tokens, v)
    v2_mean = v2.mean(dim=-1)

    # The second norm's statistics: x2 centred = s1 kg + [s1 A1 | A2] @ [Z1; Z2] + b1c, and
    # |x2|^2 = s1^2 |kg|^2 + Y . (M Y + 2 s1 (Z kg^T) + 2 Z b1c) + ..., Y = [s1 A1; A2], M = Z Z^T.
    z1 = v1c * g1
    z1_mean = z1.mean(dim=-1)
    lift = torch.cat((z1 - z1_mean[..., None], v2 - v2_mean[..., None]), dim=1)  # (B, 2R, C)
    split = first_rows
    rows = torch.empty((batch, split + rank, pixels), dtype=a2_rows.dtype, device=a2_rows.device)
    torch.mul(a1_rows, s1[:, None], out=rows[:, :split])
    rows[:, split:] = a2_rows
    gram = lift @ lift.transpose(1, 2)
    gram[:, :split, split:] *= 2  # the symmetric gram's blocks: [M11 | 2 M12] and M22
    linear = 2 * (lift @ weights.bias_c)[..., None]
    scaled_cross = _per_head(v_first, image.scaled_out1).reshape(batch, rank, pixels)
    if dense is not None:  # kg . (g1 map): the mask rows' share, (N, r)
        squared = g1 * g1
        scaled_map = keys @ (squared[:, None] * dense_map) - image.key_mean[:, None] * (squared @ dense_map)
        scaled_map -= image.scaled_mean[:, None] * (g1 @ dense_map)
        scaled_cross = torch.cat((scaled_cross, scaled_map.t().expand(batch, -1, -1)), dim=1)
    # Each term's elementwise part first (one pass, a new tensor), then its product summed in place.
    top = torch.addcmul(linear[:, :split], scaled_cross, s1[:, None], value=2).baddbmm_(gram[:, :split], rows)
    bottom = _per_head(v, image.scaled_out2).reshape(batch, rank, pixels)
    bottom = torch.addcmul(linear[:, split:], bottom, s1[:, None], value=2).baddbmm_(gram[:, split:, split:], a2_rows)
    square = top.mul_(rows[:, :split]).sum(dim=1) + bottom.mul_(a2_rows).sum(dim=1)
    square += s1 * (s1 * (image.second_square - 2 * image.scaled_g1 * shift1) + 2 * image.scaled_bias)
    s2 = torch.rsqrt((square + weights.bias_square) / channels + second.norm4.eps)
    means = torch.cat((z1_mean, v2_mean), dim=1)[:, None]
    mean2 = torch.bmm(means, rows)[:, 0] + s1 * image.scaled_mean + weights.bias_mean
    updates = (
        ImageUpdate(a1_rows.transpose(1, 2), v1, (image.key_mean + shift1)[..., None], s1[..., None]),
        ImageUpdate(a2_rows.transpose(1, 2), v2, mean2[..., None], s2[..., None]),
    )
    return queries, LowRankPrompts(*updates, rows, lift)
