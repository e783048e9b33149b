"""The MobileSAM model: TinyViT encoder, prompt encoder, mask decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

IMAGE_SIZE = 1024
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class MobileSAM(nn.Module):
    """Holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.

    Its ``state_dict()`` has exactly the keys of the official ``mobile_sam.pt``.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(self, image_encoder: TinyViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def image_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``(B, 3, h, w)`` RGB values in 0..255 and zero-pad to 1024x1024."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))


def build_mobile_sam() -> MobileSAM:
    """MobileSAM (``vit_t``) with untrained weights, in eval mode."""
    model = MobileSAM(
        image_encoder=TinyViT(img_size=IMAGE_SIZE),
        prompt_encoder=PromptEncoder(256, (64, 64), (IMAGE_SIZE, IMAGE_SIZE), 16),
        mask_decoder=MaskDecoder(256, TwoWayTransformer(2, 256, 8, 2048)),
    )
    return model.eval()
