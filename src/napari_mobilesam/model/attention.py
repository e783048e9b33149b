"""SAM's multi-head attention, computed from the few prompt tokens' side.

A prompt has only a handful of tokens (``T`` <= 8) against 4096 image
tokens, so the cross-attentions move the projections to the token side:
``q . (W_k x) = (W_k^T q) . x`` and ``sum_i a_i W_v x_i = W_v sum_i a_i x_i``.
Instead of projecting 4096 image tokens to 128 dims per prompt (for keys,
values, queries and the output), 8 heads x ``T`` tokens are lifted to 256
dims: about 2.3x fewer operations, the same arithmetic up to rounding. A key
bias adds the same value to every score of a softmax over image tokens and is
dropped there; where it does not cancel it is added back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
        if k.shape[0] == 1 and q.shape[0] > 1:  # a shared image: all prompts' queries in one call
            b, t, _ = q.shape
            return self.attend(q.reshape(1, b * t, -1), k, v).view(b, t, -1)
        q, k, v = self._separate_heads(q), self._separate_heads(k), self._separate_heads(v)
        batch = max(q.shape[0], k.shape[0])
        # SDPA needs equal batch sizes; expand is a view, not a copy.
        q, k, v = (t.expand(batch, -1, -1, -1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))

    def _heads(self, weight: torch.Tensor) -> torch.Tensor:
        """A ``(internal, C)`` projection weight as ``(heads, head_dim, C)``."""
        return weight.view(self.num_heads, -1, weight.shape[-1])

    def project_heads(self, x: torch.Tensor, projection: str) -> torch.Tensor:
        """``(1, N, C)`` image tokens through the ``"q"`` or ``"k"`` projection, without bias, by head: ``(H, D, N)``.

        Pixels last: a product of a few tokens with it then streams along
        the pixels (measured ~25 % faster than against ``(H, N, D)``).
        """
        weight = {"q": self.q_proj, "k": self.k_proj}[projection].weight
        return heads_first(F.linear(x, weight), self.num_heads)[0].transpose(1, 2).contiguous()

    @staticmethod
    def _pe_scores(tokens: torch.Tensor, pe_heads: torch.Tensor) -> torch.Tensor:
        """Projected tokens ``(B, T, H, D)`` against the projected positional encoding ``(H, D, N)``: ``(B, H*T, N)``.

        The positional encoding's share of scores, in its head dimension
        (``D`` = 16) instead of lifted to the embedding (256): 16x fewer operations.
        """
        b, t, heads, d = tokens.shape
        scores = torch.matmul(tokens.permute(2, 0, 1, 3).reshape(heads, b * t, d), pe_heads)
        return scores.view(heads, b, t, -1).transpose(0, 1).reshape(b, heads * t, -1)

    def tokens_to_image(self, tokens: torch.Tensor, image: torch.Tensor, pe_keys: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, T, C)`` attend to image tokens ``(B, N, C)``: keys ``image + pe``, values ``image``.

        ``pe_keys``: the positional encoding through the key projection, by head
        (:meth:`project_heads`). Equals ``self(tokens, image + pe, image)``; see
        the module doc. The key bias is left out: it adds the same value to
        every score of a softmax over image tokens.
        """
        b, t, _ = tokens.shape
        heads = self.num_heads
        q = self.q_proj(tokens).view(b, t, heads, -1)
        q = q * q.shape[-1] ** -0.5  # scaled on the few tokens, not on the scores
        lifted = torch.einsum("bthd,hdc->bhtc", q, self._heads(self.k_proj.weight)).reshape(b, heads * t, -1)
        scores = torch.baddbmm(self._pe_scores(q, pe_keys), lifted, image.transpose(1, 2))  # (B, H*T, N)
        weights = torch.softmax(scores, dim=-1)
        mixed = torch.matmul(weights, image).view(b, heads, t, -1)  # (B, H, T, C)
        out = torch.einsum("bhtc,hdc->bthd", mixed, self._heads(self.v_proj.weight))
        out = out + self.v_proj.bias.view(heads, -1)
        return self.out_proj(out.reshape(b, t, -1))

    def image_to_tokens(
        self,
        image_queries: torch.Tensor,
        tokens_k: torch.Tensor,
        tokens_v: torch.Tensor,
        projected: bool = False,
        residual: torch.Tensor | None = None,
        residual_is_temporary: bool = False,
        factors: list | None = None,
        pe_queries: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image tokens attend to prompt tokens; returns the update ``(B, N, C)`` (plus ``residual``).

        ``image_queries``: ``(Bi, N, C)`` image tokens, with ``pe_queries`` the
        query projection of their positional encoding by head (``(H, D, N)``,
        :meth:`project_heads`), or, with ``projected``, their query projection
        (positional encoding included) by head, pixels last, ``(Bi, H, D, N)``. ``tokens_k``/``tokens_v``: ``(B, T, C)``. Equals
        ``self(image_queries + pe, tokens_k, tokens_v)`` (``+ residual``: the sum is
        formed inside the matrix product, saving a pass; into ``residual`` itself
        if it is a temporary of the caller's, outside autograd).

        The scores are laid out ``(B, H, T, N)``: the softmax over a prompt's
        few tokens (axis 2) then runs along the 4096 image tokens, in full
        vector registers (over a last axis of a few tokens, fewer values than a
        register, torch's softmax is several times slower).

        The update is ``weights @ values``, a product of rank ``H*T``; a list
        passed as ``factors`` receives them (``(B, N, H*T)``, ``(B, H*T, C)``).
        """
        b, t, _ = tokens_k.shape
        heads = self.num_heads
        k = self.k_proj(tokens_k).view(b, t, heads, -1)
        k = k * k.shape[-1] ** -0.5  # scaled on the few tokens, not on the scores
        v = self.v_proj(tokens_v).view(b, t, heads, -1)
        if projected:
            n = image_queries.shape[3]
            if image_queries.shape[0] == 1 and b > 1:  # a shared image: all prompts' keys in one product per head
                keys = k.permute(2, 0, 1, 3).reshape(heads, b * t, -1)  # (H, B*T, D)
                scores = torch.matmul(keys, image_queries[0]).view(heads, b, t, n).transpose(0, 1)
            else:
                scores = torch.matmul(k.permute(0, 2, 1, 3), image_queries)  # (B, H, T, N)
        else:
            n = image_queries.shape[1]
            lifted = torch.einsum("bthd,hdc->bhtc", k, self._heads(self.q_proj.weight)).reshape(b, heads * t, -1)
            scores = torch.baddbmm(self._pe_scores(k, pe_queries), lifted, image_queries.transpose(1, 2))
            scores = scores.view(b, heads, t, n)
            scores += torch.einsum("bthd,hd->bht", k, self.q_proj.bias.view(heads, -1))[..., None]
        weights = torch.softmax(scores, dim=2).reshape(b, heads * t, n).transpose(1, 2)  # (B, N, H*T)
        # out_proj folded into the values: U[h, t] = W_out[:, h] v[h, t]. Each head's
        # weights sum to 1, all H heads' to H: the output bias enters as bias / H per value.
        out_weight = self.out_proj.weight.view(-1, heads, v.shape[-1])  # (C, H, D)
        lifted_values = torch.einsum("bthd,chd->bhtc", v, out_weight).reshape(b, heads * t, -1)
        lifted_values = lifted_values + self.out_proj.bias / heads
        if factors is not None:
            factors.extend((weights, lifted_values))
        shape = (b, n, lifted_values.shape[-1])
        if residual_is_temporary and residual.shape == shape and not torch.is_grad_enabled():
            return residual.baddbmm_(weights, lifted_values)  # no copy of it into a new tensor
        start = torch.zeros((), dtype=weights.dtype, device=weights.device) if residual is None else residual
        return torch.baddbmm(start.expand(shape), weights, lifted_values)


def heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, N, H*D)`` -> contiguous ``(B, H, N, D)``: one head's queries in one block of memory."""
    b, n, _ = x.shape
    return x.view(b, n, heads, -1).transpose(1, 2).contiguous()
