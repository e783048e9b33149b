"""A cheap stand-in for micro-sam's instance decoder, and recipe models that carry a decoder.

The real decoder runs at 1024 x 1024 (tens of seconds on two busy cores), so
tests of the plumbing (stacks, the widget, caching) use :class:`StandInDecoder`:
an ``nn.Module`` with the decoder's contract (``(1, 256, 64, 64)`` embedding ->
``(1, 3, 1024, 1024)`` maps in 0..1) whose maps follow the embedding, so
similar slices give similar objects. Tests of the results against
``instance_maps`` + ``watershed_from_maps`` use the real recipe decoder.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class StandInDecoder(nn.Module):
    """Foreground and two distances from random mixes of the (per-channel normalised) embedding, in 0..1.

    Mostly foreground; seeds (both distances below 0.5) where both mixes are negative: patches of objects.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(256, 3, 1)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(3, 256, 1, 1, generator=generator) * 0.15)
            self.mix.bias.copy_(torch.tensor([1.5, 0.0, 0.0]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = torch.sigmoid(self.mix(F.instance_norm(features)))
        return F.interpolate(maps, size=(1024, 1024), mode="bilinear", align_corners=False)


def with_decoder(model, decoder, *, model_name: str = "vit_t_lm", normalization: str | None = None):
    """A shallow copy of ``model`` (sharing its weights) that carries ``decoder``, as ``load_model`` makes one."""
    from napari_mobilesam.engine.weights import attach_instance_decoder

    carrier = copy.copy(model)
    return attach_instance_decoder(carrier, decoder, model_name=model_name, normalization=normalization)


def blobs(shape, seed: int = 0) -> np.ndarray:
    """A small uint16 image (or stack) with two bright rectangles on noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(300, 40, shape).clip(0).astype(np.uint16)
    image[..., 8:28, 10:34] += 2500
    image[..., 36:54, 40:60] += 1800
    return image
