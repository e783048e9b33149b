"""The two-way transformer's cached image-independent tensors follow the weights."""

from __future__ import annotations

import torch

from napari_mobilesam.model import build_mobile_sam
from recipe import recipe_state_dict


def test_positional_encoding_projections_follow_weights_and_encoding():
    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0))
    model.eval()
    transformer = model.mask_decoder.transformer
    key_pe = model.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2).contiguous()
    with torch.inference_mode():
        first = transformer.pe_heads(key_pe)
        assert transformer.pe_heads(key_pe.clone()) is first  # same weights, same encoding: kept
        transformer.final_attn_token_to_image.k_proj.weight.mul_(2.0)
        second = transformer.pe_heads(key_pe)
        shifted = transformer.pe_heads(key_pe + 1.0)
    assert torch.equal(second[:-1], first[:-1])
    torch.testing.assert_close(second[-1], 2.0 * first[-1])
    expected = transformer.final_attn_token_to_image.project_heads(key_pe + 1.0, "k")
    torch.testing.assert_close(shifted[-1], expected)
