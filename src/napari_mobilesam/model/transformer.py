"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

The image side may have batch 1 while the prompt side has batch ``B``: every
operation broadcasts, so ``B`` prompts share one image embedding without
copying it ``B`` times.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MLPBlock


class Attention(nn.Module):
    """Multi-head attention with optional down-projection of the inner dimension."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention on already projected ``q``, ``k``, ``v`` (each ``(B, N, internal)``)."""
        q, k, v = self._separate_heads(q), self._separate_heads(k), self._separate_heads(v)
        batch = max(q.shape[0], k.shape[0])
        # SDPA needs equal batch sizes; expand is a view, not a copy.
        q, k, v = (t.expand(batch, -1, -1, -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))


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

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        keys_with_pe = keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, keys_with_pe, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(keys_with_pe, q, queries))
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

    def forward(self, image_embedding, image_pe, point_embedding):
        """``image_embedding`` ``(1 or B, C, H, W)``, ``image_pe`` ``(1, C, H, W)``,
        ``point_embedding`` ``(B, N, C)`` -> tokens ``(B, N, C)``, image ``(B, HW, C)``."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, keys + key_pe, keys))
        return queries, keys
