"""The mask tokens' MLPs run as one batched product per layer; the result equals each MLP on its token."""

from __future__ import annotations

import torch

from napari_mobilesam.model import build_mobile_sam
from recipe import recipe_state_dict


def test_batched_hypernetworks_equal_each_mlp_and_follow_weights():
    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0))
    model.eval()
    decoder = model.mask_decoder
    hs = torch.randn(5, 3, 256, generator=torch.Generator().manual_seed(0))
    selected = range(1, 4)

    def each():
        return torch.stack([decoder.output_hypernetworks_mlps[i](hs[:, k]) for k, i in enumerate(selected)], dim=1)

    with torch.inference_mode():
        torch.testing.assert_close(decoder._hypernetworks(hs, selected), each(), atol=1e-5, rtol=1e-5)
        decoder.output_hypernetworks_mlps[2].layers[1].weight.mul_(-1.0)  # new weights: the stacked copy must follow
        torch.testing.assert_close(decoder._hypernetworks(hs, selected), each(), atol=1e-5, rtol=1e-5)
