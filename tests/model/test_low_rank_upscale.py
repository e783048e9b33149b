"""The upscaling head's first layer from the image's share plus low-rank prompt shares equals the direct layer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_mobilesam.model import build_mobile_sam
from recipe import recipe_state_dict


def _boxes_embedding(model, count: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 900, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(20, 120, (count, 2))], axis=1)
    return model.prompt_encoder.embed_sparse(None, torch.as_tensor(boxes, dtype=torch.float32), None)


def _context(model, seed: int = 0):
    features = torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (1, 256, 64, 64)).astype(np.float32))
    dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    return model.mask_decoder.prepare(features, model.prompt_encoder.get_dense_pe(), dense)


@pytest.mark.parametrize("multimask", [False, True])
def test_low_rank_head_equals_the_direct_head(recipe_model, multimask):
    decoder = recipe_model.mask_decoder
    with torch.inference_mode():
        context = _context(recipe_model)
        assert context.upscale_base is not None
        sparse = _boxes_embedding(recipe_model, 11, seed=1)  # more than one chunk, a partial last one
        masks, iou = decoder.decode(context, sparse, multimask)
        direct_masks, direct_iou = decoder.decode(replace(context, upscale_base=None), sparse, multimask)
        # Some prompts skip the head (min_iou): the kept ones are selected from every factor.
        best = direct_iou.max(dim=1).values.sort().values
        threshold = float(best[5] + best[6]) / 2  # between two prompts' best IoU, clear of rounding
        kept_masks, _ = decoder.decode(context, sparse, multimask, min_iou=threshold)
    assert masks.abs().max() > 0.5  # logits of real size, not a degenerate case
    torch.testing.assert_close(masks, direct_masks, atol=5e-5, rtol=0)
    torch.testing.assert_close(iou, direct_iou)
    kept = (direct_iou > threshold).any(dim=1)
    assert 0 < int(kept.sum()) < len(kept)
    torch.testing.assert_close(kept_masks[kept], direct_masks[kept], atol=5e-5, rtol=0)
    assert torch.isneginf(kept_masks[~kept]).all()


def test_folded_head_follows_weights():
    """The norms' weights folded into the head are cached; new weights must reach new image contexts."""
    model = build_mobile_sam()
    model.load_state_dict(recipe_state_dict(0))
    model.eval()
    decoder = model.mask_decoder
    with torch.inference_mode():
        sparse = _boxes_embedding(model, 2, seed=2)
        before, _ = decoder.decode(_context(model), sparse, True)
        for layer in decoder.transformer.layers:
            layer.norm4.weight.mul_(1.5)
            layer.norm4.bias.add_(0.1)
        decoder.output_upscaling[0].bias.add_(0.2)
        context = _context(model)
        after, _ = decoder.decode(context, sparse, True)
        direct, _ = decoder.decode(replace(context, upscale_base=None), sparse, True)
    assert not torch.allclose(before, after, atol=1e-2)
    torch.testing.assert_close(after, direct, atol=5e-5, rtol=0)


@pytest.mark.parametrize("masks_count", [1, 3])
def test_low_rank_head_with_mask_prompts(recipe_model, masks_count):
    """Mask prompts add their dense features' columns; one mask may serve several prompts."""
    decoder, prompt_encoder = recipe_model.mask_decoder, recipe_model.prompt_encoder
    masks = torch.from_numpy(np.random.default_rng(4).normal(0, 4, (masks_count, 1, 256, 256)).astype(np.float32))
    with torch.inference_mode():
        features = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 256, 64, 64)).astype(np.float32))
        bare = decoder.prepare(features, prompt_encoder.get_dense_pe(), 0)
        context = decoder.prepare_with_masks(bare, prompt_encoder.mask_downscaling, masks)
        assert context.dense_features is not None and context.upscale_base is not None
        sparse = _boxes_embedding(recipe_model, 3, seed=5)
        low_rank, iou = decoder.decode(context, sparse, True)
        direct, direct_iou = decoder.decode(replace(context, upscale_base=None), sparse, True)
        # On image tokens (no low-rank blocks): the mask in the keys, its features as the head's extra columns.
        on_tokens = decoder.prepare_with_masks(replace(bare, low_rank=None), prompt_encoder.mask_downscaling, masks)
        assert on_tokens.dense_in_keys and on_tokens.dense_features is not None
        columns, _ = decoder.decode(on_tokens, sparse, True)
        # Against the official order of work: the dense embedding added to the image first.
        official = decoder(
            features, prompt_encoder.get_dense_pe(), sparse, prompt_encoder.mask_downscaling(masks), True
        )
    torch.testing.assert_close(low_rank, direct, atol=5e-5, rtol=0)
    torch.testing.assert_close(iou, direct_iou)
    torch.testing.assert_close(low_rank, official[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(columns, direct, atol=5e-5, rtol=0)
