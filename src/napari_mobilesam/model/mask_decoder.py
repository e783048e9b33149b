"""SAM's mask decoder: tokens + image embedding -> low-res mask logits and IoU scores."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predicts 1 + ``num_multimask_outputs`` masks (256x256 logits) and their IoU."""

    def __init__(self, transformer_dim=256, transformer=None, num_multimask_outputs=3, iou_head_depth=3, iou_head_hidden_dim=256):
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

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``B`` prompts against one image.

        ``image_embeddings`` ``(1, C, 64, 64)`` (or ``(B, ...)``), ``image_pe``
        ``(1, C, 64, 64)``, sparse ``(B, N, C)``, dense ``(1 or B, C, 64, 64)``.
        Returns masks ``(B, M, 256, 256)`` logits and IoU ``(B, M)``, with
        ``M = 3`` for multimask output (tokens 1..3) and ``M = 1`` otherwise (token 0).
        """
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, mask_slice)

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, mask_slice=slice(None)):
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse_prompt_embeddings), dim=1)

        # Broadcast, not repeat: B prompts share one image embedding.
        src = image_embeddings + dense_prompt_embeddings
        hs, src = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        b = src.shape[0]
        h, w = image_embeddings.shape[-2:]
        src = src.transpose(1, 2).reshape(b, self.transformer_dim, h, w)
        upscaled = self.output_upscaling(src)

        selected = range(self.num_mask_tokens)[mask_slice]
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in selected], dim=1)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou_pred = self.iou_prediction_head(iou_token_out)[:, mask_slice]
        return masks, iou_pred
